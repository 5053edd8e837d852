package optimize

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

func TestQKVMerge(t *testing.T) {
	// projections builds len(acts) projections of x [2,5,8] to 4, 6, 8...
	// columns, each with a bias Add when bias is set and then the given
	// activation ("" for none), and outputs each through Neg.
	projections := func(opset int64, bias bool, acts ...string) func() *ir.Graph {
		return func() *ir.Graph {
			r := rand.New(rand.NewPCG(4, 4))
			b := ir.NewBuilder("g", opset)
			x := b.Op("Relu", []*ir.Value{b.Input("x", tensor.Float32, ir.D(2), ir.D(5), ir.D(8))})
			for i, act := range acts {
				n := 4 + 2*i
				y := b.Op("MatMul", []*ir.Value{x, b.Const("", f32(r, 8, n))})
				if bias {
					y = b.Op("Add", []*ir.Value{y, b.Const("", f32(r, n))})
				}
				if act != "" {
					y = b.Op(act, []*ir.Value{y})
				}
				b.Output(b.Op("Neg", []*ir.Value{y}), "")
			}
			return b.Graph()
		}
	}
	passes := []string{"matmuladd", "qkvmerge", "dce"}
	merged := func(extra map[string]int) map[string]int {
		m := map[string]int{"Relu": 1, "kiln::FusedMatMul": 1, "Split": 1, "Neg": 3}
		for k, v := range extra {
			m[k] += v
		}
		return m
	}
	runCases(t, []passCase{
		{name: "q k v with bias", build: projections(17, true, "", "", ""), passes: passes, want: merged(nil), inits: 3},
		{name: "no bias", build: projections(17, false, "", "", ""), passes: passes, want: merged(nil), inits: 2},
		{name: "same activation", build: projections(17, true, "Sigmoid", "Sigmoid", "Sigmoid"), passes: passes, want: merged(nil), inits: 3},
		{name: "opset 11", build: projections(11, true, "", "", ""), passes: passes, want: merged(nil), inits: 2},
		{name: "two of three activations", build: projections(17, true, "Relu", "", "Relu"), passes: passes,
			want: map[string]int{"Relu": 1, "kiln::FusedMatMul": 2, "Split": 1, "Neg": 3}, inits: 5},
		{name: "one stays", build: projections(17, true, ""), passes: passes,
			want: map[string]int{"Relu": 1, "kiln::FusedMatMul": 1, "Neg": 1}, inits: 2},
		{name: "some with bias", passes: passes, want: map[string]int{"kiln::FusedMatMul": 1, "Split": 1}, inits: 3,
			build: func() *ir.Graph {
				r := rand.New(rand.NewPCG(5, 5))
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(3), ir.D(8))
				y1 := b.Op("Add", []*ir.Value{b.Op("MatMul", []*ir.Value{x, b.Const("", f32(r, 8, 4))}), b.Const("", f32(r, 4))})
				y2 := b.Op("MatMul", []*ir.Value{x, b.Const("", f32(r, 8, 5))})
				b.Output(y1, "y1") // graph outputs come from the Split
				b.Output(y2, "y2")
				return b.Graph()
			}},
		{name: "weights given at run time stay", passes: passes, want: map[string]int{"MatMul": 2}, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(3), ir.D(8))
				w := b.Input("w", tensor.Float32, ir.D(8), ir.D(4))
				b.Output(b.Op("MatMul", []*ir.Value{x, w}), "y1")
				b.Output(b.Op("MatMul", []*ir.Value{x, w}), "y2")
				return b.Graph()
			}},
	})
}

// selfAttention builds one attention block of a transformer as PyTorch
// exports it, with separate Q, K and V projections: x [2,5,16], 2 heads.
func selfAttention() *ir.Graph {
	r := rand.New(rand.NewPCG(8, 8))
	b := ir.NewBuilder("g", 17)
	x := b.Input("x", tensor.Float32, ir.D(2), ir.D(5), ir.D(16))
	heads := func(y *ir.Value, perm ...int64) *ir.Value {
		return b.Op("Transpose", []*ir.Value{reshapeTo(b, y, 2, 5, 2, 8)}, ir.IntsAttr("perm", perm...))
	}
	proj := func() *ir.Value {
		return b.Op("Add", []*ir.Value{b.Op("MatMul", []*ir.Value{x, b.Const("", f32(r, 16, 16))}), b.Const("", f32(r, 16))})
	}
	q, k, v := heads(proj(), 0, 2, 1, 3), heads(proj(), 0, 2, 3, 1), heads(proj(), 0, 2, 1, 3)
	s := b.Op("Div", []*ir.Value{b.Op("MatMul", []*ir.Value{q, k}), b.Const("", tensor.Scalar(tensor.Float32, 2.828))})
	a := b.Op("MatMul", []*ir.Value{b.Op("Softmax", []*ir.Value{s}, ir.IntAttr("axis", -1)), v})
	a = reshapeTo(b, b.Op("Transpose", []*ir.Value{a}, ir.IntsAttr("perm", 0, 2, 1, 3)), 2, 5, 16)
	b.Output(b.Op("Add", []*ir.Value{x, a}), "y")
	return b.Graph()
}

// TestQKVMergeKeepsAttention runs all the level-2 passes on an attention
// block with separate projections: they merge and attention still fuses.
func TestQKVMergeKeepsAttention(t *testing.T) {
	var names []string
	for _, p := range Passes(2) {
		names = append(names, p.Name())
	}
	runCases(t, []passCase{{name: "attention", build: selfAttention, passes: names, inits: 7,
		want: map[string]int{"kiln::FusedMatMul": 1, "Split": 1, "Reshape": 4, "Transpose": 4, "kiln::Attention": 1, "Add": 1}}})
}

// unmergeQKV rewrites each Split(Add(MatMul(x, W), b)) of g into one
// MatMul + Add per Split output, with W's and b's columns split the same
// way: the separate Q, K and V projections most exporters write. It
// returns how many it rewrote.
func unmergeQKV(t *testing.T, g *ir.Graph) int {
	t.Helper()
	var drop []*ir.Node
	var added []*ir.Node
	for _, s := range g.Nodes {
		if !isOp(s, "Split") || len(s.Inputs) != 2 || !isConst(g, s.Inputs[1]) {
			continue
		}
		if a, err := ops.ParseSplitAttrs(s, g.Opset()); err != nil || a.Axis != -1 {
			continue
		}
		add := s.Inputs[0].Producer
		if !isOp(add, "Add") {
			continue
		}
		mmOut, bias := add.Inputs[0], add.Inputs[1]
		if isConst(g, mmOut) {
			mmOut, bias = bias, mmOut
		}
		mm := mmOut.Producer
		if !isOp(mm, "MatMul") || !isConst(g, mm.Inputs[1]) || !isConst(g, bias) || bias.Const.Rank() != 1 {
			continue
		}
		w := mm.Inputs[1].Const
		k, n := w.Shape[0], w.Shape[1]
		off := 0
		for i, size := range s.Inputs[1].Const.Int64s() {
			cols := int(size)
			wi, bi := tensor.New(tensor.Float32, k, cols), tensor.New(tensor.Float32, cols)
			for r := 0; r < k; r++ {
				copy(wi.Float32s()[r*cols:(r+1)*cols], w.Float32s()[r*n+off:r*n+off+cols])
			}
			copy(bi.Float32s(), bias.Const.Float32s()[off:off+cols])
			off += cols
			name := fmt.Sprintf("%s_proj%d", mm.Name, i)
			wv := &ir.Value{Name: name + "_w", Const: wi, Type: ir.Type{DType: tensor.Float32, Shape: ir.KnownShape(k, cols)}}
			bv := &ir.Value{Name: name + "_b", Const: bi, Type: ir.Type{DType: tensor.Float32, Shape: ir.KnownShape(cols)}}
			g.Initializers = append(g.Initializers, wv, bv)
			y := &ir.Value{Name: name + "_y"}
			m := &ir.Node{Name: name, OpType: "MatMul", Inputs: []*ir.Value{mm.Inputs[0], wv}, Outputs: []*ir.Value{y}}
			y.Producer = m
			a := &ir.Node{Name: name + "_add", OpType: "Add", Inputs: []*ir.Value{y, bv}, Outputs: []*ir.Value{s.Outputs[i]}}
			s.Outputs[i].Producer = a
			added = append(added, m, a)
		}
		if off != n {
			t.Fatalf("%s splits %d columns of %d", s, off, n)
		}
		drop = append(drop, s, add, mm)
	}
	rm := map[*ir.Node]bool{}
	for _, n := range drop {
		rm[n] = true
	}
	removeNodes(g, rm)
	g.Nodes = append(g.Nodes, added...)
	if err := g.Sort(); err != nil {
		t.Fatal(err)
	}
	return len(drop) / 3
}

// TestQKVMergeBert splits bert_mini's fused Q/K/V projections into three
// each, as most exporters write them, and checks that the level-2 passes
// merge them back, still fuse every attention, and keep the reference
// outputs.
func TestQKVMergeBert(t *testing.T) {
	g, dir := loadModel(t, "bert_mini")
	if err := Run(g, 1, nil); err != nil {
		t.Fatal(err)
	}
	split := unmergeQKV(t, g)
	if split == 0 {
		t.Fatal("bert_mini has no Split(Add(MatMul)) projections to split")
	}
	softmax := opCounts(g)["Softmax"]
	merged := 0
	if err := Run(g, 2, func(pass, msg string) {
		if pass == "qkvmerge" {
			merged++
		}
	}); err != nil {
		t.Fatal(err)
	}
	ops := opCounts(g)
	t.Logf("%d projections split in three, %d merged back; ops %v", split, merged, ops)
	if merged != split {
		t.Errorf("qkvmerge merged %d groups, want %d: %v", merged, split, ops)
	}
	if ops["kiln::Attention"] != softmax || ops["Softmax"] != 0 {
		t.Errorf("%d kiln::Attention for %d Softmax: %v", ops["kiln::Attention"], softmax, ops)
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
		if c := compare(got[g.Outputs[i].Name], w, 1e-3, 1e-4); !c.OK {
			t.Errorf("output %q: %s", g.Outputs[i].Name, c.Reason)
		}
	}
}
