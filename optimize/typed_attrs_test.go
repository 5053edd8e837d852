package optimize

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// The passes read attributes through ops' typed parsers, at the graph's
// opset: these tests pin the defaults that differ by opset, and that a
// node whose attributes do not parse is left as it was.

// softmaxAttn is attnGraph's pattern at the given opset, its Softmax's
// axis attrs as given.
func softmaxAttn(opset int64, axis ...*ir.Attr) func() *ir.Graph {
	return func() *ir.Graph {
		b := ir.NewBuilder("g", opset)
		q := b.Input("q", tensor.Float32, ir.D(2), ir.D(4), ir.D(5), ir.D(8))
		k := b.Input("k", tensor.Float32, ir.D(2), ir.D(4), ir.D(8), ir.D(5))
		v := b.Input("v", tensor.Float32, ir.D(2), ir.D(4), ir.D(5), ir.D(8))
		s := b.Op("MatMul", []*ir.Value{q, k})
		b.Output(b.Op("MatMul", []*ir.Value{b.Op("Softmax", []*ir.Value{s}, axis...), v}), "y")
		return b.Graph()
	}
}

// convBN is a Conv followed by a BatchNormalization at the given opset
// with outs outputs (the extra ones named, read by nothing) and attrs.
func convBN(opset int64, outs int, attrs ...*ir.Attr) func() *ir.Graph {
	return func() *ir.Graph {
		r := rand.New(rand.NewPCG(21, 21))
		b := ir.NewBuilder("g", opset)
		x := b.Input("x", tensor.Float32, ir.D(1), ir.D(3), ir.D(5), ir.D(5))
		c := b.Op("Conv", []*ir.Value{x, b.Const("w", f32(r, 4, 3, 3, 3))})
		bn := b.OpN("BatchNormalization", outs, []*ir.Value{c,
			b.Const("", positive(r, 4)), b.Const("", f32(r, 4)), b.Const("", f32(r, 4)), b.Const("", positive(r, 4))},
			attrs...)
		b.Output(bn[0], "y")
		return b.Graph()
	}
}

// convAct is a Conv followed by activation op (its inputs after the first
// from extra) at the given opset.
func convAct(opset int64, op string, extra func(b *ir.Builder) []*ir.Value, attrs ...*ir.Attr) func() *ir.Graph {
	return func() *ir.Graph {
		r := rand.New(rand.NewPCG(22, 22))
		b := ir.NewBuilder("g", opset)
		x := b.Input("x", tensor.Float32, ir.D(1), ir.D(3), ir.D(5), ir.D(5))
		c := b.Op("Conv", []*ir.Value{x, b.Const("w", f32(r, 4, 3, 3, 3)), b.Const("b", f32(r, 4))})
		in := []*ir.Value{c}
		if extra != nil {
			in = append(in, extra(b)...)
		}
		b.Output(b.Op(op, in, attrs...), "y")
		return b.Graph()
	}
}

// TestPassDefaultsByOpset: Softmax's axis is 1 by default before opset 13
// (over the flattened dimensions from it: not the last axis alone), -1
// from 13; BatchNormalization is in training mode before opset 14 when it
// names more than one output and is_test is 0 (batch statistics: bnfold
// must not fold its stored ones), from 14 only with training_mode 1;
// Clip's bounds are attributes before opset 11 (-inf and +inf by
// default), inputs from 11.
func TestPassDefaultsByOpset(t *testing.T) {
	attn := []string{"attention", "dce"}
	unfused := map[string]int{"MatMul": 2, "Softmax": 1}
	fused := map[string]int{"kiln::Attention": 1}
	bn := []string{"bnfold", "dce"}
	kept := map[string]int{"Conv": 1, "BatchNormalization": 1}
	folded := map[string]int{"Conv": 1}
	clip := func(lo, hi float32) func(b *ir.Builder) []*ir.Value {
		return func(b *ir.Builder) []*ir.Value {
			return []*ir.Value{b.Const("", tensor.Scalar(tensor.Float32, float64(lo))), b.Const("", tensor.Scalar(tensor.Float32, float64(hi)))}
		}
	}
	fusedConv := map[string]int{"kiln::FusedConv": 1}
	runCases(t, []passCase{
		{name: "softmax opset 12 no axis", build: softmaxAttn(12), passes: attn, want: unfused, inits: 0},
		{name: "softmax opset 12 axis 3", build: softmaxAttn(12, ir.IntAttr("axis", 3)), passes: attn, want: fused, inits: 0},
		{name: "softmax opset 13 no axis", build: softmaxAttn(13), passes: attn, want: fused, inits: 0},
		{name: "softmax opset 13 axis 1", build: softmaxAttn(13, ir.IntAttr("axis", 1)), passes: attn, want: unfused, inits: 0},
		{name: "batchnorm opset 9 five outputs", build: convBN(9, 5), passes: bn, want: kept, inits: -1},
		{name: "batchnorm opset 9 one output", build: convBN(9, 1), passes: bn, want: folded, inits: -1},
		{name: "batchnorm opset 15 training_mode 1", build: convBN(15, 3, ir.IntAttr("training_mode", 1)), passes: bn, want: kept, inits: -1},
		{name: "batchnorm opset 15 training_mode 0", build: convBN(15, 1, ir.IntAttr("training_mode", 0)), passes: bn, want: folded, inits: -1},
		{name: "clip opset 10 attributes", build: convAct(10, "Clip", nil, ir.FloatAttr("min", 0), ir.FloatAttr("max", 6)), passes: []string{"convfuse"}, want: fusedConv, inits: -1},
		{name: "clip opset 10 no bounds", build: convAct(10, "Clip", nil), passes: []string{"convfuse"}, want: fusedConv, inits: -1},
		{name: "clip opset 13 inputs", build: convAct(13, "Clip", clip(0, 6)), passes: []string{"convfuse"}, want: fusedConv, inits: -1},
	})
}

// TestConvFuseClipAttrs checks the bounds convfuse gives a Clip before
// opset 11 (its attributes, the defaults where absent).
func TestConvFuseClipAttrs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		attrs []*ir.Attr
		want  string
	}{
		{"both", []*ir.Attr{ir.FloatAttr("min", -1), ir.FloatAttr("max", 6)}, "[-1 6]"},
		{"max only", []*ir.Attr{ir.FloatAttr("max", 6)}, "[-Inf 6]"},
		{"none", nil, "[-Inf +Inf]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := convAct(10, "Clip", nil, tc.attrs...)()
			if err := RunPasses(g, lookupAll(t, []string{"convfuse"}), nil); err != nil {
				t.Fatal(err)
			}
			if len(g.Nodes) != 1 || g.Nodes[0].OpType != "FusedConv" {
				t.Fatalf("nodes %v, want one FusedConv", opCounts(g))
			}
			a := g.Nodes[0].Attrs["activation_params"]
			if a == nil || fmt.Sprint(a.Floats) != tc.want {
				t.Errorf("activation_params %v, want %s", a, tc.want)
			}
		})
	}
}

// TestPassesLeaveMalformedNodes gives one node of a graph each pass
// rewrites an attribute that does not parse (of the wrong type, or a
// value the op refuses), after typing the graph (RunPasses would refuse it
// before the pass: the passes are applied directly, as a caller skipping
// that check would): the passes must not fail or panic, and must leave
// that node as it was (in the graph, same op, same attributes).
func TestPassesLeaveMalformedNodes(t *testing.T) {
	str := func(name, v string) *ir.Attr { return ir.StringAttr(name, v) }
	fl := func(name string, v float32) *ir.Attr { return ir.FloatAttr(name, v) }
	in := func(name string, v int64) *ir.Attr { return ir.IntAttr(name, v) }
	splitConcat := func() *ir.Graph {
		b := ir.NewBuilder("g", 17)
		x := b.Op("Relu", []*ir.Value{b.Input("x", tensor.Float32, ir.D(2), ir.D(6))})
		parts := b.OpN("Split", 2, []*ir.Value{x}, ir.IntAttr("axis", 1))
		b.Output(b.Op("Neg", []*ir.Value{b.Op("Concat", parts, ir.IntAttr("axis", 1))}), "y")
		return b.Graph()
	}
	sliceConcat := func() *ir.Graph {
		b := ir.NewBuilder("g", 9)
		x := b.Op("Relu", []*ir.Value{b.Input("x", tensor.Float32, ir.D(2), ir.D(6))})
		s0 := b.Op("Slice", []*ir.Value{x}, ir.IntsAttr("starts", 0), ir.IntsAttr("ends", 3), ir.IntsAttr("axes", 1))
		s1 := b.Op("Slice", []*ir.Value{x}, ir.IntsAttr("starts", 3), ir.IntsAttr("ends", 6), ir.IntsAttr("axes", 1))
		b.Output(b.Op("Concat", []*ir.Value{s0, s1}, ir.IntAttr("axis", 1)), "y")
		return b.Graph()
	}
	transposes := func() *ir.Graph {
		b := ir.NewBuilder("g", 17)
		x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3))
		t1 := b.Op("Transpose", []*ir.Value{x}, ir.IntsAttr("perm", 1, 0))
		b.Output(b.Op("Transpose", []*ir.Value{t1}, ir.IntsAttr("perm", 1, 0)), "y")
		return b.Graph()
	}
	gemmBN := func() *ir.Graph {
		r := rand.New(rand.NewPCG(4, 4))
		b := ir.NewBuilder("g", 17)
		y := b.Op("Gemm", []*ir.Value{b.Input("x", tensor.Float32, ir.D(3), ir.D(5)), b.Const("w", f32(r, 5, 6))})
		b.Output(addBN(b, r, y, 6), "y")
		return b.Graph()
	}
	mha := mhaSpec{batch: 1, seq: 4, heads: 2, size: 4}.build
	for _, tc := range []struct {
		name   string
		build  func() *ir.Graph
		passes []string
		op     string // the first node of this type gets attr
		attr   *ir.Attr
	}{
		{"concat: Split axis a float", splitConcat, []string{"concat", "dce"}, "Split", fl("axis", 1)},
		{"concat: Concat axis a string", splitConcat, []string{"concat", "dce"}, "Concat", str("axis", "1")},
		{"concat: opset 9 Slice ends missing", sliceConcat, []string{"concat", "dce"}, "Slice", &ir.Attr{Name: "ends", Type: ir.AttrInts}},
		{"transpose: perm not a permutation", transposes, []string{"transpose", "dce"}, "Transpose", ir.IntsAttr("perm", 0, 0)},
		{"transpose: perm a string", transposes, []string{"transpose", "layout", "dce"}, "Transpose", str("perm", "1,0")},
		{"bnfold: epsilon an int", convBN(17, 1), []string{"bnfold", "dce"}, "BatchNormalization", in("epsilon", 1)},
		{"bnfold: training_mode 2", convBN(17, 1), []string{"bnfold", "dce"}, "BatchNormalization", in("training_mode", 2)},
		{"bnfold: Gemm transB a string", gemmBN, []string{"bnfold", "dce"}, "Gemm", str("transB", "0")},
		{"attention: Softmax axis a string", attnGraph("div", true, false), []string{"attention", "dce"}, "Softmax", str("axis", "-1")},
		{"layernorm: ReduceMean keepdims 2", lnGraph(17, "pow", 2, -1), []string{"layernorm", "dce"}, "ReduceMean", in("keepdims", 2)},
		{"layernorm: ReduceMean axes a float", lnGraph(17, "pow", 2, -1), []string{"layernorm", "dce"}, "ReduceMean", fl("axes", -1)},
		{"skiplayernorm: epsilon negative", lnSpec{shape: []int{2, 8}, add: "same"}.build, []string{"skiplayernorm", "dce"}, "LayerNormalization", fl("epsilon", -1)},
		{"skiplayernorm: stash_type int32", lnSpec{shape: []int{2, 8}, add: "same"}.build, []string{"skiplayernorm", "dce"}, "LayerNormalization", in("stash_type", int64(tensor.Int32))},
		{"convfuse: Gelu approximate bogus", convAct(20, "Gelu", nil), []string{"convfuse"}, "Gelu", str("approximate", "bogus")},
		{"convfuse: LeakyRelu alpha an int", convAct(17, "LeakyRelu", nil), []string{"convfuse"}, "LeakyRelu", in("alpha", 1)},
		{"convfuse: HardSigmoid beta a string", convAct(17, "HardSigmoid", nil), []string{"convfuse"}, "HardSigmoid", str("beta", "0.5")},
		{"convfuse: opset 10 Clip min an int", convAct(10, "Clip", nil), []string{"convfuse"}, "Clip", in("min", 0)},
		{"convfuse: Conv group a float", convAct(17, "Relu", nil), []string{"convfuse", "bnfold"}, "Conv", fl("group", 1)},
		{"mha: Split axis a string", mha, []string{"mha", "dce"}, "Split", str("axis", "-1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.build()
			pre := []string{}
			if tc.passes[0] == "mha" {
				pre = []string{"attention"} // mha rewrites its kiln::Attention
			}
			if err := RunPasses(g, lookupAll(t, pre), nil); err != nil {
				t.Fatal(err)
			}
			if err := infer(g); err != nil {
				t.Fatal(err)
			}
			var bad *ir.Node
			for _, n := range g.Nodes {
				if n.OpType == tc.op {
					bad = n
					break
				}
			}
			if bad == nil {
				t.Fatalf("no %s node", tc.op)
			}
			if bad.Attrs == nil {
				bad.Attrs = map[string]*ir.Attr{}
			}
			bad.Attrs[tc.attr.Name] = tc.attr
			before := fmt.Sprint(bad.Inputs, bad.Outputs, attrString(bad))
			for round := 0; round < 4; round++ {
				changed := false
				for _, p := range lookupAll(t, tc.passes) {
					c, err := p.Apply(g)
					if err != nil {
						t.Fatalf("%s failed: %v", p.Name(), err)
					}
					changed = changed || c
				}
				if !changed {
					break
				}
			}
			found := false
			for _, n := range g.Nodes {
				found = found || n == bad
			}
			if !found || bad.OpType != tc.op || (bad.Domain != "" && bad.Domain != "ai.onnx") {
				t.Fatalf("the malformed %s was rewritten (now %s::%s, in the graph: %v): %v", tc.op, bad.Domain, bad.OpType, found, opCounts(g))
			}
			if after := fmt.Sprint(bad.Inputs, bad.Outputs, attrString(bad)); after != before {
				t.Errorf("the malformed %s changed:\n%s\nwas\n%s", tc.op, after, before)
			}
		})
	}
}

// attrString prints n's attributes in name order.
func attrString(n *ir.Node) string {
	var s string
	for _, name := range slices.Sorted(maps.Keys(n.Attrs)) {
		a := n.Attrs[name]
		s += fmt.Sprintf("%s:%d:%v:%v:%q:%v:%v ", name, a.Type, a.I, a.F, a.S, a.Ints, a.Floats)
	}
	return s
}
