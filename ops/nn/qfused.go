package nn

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// This file holds kiln's quantized fused operators, which the INT8 pass of
// package quant writes in place of kiln::FusedConv and kiln::FusedMatMul:
// the activations are quantized symmetrically per tensor (one scale, zero
// point 0), the weights per output channel, and the product is computed in
// int32: here by plain loops (the references), in the CPU registry
// (device/cpu/kernels: cpu.QConv, cpu.QMatMul) by the int8 kernels of
// device/cpu.
//
//	xq  = clamp(RoundToEven(x / x_scale), -127, 127)      (int8)
//	acc = sum of xq * W                                     (int32, exact)
//	y   = act(float32(acc) * (x_scale*WScale[m]) + B[m] + Z)

// qConvOp is kiln::QConv: inputs X (float32, NCHW), W (int8 [M, C/group,
// k...], constant), WScale (float32 [M]), optional B (float32 [M]) and Z
// (float32, the output's shape); the attributes of Conv plus x_scale and
// the activation ones of kiln::FusedConv. Output float32 of Conv's shape.
//
// This is the op's reference kernel: X quantized element by element, the
// int32 window sums by the generic im2col + GEMM in int32 (plain loops),
// then the epilogue. The CPU registry (device/cpu/kernels, cpu.QConv) runs
// the nodes with the int8 kernels of device/cpu (weights packed once) and
// is tested against this one.
type qConvOp struct {
	convOp
	xScale float32
	ep     epilogue
}

func prepareQConv(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseQConvAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &qConvOp{convOp: convOp{win: windowOf(&a.WindowAttrs), group: int(a.Group)}, ep: epilogueOf(a.EpilogueAttrs), xScale: a.XScale}
	return k, nil
}

// checkDType returns an error unless v is nil, of unknown type or of type
// dt.
func checkDType(op, name string, v *ir.Value, dt tensor.DType) error {
	if v != nil && v.Type.DType != tensor.Undefined && v.Type.DType != dt {
		return badInput("%s %s is %v, want %v", op, name, v.Type.DType, dt)
	}
	return nil
}

// checkVector returns an error unless v is nil or of unknown shape or a
// vector whose length is n (when both are known).
func checkVector(op, name string, v *ir.Value, n ir.Dim) error {
	if v == nil || v.Type.Shape == nil {
		return nil
	}
	s := v.Type.Shape
	if len(s) != 1 || (s[0].Known() && n.Known() && s[0].Val != n.Val) {
		return badInput("%s %s has shape %v, want [%v]", op, name, s, n)
	}
	return nil
}

// inferQ checks the dtypes common to QConv and QMatMul: X, Scale, Bias
// and Z float32, W int8.
func inferQ(op string, in []*ir.Value) error {
	if err := needValues(op, in, 3); err != nil {
		return err
	}
	for i, name := range []string{"X", "W", "scale", "bias", "residual"} {
		dt := tensor.Float32
		if i == 1 {
			dt = tensor.Int8
		}
		if err := checkDType(op, name, value(in, i), dt); err != nil {
			return err
		}
	}
	return nil
}

func (k *qConvOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := inferQ("QConv", in); err != nil {
		return nil, err
	}
	s, err := inferConv(&k.win, in[0].Type.Shape, in[1].Type.Shape, k.group)
	if err != nil {
		return nil, err
	}
	m := ir.U()
	if s != nil {
		m = s[1]
	}
	if err := checkVector("QConv", "WScale", in[2], m); err != nil {
		return nil, err
	}
	if err := checkVector("QConv", "bias", value(in, 3), m); err != nil {
		return nil, err
	}
	if z := value(in, 4); z != nil && z.Type.Shape != nil && s != nil && len(z.Type.Shape) != len(s) {
		return nil, badInput("QConv residual has shape %v, output %v", z.Type.Shape, s)
	}
	return []ir.Type{{DType: tensor.Float32, Shape: s}}, nil
}

// qInputs checks the run-time inputs common to QConv and QMatMul and
// returns the combined scales xScale*WScale[m] of m output channels.
func qInputs(op string, in []*tensor.Tensor, xScale float32, m int, outShape []int) ([]float32, error) {
	x, w, ws, b, z := in[0], in[1], in[2], input(in, 3), input(in, 4)
	for i, t := range []*tensor.Tensor{x, w, ws, b, z} {
		want := tensor.Float32
		if i == 1 {
			want = tensor.Int8
		}
		if t != nil && t.DType != want {
			return nil, badInput("%s input %d is %v, want %v", op, i, t.DType, want)
		}
	}
	if ws.Rank() != 1 || ws.Shape[0] != m {
		return nil, badInput("%s weight scales have shape %v, want [%d]", op, ws.Shape, m)
	}
	if b != nil && (b.Rank() != 1 || b.Shape[0] != m) {
		return nil, badInput("%s bias has shape %v, want [%d]", op, b.Shape, m)
	}
	if z != nil && tensor.ShapeString(z.Shape) != tensor.ShapeString(outShape) {
		return nil, badInput("%s residual has shape %v, output %v", op, z.Shape, outShape)
	}
	sc := make([]float32, m)
	for i, v := range ws.Float32s() {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, badInput("%s weight scale %d is %g", op, i, v)
		}
		sc[i] = xScale * v
	}
	return sc, nil
}

// QConvSetup checks the run-time inputs of QConv and returns the
// geometry, the output shape and the combined scales.
func (k *qConvOp) QConvSetup(in []*tensor.Tensor) (*ConvShape, []int, []float32, error) {
	if err := needInputs("QConv", in, 3); err != nil {
		return nil, nil, nil, err
	}
	x, w := in[0], in[1]
	if x.DType != tensor.Float32 || w.DType != tensor.Int8 {
		return nil, nil, nil, badInput("QConv of %v with weights %v, want float32 and int8", x.DType, w.DType)
	}
	s, outShape, err := convSetup("QConv", &k.win, k.group, x, w, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	sc, err := qInputs("QConv", in, k.xScale, s.m, outShape)
	if err != nil {
		return nil, nil, nil, err
	}
	return s, outShape, sc, nil
}

func (k *qConvOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	s, outShape, sc, err := k.QConvSetup(in)
	if err != nil {
		return nil, err
	}
	x, w, b, z := in[0], in[1], input(in, 3), input(in, 4)
	y, err := ops.NewOutput(env, tensor.Float32, outShape)
	if err != nil {
		return nil, err
	}
	xq := make([]int32, x.Len())
	for i, v := range x.Float32s() {
		xq[i] = int32(quantizeInt8(v, k.xScale))
	}
	wi := int32s(w, nil, 1)
	yv := y.Float32s()
	acc := make([]int32, len(yv))
	convGeneric(s, xq, wi, nil, acc)
	_, outSize, _ := s.sizes()
	for i, a := range acc {
		m := (i / max(1, outSize)) % s.m
		v := float32(a) * sc[m]
		if b != nil {
			v += b.Float32s()[m]
		}
		if z != nil {
			v += z.Float32s()[i]
		}
		yv[i] = v
	}
	k.ep.applySerial(yv)
	return env.One(y), nil
}

// qMatMulOp is kiln::QMatMul: inputs A (float32 [..., K]), B (int8 [K, N],
// constant), BScale (float32 [N]), optional Bias (float32 [N]) and Z
// (float32, the output's shape); attribute a_scale and the activation ones
// of kiln::FusedMatMul. Output float32 [..., N].
//
// This is the op's reference kernel: A quantized element by element, the
// int32 sums in plain loops, then the epilogue. The CPU registry
// (device/cpu/kernels, cpu.QMatMul) runs the nodes with the int8 kernels
// of device/cpu (B packed once) and is tested against this one.
type qMatMulOp struct {
	aScale float32
	ep     epilogue
}

func prepareQMatMul(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseQMatMulAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &qMatMulOp{ep: epilogueOf(a.EpilogueAttrs), aScale: a.AScale}, nil
}

func (k *qMatMulOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := inferQ("QMatMul", in); err != nil {
		return nil, err
	}
	as, bs := in[0].Type.Shape, in[1].Type.Shape
	if bs != nil && len(bs) != 2 {
		return nil, badInput("QMatMul weights have shape %v, want [K, N]", bs)
	}
	if as != nil && len(as) == 0 {
		return nil, badInput("QMatMul of a scalar")
	}
	s, err := inferMatMul(as, bs)
	if err != nil {
		return nil, err
	}
	nd := ir.U()
	if bs != nil {
		nd = bs[1]
	}
	if err := checkVector("QMatMul", "BScale", in[2], nd); err != nil {
		return nil, err
	}
	if err := checkVector("QMatMul", "bias", value(in, 3), nd); err != nil {
		return nil, err
	}
	if z := value(in, 4); z != nil && z.Type.Shape != nil && s != nil && len(z.Type.Shape) != len(s) {
		return nil, badInput("QMatMul residual has shape %v, output %v", z.Type.Shape, s)
	}
	return []ir.Type{{DType: tensor.Float32, Shape: s}}, nil
}

func (k *qMatMulOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("QMatMul", in, 3); err != nil {
		return nil, err
	}
	a, w := in[0], in[1]
	if a.DType != tensor.Float32 || w.DType != tensor.Int8 {
		return nil, badInput("QMatMul of %v with weights %v, want float32 and int8", a.DType, w.DType)
	}
	if w.Rank() != 2 || a.Rank() < 1 || a.Shape[a.Rank()-1] != w.Shape[0] {
		return nil, badInput("QMatMul of %v and weights %v, want [..., K] and [K, N]", a.Shape, w.Shape)
	}
	kd, nd := w.Shape[0], w.Shape[1]
	outShape := append(append([]int{}, a.Shape[:a.Rank()-1]...), nd)
	if _, err := checkedNumel(outShape); err != nil {
		return nil, err
	}
	sc, err := qInputs("QMatMul", in, k.aScale, nd, outShape)
	if err != nil {
		return nil, err
	}
	y, err := ops.NewOutput(env, tensor.Float32, outShape)
	if err != nil {
		return nil, err
	}
	yv := y.Float32s()
	rows := tensor.NumElements(a.Shape[:a.Rank()-1])
	var bias, zv []float32
	if b := input(in, 3); b != nil {
		bias = b.Float32s()
	}
	if z := input(in, 4); z != nil {
		zv = z.Float32s()
	}
	av, wv := a.Float32s(), w.Int8s()
	xq := make([]int32, kd)
	for i := 0; i < rows; i++ {
		for p := range xq {
			xq[p] = int32(quantizeInt8(av[i*kd+p], k.aScale))
		}
		for j := 0; j < nd; j++ {
			var acc int32
			for p, q := range xq {
				acc += q * int32(wv[p*nd+j])
			}
			v := float32(acc) * sc[j]
			if bias != nil {
				v += bias[j]
			}
			if zv != nil {
				v += zv[i*nd+j]
			}
			yv[i*nd+j] = v
		}
	}
	k.ep.apply(yv)
	return []*tensor.Tensor{y}, nil
}

// quantizeInt8 is the activations' quantizer: clamp(RoundToEven(x/scale),
// -127, 127), 0 for NaN.
func quantizeInt8(x, scale float32) int8 {
	f := x / scale
	switch {
	case f >= 127:
		return 127
	case f <= -127:
		return -127
	case f != f:
		return 0
	}
	return int8(math.RoundToEven(float64(f)))
}

func init() {
	ops.Register(ops.Def{Domain: FusedDomain, Type: "QConv", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseQConvAttrs(n, opset) }, Prepare: prepareQConv})
	ops.Register(ops.Def{Domain: FusedDomain, Type: "QMatMul", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseQMatMulAttrs(n, opset) }, Prepare: prepareQMatMul})
}
