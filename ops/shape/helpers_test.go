package shape

import (
	"context"
	"fmt"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func f32(shape []int, v ...float32) *tensor.Tensor { return tensor.FromFloat32(v, shape...) }

func i64(shape []int, v ...int64) *tensor.Tensor { return tensor.FromInt64(v, shape...) }

func i32(shape []int, v ...int32) *tensor.Tensor {
	t := tensor.New(tensor.Int32, shape...)
	copy(t.Int32s(), v)
	return t
}

func bools(shape []int, v ...bool) *tensor.Tensor {
	t := tensor.New(tensor.Bool, shape...)
	copy(t.Bools(), v)
	return t
}

func strs(shape []int, v ...string) *tensor.Tensor {
	t := tensor.New(tensor.String, shape...)
	copy(t.Strings, v)
	return t
}

func sc(v int64) *tensor.Tensor { return i64([]int{}, v) }

func sh(d ...int) []int { return d }

// iota returns a float32 tensor of shape holding 0, 1, 2, ...
func iotaF(shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Float32, shape...)
	for i := range t.Float32s() {
		t.Float32s()[i] = float32(i)
	}
	return t
}

// opCase is one table-driven operator test.
type opCase struct {
	name  string
	op    string
	opset int64
	attrs []*ir.Attr
	in    []*tensor.Tensor
	want  []*tensor.Tensor
	nOut  int  // outputs of the node (default len(want), at least 1)
	err   bool // Run (or Prepare/Infer) must fail
}

func (c opCase) node() *ir.Node {
	n := c.nOut
	if n == 0 {
		n = max(len(c.want), 1)
	}
	return opstest.Node(c.op, len(c.in), n, c.attrs...)
}

// run executes c through opstest (Infer from types must agree with Run) and
// checks the outputs; then it infers again with every input a known
// constant and checks that the inferred shapes equal the computed ones.
func (c opCase) run(t *testing.T) {
	t.Helper()
	opset := c.opset
	if opset == 0 {
		opset = 17
	}
	outs, err := opstest.Exec(c.node(), opset, c.in...)
	if c.err {
		if err == nil {
			t.Errorf("%s: want an error, got %v", c.name, outs)
		}
		return
	}
	if err != nil {
		t.Errorf("%s: %v", c.name, err)
		return
	}
	for i, w := range c.want {
		if i >= len(outs) {
			t.Errorf("%s: %d outputs, want %d", c.name, len(outs), len(c.want))
			return
		}
		if err := opstest.Close(outs[i], w, 0, 0); err != nil {
			t.Errorf("%s: output %d: %v\n got %v\nwant %v", c.name, i, err, outs[i], w)
		}
	}
	// inference with constant inputs must give the exact shapes
	k, err := ops.Prepare(c.node(), opset)
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]*ir.Value, len(c.in))
	for i, x := range c.in {
		if x != nil {
			vals[i] = &ir.Value{Name: fmt.Sprint("in", i), Type: ops.TypeOf(x), Const: x}
		}
	}
	types, err := k.Infer(vals)
	if err != nil {
		t.Errorf("%s: infer with constants: %v", c.name, err)
		return
	}
	for i, o := range outs {
		if i < len(types) && types[i].Shape.FullyKnown() && !types[i].Shape.Matches(o.Shape) {
			t.Errorf("%s: output %d: inferred %v, computed %v", c.name, i, types[i].Shape, o.Shape)
		}
		if i < len(types) && types[i].Shape != nil && len(types[i].Shape) != len(o.Shape) {
			t.Errorf("%s: output %d: inferred rank %v, computed %v", c.name, i, types[i].Shape, o.Shape)
		}
	}
}

func runCases(t *testing.T, cases []opCase) {
	t.Helper()
	for _, c := range cases {
		c.run(t)
	}
}

// mustNotPanic runs fn and fails the test if it panics.
func mustNotPanic(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", what, r)
		}
	}()
	fn()
}

// runKernel prepares and runs a node without inference.
func runKernel(n *ir.Node, opset int64, in ...*tensor.Tensor) ([]*tensor.Tensor, error) {
	k, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	return k.Run(&ops.Env{Ctx: context.Background()}, in)
}

func opAttrs(a ...*ir.Attr) []*ir.Attr { return a }
