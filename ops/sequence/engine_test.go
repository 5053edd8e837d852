package sequence_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/tensor"
)

// TestArenaReuse: a tensor put into a sequence stays intact while the
// execution context's arena reuses its memory for later nodes.
func TestArenaReuse(t *testing.T) {
	b := ir.NewBuilder("reuse", 17)
	x := b.Input("x", tensor.Float32, ir.D(1024))
	r := b.Op("Relu", []*ir.Value{x})
	s := b.Op("SequenceConstruct", []*ir.Value{r})
	n := b.Op("Neg", []*ir.Value{b.Op("Neg", []*ir.Value{b.Op("Neg", []*ir.Value{x})})})
	e := b.Op("SequenceAt", []*ir.Value{s, b.Const("zero", tensor.FromInt64([]int64{0}))})
	b.Output(b.Op("Add", []*ir.Value{e, n}), "y")
	eng, err := engine.New(b.Graph())
	if err != nil {
		t.Fatal(err)
	}
	xs := make([]float32, 1024)
	for i := range xs {
		xs[i] = float32(i%7) - 3
	}
	for run := 0; run < 2; run++ {
		out, err := eng.Run(context.Background(), map[string]*tensor.Tensor{"x": tensor.FromFloat32(xs, 1024)})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range out["y"].Float32s() {
			if want := max(xs[i], 0) - xs[i]; v != want {
				t.Fatalf("run %d: y[%d] = %g, want %g", run, i, v, want)
			}
		}
	}
}

// mapModel is SequenceMap over seq (a sequence input) and extra: with a
// tensor extra, each element plus extra; with a sequence, element-wise.
func mapModel(t *testing.T, extraSeq bool) *engine.Engine {
	t.Helper()
	b := ir.NewBuilder("map", 17)
	seq := b.Input("seq", tensor.Float32)
	seq.Type = ir.SequenceOf(ir.Type{DType: tensor.Float32})
	extra := b.Input("extra", tensor.Float32, ir.D(2))
	if extraSeq {
		extra.Type = ir.SequenceOf(ir.Type{DType: tensor.Float32})
	}
	body := ir.NewBuilder("add", 17)
	a, c := body.Input("a", tensor.Float32), body.Input("c", tensor.Float32)
	body.Output(body.Op("Add", []*ir.Value{a, c}), "sum")
	bg := body.Graph()
	bg.Opsets, bg.Parent = nil, b.Graph()
	out := b.Op("SequenceMap", []*ir.Value{seq, extra}, ir.GraphAttr("body", bg))
	b.Output(out, "sums")
	eng, err := engine.New(b.Graph())
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func TestSequenceMapInEngine(t *testing.T) {
	v := func(x ...float32) *tensor.Tensor { return tensor.FromFloat32(x, len(x)) }
	tests := []struct {
		name     string
		extraSeq bool
		in       map[string]*tensor.Tensor
		want     *tensor.Tensor
		err      string
		is       error
	}{
		{name: "tensor to every element", in: map[string]*tensor.Tensor{"seq": seq(v(1, 2), v(3, 4)), "extra": v(10, 20)},
			want: seq(v(11, 22), v(13, 24))},
		{name: "empty sequence", in: map[string]*tensor.Tensor{"seq": seq(), "extra": v(10, 20)}, want: seq()},
		{name: "two sequences", extraSeq: true, in: map[string]*tensor.Tensor{"seq": seq(v(1), v(2, 3)), "extra": seq(v(5), v(6, 7))},
			want: seq(v(6), v(8, 10))},
		{name: "lengths differ", extraSeq: true, in: map[string]*tensor.Tensor{"seq": seq(v(1)), "extra": seq(v(5), v(6))},
			err: "input 1 is a sequence of 2, input 0 of 1 (sequences must have the same length)", is: ops.ErrBadInput},
		{name: "a tensor for the sequence input", in: map[string]*tensor.Tensor{"seq": v(1), "extra": v(1, 2)},
			err: `input "seq" is a float32 tensor, want sequence(float32[*])`, is: engine.ErrInput},
		{name: "an element of another type", in: map[string]*tensor.Tensor{"seq": seq(tensor.FromInt64([]int64{1}, 1)), "extra": v(1, 2)},
			err: `input "seq" element 0 has type int64`, is: engine.ErrInput},
		{name: "a sequence for the tensor input", in: map[string]*tensor.Tensor{"seq": seq(v(1, 2)), "extra": seq(v(1, 2))},
			err: `input "extra" is a sequence, want float32[2]`, is: engine.ErrInput},
		{name: "an empty optional for the sequence", in: map[string]*tensor.Tensor{"seq": tensor.NoneOptional(), "extra": v(1, 2)},
			err: `input "seq" is an empty optional`, is: engine.ErrInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := mapModel(t, tt.extraSeq).Run(context.Background(), tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, tt.is) {
					t.Fatalf("error %v, want a %v saying %q", err, tt.is, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := same(out["sums"], tt.want); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestControlFlowCarriesSequences: a Loop builds a sequence one element
// per iteration (its elements of growing shapes), and an If returns either
// an empty optional or an optional sequence; the values come out of both.
func TestControlFlowCarriesSequences(t *testing.T) {
	b := ir.NewBuilder("loop", 17)
	m := b.Input("m", tensor.Int64)
	pick := b.Input("pick", tensor.Bool)
	empty := b.Op("SequenceEmpty", nil)

	body := ir.NewBuilder("body", 17)
	i := body.Input("i", tensor.Int64)
	c := body.Input("c", tensor.Bool)
	s := body.Input("s", tensor.Float32)
	s.Type = ir.SequenceOf(ir.Type{DType: tensor.Float32})
	one := body.Const("one", tensor.FromInt64([]int64{1}))
	n := body.Op("Add", []*ir.Value{i, one}) // i+1 elements of value i
	shape := body.Op("Reshape", []*ir.Value{n, body.Const("r1", tensor.FromInt64([]int64{1}, 1))})
	fill := body.Op("ConstantOfShape", []*ir.Value{shape})
	val := body.Op("Add", []*ir.Value{body.Op("Cast", []*ir.Value{fill}, ir.IntAttr("to", int64(tensor.Float32))),
		body.Op("Cast", []*ir.Value{i}, ir.IntAttr("to", int64(tensor.Float32)))})
	body.Output(body.Op("Identity", []*ir.Value{c}), "c_out")
	body.Output(body.Op("SequenceInsert", []*ir.Value{s, val}), "s_out")
	bg := body.Graph()
	bg.Opsets, bg.Parent = nil, b.Graph()
	built := b.OpN("Loop", 1, []*ir.Value{m, nil, empty}, ir.GraphAttr("body", bg))[0]
	b.Output(b.Op("ConcatFromSequence", []*ir.Value{built}, ir.IntAttr("axis", 0)), "flat")

	then := ir.NewBuilder("then", 17)
	then.Output(then.Op("Optional", nil, &ir.Attr{Name: "type", Type: ir.AttrType1, Types: []ir.Type{ir.SequenceOf(ir.Type{DType: tensor.Float32})}}), "none")
	els := ir.NewBuilder("else", 17)
	els.Output(els.Op("Optional", []*ir.Value{els.Graph().Capture(built)}), "some")
	tg, eg := then.Graph(), els.Graph()
	tg.Opsets, eg.Opsets = nil, nil
	tg.Parent, eg.Parent = b.Graph(), b.Graph()
	opt := b.Op("If", []*ir.Value{pick}, ir.GraphAttr("then_branch", tg), ir.GraphAttr("else_branch", eg))
	b.Output(b.Op("OptionalHasElement", []*ir.Value{opt}), "has")
	b.Output(opt, "maybe")
	eng, err := engine.New(b.Graph())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		m    int64
		pick bool
		flat []float32
	}{{3, false, []float32{0, 1, 1, 2, 2, 2}}, {1, true, []float32{0}}} {
		out, err := eng.Run(context.Background(), map[string]*tensor.Tensor{"m": tensor.FromInt64([]int64{tt.m}), "pick": tensor.Scalar(tensor.Bool, map[bool]float64{true: 1}[tt.pick])})
		if err != nil {
			t.Fatal(err)
		}
		if err := same(out["flat"], tensor.FromFloat32(tt.flat, len(tt.flat))); err != nil {
			t.Errorf("m=%d: flat: %v", tt.m, err)
		}
		if got := out["has"].Bools()[0]; got == tt.pick {
			t.Errorf("pick=%v: has = %v", tt.pick, got)
		}
		if maybe := out["maybe"]; tt.pick != maybe.IsNone() || (!tt.pick && len(maybe.Elems) != int(tt.m)) {
			t.Errorf("pick=%v: maybe = %v", tt.pick, maybe)
		}
	}
}

// TestTensorOpRefusesSequence: a sequence fed to an operator made for
// tensors is refused when the model loads, with the node and the value
// named.
func TestTensorOpRefusesSequence(t *testing.T) {
	b := ir.NewBuilder("bad", 17)
	s := b.Input("s", tensor.Float32)
	s.Type = ir.SequenceOf(ir.Type{DType: tensor.Float32})
	b.Output(b.Op("Relu", []*ir.Value{s}), "y")
	_, err := engine.New(b.Graph())
	if err == nil || !errors.Is(err, ops.ErrBadInput) || !strings.Contains(err.Error(), `input 0 ("s") is a sequence(float32[*]) value; Relu takes tensors only`) {
		t.Fatalf("engine.New: %v, want an ops.ErrBadInput naming Relu's input s", err)
	}
}
