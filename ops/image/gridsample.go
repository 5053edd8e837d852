package image

import (
	"math"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// gridSampleOp is ONNX GridSample (opset 16: 4-D input, modes bilinear,
// nearest, bicubic; opset 20: N-D input, modes linear, nearest, cubic).
// Every output point samples the input at the normalized location its grid
// entry gives (x first, as PyTorch's grid_sample).
type gridSampleOp struct {
	mode         interpMode
	padding      int // padZeros, padBorder, padReflection
	alignCorners bool
}

const (
	padZeros = iota
	padBorder
	padReflection
)

func prepareGridSample(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseGridSampleAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &gridSampleOp{mode: interpModes[a.Mode], alignCorners: a.AlignCorners}
	switch a.PaddingMode {
	case "border":
		k.padding = padBorder
	case "reflection":
		k.padding = padReflection
	}
	return k, nil
}

func gridSampleAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseGridSampleAttrs(n, opset) }

func (k *gridSampleOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("GridSample", in, 2); err != nil {
		return nil, err
	}
	x, g := in[0].Type, in[1].Type
	out := ir.Type{DType: x.DType}
	if !g.Shape.RankKnown() {
		return []ir.Type{out}, nil
	}
	if g.Shape.Rank() < 3 {
		return nil, badInput("GridSample: grid must have rank at least 3, got %v", g.Shape)
	}
	if x.Shape.RankKnown() && x.Shape.Rank() != g.Shape.Rank() {
		return nil, badInput("GridSample: X %v and grid %v differ in rank", x.Shape, g.Shape)
	}
	n, c := g.Shape[0], ir.U()
	if x.Shape.RankKnown() {
		n, c = x.Shape[0], x.Shape[1]
		if !n.Known() && g.Shape[0].Known() {
			n = g.Shape[0]
		}
	}
	out.Shape = append(ir.Shape{n, c}, g.Shape[1:g.Shape.Rank()-1]...)
	return []ir.Type{out}, nil
}

// gsTap is one input index along an axis (-1: a zero from padding) and its
// weight.
type gsTap struct {
	i int
	w float64
}

func (k *gridSampleOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "GridSample"
	if err := needInputs(op, in, 2); err != nil {
		return nil, err
	}
	x, g := in[0], in[1]
	r := x.Rank()
	if r < 3 || g.Rank() != r {
		return nil, badInput("%s: X %v and grid %v must have the same rank >= 3", op, x.Shape, g.Shape)
	}
	nd := r - 2
	if g.Shape[0] != x.Shape[0] || g.Shape[r-1] != nd {
		return nil, badInput("%s: grid must be [%d, ..., %d], got %v", op, x.Shape[0], nd, g.Shape)
	}
	if !isNumeric(x.DType) || !g.DType.IsFloat() {
		return nil, badInput("%s: unsupported types %v and %v", op, x.DType, g.DType)
	}
	n, c := x.Shape[0], x.Shape[1]
	dims := x.Shape[2:]
	outShape := append([]int{n, c}, g.Shape[1:r-1]...)
	out, err := makeOut(x.DType, outShape)
	if err != nil {
		return nil, err
	}
	if out.Len() == 0 {
		return []*tensor.Tensor{out}, nil
	}
	for _, d := range dims {
		if d == 0 {
			return nil, badInput("%s: empty input %v", op, x.Shape)
		}
	}
	xv := toFloat64(x)
	gv := toFloat64(g)
	inPlane := tensor.NumElements(dims)
	outPlane := tensor.NumElements(g.Shape[1 : r-1])
	inStrides := tensor.Strides(dims)
	res := make([]float64, out.Len())
	parallel.For(n*outPlane, 256, func(lo, hi int) {
		taps := make([][]gsTap, nd)
		for u := lo; u < hi; u++ {
			b, p := u/outPlane, u%outPlane
			loc := gv[u*nd : (u+1)*nd]
			for d := 0; d < nd; d++ {
				// the grid's last axis lists x (the innermost axis) first
				taps[d] = k.taps(taps[d][:0], loc[nd-1-d], dims[d], nd)
			}
			for ch := 0; ch < c; ch++ {
				data := xv[(b*c+ch)*inPlane : (b*c+ch+1)*inPlane]
				res[(b*c+ch)*outPlane+p] = gsCombine(data, taps, inStrides, 0, 0, 1)
			}
		}
	})
	storeFloat64(out, res)
	return []*tensor.Tensor{out}, nil
}

// gsCombine sums, over the taps of axes d and after, weight products times
// input values; off and w are the offset and weight of the axes before d.
func gsCombine(data []float64, taps [][]gsTap, strides []int, d, off int, w float64) float64 {
	if d == len(taps) {
		return w * data[off]
	}
	s := 0.0
	for _, t := range taps[d] {
		if t.i < 0 || t.w == 0 {
			continue
		}
		s += gsCombine(data, taps, strides, d+1, off+t.i*strides[d], w*t.w)
	}
	return s
}

// taps returns the input indices and weights that sample normalized
// coordinate v along an axis of length size of an nd-dimensional input.
func (k *gridSampleOp) taps(dst []gsTap, v float64, size, nd int) []gsTap {
	// denormalize in float32, as the reference does
	v32, s32 := float32(v), float32(size)
	var x float64
	if k.alignCorners {
		x = float64(float32(float32(v32+1)/2) * (s32 - 1))
	} else {
		x = float64(float32(float32(v32+1)*s32-1) / 2)
	}
	lo, hi := -0.5, float64(size)-0.5
	if k.alignCorners {
		lo, hi = 0, float64(size-1)
	}
	if k.mode == modeNearest {
		// PyTorch rounds half to even in 2-D (nearbyint), away from zero in 3-D
		if nd == 3 {
			x = math.Round(x)
		} else {
			x = math.RoundToEven(x)
		}
	}
	if x < lo || x > hi {
		switch k.padding {
		case padBorder:
			x = math.Min(math.Max(x, 0), float64(size-1))
		case padReflection:
			x = reflect(x, lo, hi)
		}
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return append(dst, gsTap{i: -1})
	}
	switch k.mode {
	case modeNearest:
		return append(dst, gsTap{i: k.pixel(int(x), size, lo, hi), w: 1})
	case modeLinear:
		f := math.Floor(x)
		t := x - f
		i := int(f)
		return append(dst, gsTap{k.pixel(i, size, lo, hi), 1 - t}, gsTap{k.pixel(i+1, size, lo, hi), t})
	}
	f := math.Floor(x)
	t := x - f
	i := int(f)
	const a = -0.75
	for j := -1; j <= 2; j++ {
		dst = append(dst, gsTap{k.pixel(i+j, size, lo, hi), cubicWeight(t-float64(j), a)})
	}
	return dst
}

// pixel maps index i to the index it reads under the padding mode, or -1
// for a zero.
func (k *gridSampleOp) pixel(i, size int, lo, hi float64) int {
	switch k.padding {
	case padZeros:
		if i < 0 || i >= size {
			return -1
		}
		return i
	case padBorder:
		return min(max(i, 0), size-1)
	}
	j := int(reflect(float64(i), lo, hi))
	return min(max(j, 0), size-1)
}

// reflect folds x into [lo, hi] by reflecting at the borders.
func reflect(x, lo, hi float64) float64 {
	rng := hi - lo
	if rng <= 0 {
		return lo
	}
	switch {
	case x < lo:
		dx := lo - x
		n := math.Floor(dx / rng)
		r := dx - n*rng
		if math.Mod(n, 2) == 0 {
			return lo + r
		}
		return hi - r
	case x > hi:
		dx := x - hi
		n := math.Floor(dx / rng)
		r := dx - n*rng
		if math.Mod(n, 2) == 0 {
			return hi - r
		}
		return lo + r
	}
	return x
}

func init() {
	ops.Register(ops.Def{Type: "GridSample", Attrs: gridSampleAttrs, Prepare: prepareGridSample})
}
