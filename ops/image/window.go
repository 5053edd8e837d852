package image

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// windowOp is one of ONNX's generalized cosine windows (opset 17):
// w[n] = a0 - a1 cos(2 pi n/N) + a2 cos(4 pi n/N), with N the size
// (periodic) or the size - 1 (symmetric).
type windowOp struct {
	op         string
	a0, a1, a2 float64
	periodic   bool
	dtype      tensor.DType
}

func windowFnAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseWindowFnAttrs(n, opset) }

func registerWindow(name string, a0, a1, a2 float64) {
	ops.Register(ops.Def{Type: name, Attrs: windowFnAttrs, Traits: ops.KeepFloat32, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseWindowFnAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		return &windowOp{op: name, a0: a0, a1: a1, a2: a2, periodic: a.Periodic, dtype: a.DType}, nil
	}})
}

func (k *windowOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues(k.op, in, 1); err != nil {
		return nil, err
	}
	d := ir.U()
	if v, ok := constScalarInt(in[0]); ok && v >= 0 {
		d = ir.D(v)
	}
	return []ir.Type{{DType: k.dtype, Shape: ir.Shape{d}}}, nil
}

func (k *windowOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs(k.op, in, 1); err != nil {
		return nil, err
	}
	size, err := scalarInt(k.op, "size", in[0])
	if err != nil {
		return nil, err
	}
	if size < 0 || size > maxDim {
		return nil, badInput("%s: invalid size %d", k.op, size)
	}
	out, err := makeOut(k.dtype, []int{int(size)})
	if err != nil {
		return nil, err
	}
	n := float64(size)
	if !k.periodic {
		n--
	}
	v := make([]float64, size)
	for i := range v {
		if n <= 0 {
			v[i] = 1 // a one-point symmetric window
			continue
		}
		t := 2 * math.Pi * float64(i) / n
		v[i] = k.a0 - k.a1*math.Cos(t) + k.a2*math.Cos(2*t)
	}
	storeFloat64(out, v)
	return []*tensor.Tensor{out}, nil
}

// melOp is ONNX MelWeightMatrix (opset 17): the [dft_length/2 + 1,
// num_mel_bins] matrix of triangular filters that maps a onesided
// spectrum onto the mel scale, computed as the ONNX reference does.
type melOp struct{ dtype tensor.DType }

func prepareMel(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseWindowFnAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &melOp{dtype: a.DType}, nil
}

func (k *melOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("MelWeightMatrix", in, 5); err != nil {
		return nil, err
	}
	rows, cols := ir.U(), ir.U()
	if v, ok := constScalarInt(in[1]); ok && v >= 0 {
		rows = ir.D(v/2 + 1)
	}
	if v, ok := constScalarInt(in[0]); ok && v >= 0 {
		cols = ir.D(v)
	}
	return []ir.Type{{DType: k.dtype, Shape: ir.Shape{rows, cols}}}, nil
}

func (k *melOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "MelWeightMatrix"
	if err := needInputs(op, in, 5); err != nil {
		return nil, err
	}
	mels, err := scalarInt(op, "num_mel_bins", in[0])
	if err != nil {
		return nil, err
	}
	dftLen, err := scalarInt(op, "dft_length", in[1])
	if err != nil {
		return nil, err
	}
	rate, err := scalarInt(op, "sample_rate", in[2])
	if err != nil {
		return nil, err
	}
	lower, err := scalarFloat(op, "lower_edge_hertz", in[3])
	if err != nil {
		return nil, err
	}
	upper, err := scalarFloat(op, "upper_edge_hertz", in[4])
	if err != nil {
		return nil, err
	}
	if mels < 0 || mels > 1<<20 || dftLen < 1 || dftLen > 1<<30 || rate < 1 {
		return nil, badInput("%s: invalid num_mel_bins %d, dft_length %d or sample_rate %d", op, mels, dftLen, rate)
	}
	rows, cols := int(dftLen/2+1), int(mels)
	out, err := makeOut(k.dtype, []int{rows, cols})
	if err != nil {
		return nil, err
	}
	// The mel edges are computed in float32 and the bins in float64, as in
	// the reference implementation.
	toMel := func(hz float64) float32 {
		return 2595 * float32(math.Log10(float64(1+float32(hz)/700)))
	}
	lowMel, highMel := toMel(lower), toMel(upper)
	step := (highMel - lowMel) / float32(mels+2)
	bins := make([]int, cols+2)
	for i := range bins {
		m := float64(i)*float64(step) + float64(lowMel)
		hz := 700 * (math.Pow(10, m/2595) - 1)
		b := math.Floor(float64(dftLen+1) * hz / float64(rate))
		if !(b >= 0 && b < float64(rows)) {
			return nil, badInput("%s: mel bin edge %g falls outside the %d spectrogram bins", op, b, rows)
		}
		bins[i] = int(b)
	}
	v := make([]float64, rows*cols)
	for i := 0; i < cols; i++ {
		lo, center, hi := bins[i], bins[i+1], bins[i+2]
		if center == lo {
			v[center*cols+i] = 1
		} else {
			for j := lo; j <= center; j++ {
				v[j*cols+i] = float64(j-lo) / float64(center-lo)
			}
		}
		for j := center; j < hi; j++ {
			v[j*cols+i] = float64(hi-j) / float64(hi-center)
		}
	}
	storeFloat64(out, v)
	return []*tensor.Tensor{out}, nil
}

func init() {
	registerWindow("HannWindow", 0.5, 0.5, 0)
	registerWindow("HammingWindow", 25.0/46, 21.0/46, 0)
	registerWindow("BlackmanWindow", 0.42, 0.5, 0.08)
	ops.Register(ops.Def{Type: "MelWeightMatrix", Attrs: windowFnAttrs, Traits: ops.HasFloat16 | ops.KeepFloat32, Prepare: prepareMel})
}
