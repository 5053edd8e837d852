package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

// TestArenaPerBucket runs a [batch,16] chain planned for batches of at most
// 64 at several batch sizes in one context: the arena is sized for the
// batch's bucket (the next power of two, at most the max), grows when a
// larger bucket runs and never shrinks; every result is right.
func TestArenaPerBucket(t *testing.T) {
	withStrictAlias(t)
	e, err := symbolicChain(t, Options{MaxShapes: map[string][]int{"x": {64, 16}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.Memory().ArenaBytes, 2*alignUp(64*16*4); got != want {
		t.Fatalf("arena at the max shapes %d bytes, want %d", got, want)
	}
	arena := func(batch int) int { return 2 * alignUp(batch*16*4) } // two buffers of a chain
	c := e.NewContext()
	tests := []struct {
		batch, wantArena int
	}{
		{1, arena(1)},
		{1, arena(1)},
		{3, arena(4)},
		{2, arena(4)}, // bucket 2 fits in the arena already there
		{33, arena(64)},
		{64, arena(64)},   // the max shapes: the engine's own plan
		{100, arena(100)}, // beyond the max (no profile forbids it): planned as it is
		{5, arena(100)},
	}
	for _, tt := range tests {
		x := ramp(tt.batch*16, 0.3, tt.batch, 16)
		poison(c)
		got, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
		if err != nil {
			t.Fatalf("batch %d: %v", tt.batch, err)
		}
		for i, v := range x.Float32s() {
			if got["y"].Float32s()[i] != -abs32(v) {
				t.Fatalf("batch %d: y[%d] = %v, want %v", tt.batch, i, got["y"].Float32s()[i], -abs32(v))
			}
		}
		if c.ArenaBytes() != tt.wantArena {
			t.Errorf("batch %d: arena %d bytes, want %d", tt.batch, c.ArenaBytes(), tt.wantArena)
		}
	}
	// buckets 1, 4, 2, 100 and 8 were planned; 64 is the engine's own plan
	if n := len(e.buckets); n != 5 {
		t.Errorf("%d bucket plans kept, want 5", n)
	}
	// batches beyond the max each have their own plan: the engine keeps
	// at most maxBuckets of them
	for batch := 65; batch < 65+2*maxBuckets; batch++ {
		if _, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": ramp(batch*16, 0.3, batch, 16)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.buckets); n > maxBuckets {
		t.Errorf("%d bucket plans kept, want at most %d", n, maxBuckets)
	}
}

// TestArenaWithoutMaxShapes: an engine with a symbolic dimension and no max
// shapes plans nothing when it is built; each run plans for its own shapes
// (exactly, there is no max to round to), and the context's arena follows.
func TestArenaWithoutMaxShapes(t *testing.T) {
	withStrictAlias(t)
	e, err := symbolicChain(t, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m := e.Memory(); m.ArenaBytes != 0 {
		t.Fatalf("memory %+v planned without max shapes", m)
	}
	c := e.NewContext()
	for _, tt := range []struct{ batch, wantArena int }{{1, 128}, {3, 2 * alignUp(3*64)}, {2, 2 * alignUp(3*64)}, {10, 2 * alignUp(10*64)}} {
		x := ramp(tt.batch*16, 0.3, tt.batch, 16)
		poison(c)
		got, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range x.Float32s() {
			if got["y"].Float32s()[i] != -abs32(v) {
				t.Fatalf("batch %d: y[%d] = %v, want %v", tt.batch, i, got["y"].Float32s()[i], -abs32(v))
			}
		}
		if c.ArenaBytes() != tt.wantArena {
			t.Errorf("batch %d: arena %d bytes, want %d", tt.batch, c.ArenaBytes(), tt.wantArena)
		}
	}
}

// TestMemoryLimit: an engine whose arena at its max shapes exceeds the
// memory limit is refused when it is built; a run beyond the max shapes
// that would exceed it fails with ErrMemory and leaves the context usable;
// a single tensor over the limit is refused where nothing is planned.
func TestMemoryLimit(t *testing.T) {
	const limit = 4096
	tests := []struct {
		name  string
		o     Options
		build string // the build error ("" for none)
		batch int
		run   string // the run error ("" for none)
	}{
		{"arena at max over the limit", Options{MaxShapes: map[string][]int{"x": {64, 16}}, MemoryLimit: limit}, "x 64x16", 0, ""},
		{"profile over the limit", Options{Profiles: []Profile{{Inputs: []Range{{Input: "x", Min: []int{1, 16}, Opt: []int{1, 16}, Max: []int{64, 16}}}}}, MemoryLimit: limit}, "x 64x16", 0, ""},
		{"no limit", Options{MaxShapes: map[string][]int{"x": {64, 16}}, MemoryLimit: -1}, "", 1000, ""},
		{"within the max", Options{MaxShapes: map[string][]int{"x": {16, 16}}, MemoryLimit: limit}, "", 16, ""},
		{"run beyond the max", Options{MaxShapes: map[string][]int{"x": {16, 16}}, MemoryLimit: limit}, "", 100, "x 100x16"},
		{"one tensor over the limit, no arena", Options{NoArena: true, MemoryLimit: limit}, "", 100, "float32 tensor of shape 100x16"},
		{"no max shapes: planned for the run", Options{MemoryLimit: limit}, "", 100, "x 100x16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := symbolicChain(t, tt.o)
			if tt.build != "" {
				if !errors.Is(err, ErrMemory) || !strings.Contains(err.Error(), tt.build) || !strings.Contains(err.Error(), "4.0 KiB") {
					t.Fatalf("build: %v, want ErrMemory naming %q and the limit", err, tt.build)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := e.NewContext()
			_, err = c.Run(context.Background(), map[string]*tensor.Tensor{"x": ramp(tt.batch*16, 0.3, tt.batch, 16)})
			if tt.run != "" {
				if !errors.Is(err, ErrMemory) || !strings.Contains(err.Error(), tt.run) {
					t.Fatalf("run: %v, want ErrMemory naming %q", err, tt.run)
				}
				if c.ArenaBytes() > limit {
					t.Fatalf("the refused run left an arena of %d bytes", c.ArenaBytes())
				}
			} else if err != nil {
				t.Fatal(err)
			}
			// the context still serves runs within the limit
			x := ramp(2*16, 0.3, 2, 16)
			got, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
			if err != nil {
				t.Fatal(err)
			}
			if got["y"].Float32s()[3] != -abs32(x.Float32s()[3]) {
				t.Fatal("wrong result after a refused run")
			}
		})
	}
}

func TestDefaultMemoryLimit(t *testing.T) {
	l := DefaultMemoryLimit()
	if l < minDefaultLimit {
		t.Fatalf("default memory limit %d below the floor %d", l, minDefaultLimit)
	}
	if m := machineMemory(); m > 0 && l > m && l > minDefaultLimit {
		t.Fatalf("default memory limit %s above the machine's memory %s", FormatBytes(l), FormatBytes(m))
	}
	if o := (Options{}).memoryLimit(); o != l {
		t.Fatalf("zero Options limit %d, want the default %d", o, l)
	}
}

func TestNextPow2(t *testing.T) {
	for _, tt := range []struct{ n, want int }{{0, 0}, {1, 1}, {2, 2}, {3, 4}, {4, 4}, {5, 8}, {32767, 32768}, {32768, 32768}} {
		if got := nextPow2(tt.n); got != tt.want {
			t.Errorf("nextPow2(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}
