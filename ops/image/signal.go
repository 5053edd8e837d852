package image

import (
	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// dftOp is ONNX DFT (opset 17: axis attribute; opset 20: axis input). The
// input holds real ([..., 1]) or complex ([..., 2]) signals; the output is
// complex, [..., 2].
type dftOp struct {
	axis      int64 // opset 17 attribute
	axisInput bool  // opset 20: the axis is input 2
	inverse   bool
	onesided  bool
}

func prepareDFT(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseDFTAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &dftOp{axis: a.Axis, axisInput: a.AxisInput, inverse: a.Inverse, onesided: a.Onesided}, nil
}

func dftAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseDFTAttrs(n, opset) }

func stftAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseSTFTAttrs(n, opset) }

// normAxis checks a DFT axis against rank r (which counts the complex
// axis) and makes it non-negative.
func normDFTAxis(op string, axis int64, r int) (int, error) {
	if axis < 0 {
		axis += int64(r)
	}
	if axis < 0 || axis > int64(r)-2 {
		return 0, badInput("%s: axis %d out of range for rank %d", op, axis, r)
	}
	return int(axis), nil
}

func (k *dftOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("DFT", in, 1); err != nil {
		return nil, err
	}
	x := in[0].Type
	out := ir.Type{DType: x.DType}
	r := x.Shape.Rank()
	if r < 0 {
		return []ir.Type{out}, nil
	}
	if r < 2 {
		return nil, badInput("DFT: input must have rank at least 2, got %v", x.Shape)
	}
	out.Shape = x.Shape.Clone()
	out.Shape[r-1] = ir.D(2)
	lenGiven := value(in, 1) != nil
	n, haveLen := constScalarInt(value(in, 1))
	axis := k.axis
	if k.axisInput && value(in, 2) != nil {
		a, ok := constScalarInt(in[2])
		if !ok {
			// the axis is unknown: only a full-length transform keeps every size
			if lenGiven || k.onesided {
				for i := 0; i < r-1; i++ {
					out.Shape[i] = ir.U()
				}
			}
			return []ir.Type{out}, nil
		}
		axis = a
	}
	ax, err := normDFTAxis("DFT", axis, r)
	if err != nil {
		return nil, err
	}
	d := x.Shape[ax]
	switch {
	case haveLen:
		d = ir.D(n)
	case lenGiven:
		d = ir.U()
	}
	if k.onesided {
		if d.Known() {
			d = ir.D(d.Val/2 + 1)
		} else {
			d = ir.U()
		}
	}
	out.Shape[ax] = d
	return []ir.Type{out}, nil
}

func (k *dftOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "DFT"
	if err := needInputs(op, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	r := x.Rank()
	if r < 2 || (x.Shape[r-1] != 1 && x.Shape[r-1] != 2) || !x.DType.IsFloat() {
		return nil, badInput("%s: input must be float [..., 1 or 2], got %v%v", op, x.DType, x.Shape)
	}
	axis := k.axis
	if k.axisInput {
		if t := input(in, 2); t != nil {
			a, err := scalarInt(op, "axis", t)
			if err != nil {
				return nil, err
			}
			axis = a
		}
	}
	ax, err := normDFTAxis(op, axis, r)
	if err != nil {
		return nil, err
	}
	n := x.Shape[ax]
	if t := input(in, 1); t != nil {
		v, err := scalarInt(op, "dft_length", t)
		if err != nil {
			return nil, err
		}
		if v < 1 || v > maxDim {
			return nil, badInput("%s: dft_length %d must be positive", op, v)
		}
		n = int(v)
	}
	if n < 1 {
		return nil, badInput("%s: empty signal axis in %v", op, x.Shape)
	}
	keep := n
	if k.onesided {
		keep = n/2 + 1
	}
	shape := append([]int{}, x.Shape...)
	shape[ax], shape[r-1] = keep, 2
	out, err := makeOut(x.DType, shape)
	if err != nil {
		return nil, err
	}
	res := make([]float64, out.Len())
	dftLines(toFloat64(x), res, x.Shape, ax, n, keep, k.inverse, nil)
	storeFloat64(out, res)
	return []*tensor.Tensor{out}, nil
}

// dftLines transforms every line along axis ax of src (shape, last axis
// 1 or 2 for real or complex) with a length-n DFT (truncating or
// zero-padding the line), optionally multiplied first by window, and
// stores the first keep outputs of each line into dst (same shape with
// ax of length keep and last axis 2). inverse computes the inverse
// transform (conjugate kernel, divided by n).
func dftLines(src, dst []float64, shape []int, ax, n, keep int, inverse bool, window []float64) {
	r := len(shape)
	c := shape[r-1]
	L := shape[ax]
	outer := tensor.NumElements(shape[:ax])
	inner := tensor.NumElements(shape[ax+1 : r-1])
	lines := outer * inner
	if lines == 0 {
		return
	}
	p := newFFTPlan(n)
	m := min(L, n)
	grain := max(1, 4096/max(1, n))
	parallel.For(lines, grain, func(lo, hi int) {
		buf := make([]complex128, n)
		scratch := make([]complex128, p.scratchLen())
		for line := lo; line < hi; line++ {
			o, i := line/inner, line%inner
			for j := range buf {
				buf[j] = 0
			}
			for j := 0; j < m; j++ {
				e := ((o*L+j)*inner + i) * c
				v := complex(src[e], 0)
				if c == 2 {
					v = complex(src[e], src[e+1])
				}
				if window != nil {
					v *= complex(window[j], 0)
				}
				if inverse {
					v = complex(real(v), -imag(v))
				}
				buf[j] = v
			}
			p.transform(buf, scratch)
			scale := 1.0
			if inverse {
				scale = 1 / float64(n)
			}
			for j := 0; j < keep; j++ {
				v := buf[j]
				if inverse {
					v = complex(real(v), -imag(v))
				}
				e := ((o*keep+j)*inner + i) * 2
				dst[e], dst[e+1] = real(v)*scale, imag(v)*scale
			}
		}
	})
}

// stftOp is ONNX STFT (opset 17): windowed DFTs of frames of a signal
// [batch, length, 1 or 2], giving [batch, frames, bins, 2].
type stftOp struct{ onesided bool }

func prepareSTFT(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseSTFTAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &stftOp{onesided: a.Onesided}, nil
}

func (k *stftOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("STFT", in, 2); err != nil {
		return nil, err
	}
	x := in[0].Type
	out := ir.Type{DType: x.DType}
	if x.Shape.RankKnown() && x.Shape.Rank() != 3 {
		return nil, badInput("STFT: signal must be [batch, length, 1 or 2], got %v", x.Shape)
	}
	batch, length := ir.U(), ir.U()
	if x.Shape.RankKnown() {
		batch, length = x.Shape[0], x.Shape[1]
	}
	fl := ir.U()
	if v, ok := constScalarInt(value(in, 3)); ok {
		fl = ir.D(v)
	} else if w := value(in, 2); w != nil && w.Type.Shape.Rank() == 1 {
		fl = w.Type.Shape[0]
	} else if w == nil && value(in, 3) == nil {
		fl = length
	}
	frames := ir.U()
	if step, ok := constScalarInt(in[1]); ok && step > 0 && fl.Known() && length.Known() {
		if length.Val >= fl.Val {
			frames = ir.D(1 + (length.Val-fl.Val)/step)
		} else {
			frames = ir.D(0)
		}
	}
	bins := fl
	if k.onesided && fl.Known() {
		bins = ir.D(fl.Val/2 + 1)
	} else if k.onesided {
		bins = ir.U()
	}
	out.Shape = ir.Shape{batch, frames, bins, ir.D(2)}
	return []ir.Type{out}, nil
}

func (k *stftOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "STFT"
	if err := needInputs(op, in, 2); err != nil {
		return nil, err
	}
	x := in[0]
	if x.Rank() != 3 || (x.Shape[2] != 1 && x.Shape[2] != 2) || !x.DType.IsFloat() {
		return nil, badInput("%s: signal must be float [batch, length, 1 or 2], got %v%v", op, x.DType, x.Shape)
	}
	step, err := scalarInt(op, "frame_step", in[1])
	if err != nil {
		return nil, err
	}
	if step < 1 {
		return nil, badInput("%s: frame_step %d must be positive", op, step)
	}
	batch, length, c := x.Shape[0], x.Shape[1], x.Shape[2]
	var window []float64
	fl := int64(length)
	if w := input(in, 2); w != nil {
		if w.Rank() != 1 || !isNumeric(w.DType) {
			return nil, badInput("%s: window must be 1-D, got %v%v", op, w.DType, w.Shape)
		}
		window = toFloat64(w)
		fl = int64(len(window))
	}
	if t := input(in, 3); t != nil {
		v, err := scalarInt(op, "frame_length", t)
		if err != nil {
			return nil, err
		}
		if window != nil && v != fl {
			return nil, badInput("%s: frame_length %d differs from the window length %d", op, v, fl)
		}
		fl = v
	}
	if fl < 1 || fl > int64(length) {
		return nil, badInput("%s: frame_length %d must be in [1, %d]", op, fl, length)
	}
	frames := 1 + (int64(length)-fl)/step
	bins := fl
	if k.onesided {
		bins = fl/2 + 1
	}
	out, err := makeOut(x.DType, []int{batch, int(frames), int(bins), 2})
	if err != nil {
		return nil, err
	}
	// gather the frames into [batch*frames, fl, c] and transform along axis 1
	xv := toFloat64(x)
	nf, f := int(frames), int(fl)
	framed := make([]float64, batch*nf*f*c)
	for b := 0; b < batch; b++ {
		for i := 0; i < nf; i++ {
			s := (b*length + i*int(step)) * c
			copy(framed[(b*nf+i)*f*c:(b*nf+i+1)*f*c], xv[s:s+f*c])
		}
	}
	res := make([]float64, out.Len())
	dftLines(framed, res, []int{batch * nf, f, c}, 1, f, int(bins), false, window)
	storeFloat64(out, res)
	return []*tensor.Tensor{out}, nil
}

func init() {
	ops.Register(ops.Def{Type: "DFT", Attrs: dftAttrs, Prepare: prepareDFT})
	ops.Register(ops.Def{Type: "STFT", Attrs: stftAttrs, Prepare: prepareSTFT})
}
