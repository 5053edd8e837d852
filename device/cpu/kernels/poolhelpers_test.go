package kernels

import (
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/nn"
	"github.com/kilnai/kiln/tensor"
)

// poolOpset is the opset of the pooling nodes of the tests (dilations on
// AveragePool from 19).
const poolOpset = 19

// window is a pooling window as a node's attributes give it (nil: the
// attribute left out).
type window struct {
	kernel, strides, dilations, pads []int
	ceil                             bool
}

func ints(name string, v []int) *ir.Attr {
	a := &ir.Attr{Name: name, Type: ir.AttrInts}
	for _, x := range v {
		a.Ints = append(a.Ints, int64(x))
	}
	return a
}

// poolNode returns a 2-D pooling node of the window: kind "max"
// (MaxPool), "avg" or "avgpad" (AveragePool without and with
// count_include_pad), "lp" (LpPool, p 2), over an input of type dt.
func poolNode(kind string, w window, dt tensor.DType) *ir.Node {
	op := map[string]string{"max": "MaxPool", "avg": "AveragePool", "avgpad": "AveragePool", "lp": "LpPool"}[kind]
	n := node("", op, dt)
	n.Attrs = map[string]*ir.Attr{}
	add := func(a *ir.Attr) { n.Attrs[a.Name] = a }
	add(ints("kernel_shape", w.kernel))
	if w.strides != nil {
		add(ints("strides", w.strides))
	}
	if w.dilations != nil {
		add(ints("dilations", w.dilations))
	}
	if w.pads != nil {
		add(ints("pads", w.pads))
	}
	if w.ceil {
		add(&ir.Attr{Name: "ceil_mode", Type: ir.AttrInt, I: 1})
	}
	if kind == "avgpad" {
		add(&ir.Attr{Name: "count_include_pad", Type: ir.AttrInt, I: 1})
	}
	return n
}

// testPool returns the fast kernel of window w as the registry prepares
// it (a MaxPool node) with kind and includePad set as given, and its
// windows over a plane of hw; the error is the geometry's (the window
// does not fit the plane).
func testPool(t testing.TB, kind poolKind, incl bool, w window, hw []int) (*poolKernel, *nn.PoolGeometry, error) {
	t.Helper()
	k, err := preparePool(poolMax)(poolNode("max", w, tensor.Float32), poolOpset)
	if err != nil {
		t.Fatal(err)
	}
	pk := k.(*poolKernel)
	pk.kind, pk.includePad = kind, incl
	s, err := pk.geometry(append([]int{1, 1}, hw...))
	if err != nil {
		return nil, nil, err
	}
	return pk, s.g, nil
}

// refPool runs the reference kernel of ops/nn (ops.Prepare: the plain
// loop) of kind ("max", "avg", "avgpad") and window w over planes planes
// of hw, returning the output as float64.
func refPool(t testing.TB, kind string, w window, x []float32, planes int, hw []int) []float64 {
	t.Helper()
	k, err := ops.Prepare(poolNode(kind, w, tensor.Float32), poolOpset)
	if err != nil {
		t.Fatal(err)
	}
	out, err := k.Run(&ops.Env{}, []*tensor.Tensor{tensor.FromFloat32(x, append([]int{1, planes}, hw...)...)})
	if err != nil {
		t.Fatal(err)
	}
	y := out[0].Float32s()
	f := make([]float64, len(y))
	for i, v := range y {
		f[i] = float64(v)
	}
	return f
}

// windows returns k's windows over a plane of hw.
func (k *poolKernel) windows(t testing.TB, hw []int) *nn.PoolGeometry {
	t.Helper()
	s, err := k.geometry(append([]int{1, 1}, hw...))
	if err != nil {
		t.Fatal(err)
	}
	return s.g
}

// f32s returns v as float32s.
func f32s(v []float64) []float32 {
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return f
}

// mhaNode returns a kiln::MultiHeadAttention node of heads heads, with a
// mask input when masked.
func mhaNode(heads int, masked bool) *ir.Node {
	n := &ir.Node{Name: "mha", Domain: "kiln", OpType: "MultiHeadAttention", Outputs: []*ir.Value{{Name: "y"}},
		Inputs: []*ir.Value{{Name: "qkv", Type: ir.Type{DType: tensor.Float32}}},
		Attrs:  map[string]*ir.Attr{"num_heads": {Name: "num_heads", Type: ir.AttrInt, I: int64(heads)}}}
	if masked {
		n.Inputs = append(n.Inputs, &ir.Value{Name: "mask", Type: ir.Type{DType: tensor.Float32}})
	}
	return n
}

// mhaKernelOf returns the registry's kernel of mhaNode(heads, true).
func mhaKernelOf(t testing.TB, heads int) ops.Kernel {
	t.Helper()
	k, impl, err := Prepare(mhaNode(heads, true), 17)
	if err != nil || impl != "cpu.MultiHeadAttention" {
		t.Fatalf("Prepare = %q, %v; want the registry's kernel", impl, err)
	}
	return k
}
