package nn

import (
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// convTransposeOp is ONNX ConvTranspose: the gradient of Conv with respect
// to its input. X is [N,C,D1..Dr], W [C,M/group,k1..kr], the optional bias
// [M]; Y is [N,M,O1..Or].
type convTransposeOp struct {
	win         window
	group       int
	outPadding  []int
	outputShape []int
}

func prepareConvTranspose(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseConvTransposeAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &convTransposeOp{win: windowOf(&a.WindowAttrs), group: int(a.Group)}
	if a.OutputPadding != nil {
		k.outPadding = ints64(a.OutputPadding)
	}
	if a.OutputShape != nil {
		k.outputShape = ints64(a.OutputShape)
	}
	return k, nil
}

func convTransposeAttrs(n *ir.Node, opset int64) (any, error) {
	return ops.ParseConvTransposeAttrs(n, opset)
}

// tgeom is the geometry of a transposed convolution: per spatial dim the
// input size, output size, kernel, stride, dilation and the begin pad (the
// output coordinate of full-result coordinate f is f - padB; it may be
// negative when output_shape asks for more than the full result).
type tgeom struct {
	in, out, kernel, stride, dil, padB []int
}

// outDim computes one spatial dim's output size and begin pad.
func (k *convTransposeOp) outDim(i, r, in, kd int) (out, pb int, err error) {
	s, d := at(k.win.strides, i, 1), at(k.win.dilations, i, 1)
	op := at(k.outPadding, i, 0)
	if op >= s && op >= d {
		return 0, 0, badInput("ConvTranspose output_padding %v must be smaller than strides or dilations", k.outPadding)
	}
	full := s*(in-1) + op + (kd-1)*d + 1
	split := func(total int) int {
		total = max(total, 0)
		if k.win.autoPad == padSameUpper {
			return total / 2
		}
		return total - total/2
	}
	switch {
	case k.outputShape != nil:
		os := k.outputShape
		if len(os) == r+2 {
			os = os[2:]
		}
		if len(os) != r {
			return 0, 0, badInput("ConvTranspose output_shape %v for %d spatial dims", k.outputShape, r)
		}
		out = os[i]
		pb = split(full - out)
	case k.win.autoPad == padSameUpper || k.win.autoPad == padSameLower:
		out = in * s
		pb = split(full - out)
	case k.win.autoPad == padValid:
		out = full
	default:
		pb = at(k.win.pads, i, 0)
		pe := 0
		if k.win.pads != nil {
			pe = k.win.pads[i+r]
		}
		out = full - pb - pe
	}
	if out < 0 {
		return 0, 0, badInput("ConvTranspose output size %d is negative", out)
	}
	return out, pb, nil
}

func (k *convTransposeOp) check(r int) error {
	if err := k.win.check(r); err != nil {
		return err
	}
	if k.outPadding != nil && len(k.outPadding) != r {
		return badInput("ConvTranspose output_padding %v for %d spatial dims", k.outPadding, r)
	}
	return nil
}

func (k *convTransposeOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("ConvTranspose", in, 2); err != nil {
		return nil, err
	}
	xs, ws := in[0].Type.Shape, in[1].Type.Shape
	rank := xs.Rank()
	if rank < 0 {
		rank = ws.Rank()
	}
	if rank < 0 {
		return []ir.Type{{DType: in[0].Type.DType}}, nil
	}
	if rank < 3 || (ws != nil && len(ws) != rank) {
		return nil, badInput("ConvTranspose of shapes %v and %v", xs, ws)
	}
	r := rank - 2
	if err := k.check(r); err != nil {
		return nil, err
	}
	out := make(ir.Shape, rank)
	for i := range out {
		out[i] = ir.U()
	}
	if xs != nil {
		out[0] = xs[0]
	}
	if ws != nil {
		if xs != nil && xs[1].Known() && ws[0].Known() && xs[1].Val != ws[0].Val {
			return nil, badInput("ConvTranspose input has %d channels, weights %v", xs[1].Val, ws)
		}
		out[1] = ir.MulDims(ws[1], ir.D(int64(k.group)))
	}
	for i := 0; i < r; i++ {
		kd := -1
		if k.win.kernel != nil {
			kd = k.win.kernel[i]
		} else if ws != nil && ws[i+2].Known() {
			kd = int(ws[i+2].Val)
		}
		if xs == nil || !xs[i+2].Known() || kd < 0 {
			if k.outputShape != nil && (len(k.outputShape) == r || len(k.outputShape) == r+2) {
				out[i+2] = ir.D(int64(k.outputShape[len(k.outputShape)-r+i]))
			}
			continue
		}
		o, _, err := k.outDim(i, r, int(xs[i+2].Val), kd)
		if err != nil {
			return nil, err
		}
		out[i+2] = ir.D(int64(o))
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: out}}, nil
}

func (k *convTransposeOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("ConvTranspose", in, 2); err != nil {
		return nil, err
	}
	x, w, b := in[0], in[1], input(in, 2)
	if w.DType != x.DType || (b != nil && b.DType != x.DType) {
		return nil, badInput("ConvTranspose of %v with weights %v", x.DType, w.DType)
	}
	if x.Rank() < 3 || w.Rank() != x.Rank() {
		return nil, badInput("ConvTranspose of shapes %v and %v", x.Shape, w.Shape)
	}
	r := x.Rank() - 2
	if err := k.check(r); err != nil {
		return nil, err
	}
	n, c := x.Shape[0], x.Shape[1]
	if w.Shape[0] != c || c%k.group != 0 {
		return nil, badInput("ConvTranspose input %v, weights %v, group %d", x.Shape, w.Shape, k.group)
	}
	mg := w.Shape[1]
	m := mg * k.group
	g := &tgeom{in: x.Shape[2:], kernel: w.Shape[2:], out: make([]int, r), stride: make([]int, r),
		dil: make([]int, r), padB: make([]int, r)}
	if k.win.kernel != nil {
		for i, kd := range k.win.kernel {
			if g.kernel[i] != kd {
				return nil, badInput("ConvTranspose kernel_shape %v does not match weights %v", k.win.kernel, w.Shape)
			}
		}
	}
	for i := 0; i < r; i++ {
		g.stride[i], g.dil[i] = at(k.win.strides, i, 1), at(k.win.dilations, i, 1)
		o, pb, err := k.outDim(i, r, g.in[i], g.kernel[i])
		if err != nil {
			return nil, err
		}
		g.out[i], g.padB[i] = o, pb
	}
	if b != nil && (b.Rank() != 1 || b.Shape[0] != m) {
		return nil, badInput("ConvTranspose bias has shape %v, want [%d]", b.Shape, m)
	}
	outShape := append([]int{n, m}, g.out...)
	y, err := makeOut(x.DType, outShape)
	if err != nil {
		return nil, err
	}
	switch x.DType {
	case tensor.Float32:
		var bias []float32
		if b != nil {
			bias = b.Float32s()
		}
		convTranspose(g, n, c, m, k.group, x.Float32s(), w.Float32s(), bias, y.Float32s())
	case tensor.Float64:
		var bias []float64
		if b != nil {
			bias = b.Float64s()
		}
		convTranspose(g, n, c, m, k.group, x.Float64s(), w.Float64s(), bias, y.Float64s())
	case tensor.Float16, tensor.BFloat16:
		var bias []float32
		if b != nil {
			bias = toFloat32(b)
		}
		yf := make([]float32, y.Len())
		convTranspose(g, n, c, m, k.group, toFloat32(x), toFloat32(w), bias, yf)
		if y, err = fromFloat32(x.DType, outShape, yf); err != nil {
			return nil, err
		}
	default:
		return nil, badInput("ConvTranspose of %v, want a float type", x.DType)
	}
	return []*tensor.Tensor{y}, nil
}

// convTranspose computes y = convtranspose(x, w) + bias by GEMM (the
// columns W^T X, tile by tile of input runs) and col2im.
func convTranspose[T ops.Number](g *tgeom, n, c, m, group int, x, w, bias, y []T) {
	r := len(g.in)
	inSize, outSize, kSize := 1, 1, 1
	for i := 0; i < r; i++ {
		inSize *= g.in[i]
		outSize *= g.out[i]
		kSize *= g.kernel[i]
	}
	cg, mg := c/group, m/group
	rows := mg * kSize
	inW := g.in[r-1]
	runs := inSize / max(1, inW)
	perTile := min(runs, max(1, convTile/max(1, rows*inW)))
	col, buf := scratch[T](rows * perTile * inW)
	defer putScratch(buf)
	for b := 0; b < n; b++ {
		for gr := 0; gr < group; gr++ {
			xs := x[(b*c+gr*cg)*inSize : (b*c+(gr+1)*cg)*inSize]
			ws := w[gr*cg*rows : (gr+1)*cg*rows]
			yo := y[(b*m+gr*mg)*outSize : (b*m+(gr+1)*mg)*outSize]
			if bias != nil {
				for mo := 0; mo < mg; mo++ {
					v := bias[gr*mg+mo]
					plane := yo[mo*outSize : (mo+1)*outSize]
					for i := range plane {
						plane[i] = v
					}
				}
			}
			for r0 := 0; r0 < runs; r0 += perTile {
				r1 := min(runs, r0+perTile)
				cols := (r1 - r0) * inW
				gemm(true, false, rows, cols, cg, 1, ws, rows, xs[r0*inW:], inSize, 0, col, cols)
				cpu.ParallelFor(mg, 1, func(lo, hi int) {
					for mo := lo; mo < hi; mo++ {
						col2im(g, col[mo*kSize*cols:(mo+1)*kSize*cols], kSize, r0, r1, yo[mo*outSize:(mo+1)*outSize])
					}
				})
			}
		}
	}
}

// col2im adds the columns of one output channel (rows: kernel offsets,
// columns: the input positions of runs [r0, r1)) into its output plane.
func col2im[T ops.Number](g *tgeom, col []T, kSize, r0, r1 int, plane []T) {
	r := len(g.in)
	kc := make([]int, r)
	ic := make([]int, r)
	last := r - 1
	inW, outW := g.in[last], g.out[last]
	cols := (r1 - r0) * inW
	for kk := 0; kk < kSize; kk++ {
		rem := kk
		for i := r - 1; i >= 0; i-- {
			kc[i] = rem % g.kernel[i]
			rem /= g.kernel[i]
		}
		src := col[kk*cols : (kk+1)*cols]
		// input columns j whose output column j*s + o0 is inside the plane
		s, o0 := g.stride[last], kc[last]*g.dil[last]-g.padB[last]
		jlo, jhi := 0, 0
		if o0 < 0 {
			jlo = (-o0 + s - 1) / s
		}
		if outW-1-o0 >= 0 {
			jhi = min(inW, (outW-1-o0)/s+1)
		}
		rem = r0
		for i := last - 1; i >= 0; i-- {
			ic[i] = rem % g.in[i]
			rem /= g.in[i]
		}
		for base := 0; base < cols; base += inW {
			off, ok := 0, true
			for i := 0; i < last; i++ {
				o := ic[i]*g.stride[i] + kc[i]*g.dil[i] - g.padB[i]
				if o < 0 || o >= g.out[i] {
					ok = false
					break
				}
				off = off*g.out[i] + o
			}
			if ok && jlo < jhi {
				row := plane[off*outW : (off+1)*outW]
				in := src[base+jlo : base+jhi]
				if s == 1 {
					dst := row[jlo+o0 : jhi+o0]
					for j, v := range in {
						dst[j] += v
					}
				} else {
					o := jlo*s + o0
					for _, v := range in {
						row[o] += v
						o += s
					}
				}
			}
			for i := last - 1; i >= 0; i-- {
				ic[i]++
				if ic[i] < g.in[i] {
					break
				}
				ic[i] = 0
			}
		}
	}
}

func init() {
	ops.Register(ops.Def{Type: "ConvTranspose", Attrs: convTransposeAttrs, Prepare: prepareConvTranspose})
}
