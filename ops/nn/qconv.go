package nn

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// is8bit reports whether dt is int8 or uint8.
func is8bit(dt tensor.DType) bool { return dt == tensor.Int8 || dt == tensor.Uint8 }

// int32s returns the elements of an 8-bit or 32-bit integer tensor as int32
// with zp subtracted from each element (zp per slice of size inner along
// a dim of size len(zp), or one zp for all when len(zp) == 1).
func int32s(t *tensor.Tensor, zp []int32, inner int) []int32 {
	out := make([]int32, t.Len())
	switch t.DType {
	case tensor.Uint8:
		for i, v := range t.Uint8s() {
			out[i] = int32(v)
		}
	case tensor.Int8:
		for i, v := range t.Int8s() {
			out[i] = int32(v)
		}
	case tensor.Int32:
		copy(out, t.Int32s())
	default:
		for i := range out {
			out[i] = int32(t.Int(i))
		}
	}
	switch {
	case len(zp) == 1 && zp[0] != 0:
		for i := range out {
			out[i] -= zp[0]
		}
	case len(zp) > 1:
		n := len(zp)
		for i := range out {
			out[i] -= zp[(i/inner)%n]
		}
	}
	return out
}

// zeroPoints reads an optional zero-point tensor of type dt holding one
// value or n values (per channel).
func zeroPoints(op, name string, t *tensor.Tensor, dt tensor.DType, n int) ([]int32, error) {
	if t == nil {
		return []int32{0}, nil
	}
	if t.DType != dt {
		return nil, badInput("%s %s is %v, want %v", op, name, t.DType, dt)
	}
	if l := t.Len(); l != 1 && (l != n || t.Rank() != 1) {
		return nil, badInput("%s %s has shape %v, want a scalar or [%d]", op, name, t.Shape, n)
	}
	return int32s(t, nil, 1), nil
}

// scales reads a float scale tensor holding one value or n values.
func scales(op, name string, t *tensor.Tensor, n int) ([]float32, error) {
	if t == nil {
		return nil, badInput("%s %s is missing", op, name)
	}
	if !t.DType.IsFloat() {
		return nil, badInput("%s %s is %v, want float", op, name, t.DType)
	}
	if l := t.Len(); l != 1 && (l != n || t.Rank() != 1) {
		return nil, badInput("%s %s has shape %v, want a scalar or [%d]", op, name, t.Shape, n)
	}
	return toFloat32(t), nil
}

// convIntegerOp is ONNX ConvInteger: a convolution of 8-bit integers with
// zero points, accumulated in int32.
type convIntegerOp struct{ convOp }

func (k *convIntegerOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("ConvInteger", in, 2); err != nil {
		return nil, err
	}
	s, err := inferConv(&k.win, in[0].Type.Shape, in[1].Type.Shape, k.group)
	if err != nil {
		return nil, err
	}
	return []ir.Type{{DType: tensor.Int32, Shape: s}}, nil
}

// quantConv computes the int32 convolution of x and w with their zero
// points subtracted (padding reads as the zero point).
func quantConv(op string, win *window, group int, x, xzp, w, wzp *tensor.Tensor) (*convShape, []int, []int32, error) {
	if !is8bit(x.DType) || !is8bit(w.DType) {
		return nil, nil, nil, badInput("%s of %v and %v, want int8 or uint8", op, x.DType, w.DType)
	}
	s, outShape, err := convSetup(op, win, group, x, w, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	xz, err := zeroPoints(op, "x_zero_point", xzp, x.DType, 1)
	if err != nil {
		return nil, nil, nil, err
	}
	wz, err := zeroPoints(op, "w_zero_point", wzp, w.DType, s.m)
	if err != nil {
		return nil, nil, nil, err
	}
	xi := int32s(x, xz, 1)
	wi := int32s(w, wz, w.Len()/max(1, s.m))
	acc := make([]int32, tensor.NumElements(outShape))
	convGeneric(s, xi, wi, nil, acc)
	return s, outShape, acc, nil
}

func (k *convIntegerOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("ConvInteger", in, 2); err != nil {
		return nil, err
	}
	_, outShape, acc, err := quantConv("ConvInteger", &k.win, k.group, in[0], input(in, 2), in[1], input(in, 3))
	if err != nil {
		return nil, err
	}
	y, err := makeOut(tensor.Int32, outShape)
	if err != nil {
		return nil, err
	}
	copy(y.Int32s(), acc)
	return []*tensor.Tensor{y}, nil
}

// qlinearConvOp is ONNX QLinearConv: a quantized convolution whose int32
// result is requantized to the output's scale and zero point.
type qlinearConvOp struct{ convOp }

func (k *qlinearConvOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("QLinearConv", in, 4); err != nil {
		return nil, err
	}
	s, err := inferConv(&k.win, in[0].Type.Shape, in[3].Type.Shape, k.group)
	if err != nil {
		return nil, err
	}
	dt := in[0].Type.DType
	if zp := value(in, 7); zp != nil {
		dt = zp.Type.DType
	}
	return []ir.Type{{DType: dt, Shape: s}}, nil
}

func (k *qlinearConvOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "QLinearConv"
	if err := needInputs(op, in, 4); err != nil {
		return nil, err
	}
	x, w := in[0], in[3]
	s, outShape, acc, err := quantConv(op, &k.win, k.group, x, input(in, 2), w, input(in, 5))
	if err != nil {
		return nil, err
	}
	xs, err := scales(op, "x_scale", input(in, 1), 1)
	if err != nil {
		return nil, err
	}
	ws, err := scales(op, "w_scale", input(in, 4), s.m)
	if err != nil {
		return nil, err
	}
	ys, err := scales(op, "y_scale", input(in, 6), 1)
	if err != nil {
		return nil, err
	}
	ydt := x.DType
	if zp := input(in, 7); zp != nil {
		ydt = zp.DType
	}
	if !is8bit(ydt) {
		return nil, badInput("%s y_zero_point is %v, want int8 or uint8", op, ydt)
	}
	yz, err := zeroPoints(op, "y_zero_point", input(in, 7), ydt, 1)
	if err != nil {
		return nil, err
	}
	var bias []int32
	if b := input(in, 8); b != nil {
		if b.DType != tensor.Int32 || b.Rank() != 1 || b.Shape[0] != s.m {
			return nil, badInput("%s bias is %v%v, want int32[%d]", op, b.DType, b.Shape, s.m)
		}
		bias = b.Int32s()
	}
	y, err := makeOut(ydt, outShape)
	if err != nil {
		return nil, err
	}
	outSize := len(acc) / max(1, s.n*s.m)
	lo, hi := quantRange(ydt)
	for i, v := range acc {
		m := (i / outSize) % s.m
		if bias != nil {
			v += bias[m]
		}
		mult := xs[0] * ws[min(m, len(ws)-1)] / ys[0]
		q := math.RoundToEven(float64(float32(v)*mult)) + float64(yz[0])
		storeQuant(y, i, math.Max(lo, math.Min(hi, q)))
	}
	return []*tensor.Tensor{y}, nil
}

// quantRange returns the representable range of an integer type.
func quantRange(dt tensor.DType) (lo, hi float64) {
	switch dt {
	case tensor.Uint8:
		return 0, 255
	case tensor.Int8:
		return -128, 127
	case tensor.Uint16:
		return 0, 65535
	case tensor.Int16:
		return -32768, 32767
	case tensor.Int32:
		return math.MinInt32, math.MaxInt32
	}
	return math.Inf(-1), math.Inf(1)
}

// storeQuant stores an already saturated integral value.
func storeQuant(t *tensor.Tensor, i int, v float64) {
	switch t.DType {
	case tensor.Uint8:
		t.Uint8s()[i] = uint8(v)
	case tensor.Int8:
		t.Int8s()[i] = int8(v)
	default:
		t.SetFloat(i, v)
	}
}

func init() {
	ops.Register(ops.Def{Type: "ConvInteger", Traits: ops.KeepFloat32, Attrs: convAttrs, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		k, err := prepareConv(n, opset)
		if err != nil {
			return nil, err
		}
		return &convIntegerOp{*k.(*convOp)}, nil
	}})
	ops.Register(ops.Def{Type: "QLinearConv", Traits: ops.KeepFloat32, Attrs: convAttrs, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		k, err := prepareConv(n, opset)
		if err != nil {
			return nil, err
		}
		return &qlinearConvOp{*k.(*convOp)}, nil
	}})
}
