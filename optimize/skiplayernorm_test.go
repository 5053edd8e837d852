package optimize

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// lnSpec is a residual Add (or none) followed by a LayerNormalization.
type lnSpec struct {
	shape []int
	// add: "" none, "same" x + r, "broadcast" x + a [D] vector.
	add string
	// sumRead: the Add's output is a graph output too; noBias: no B;
	// axis: the LayerNormalization's axis (0: -1); stats: its Mean output
	// is a graph output.
	sumRead, noBias, stats bool
	axis                   int64
	opset                  int64
	stash                  int64 // stash_type, 0: none given
}

func (sp lnSpec) build() *ir.Graph {
	r := rand.New(rand.NewPCG(uint64(len(sp.shape)), 5))
	opset := sp.opset
	if opset == 0 {
		opset = 17
	}
	b := ir.NewBuilder("g", opset)
	dims := make([]ir.Dim, len(sp.shape))
	for i, n := range sp.shape {
		dims[i] = di(n)
	}
	dd := sp.shape[len(sp.shape)-1]
	x := b.Input("x", tensor.Float32, dims...)
	switch sp.add {
	case "same":
		s := b.Op("Add", []*ir.Value{x, b.Input("r", tensor.Float32, dims...)})
		if sp.sumRead {
			b.Output(s, "sum")
		}
		x = s
	case "broadcast":
		x = b.Op("Add", []*ir.Value{x, b.Const("", f32(r, dd))})
	}
	in := []*ir.Value{x, b.Const("", positive(r, dd))}
	if !sp.noBias {
		in = append(in, b.Const("", f32(r, dd)))
	}
	axis := sp.axis
	if axis == 0 {
		axis = -1
	}
	attrs := []*ir.Attr{ir.IntAttr("axis", axis), ir.FloatAttr("epsilon", 1e-5)}
	if sp.stash != 0 {
		attrs = append(attrs, ir.IntAttr("stash_type", sp.stash))
	}
	if sp.stats {
		outs := b.OpN("LayerNormalization", 2, in, attrs...)
		b.Output(outs[0], "y")
		b.Output(outs[1], "mean")
		return b.Graph()
	}
	b.Output(b.Op("LayerNormalization", in, attrs...), "y")
	return b.Graph()
}

// TestSkipLayerNorm checks that the skiplayernorm pass fuses the residual
// Add and the LayerNormalization after it into kiln::SkipLayerNormalization
// (with the sum as a second output when it is read elsewhere), turns a lone
// LayerNormalization into one, and leaves the ones it cannot compute alone;
// outputs equal to the unfused graph's, at rows of 1, 7 and 128 and widths
// with and without a multiple of 8 (the vector loop and its tail).
func TestSkipLayerNorm(t *testing.T) {
	passes := []string{"skiplayernorm", "dce"}
	fused := map[string]int{"kiln::SkipLayerNormalization": 1}
	var cases []passCase
	for _, sp := range []lnSpec{
		{shape: []int{1, 1, 128}, add: "same"},
		{shape: []int{2, 7, 128}, add: "same"},
		{shape: []int{1, 128, 128}, add: "same"},
		{shape: []int{1, 128, 768}, add: "same"},
		{shape: []int{3, 7, 13}, add: "same"},
		{shape: []int{7, 20}, add: "same", noBias: true},
		{shape: []int{7, 3}, add: "same"},
		{shape: []int{2, 7, 128}},
		{shape: []int{2, 7, 36}, axis: 2},
	} {
		cases = append(cases, passCase{name: fmt.Sprintf("%v add %q", sp.shape, sp.add), build: sp.build,
			passes: passes, want: fused, inits: -1})
	}
	cases = append(cases,
		passCase{name: "sum read elsewhere", build: lnSpec{shape: []int{2, 7, 64}, add: "same", sumRead: true}.build,
			passes: passes, want: fused, inits: -1},
		passCase{name: "broadcast add stays", build: lnSpec{shape: []int{2, 7, 64}, add: "broadcast"}.build,
			passes: passes, want: map[string]int{"Add": 1, "kiln::SkipLayerNormalization": 1}, inits: -1},
		passCase{name: "not the last axis", build: lnSpec{shape: []int{2, 7, 64}, add: "same", axis: 1}.build,
			passes: passes, want: map[string]int{"Add": 1, "LayerNormalization": 1}, inits: -1},
		passCase{name: "float statistics asked for", build: lnSpec{shape: []int{2, 7, 64}, add: "same", stash: 1}.build,
			passes: passes, want: fused, inits: -1},
		passCase{name: "double statistics", build: lnSpec{shape: []int{2, 7, 64}, add: "same", stash: 11}.build,
			passes: passes, want: map[string]int{"Add": 1, "LayerNormalization": 1}, inits: -1},
		passCase{name: "mean read", build: lnSpec{shape: []int{2, 7, 64}, add: "same", stats: true}.build,
			passes: passes, want: map[string]int{"Add": 1, "LayerNormalization": 1}, inits: -1},
	)
	runCases(t, cases)
}

// TestDevicePasses checks that the CPU-only passes run only for the CPU:
// Passes and a CUDA build leave them out, so that a GPU plan keeps
// kiln::Attention and LayerNormalization, which the GPU runs.
func TestDevicePasses(t *testing.T) {
	has := func(ps []Pass, name string) bool {
		for _, p := range ps {
			if p.Name() == name {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		device string
		level  int
		want   bool
	}{
		{"", 2, false}, {"cpu", 2, true}, {"cuda", 2, false}, {"cuda:1", 2, false}, {"cpu", 1, false},
	} {
		ps := PassesFor(tc.level, tc.device)
		if tc.device == "" {
			ps = Passes(tc.level)
		}
		for _, name := range []string{"skiplayernorm", "mha"} {
			if got := has(ps, name); got != tc.want {
				t.Errorf("device %q level %d: pass %s included %v, want %v", tc.device, tc.level, name, got, tc.want)
			}
		}
		if !has(ps, "dce") {
			t.Errorf("device %q level %d: no dce", tc.device, tc.level)
		}
	}
}

// TestBertMiniCPU runs the CPU build's passes on bert_mini: every
// LayerNormalization becomes kiln::SkipLayerNormalization (with the Add
// before it), every attention block kiln::MultiHeadAttention, no Split,
// Transpose or Reshape is left, and the outputs match the reference outputs
// of ../shared at the tolerance TestModels uses.
func TestBertMiniCPU(t *testing.T) {
	g, dir := loadModel(t, "bert_mini")
	before := opCounts(g)
	if err := RunFor(g, 2, "cpu", nil); err != nil {
		t.Fatal(err)
	}
	ops := opCounts(g)
	t.Logf("ops after: %v", ops)
	if n := ops["kiln::SkipLayerNormalization"]; n == 0 || n != before["LayerNormalization"] {
		t.Errorf("%d kiln::SkipLayerNormalization for %d LayerNormalization: %v", n, before["LayerNormalization"], ops)
	}
	if n := ops["kiln::MultiHeadAttention"]; n == 0 || n != before["Softmax"] {
		t.Errorf("%d kiln::MultiHeadAttention for %d Softmax: %v", n, before["Softmax"], ops)
	}
	for _, op := range []string{"LayerNormalization", "kiln::Attention", "Split", "Transpose", "Reshape", "Softmax"} {
		if ops[op] != 0 {
			t.Errorf("%d %s left: %v", ops[op], op, ops)
		}
	}
	e, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	in, want := loadDataSet(t, e, dir)
	got, err := e.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		o := g.Outputs[i].Name
		if c := compare(got[o], w, 1e-3, 1e-4); !c.OK {
			t.Errorf("output %q against the reference: %s", o, c.Reason)
		}
	}
	ref, _ := loadModel(t, "bert_mini")
	unfused := runModel(t, ref, dir)
	for i, w := range unfused {
		o := g.Outputs[i].Name
		if c := compare(got[o], w, 1e-4, 1e-5); !c.OK {
			t.Errorf("output %q against the unoptimized graph: %s", o, c.Reason)
		}
	}
}

// nodeSuite is where Debian's libonnx-testdata puts the ONNX node tests.
const nodeSuite = "/usr/share/libonnx-testdata/data/node"

// TestNodeSuiteCPUPasses runs the ONNX node tests of the ops the CPU's
// transformer passes rewrite (LayerNormalization, its expanded form,
// Softmax, MatMul, Gelu) through the CPU build's passes and checks their
// reference outputs at the conformance tolerances (rtol 1e-3, atol 1e-5).
// The LayerNormalization tests keep only their output Y, so that the
// ones over the last axis run as kiln::SkipLayerNormalization.
func TestNodeSuiteCPUPasses(t *testing.T) {
	if _, err := os.Stat(nodeSuite); err != nil {
		t.Skipf("needs the ONNX node tests at %s (apt-get install libonnx-testdata; scripts/test.sh does it): %v", nodeSuite, err)
	}
	dirs, err := filepath.Glob(filepath.Join(nodeSuite, "test_*"))
	if err != nil {
		t.Fatal(err)
	}
	ran, fused := 0, 0
	for _, dir := range dirs {
		base := filepath.Base(dir)
		if !strings.Contains(base, "layer_normalization") && !strings.Contains(base, "softmax") &&
			!strings.Contains(base, "matmul") && !strings.Contains(base, "gelu") {
			continue
		}
		f, err := onnx.Load(filepath.Join(dir, "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		g, err := onnx.ToGraph(f.Model, f)
		if err != nil {
			f.Close()
			t.Fatal(err)
		}
		if strings.Contains(base, "layer_normalization") {
			// Only Y: the statistics outputs keep the ONNX op.
			g.Outputs = g.Outputs[:1]
		}
		if err := RunFor(g, 2, "cpu", nil); err != nil {
			t.Errorf("%s: %v", base, err)
			f.Close()
			continue
		}
		if opCounts(g)["kiln::SkipLayerNormalization"] > 0 {
			fused++
		}
		e, err := engine.New(g)
		if err != nil {
			t.Errorf("%s: %v", base, err)
			f.Close()
			continue
		}
		in, want := loadDataSet(t, e, dir)
		got, err := e.Run(context.Background(), in)
		if err != nil {
			t.Errorf("%s: %v", base, err)
		}
		for i, w := range want[:len(g.Outputs)] {
			if c := compare(got[g.Outputs[i].Name], w, 1e-3, 1e-5); !c.OK {
				t.Errorf("%s output %q: %s", base, g.Outputs[i].Name, c.Reason)
			}
		}
		ran++
		f.Close()
	}
	t.Logf("%d node tests, kiln::SkipLayerNormalization in %d", ran, fused)
	if fused == 0 {
		t.Errorf("no node test ran kiln::SkipLayerNormalization")
	}
}
