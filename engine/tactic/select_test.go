package tactic

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	cpukernels "github.com/kilnai/kiln/device/cpu/kernels"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/tensor"
)

// sleepyOp is a test op with tactics of known speeds: "slow" (the
// default), "fast" and "medium" copy the input after sleeping; "wrong"
// (listed only with attribute wrong=1) computes something else.
type sleepyOp struct {
	tactic string
	wrong  bool
}

// sleepyRuns counts the runs of every sleepyOp kernel.
var sleepyRuns atomic.Int64

var sleepyDelay = map[string]time.Duration{"slow": 3 * time.Millisecond, "fast": 200 * time.Microsecond, "medium": time.Millisecond, "wrong": 0}

func (k *sleepyOp) Infer(in []*ir.Value) ([]ir.Type, error) { return []ir.Type{in[0].Type}, nil }

func (k *sleepyOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	sleepyRuns.Add(1)
	t := k.tactic
	if t == "" {
		t = "slow"
	}
	// Spin rather than sleep: timers are too coarse for 200µs.
	for start := time.Now(); time.Since(start) < sleepyDelay[t]; {
	}
	y, err := ops.NewOutput(env, in[0].DType, in[0].Shape)
	if err != nil {
		return nil, err
	}
	copy(y.Data, in[0].Data)
	if t == "wrong" {
		y.Float32s()[0] += 10
	}
	return []*tensor.Tensor{y}, nil
}

func (k *sleepyOp) Tactics(in []*ir.Value) []string {
	if !in[0].Type.Shape.FullyKnown() {
		return nil
	}
	if k.wrong {
		return []string{"slow", "wrong"}
	}
	return []string{"slow", "fast", "medium"}
}

func (k *sleepyOp) SetTactic(name string) error {
	if _, ok := sleepyDelay[name]; !ok {
		return fmt.Errorf("%w: no tactic %q", ops.ErrBadAttr, name)
	}
	k.tactic = name
	return nil
}

func init() {
	ops.Register(ops.Def{Domain: "kilntest", Type: "Sleepy", Prepare: func(n *ir.Node, _ int64) (ops.Kernel, error) {
		a, ok := n.Attrs["wrong"]
		return &sleepyOp{wrong: ok && a.I == 1}, nil
	}})
}

var (
	fpA = device.Fingerprint{"device": "cpu", "isa": "test-a"}
	fpB = device.Fingerprint{"device": "cpu", "isa": "test-b"}
)

// testGraph is x [1,8,10,10] -> Sleepy -> FusedConv 3x3 (a real tactical
// kernel) -> Sleepy -> y.
func testGraph(t *testing.T, dims ...ir.Dim) *ir.Graph {
	t.Helper()
	if dims == nil {
		dims = []ir.Dim{ir.D(1), ir.D(8), ir.D(10), ir.D(10)}
	}
	b := ir.NewBuilder("test", 13)
	x := b.Input("x", tensor.Float32, dims...)
	s1 := b.Op("Sleepy", []*ir.Value{x})
	s1.Producer.Domain = "kilntest"
	w := tensor.New(tensor.Float32, 8, 8, 3, 3)
	for i := range w.Float32s() {
		w.Float32s()[i] = float32(i%7) - 3
	}
	c := b.Op("FusedConv", []*ir.Value{s1, b.Const("w", w)}, ir.IntsAttr("pads", 1, 1, 1, 1), ir.StringAttr("activation", "Relu"))
	c.Producer.Domain = "kiln"
	s2 := b.Op("Sleepy", []*ir.Value{c})
	s2.Producer.Domain = "kilntest"
	b.Output(s2, "y")
	g := b.Graph()
	g.Opsets["kiln"] = 1
	g.Opsets["kilntest"] = 1
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestSelect(t *testing.T) {
	g := testGraph(t)
	var steps []Progress
	before := sleepyRuns.Load()
	choices, err := Select(context.Background(), g, fpA, New(), Options{Runs: 3, Progress: func(p Progress) { steps = append(steps, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(choices) != 3 {
		t.Fatalf("%d choices, want 3: %v", len(choices), choices)
	}
	for i, name := range []string{"Sleepy_1", "Sleepy_2"} {
		c := choices[name]
		// The second has the signature of the first: its times are reused.
		if c.Tactic != "fast" || c.Default != "slow" || c.Cached != (i == 1) || len(c.Times) != 3 {
			t.Errorf("%s: %+v, want fast over the default slow, 3 times, cached %v", name, c, i == 1)
		}
		if c.Speedup() < 2 {
			t.Errorf("%s: speedup %.2f, want > 2 (3ms against 0.2ms)", name, c.Speedup())
		}
	}
	// One sleepy layer measured: 1 reference run, then per tactic a
	// warm-up and 3 timed runs.
	if got := sleepyRuns.Load() - before; got != 1+3*4 {
		t.Errorf("%d sleepy runs, want %d", got, 1+3*4)
	}
	conv := choices["FusedConv_1"]
	k, err := cpukernels.Kernel(g.Nodes[1], 13) // as the tactic stage prepares it
	if err != nil {
		t.Fatal(err)
	}
	convTactics := k.(ops.Tactical).Tactics(g.Nodes[1].Inputs)
	if !slices.Contains(convTactics, conv.Tactic) || conv.Default != "im2col" || len(conv.Times) != len(convTactics) || len(convTactics) < 4 {
		t.Errorf("FusedConv_1: %+v, tactics %v", conv, convTactics)
	}
	if len(steps) != 3+len(convTactics)+3 || steps[0].I != 1 || steps[len(steps)-1].I != 3 || steps[0].N != 3 {
		t.Errorf("progress: %v", steps)
	}
	if s := steps[0].String(); !strings.Contains(s, "[1/3] Sleepy_1 (kilntest::Sleepy) slow") {
		t.Errorf("progress line %q", s)
	}
	if got := Tactics(choices); got["Sleepy_1"] != "fast" || len(got) != 3 {
		t.Errorf("Tactics = %v", got)
	}
	if got := Names(choices); !slices.Equal(got, []string{"FusedConv_1", "Sleepy_1", "Sleepy_2"}) {
		t.Errorf("Names = %v", got)
	}
}

func TestSelectMinGain(t *testing.T) {
	// fast is about 15x faster than slow (more when the machine is busy):
	// a gain of 1 (100%) takes fast, one of 1e6 keeps the default.
	for _, tc := range []struct {
		gain float64
		want string
	}{{0, "fast"}, {1, "fast"}, {1e6, "slow"}} {
		c, err := Select(context.Background(), testGraph(t), fpA, nil, Options{Runs: 3, MinGain: tc.gain})
		if err != nil {
			t.Fatal(err)
		}
		if got := c["Sleepy_1"]; got.Tactic != tc.want || got.Time != got.Times[tc.want] {
			t.Errorf("MinGain %g: %+v, want %s", tc.gain, got, tc.want)
		}
	}
}

func TestSelectCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kiln.timing")
	cache, err := Open(path)
	if err != nil || cache.Len() != 0 {
		t.Fatalf("Open of a missing file: %v, %d entries", err, cache.Len())
	}
	first, err := Select(context.Background(), testGraph(t), fpA, cache, Options{Runs: 2})
	if err != nil {
		t.Fatal(err)
	}
	// The two sleepy layers share a signature: 3 entries, and one per
	// tactic of the convolution.
	entries := 3 + len(first["FusedConv_1"].Times)
	if cache.Len() != entries {
		t.Errorf("%d cache entries, want %d", cache.Len(), entries)
	}
	if err := cache.Save(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("files left beside the cache: %v", ents)
	}

	// Round trip: a second build reads the file and measures nothing.
	again, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.Len() != entries {
		t.Fatalf("reopened cache has %d entries, want %d", again.Len(), entries)
	}
	before := sleepyRuns.Load()
	var steps []Progress
	second, err := Select(context.Background(), testGraph(t), fpA, again, Options{Runs: 2, Progress: func(p Progress) { steps = append(steps, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if n := sleepyRuns.Load() - before; n != 0 {
		t.Errorf("a second Select with a warm cache ran the kernels %d times", n)
	}
	for name, c := range second {
		if !c.Cached || c.Tactic != first[name].Tactic || c.Time != first[name].Time {
			t.Errorf("%s: second %+v, first %+v", name, c, first[name])
		}
	}
	for _, p := range steps {
		if !p.Cached {
			t.Errorf("progress %v not cached", p)
		}
	}

	// Another device: the entries are ignored, and kept.
	before = sleepyRuns.Load()
	other, err := Select(context.Background(), testGraph(t), fpB, again, Options{Runs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sleepyRuns.Load() == before {
		t.Error("Select for another fingerprint measured nothing")
	}
	for _, name := range []string{"Sleepy_1", "FusedConv_1"} {
		if other[name].Cached {
			t.Errorf("%s: cached for another fingerprint", name)
		}
	}
	if err := again.Save(); err != nil {
		t.Fatal(err)
	}
	both, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if both.Len() != 2*entries {
		t.Errorf("cache of two devices has %d entries, want %d", both.Len(), 2*entries)
	}
	sig := Signature(testGraph(t), testGraph(t).Nodes[0])
	da, okA := both.LookupTimer(fpA, sig, "fast", CPUTimer)
	db, okB := both.LookupTimer(fpB, sig, "fast", CPUTimer)
	if !okA || !okB || da <= 0 || db <= 0 {
		t.Errorf("Lookup fast: %v %v, %v %v", da, okA, db, okB)
	}

	// Another shape is another layer.
	before = sleepyRuns.Load()
	if _, err := Select(context.Background(), testGraph(t, ir.D(2), ir.D(8), ir.D(10), ir.D(10)), fpA, both, Options{Runs: 1}); err != nil {
		t.Fatal(err)
	}
	if sleepyRuns.Load() == before {
		t.Error("Select at another shape measured nothing")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	c, _ := Open(good)
	c.Store(fpA, "kilntest::Sleepy{}(float32[1])", "fast", time.Millisecond)
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, data string
		want       error
	}{
		{"empty", "", ErrCorrupt},
		{"garbage", "\x00\x01binary", ErrCorrupt},
		{"truncated", string(whole[:len(whole)/2]), ErrCorrupt},
		{"trailing data", string(whole) + "{}", ErrCorrupt},
		{"other format", `{"format":"onnx","version":1,"entries":[]}`, ErrCorrupt},
		{"no header", `{"entries":[]}`, ErrCorrupt},
		{"bad entry", `{"format":"kiln-timing-cache","version":1,"entries":[{"device":"d","layer":"l","tactic":"t","ns":-5}]}`, ErrCorrupt},
		{"empty tactic", `{"format":"kiln-timing-cache","version":1,"entries":[{"device":"d","layer":"l","tactic":"","ns":5}]}`, ErrCorrupt},
		{"newer version", `{"format":"kiln-timing-cache","version":2,"entries":[]}`, ErrVersion},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
		if err := os.WriteFile(path, []byte(tc.data), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want %v naming the file", tc.name, err, tc.want)
		}
	}
	if _, err := Open(dir); err == nil {
		t.Error("Open of a directory: no error")
	}
	if err := New().Save(); !errors.Is(err, ErrNoPath) {
		t.Errorf("Save of New(): %v", err)
	}
	c, err = Open(good)
	if err != nil || c.Len() != 1 || c.Path() != good {
		t.Fatalf("Open(good): %v, %d entries", err, c.Len())
	}
}

func TestSelectErrors(t *testing.T) {
	ctx := context.Background()
	// Duplicate names.
	g := testGraph(t)
	g.Nodes[2].Name = g.Nodes[0].Name
	if _, err := Select(ctx, g, fpA, nil, Options{Runs: 1}); !errors.Is(err, ErrNames) {
		t.Errorf("duplicate names: %v", err)
	}
	// An unnamed tactical node.
	g = testGraph(t)
	g.Nodes[1].Name = ""
	if _, err := Select(ctx, g, fpA, nil, Options{Runs: 1}); !errors.Is(err, ErrNames) {
		t.Errorf("unnamed node: %v", err)
	}
	// Symbolic shapes: no choice to make on the layers that need them.
	g = testGraph(t, ir.S("batch"), ir.D(8), ir.D(10), ir.D(10))
	if c, err := Select(ctx, g, fpA, nil, Options{Runs: 1}); err != nil || len(c) != 0 {
		t.Errorf("symbolic shapes: %v, %v", c, err)
	}
	// A tactic that computes something else.
	g = testGraph(t)
	g.Nodes[0].Attrs["wrong"] = ir.IntAttr("wrong", 1)
	if _, err := Select(ctx, g, fpA, nil, Options{Runs: 1}); !errors.Is(err, ErrRun) || !strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong tactic: %v", err)
	}
	// Cancelled.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Select(cctx, testGraph(t), fpA, nil, Options{Runs: 1}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestSignature(t *testing.T) {
	g := testGraph(t)
	conv := g.Nodes[1]
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	sig := Signature(g, conv)
	want := `kiln::FusedConv{activation:s"Relu",pads:ints[1,1,1,1]}(float32[1,8,10,10],float32[8,8,3,3]const)`
	if sig != want {
		t.Errorf("Signature = %s\nwant        %s", sig, want)
	}
	// Names do not count; attribute values, shapes and constness do.
	conv.Name = "renamed"
	if Signature(g, conv) != sig {
		t.Error("the signature depends on the node name")
	}
	for _, tc := range []struct {
		name   string
		change func(n *ir.Node) func()
	}{
		{"attribute", func(n *ir.Node) func() {
			a := n.Attrs["pads"]
			n.Attrs["pads"] = ir.IntsAttr("pads", 0, 0, 0, 0)
			return func() { n.Attrs["pads"] = a }
		}},
		{"new attribute", func(n *ir.Node) func() {
			n.Attrs["group"] = ir.IntAttr("group", 1)
			return func() { delete(n.Attrs, "group") }
		}},
		{"float attribute", func(n *ir.Node) func() {
			n.Attrs["alpha"] = ir.FloatAttr("alpha", 0.1)
			return func() { delete(n.Attrs, "alpha") }
		}},
		{"shape", func(n *ir.Node) func() {
			s := n.Inputs[0].Type.Shape
			n.Inputs[0].Type.Shape = ir.KnownShape(2, 8, 10, 10)
			return func() { n.Inputs[0].Type.Shape = s }
		}},
		{"constness", func(n *ir.Node) func() {
			c := n.Inputs[1].Const
			n.Inputs[1].Const = nil
			return func() { n.Inputs[1].Const = c }
		}},
		{"absent input", func(n *ir.Node) func() {
			n.Inputs = append(n.Inputs, nil)
			return func() { n.Inputs = n.Inputs[:2] }
		}},
	} {
		undo := tc.change(conv)
		if got := Signature(g, conv); got == sig {
			t.Errorf("%s: the signature did not change", tc.name)
		}
		undo()
		if got := Signature(g, conv); got != sig {
			t.Errorf("%s: undo left %s", tc.name, got)
		}
	}
	// A graph input with a default value is not constant.
	g.Inputs = append(g.Inputs, conv.Inputs[1])
	if got := Signature(g, conv); !strings.HasSuffix(got, "float32[8,8,3,3])") {
		t.Errorf("overridable weights: %s", got)
	}
}

// TestSelectWorkspace: with a workspace limit, the scratch memory of every
// tactic is measured, the chosen one fits, a layer none fits is an error,
// and the scratch is kept in the cache.
func TestSelectWorkspace(t *testing.T) {
	if ops.ScratchMeter == nil {
		t.Skip("no device measures scratch memory")
	}
	cache := New()
	g := testGraph(t)
	all, err := Select(context.Background(), g, fpA, cache, Options{Runs: 1, Workspace: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	conv := all["FusedConv_1"]
	if len(conv.Scratch) != len(conv.Times) || len(conv.Scratch) < 2 {
		t.Fatalf("scratch not measured for every tactic: %+v", conv)
	}
	least := conv.Default
	for tac, b := range conv.Scratch {
		if b < conv.Scratch[least] {
			least = tac
		}
	}
	if b, ok := cache.LookupScratchTimer(fpA, Signature(g, g.Nodes[1]), least, CPUTimer); !ok || b != conv.Scratch[least] {
		t.Errorf("cache scratch for %s: %d, %v; want %d", least, b, ok, conv.Scratch[least])
	}
	// From the cache (times and scratch), limited to the smallest.
	got, err := Select(context.Background(), testGraph(t), fpA, cache, Options{Runs: 1, Workspace: conv.Scratch[least]})
	if err != nil {
		t.Fatal(err)
	}
	if c := got["FusedConv_1"]; c.Scratch[c.Tactic] > conv.Scratch[least] || !c.Cached {
		t.Errorf("chose %s (%d bytes, cached %v) over a workspace of %d", c.Tactic, c.Scratch[c.Tactic], c.Cached, conv.Scratch[least])
	}
	if conv.Scratch[least] > 0 {
		_, err = Select(context.Background(), testGraph(t), fpA, New(), Options{Runs: 1, Workspace: 1})
		if !errors.Is(err, ErrWorkspace) || !strings.Contains(err.Error(), "FusedConv_1") {
			t.Errorf("workspace of 1 byte: %v, want ErrWorkspace naming the layer", err)
		}
	}
}

// halfTensor returns a float16 tensor of the given values.
func halfTensor(dt tensor.DType, v ...float32) *tensor.Tensor {
	t := tensor.New(dt, len(v))
	for i, f := range v {
		t.SetFloat(i, float64(f))
	}
	return t
}

// TestSameOutputs checks the comparison of a tactic's outputs with the
// default's: float32 within 1e-3 of the largest magnitude; float16 and
// bfloat16 (float32 results rounded) also within one unit in their last
// place; other types bit for bit.
func TestSameOutputs(t *testing.T) {
	ulp16 := float32(1.0 / 1024) // one float16 ulp in [1, 2)
	tests := []struct {
		name      string
		got, want *tensor.Tensor
		ok        bool
	}{
		{"float32 equal", tensor.FromFloat32([]float32{1, 2, 3}, 3), tensor.FromFloat32([]float32{1, 2, 3}, 3), true},
		{"float32 summed in another order", tensor.FromFloat32([]float32{1.0005, 2, 3}, 3), tensor.FromFloat32([]float32{1, 2, 3}, 3), true},
		{"float32 computes something else", tensor.FromFloat32([]float32{1.1, 2, 3}, 3), tensor.FromFloat32([]float32{1, 2, 3}, 3), false},
		{"float16 one ulp apart", halfTensor(tensor.Float16, 1+ulp16, 1.5), halfTensor(tensor.Float16, 1, 1.5), true},
		{"float16 one ulp plus summation order", halfTensor(tensor.Float16, 1+2*ulp16, 1.5), halfTensor(tensor.Float16, 1, 1.5), true},
		{"float16 one percent off", halfTensor(tensor.Float16, 1.01, 1.5), halfTensor(tensor.Float16, 1, 1.5), false},
		{"float16 equal infinities", halfTensor(tensor.Float16, float32(math.Inf(1)), 1), halfTensor(tensor.Float16, float32(math.Inf(1)), 1), true},
		{"float16 infinity against a number", halfTensor(tensor.Float16, float32(math.Inf(1)), 1), halfTensor(tensor.Float16, 2, 1), false},
		{"float16 NaN against NaN", halfTensor(tensor.Float16, float32(math.NaN()), 1), halfTensor(tensor.Float16, float32(math.NaN()), 1), true},
		{"float16 NaN against a number", halfTensor(tensor.Float16, float32(math.NaN()), 1), halfTensor(tensor.Float16, 1, 1), false},
		{"bfloat16 one ulp apart", halfTensor(tensor.BFloat16, 1+1.0/128, 1.5), halfTensor(tensor.BFloat16, 1, 1.5), true},
		{"bfloat16 five percent off", halfTensor(tensor.BFloat16, 1.05, 1.5), halfTensor(tensor.BFloat16, 1, 1.5), false},
		{"int64 equal", tensor.FromInt64([]int64{1, -2}, 2), tensor.FromInt64([]int64{1, -2}, 2), true},
		{"int64 one apart", tensor.FromInt64([]int64{1, -1}, 2), tensor.FromInt64([]int64{1, -2}, 2), false},
		{"other type", halfTensor(tensor.Float16, 1, 1), tensor.FromFloat32([]float32{1, 1}, 2), false},
		{"other shape", tensor.FromFloat32([]float32{1, 1}, 1, 2), tensor.FromFloat32([]float32{1, 1}, 2), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sameOutputs([]*tensor.Tensor{tt.got}, []*tensor.Tensor{tt.want})
			if (err == nil) != tt.ok {
				t.Errorf("sameOutputs = %v, want ok %v", err, tt.ok)
			}
		})
	}
	if err := sameOutputs(nil, []*tensor.Tensor{tensor.FromFloat32([]float32{1}, 1)}); err == nil {
		t.Error("a missing output passed")
	}
}

// TestSelectFloat16 times the tactics of a float16 convolution (as an FP16
// build has them: the float16 adapter around the float32 kernel). Their
// float32 results differ in the order of the sums, so once rounded to
// float16 some elements differ by one unit in the last place: Select must
// accept that (it compared float16 outputs bit for bit, and every FP16
// build with timing on failed).
func TestSelectFloat16(t *testing.T) {
	b := ir.NewBuilder("fp16", 13)
	x := b.Input("x", tensor.Float16, ir.D(1), ir.D(32), ir.D(16), ir.D(16))
	w := tensor.New(tensor.Float16, 32, 32, 3, 3)
	rnd, err := randomTensor("w", tensor.Float32, []int{32 * 32 * 3 * 3})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range rnd.Float32s() {
		w.Halfs()[i] = tensor.Float32ToHalf(v)
	}
	c := b.Op("FusedConv", []*ir.Value{x, b.Const("w", w)}, ir.IntsAttr("pads", 1, 1, 1, 1))
	c.Producer.Domain = "kiln"
	b.Output(c, "y")
	g := b.Graph()
	g.Opsets["kiln"] = 1
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	choices, err := Select(context.Background(), g, fpA, nil, Options{Runs: 1})
	if err != nil {
		t.Fatal(err)
	}
	conv, ok := choices["FusedConv_1"]
	if !ok || len(conv.Times) < 3 {
		t.Fatalf("choices %+v: want the float16 convolution's tactics timed", choices)
	}
	// The test must exercise rounding differences: at least one tactic's
	// float16 output differs from the default's in some bit.
	m, err := newMeasurer(g, 13, g.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	differ := 0
	for tac := range conv.Times {
		k, err := cpukernels.Kernel(g.Nodes[0], 13)
		if err != nil {
			t.Fatal(err)
		}
		if err := k.(ops.Tactical).SetTactic(tac); err != nil {
			t.Fatal(err)
		}
		outs, err := m.run(context.Background(), k, m.in, &arena{})
		if err != nil {
			t.Fatal(err)
		}
		if outs[0].DType != tensor.Float16 {
			t.Fatalf("tactic %s: output %v, want float16", tac, outs[0].DType)
		}
		if string(outs[0].Data) != string(m.ref[0].Data) {
			differ++
		}
	}
	if differ == 0 {
		t.Errorf("no tactic's float16 output differs from the default's in any bit: the test shows nothing")
	}
}
