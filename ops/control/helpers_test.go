package control

import (
	"context"
	"fmt"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// The subgraph tests use a few private ops so that they depend on no other
// op family: ctlAdd (same-shape elementwise add), ctlLess (scalar a < b,
// bool), ctlConcat (1-D concatenation) and ctlMul (same-shape product).

type ctlBinary struct {
	name string
	f    func(a, b float64) float64
}

func (k ctlBinary) Infer(in []*ir.Value) ([]ir.Type, error) {
	if len(in) != 2 || in[0] == nil || in[1] == nil {
		return nil, fmt.Errorf("%w: %s takes 2 inputs", ops.ErrBadInput, k.name)
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: joinShape(in[0].Type.Shape, in[1].Type.Shape)}}, nil
}

func (k ctlBinary) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	a, b := in[0], in[1]
	if a.DType != b.DType || !sameDims(a.Shape, b.Shape) {
		return nil, fmt.Errorf("%w: %s of %v%v and %v%v", ops.ErrBadInput, k.name, a.DType, a.Shape, b.DType, b.Shape)
	}
	out := tensor.New(a.DType, a.Shape...)
	for i := range a.Len() {
		out.SetFloat(i, k.f(a.Float(i), b.Float(i)))
	}
	return []*tensor.Tensor{out}, nil
}

type ctlLess struct{}

func (ctlLess) Infer([]*ir.Value) ([]ir.Type, error) {
	return []ir.Type{{DType: tensor.Bool, Shape: ir.Scalar()}}, nil
}

func (ctlLess) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	out := tensor.New(tensor.Bool)
	out.Bools()[0] = in[0].Float(0) < in[1].Float(0)
	return []*tensor.Tensor{out}, nil
}

type ctlConcat struct{}

func (ctlConcat) Infer(in []*ir.Value) ([]ir.Type, error) {
	d := ir.U()
	if a, b := in[0].Type.Shape, in[1].Type.Shape; len(a) == 1 && len(b) == 1 && a[0].Known() && b[0].Known() {
		d = ir.D(a[0].Val + b[0].Val)
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: ir.Shape{d}}}, nil
}

func (ctlConcat) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	a, b := in[0], in[1]
	out := tensor.New(a.DType, a.Len()+b.Len())
	copyElems(out, 0, a, 0, a.Len())
	copyElems(out, a.Len(), b, 0, b.Len())
	return []*tensor.Tensor{out}, nil
}

func init() {
	reg := func(name string, k ops.Kernel) {
		ops.Register(ops.Def{Type: name, Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return k, nil }})
	}
	reg("ctlAdd", ctlBinary{"ctlAdd", func(a, b float64) float64 { return a + b }})
	reg("ctlMul", ctlBinary{"ctlMul", func(a, b float64) float64 { return a * b }})
	reg("ctlLess", ctlLess{})
	reg("ctlConcat", ctlConcat{})
}

// subgraph starts a body graph nested in parent.
func subgraph(name string, parent *ir.Graph) *ir.Builder {
	b := ir.NewBuilder(name, 17)
	b.Graph().Parent = parent
	return b
}

// runGraph builds an engine for g and runs it.
func runGraph(t *testing.T, g *ir.Graph, in map[string]*tensor.Tensor) map[string]*tensor.Tensor {
	t.Helper()
	e, err := engine.New(g)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	out, err := e.Run(context.Background(), in)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return out
}

func f32(v []float32, shape ...int) *tensor.Tensor { return tensor.FromFloat32(v, shape...) }

func i64(v []int64, shape ...int) *tensor.Tensor { return tensor.FromInt64(v, shape...) }

func boolScalar(v bool) *tensor.Tensor {
	t := tensor.New(tensor.Bool)
	t.Bools()[0] = v
	return t
}

func i64Scalar(v int64) *tensor.Tensor {
	t := tensor.New(tensor.Int64)
	t.Int64s()[0] = v
	return t
}

// equal fails unless got has want's type, shape and elements.
func equal(t *testing.T, what string, got, want *tensor.Tensor) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no output", what)
	}
	if got.DType != want.DType || !sameDims(got.Shape, want.Shape) {
		t.Fatalf("%s: %v%v, want %v%v", what, got.DType, got.Shape, want.DType, want.Shape)
	}
	for i := range want.Len() {
		if got.Float(i) != want.Float(i) {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
	}
}
