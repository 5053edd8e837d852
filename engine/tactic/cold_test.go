package tactic

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// weightyOp is a test op with a constant weight input: its tactics "a",
// "b", "c" add the weights' first element to the input; SetTactic
// allocates a "packed" copy of the weights "pack" times their size (as a
// packing kernel does). Every run records the weights it read.
type weightyOp struct {
	name, tactic string
	pack         int64
	packed       []byte
}

var weightyLog struct {
	sync.Mutex
	runs map[string][]uintptr // "node/tactic" -> the weights' address of each run
}

func (k *weightyOp) Infer(in []*ir.Value) ([]ir.Type, error) { return []ir.Type{in[0].Type}, nil }

func (k *weightyOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	w := in[1]
	weightyLog.Lock()
	key := k.name + "/" + k.tactic
	weightyLog.runs[key] = append(weightyLog.runs[key], uintptr(unsafe.Pointer(&w.Data[0])))
	weightyLog.Unlock()
	y, err := ops.NewOutput(env, in[0].DType, in[0].Shape)
	if err != nil {
		return nil, err
	}
	for i, v := range in[0].Float32s() {
		y.Float32s()[i] = v + w.Float32s()[0]
	}
	return []*tensor.Tensor{y}, nil
}

func (k *weightyOp) Tactics(in []*ir.Value) []string {
	if !in[0].Type.Shape.FullyKnown() {
		return nil
	}
	return []string{"a", "b", "c"}
}

func (k *weightyOp) SetTactic(name string) error {
	if name != "a" && name != "b" && name != "c" {
		return fmt.Errorf("%w: no tactic %q", ops.ErrBadAttr, name)
	}
	k.tactic = name
	k.packed = make([]byte, 0)
	if k.pack > 0 {
		k.packed = make([]byte, k.pack)
		for i := range k.packed {
			k.packed[i] = byte(i)
		}
	}
	return nil
}

func init() {
	weightyLog.runs = map[string][]uintptr{}
	ops.Register(ops.Def{Domain: "kilntest", Type: "Weighty", Prepare: func(n *ir.Node, _ int64) (ops.Kernel, error) {
		k := &weightyOp{name: n.Name}
		if a, ok := n.Attrs["pack"]; ok {
			k.pack = a.I * int64(len(n.Inputs[1].Const.Data))
		}
		return k, nil
	}})
}

// weightyGraph is x [1,16] -> one Weighty node per entry of floats (its
// weights' size in float32s; pack, when positive, the packed copy's
// multiple) -> y.
func weightyGraph(t *testing.T, layers ...[2]int) *ir.Graph {
	t.Helper()
	b := ir.NewBuilder("cold", 13)
	v := b.Input("x", tensor.Float32, ir.D(1), ir.D(16))
	for i, l := range layers {
		w := tensor.New(tensor.Float32, l[0])
		for j := range w.Float32s() {
			w.Float32s()[j] = float32(j%5) + float32(i)
		}
		var attrs []*ir.Attr
		if l[1] > 0 {
			attrs = append(attrs, ir.IntAttr("pack", int64(l[1])))
		}
		v = b.Op("Weighty", []*ir.Value{v, b.Const(fmt.Sprintf("w%d", i), w)}, attrs...)
		v.Producer.Domain = "kilntest"
	}
	b.Output(v, "y")
	g := b.Graph()
	g.Opsets["kilntest"] = 1
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	return g
}

// withL2 sets the L2 size Select takes for the test.
func withL2(t *testing.T, b int64) {
	old := l2Bytes
	l2Bytes = func() int64 { return b }
	t.Cleanup(func() { l2Bytes = old })
}

// TestSelectCold: a layer with heavy weights (1 MiB, or 128 KiB that its
// tactics pack into 512 KiB) is timed cold, each tactic's runs on copies of
// its weights in turn, never the same copy twice in a row; a light one
// (4 KiB) on its weights alone, as before.
func TestSelectCold(t *testing.T) {
	withL2(t, 2<<20) // cold from 512 KiB
	g := weightyGraph(t, [2]int{256 << 10, 0}, [2]int{1 << 10, 0}, [2]int{32 << 10, 4})
	const runs = 6
	var lines []string
	choices, err := Select(context.Background(), g, fpA, New(), Options{Runs: runs, Progress: func(p Progress) { lines = append(lines, p.String()) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		node string
		cold bool
	}{
		{"Weighty_1", true},  // 1 MiB of weights
		{"Weighty_2", false}, // 4 KiB
		{"Weighty_3", true},  // 128 KiB, packed into 512 KiB
	} {
		c, ok := choices[tc.node]
		if !ok {
			t.Fatalf("no choice for %s: %v", tc.node, choices)
		}
		if c.Cold != tc.cold {
			t.Errorf("%s: cold %v, want %v", tc.node, c.Cold, tc.cold)
		}
		// 3 tactics of at most 1 MiB: 32 MiB apart takes the most copies.
		wantCopies := 1
		if tc.cold {
			wantCopies = maxCopies
		}
		if c.Copies != wantCopies {
			t.Errorf("%s: %d copies, want %d", tc.node, c.Copies, wantCopies)
		}
		weightyLog.Lock()
		for _, tac := range []string{"a", "b", "c"} {
			all := weightyLog.runs[tc.node+"/"+tac]
			if len(all) < runs {
				t.Fatalf("%s/%s: %d runs, want at least %d", tc.node, tac, len(all), runs)
			}
			timed := all[len(all)-runs:]
			distinct := map[uintptr]bool{}
			for i, p := range timed {
				distinct[p] = true
				if tc.cold && i > 0 && p == timed[i-1] {
					t.Errorf("%s/%s: timed runs %d and %d read the same weights", tc.node, tac, i-1, i)
				}
			}
			if want := min(wantCopies, runs); len(distinct) != want {
				t.Errorf("%s/%s: timed runs read %d copies of the weights, want %d", tc.node, tac, len(distinct), want)
			}
		}
		weightyLog.Unlock()
	}
	cold := 0
	for _, l := range lines {
		if strings.HasSuffix(l, fmt.Sprintf(" (weights cold, %d copies)", maxCopies)) {
			cold++
		}
	}
	if cold != 6 {
		t.Errorf("%d progress lines say weights cold, want 6 (two layers, three tactics):\n%s", cold, strings.Join(lines, "\n"))
	}
}

// TestSelectColdConv: resnet50's layer3 3x3 convolution (2.25 MiB of
// weights) through the real FusedConv tactics is timed cold, a small one
// not (even where its first run allocates megabytes of scratch), and both
// choose a tactic that computes the convolution.
func TestSelectColdConv(t *testing.T) {
	withL2(t, 2<<20)
	b := ir.NewBuilder("conv", 13)
	x := b.Input("x", tensor.Float32, ir.D(1), ir.D(256), ir.D(14), ir.D(14))
	// im2col's scratch at 112x112 is 3.5 MiB: not weights
	x2 := b.Input("x2", tensor.Float32, ir.D(1), ir.D(8), ir.D(112), ir.D(112))
	conv := func(name string, in *ir.Value, c, m int) *ir.Value {
		w := tensor.New(tensor.Float32, m, c, 3, 3)
		for i := range w.Float32s() {
			w.Float32s()[i] = float32(i%13)/13 - 0.5
		}
		v := b.Op("FusedConv", []*ir.Value{in, b.Const(name+".w", w)}, ir.IntsAttr("pads", 1, 1, 1, 1), ir.StringAttr("activation", "Relu"))
		v.Producer.Domain = "kiln"
		v.Producer.Name = name
		return v
	}
	b.Output(conv("big", x, 256, 256), "y")
	b.Output(conv("small", x2, 8, 8), "y2")
	g := b.Graph()
	g.Opsets["kiln"] = 1
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	choices, err := Select(context.Background(), g, fpA, New(), Options{Runs: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"big", "small"} {
		c := choices[name]
		t.Logf("%s: %s of %d tactics, cold %v, %d copies", name, c.Tactic, len(c.Times), c.Cold, c.Copies)
	}
	if c := choices["big"]; !c.Cold || c.Copies < 1 || len(c.Times) < 2 {
		t.Errorf("big: %+v, want timed cold", c)
	}
	if c := choices["small"]; c.Cold || c.Copies != 1 || len(c.Times) < 2 {
		t.Errorf("small: %+v, want timed warm", c)
	}
}

// TestCacheTimer: Select files its times with CPUTimer and does not use a
// time filed without it (a kiln before the cold timer measured warm); the
// saved file keeps both, the new one marked "timer".
func TestCacheTimer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "timing")
	g := weightyGraph(t, [2]int{1 << 10, 0})
	sig := Signature(g, g.Nodes[0])
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tac := range []string{"a", "b", "c"} {
		c.Store(fpA, sig, tac, 1) // as the warm timer filed them
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	c, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	choices, err := Select(context.Background(), g, fpA, c, Options{Runs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ch := choices["Weighty_1"]; ch.Cached {
		t.Errorf("Select used times filed without a timer: %+v", ch)
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	timers := map[string]int{}
	for _, e := range f.Entries {
		timers[e.Timer]++
	}
	if timers[""] != 3 || timers[CPUTimer] != 3 || len(timers) != 2 {
		t.Errorf("saved entries by timer: %v, want 3 without and 3 with %q", timers, CPUTimer)
	}
	// And a second Select finds its own times.
	again, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	choices, err = Select(context.Background(), g, fpA, again, Options{Runs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ch := choices["Weighty_1"]; !ch.Cached {
		t.Errorf("second Select measured again: %+v", ch)
	}
}

func TestColdPlan(t *testing.T) {
	const l2 = 2 << 20
	for _, tc := range []struct {
		name    string
		weights []int64
		unique  int64 // 0: the sum of weights
		cold    bool
		copies  int
	}{
		{"none", nil, 0, false, 1},
		{"light", []int64{4 << 10, 4 << 10}, 0, false, 1},
		{"just under", []int64{l2/coldFraction - 1}, 0, false, 1},
		{"at the fraction", []int64{l2 / coldFraction}, 0, true, maxCopies},
		{"4 MiB in 4 tactics", []int64{1 << 20, 1 << 20, 1 << 20, 1 << 20}, 0, true, maxCopies},
		// resnet50 layer3 3x3: 2.25 MiB of weights, packed by direct,
		// direct-cl and gemm-t, 9 MiB of Winograd
		{"resnet50 layer3 3x3", []int64{2359296, 2359296, 2359296, 2359296, 9437184}, 4*2359296 + 9437184, true, 3},
		// 8 im2col blockings reading the same constants are one
		{"tactics sharing the constants", []int64{4 << 20, 4 << 20, 4 << 20, 4 << 20, 4 << 20, 4 << 20, 4 << 20, 4 << 20}, 4 << 20, true, maxCopies},
		{"tactics heavier together than ColdBytes", []int64{20 << 20, 20 << 20}, 0, true, 2},
		{"one tactic heavier than ColdBytes", []int64{40 << 20, 9 << 20}, 0, true, 2},
		{"unique below the heaviest", []int64{40 << 20}, 1, true, 2},
		{"far heavier", []int64{100 << 20, 100 << 20}, 0, true, 1},
	} {
		unique := tc.unique
		if unique == 0 {
			for _, w := range tc.weights {
				unique += w
			}
		}
		cold, copies := coldPlan(tc.weights, unique, l2)
		if cold != tc.cold || copies != tc.copies {
			t.Errorf("%s: cold %v, %d copies; want %v, %d", tc.name, cold, copies, tc.cold, tc.copies)
		}
	}
}

func TestReadL2(t *testing.T) {
	dir := t.TempDir()
	for i, c := range [][3]string{{"1", "Data", "48K"}, {"1", "Instruction", "64K"}, {"2", "Unified", "2048K"}, {"3", "Unified", "491520K"}} {
		d := filepath.Join(dir, fmt.Sprintf("index%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for j, name := range []string{"level", "type", "size"} {
			if err := os.WriteFile(filepath.Join(d, name), []byte(c[j]+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if b, ok := readL2(dir); !ok || b != 2<<20 {
		t.Errorf("readL2: %d, %v; want 2 MiB", b, ok)
	}
	if _, ok := readL2(filepath.Join(dir, "missing")); ok {
		t.Error("readL2 of a missing folder: ok")
	}
	for s, want := range map[string]int64{"2048K": 2 << 20, "1M": 1 << 20, "512": 512, "": 0, "K": 0, "-1K": 0, "2X": 0} {
		if got, _ := parseCacheSize(s); got != want {
			t.Errorf("parseCacheSize(%q) = %d, want %d", s, got, want)
		}
	}
	if l2Bytes() <= 0 {
		t.Errorf("l2Bytes() = %d", l2Bytes())
	}
}
