// Package opstest helps test operator kernels: it builds a node, prepares
// its kernel, checks that shape inference agrees with what the kernel
// computes, and compares tensors with tolerances.
package opstest

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// Node returns a default-domain node of type op with nIn inputs and nOut
// outputs (values named in0.., out0..) and the given attributes.
func Node(op string, nIn, nOut int, attrs ...*ir.Attr) *ir.Node {
	n := &ir.Node{Name: "test_" + op, OpType: op, Attrs: map[string]*ir.Attr{}}
	for i := 0; i < nIn; i++ {
		n.Inputs = append(n.Inputs, &ir.Value{Name: fmt.Sprintf("in%d", i)})
	}
	for i := 0; i < nOut; i++ {
		n.Outputs = append(n.Outputs, &ir.Value{Name: fmt.Sprintf("out%d", i)})
	}
	for _, a := range attrs {
		n.Attrs[a.Name] = a
	}
	return n
}

// Int returns an integer attribute.
func Int(name string, v int64) *ir.Attr { return &ir.Attr{Name: name, Type: ir.AttrInt, I: v} }

// Ints returns an ints attribute.
func Ints(name string, v ...int64) *ir.Attr {
	return &ir.Attr{Name: name, Type: ir.AttrInts, Ints: v}
}

// Float returns a float attribute.
func Float(name string, v float32) *ir.Attr {
	return &ir.Attr{Name: name, Type: ir.AttrFloat, F: v}
}

// Floats returns a floats attribute.
func Floats(name string, v ...float32) *ir.Attr {
	return &ir.Attr{Name: name, Type: ir.AttrFloats, Floats: v}
}

// String returns a string attribute.
func String(name, v string) *ir.Attr { return &ir.Attr{Name: name, Type: ir.AttrString, S: v} }

// Tensor returns a tensor attribute.
func Tensor(name string, t *tensor.Tensor) *ir.Attr {
	return &ir.Attr{Name: name, Type: ir.AttrTensor, T: t}
}

// Exec prepares n for opset, infers its output types from the inputs'
// concrete types (nil for an omitted input), runs it, and checks that each
// output agrees with the inferred type. It returns the first error.
func Exec(n *ir.Node, opset int64, in ...*tensor.Tensor) ([]*tensor.Tensor, error) {
	k, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	vals := make([]*ir.Value, len(in))
	for i, t := range in {
		if t != nil {
			vals[i] = &ir.Value{Name: fmt.Sprintf("in%d", i), Type: ops.TypeOf(t)}
		}
	}
	types, err := k.Infer(vals)
	if err != nil {
		return nil, fmt.Errorf("infer: %w", err)
	}
	outs, err := k.Run(&ops.Env{Ctx: context.Background()}, in)
	if err != nil {
		return nil, err
	}
	for i, o := range outs {
		if i >= len(types) || o == nil {
			continue
		}
		want := types[i]
		if want.DType != tensor.Undefined && want.DType != o.DType {
			return nil, fmt.Errorf("output %d: inferred %v, computed %v", i, want.DType, o.DType)
		}
		if !want.Shape.Matches(o.Shape) {
			return nil, fmt.Errorf("output %d: inferred shape %v, computed %v", i, want.Shape, o.Shape)
		}
	}
	return outs, nil
}

// Run is Exec that fails the test on error.
func Run(t testing.TB, n *ir.Node, opset int64, in ...*tensor.Tensor) []*tensor.Tensor {
	t.Helper()
	outs, err := Exec(n, opset, in...)
	if err != nil {
		t.Fatalf("%s: %v", n.OpType, err)
	}
	return outs
}

// Close reports whether got matches want: same type and shape, and every
// element within atol + rtol*|want| (NaNs must match NaNs).
func Close(got, want *tensor.Tensor, rtol, atol float64) error {
	if got.DType != want.DType {
		return fmt.Errorf("dtype %v, want %v", got.DType, want.DType)
	}
	if fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) {
		return fmt.Errorf("shape %v, want %v", got.Shape, want.Shape)
	}
	if got.DType == tensor.String {
		for i := range want.Strings {
			if got.Strings[i] != want.Strings[i] {
				return fmt.Errorf("element %d: %q, want %q", i, got.Strings[i], want.Strings[i])
			}
		}
		return nil
	}
	for i, n := 0, want.Len(); i < n; i++ {
		g, w := got.Float(i), want.Float(i)
		if math.IsNaN(w) {
			if !math.IsNaN(g) {
				return fmt.Errorf("element %d: %g, want NaN", i, g)
			}
			continue
		}
		if math.IsInf(w, 0) && g == w {
			continue
		}
		if math.Abs(g-w) > atol+rtol*math.Abs(w) {
			return fmt.Errorf("element %d: %g, want %g", i, g, w)
		}
	}
	return nil
}

// AllClose fails the test unless got matches want (see Close).
func AllClose(t testing.TB, got, want *tensor.Tensor, rtol, atol float64) {
	t.Helper()
	if err := Close(got, want, rtol, atol); err != nil {
		t.Fatal(err)
	}
}
