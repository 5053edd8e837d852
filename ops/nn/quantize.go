package nn

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// quantAxis describes how a scale (and zero point) tensor applies to x:
// per tensor, per slice along axis, or per block of blockSize elements
// along axis (opset 21).
type quantAxis struct {
	axis, blockSize int
	opset           int64
}

// scaleIndex maps each element of x (shape xs) to its scale element, given
// the shape of the scale tensor. It returns nil for a per-tensor scale.
func (q *quantAxis) scaleIndex(op string, xs, ss []int) ([]int32, error) {
	n := tensor.NumElements(ss)
	if len(ss) == 0 || (n == 1 && q.blockSize == 0) {
		return nil, nil
	}
	if q.opset < 13 {
		return nil, badInput("%s scale has shape %v; per-axis scales need opset 13", op, ss)
	}
	r := len(xs)
	ax := q.axis
	if ax < 0 {
		ax += r
	}
	if ax < 0 || ax >= r {
		return nil, badInput("%s axis %d out of range for rank %d", op, q.axis, r)
	}
	inner := tensor.NumElements(xs[ax+1:])
	d := xs[ax]
	total := tensor.NumElements(xs)
	idx := make([]int32, total)
	if q.blockSize > 0 {
		if len(ss) != r {
			return nil, badInput("%s blocked scale has shape %v for input %v", op, ss, xs)
		}
		for i := range ss {
			want := xs[i]
			if i == ax {
				want = (xs[i] + q.blockSize - 1) / q.blockSize
			}
			if ss[i] != want {
				return nil, badInput("%s blocked scale has shape %v for input %v and block_size %d", op, ss, xs, q.blockSize)
			}
		}
		ds := ss[ax]
		for i := range idx {
			in := i % inner
			a := (i / inner) % d
			outer := i / (d * inner)
			idx[i] = int32((outer*ds+a/q.blockSize)*inner + in)
		}
		return idx, nil
	}
	if len(ss) != 1 || ss[0] != d {
		return nil, badInput("%s scale has shape %v, want [%d] along axis %d of %v", op, ss, d, ax, xs)
	}
	for i := range idx {
		idx[i] = int32((i / inner) % d)
	}
	return idx, nil
}

// quantizeLinearOp is ONNX QuantizeLinear: y = saturate(round(x / scale) +
// zero_point), rounding half to even.
type quantizeLinearOp struct {
	q        quantAxis
	outDType tensor.DType
}

func prepareQuantizeLinear(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseQuantAxisAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	// saturate only matters for float8 outputs
	return &quantizeLinearOp{q: quantAxisOf(&a, opset), outDType: a.OutputDType}, nil
}

func quantAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseQuantAxisAttrs(n, opset) }

// quantAxisOf is the kernels' form of the typed axis and block size.
func quantAxisOf(a *ops.QuantAxisAttrs, opset int64) quantAxis {
	return quantAxis{axis: int(a.Axis), blockSize: int(a.BlockSize), opset: opset}
}

func (k *quantizeLinearOp) outType(zp tensor.DType) tensor.DType {
	switch {
	case zp != tensor.Undefined:
		return zp
	case k.outDType != tensor.Undefined:
		return k.outDType
	}
	return tensor.Uint8
}

func (k *quantizeLinearOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("QuantizeLinear", in, 2); err != nil {
		return nil, err
	}
	zdt := tensor.Undefined
	if zp := value(in, 2); zp != nil {
		zdt = zp.Type.DType
	}
	return []ir.Type{{DType: k.outType(zdt), Shape: in[0].Type.Shape.Clone()}}, nil
}

func (k *quantizeLinearOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "QuantizeLinear"
	if err := needInputs(op, in, 2); err != nil {
		return nil, err
	}
	x, s, zp := in[0], in[1], input(in, 2)
	if !x.DType.IsFloat() && x.DType != tensor.Int32 {
		return nil, badInput("%s of %v", op, x.DType)
	}
	if !s.DType.IsFloat() {
		return nil, badInput("%s scale is %v, want float", op, s.DType)
	}
	zdt := tensor.Undefined
	if zp != nil {
		zdt = zp.DType
		if !sameShape(zp.Shape, s.Shape) && zp.Len() != s.Len() {
			return nil, badInput("%s zero point shape %v differs from scale shape %v", op, zp.Shape, s.Shape)
		}
	}
	odt := k.outType(zdt)
	lo, hi := quantRange(odt)
	if math.IsInf(hi, 1) || odt == tensor.Int32 {
		return nil, badInput("%s to %v is not supported", op, odt)
	}
	idx, err := k.q.scaleIndex(op, x.Shape, s.Shape)
	if err != nil {
		return nil, err
	}
	y, err := makeOut(odt, x.Shape)
	if err != nil {
		return nil, err
	}
	sc := toFloat32(s)
	var zv []float64
	if zp != nil {
		zv = make([]float64, zp.Len())
		for i := range zv {
			zv[i] = zp.Float(i)
		}
	}
	xf := toFloat32(x)
	for i, v := range xf {
		j := 0
		if idx != nil {
			j = int(idx[i])
		}
		q := math.RoundToEven(float64(v / sc[j]))
		if zv != nil {
			q += zv[j]
		}
		if q != q {
			q = 0
		}
		storeQuant(y, i, math.Max(lo, math.Min(hi, q)))
	}
	return []*tensor.Tensor{y}, nil
}

// dequantizeLinearOp is ONNX DequantizeLinear: y = (x - zero_point) * scale.
type dequantizeLinearOp struct{ q quantAxis }

func (k *dequantizeLinearOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("DequantizeLinear", in, 2); err != nil {
		return nil, err
	}
	dt := in[1].Type.DType
	if dt == tensor.Undefined {
		dt = tensor.Float32
	}
	return []ir.Type{{DType: dt, Shape: in[0].Type.Shape.Clone()}}, nil
}

func (k *dequantizeLinearOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "DequantizeLinear"
	if err := needInputs(op, in, 2); err != nil {
		return nil, err
	}
	x, s, zp := in[0], in[1], input(in, 2)
	if !x.DType.IsInt() {
		return nil, badInput("%s of %v", op, x.DType)
	}
	if !s.DType.IsFloat() {
		return nil, badInput("%s scale is %v, want float", op, s.DType)
	}
	if zp != nil {
		if zp.DType != x.DType {
			return nil, badInput("%s zero point is %v, input %v", op, zp.DType, x.DType)
		}
		if zp.Len() != s.Len() {
			return nil, badInput("%s zero point shape %v differs from scale shape %v", op, zp.Shape, s.Shape)
		}
	}
	idx, err := k.q.scaleIndex(op, x.Shape, s.Shape)
	if err != nil {
		return nil, err
	}
	sc := toFloat32(s)
	var zv []int64
	if zp != nil {
		zv = zp.Ints()
	}
	n := x.Len()
	yf := make([]float32, n)
	for i := 0; i < n; i++ {
		j := 0
		if idx != nil {
			j = int(idx[i])
		}
		v := x.Int(i)
		if zv != nil {
			v -= zv[j]
		}
		yf[i] = float32(v) * sc[j]
	}
	return one(fromFloat32(s.DType, x.Shape, yf))
}

// dynamicQuantizeLinearOp is ONNX DynamicQuantizeLinear: uint8
// quantization of a float32 tensor with a scale and zero point computed
// from its range (which always includes 0).
type dynamicQuantizeLinearOp struct{}

func (dynamicQuantizeLinearOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("DynamicQuantizeLinear", in, 1); err != nil {
		return nil, err
	}
	return []ir.Type{
		{DType: tensor.Uint8, Shape: in[0].Type.Shape.Clone()},
		{DType: tensor.Float32, Shape: ir.Scalar()},
		{DType: tensor.Uint8, Shape: ir.Scalar()},
	}, nil
}

func (dynamicQuantizeLinearOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("DynamicQuantizeLinear", in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if !x.DType.IsFloat() {
		return nil, badInput("DynamicQuantizeLinear of %v, want float", x.DType)
	}
	xf := toFloat32(x)
	var lo, hi float32
	for _, v := range xf {
		lo = min(lo, v)
		hi = max(hi, v)
	}
	scale := (hi - lo) / 255
	var zp float64
	if scale != 0 {
		zp = math.RoundToEven(math.Max(0, math.Min(255, float64(0-lo/scale))))
	}
	y, err := makeOut(tensor.Uint8, x.Shape)
	if err != nil {
		return nil, err
	}
	yu := y.Uint8s()
	if scale != 0 {
		for i, v := range xf {
			q := math.RoundToEven(float64(v/scale)) + zp
			yu[i] = uint8(math.Max(0, math.Min(255, q)))
		}
	}
	st := tensor.New(tensor.Float32)
	st.Float32s()[0] = scale
	zt := tensor.New(tensor.Uint8)
	zt.Uint8s()[0] = uint8(zp)
	return []*tensor.Tensor{y, st, zt}, nil
}

func init() {
	ops.Register(ops.Def{Type: "QuantizeLinear", Traits: ops.KeepFloat32, Attrs: quantAttrs, Prepare: prepareQuantizeLinear})
	ops.Register(ops.Def{Type: "DequantizeLinear", Traits: ops.KeepFloat32, Attrs: quantAttrs, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseQuantAxisAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		return &dequantizeLinearOp{q: quantAxisOf(&a, opset)}, nil
	}})
	ops.Register(ops.Def{Type: "DynamicQuantizeLinear", Traits: ops.KeepFloat32, Prepare: func(*ir.Node, int64) (ops.Kernel, error) {
		return dynamicQuantizeLinearOp{}, nil
	}})
}
