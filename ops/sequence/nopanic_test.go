package sequence_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// TestNoPanic runs every operator of the package on every combination of
// up to three values of every kind, well formed or not (a tensor whose
// bytes do not fit its shape, a sequence holding one): each gives a
// result or an error, never a panic.
func TestNoPanic(t *testing.T) {
	corrupt := &tensor.Tensor{DType: tensor.Float32, Shape: []int{4}, Data: make([]byte, 4)}
	pool := []*tensor.Tensor{
		nil,
		iota32(2, 3),
		i64(1),
		i64(-9),
		tensor.Scalar(tensor.Int32, 0),
		vec64(1, 1),
		corrupt,
		seq(),
		seq(iota32(2), iota32(3)),
		seq(corrupt),
		seq(i64(1), iota32(1)),
		tensor.NoneOptional(),
		{DType: tensor.String, Shape: []int{2}, Strings: []string{"a"}},
	}
	body := ir.NewBuilder("body", 17)
	body.Output(body.Input("e", tensor.Float32), "out")
	bg := body.Graph()
	type opCase struct {
		op    string
		attrs []*ir.Attr
	}
	cases := []opCase{
		{"SequenceConstruct", nil}, {"SequenceEmpty", nil}, {"SequenceAt", nil}, {"SequenceInsert", nil},
		{"SequenceErase", nil}, {"SequenceLength", nil}, {"SplitToSequence", nil},
		{"SplitToSequence", []*ir.Attr{opstest.Int("axis", -1), opstest.Int("keepdims", 0)}},
		{"ConcatFromSequence", []*ir.Attr{opstest.Int("axis", 0)}},
		{"ConcatFromSequence", []*ir.Attr{opstest.Int("axis", -1), opstest.Int("new_axis", 1)}},
		{"Optional", []*ir.Attr{typeAttr("type", ir.Type{DType: tensor.Float32})}},
		{"OptionalHasElement", nil}, {"OptionalGetElement", nil},
	}
	env := &ops.Env{Ctx: context.Background(), RunGraph: func(g *ir.Graph, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		return in[:1], nil
	}}
	for _, c := range cases {
		for nIn := 0; nIn <= 3; nIn++ {
			combos := 1
			for i := 0; i < nIn; i++ {
				combos *= len(pool)
			}
			n := opstest.Node(c.op, nIn, 1, c.attrs...)
			k, err := ops.Prepare(n, 18)
			if err != nil {
				continue
			}
			for combo := 0; combo < combos; combo++ {
				in := make([]*tensor.Tensor, nIn)
				vals := make([]*ir.Value, nIn)
				for i, x := 0, combo; i < nIn; i, x = i+1, x/len(pool) {
					in[i] = pool[x%len(pool)]
					if in[i] != nil {
						vals[i] = &ir.Value{Name: fmt.Sprint(i), Type: ops.TypeOf(in[i])}
					}
				}
				func() {
					defer func() {
						if r := recover(); r != nil {
							t.Fatalf("%s(%v): panic: %v", c.op, in, r)
						}
					}()
					k.Infer(vals)
					k.Run(env, in)
				}()
			}
		}
	}
	// SequenceMap, with a body
	n := opstest.Node("SequenceMap", 2, 1, &ir.Attr{Name: "body", Type: ir.AttrGraph, G: bg})
	bg.Inputs = append(bg.Inputs, &ir.Value{Name: "e2"})
	k, err := ops.Prepare(n, 18)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range pool {
		for _, b := range pool {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("SequenceMap(%v, %v): panic: %v", a, b, r)
					}
				}()
				k.Run(env, []*tensor.Tensor{a, b})
			}()
		}
	}
}
