package partition

import (
	"context"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// twoCPUSegments is x[batch,8] -> Relu -> CumSum x2 -> Mul -> CumSum x3 ->
// Sigmoid -> y: two CPU segments (CumSum has no fake-device
// implementation) between three device ones, the first CPU segment with
// one intermediate, the second with two live at once.
func twoCPUSegments(t testing.TB) *ir.Graph {
	t.Helper()
	b := ir.NewBuilder("two_cpu", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(8))
	axis := b.Const("axis", tensor.FromInt64([]int64{1}, 1))
	v := b.Op("Relu", []*ir.Value{x})
	for range 2 {
		v = b.Op("CumSum", []*ir.Value{v, axis})
	}
	w := make([]float32, 8)
	for i := range w {
		w[i] = 0.125 * float32(i-4)
	}
	v = b.Op("Mul", []*ir.Value{v, b.Const("w", tensor.FromFloat32(w, 8))})
	for range 3 {
		v = b.Op("CumSum", []*ir.Value{v, axis})
	}
	b.Output(b.Op("Sigmoid", []*ir.Value{v}), "y")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestHostArena: a partitioned program's context keeps its CPU segments'
// activations in one host arena, each segment's engine context at an
// offset, sharing bytes (the segments never run at once): after a run the
// context holds the largest CPU segment's arena (plus the device
// segments' memory), not the sum it held before, and it moves them again
// when a larger batch makes a segment grow. The outputs equal the CPU
// engine's on every run, with and without max shapes, with and without
// device contexts.
func TestHostArena(t *testing.T) {
	for _, tt := range []struct {
		name      string
		maxShapes map[string][]int
		contexts  bool
	}{
		{"no max shapes, shared device programs", nil, false},
		{"max shapes, device contexts", map[string][]int{"x": {16, 8}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := twoCPUSegments(t)
			fx := &fakeExec{name: "gpu", ops: gpuOps}
			var x device.Executor = fx
			if tt.contexts {
				x = &ctxExec{fakeExec: fx}
			}
			prog, r, err := Compile(g, x, device.ExecOptions{MaxShapes: tt.maxShapes}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			if len(r.Segments) != 5 {
				t.Fatalf("%d segments, want 5 (device, CPU, device, CPU, device)", len(r.Segments))
			}
			c, err := prog.(device.Contexts).NewContext()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pc := c.(*programContext)
			prevHost := -1
			for _, batch := range []int{2, 2, 1, 8, 16, 3} {
				in := randomInput(batch, uint64(batch))
				out, err := c.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				sameOutputs(t, out, reference(t, g, in))
				var sum, largest, device int64
				cpu := 0
				for _, s := range pc.segs {
					cc, ok := s.(cpuContext)
					if !ok {
						device += s.ArenaBytes()
						continue
					}
					cpu++
					n := int64(cc.c.ArenaBytes())
					if n == 0 || !cc.c.ArenaIn(pc.host.buf) {
						t.Fatalf("batch %d: a CPU segment's arena (%d bytes) outside the host arena", batch, n)
					}
					sum += n
					largest = max(largest, n)
				}
				if cpu != 2 {
					t.Fatalf("%d CPU segment contexts, want 2", cpu)
				}
				host := int64(len(pc.host.buf))
				if host != largest || host >= sum {
					t.Errorf("batch %d: host arena %d bytes for CPU arenas of %d (largest %d): want the largest", batch, host, sum, largest)
				}
				if got := c.ArenaBytes(); got != host+device {
					t.Errorf("batch %d: ArenaBytes %d, want the host arena %d + the device contexts' %d", batch, got, host, device)
				}
				if int(host) != prevHost {
					t.Logf("batch %d: CPU segments' arenas %d bytes apart, %d in one host arena", batch, sum, host)
					prevHost = int(host)
				}
			}
		})
	}
}
