package image

import (
	"math"
	"sort"
)

// This file is a direct transcription of the ONNX reference implementation
// of Resize (onnx/reference/ops/op_resize.py): nested 1-D interpolation with
// "the n nearest neighbours of an edge-padded array". It is slow and
// obviously close to the specification; the tests compare the kernel with it.

type refResize struct {
	mode        string // nearest, linear, cubic
	ctm         string
	nearestMode string
	a           float64
	exclude     bool
	extrap      float64
	antialias   bool
}

func (r refResize) coeffs(ratio, scale float64) []float64 {
	switch r.mode {
	case "nearest":
		if ratio == math.Trunc(ratio) {
			return []float64{0, 1}
		}
		b := func(v bool) float64 {
			if v {
				return 1
			}
			return 0
		}
		switch r.nearestMode {
		case "round_prefer_floor":
			return []float64{b(ratio <= 0.5), b(ratio > 0.5)}
		case "round_prefer_ceil":
			return []float64{b(ratio < 0.5), b(ratio >= 0.5)}
		case "floor":
			return []float64{1, 0}
		default:
			return []float64{0, 1}
		}
	case "linear":
		if !r.antialias {
			return []float64{1 - ratio, ratio}
		}
		s := math.Min(scale, 1)
		start := int(math.Floor(-1/s) + 1)
		fp := 2 - 2*start
		var c []float64
		sum := 0.0
		for i := start; i < start+fp; i++ {
			v := math.Min(math.Max(1-math.Abs((float64(i)-ratio)*s), 0), 1)
			c = append(c, v)
			sum += v
		}
		for i := range c {
			c[i] /= sum
		}
		return c
	}
	A := r.a
	if !r.antialias {
		return []float64{
			((A*(ratio+1)-5*A)*(ratio+1)+8*A)*(ratio+1) - 4*A,
			((A+2)*ratio-(A+3))*ratio*ratio + 1,
			((A+2)*(1-ratio)-(A+3))*(1-ratio)*(1-ratio) + 1,
			((A*((1-ratio)+1)-5*A)*((1-ratio)+1)+8*A)*((1-ratio)+1) - 4*A,
		}
	}
	s := math.Min(scale, 1)
	f := func(x float64) float64 {
		x = math.Abs(x)
		if x <= 1 {
			return (A+2)*x*x*x - (A+3)*x*x + 1
		}
		if x < 2 {
			return A*x*x*x - 5*A*x*x + 8*A*x - 4*A
		}
		return 0
	}
	is := int(math.Floor(-2/s) + 1)
	ie := 2 - is
	var c []float64
	sum := 0.0
	for i := is; i < ie; i++ {
		v := f(s * (float64(i) - ratio))
		c = append(c, v)
		sum += v
	}
	for i := range c {
		c[i] /= sum
	}
	return c
}

// neighbors returns the n nearest indexes to x in an edge-padded data
// (indexes relative to the unpadded array) and their values.
func refNeighbors(x float64, n int, data []float64) ([]int, []float64) {
	pad := (n + 1) / 2
	padded := make([]float64, len(data)+2*pad)
	for i := range padded {
		j := min(max(i-pad, 0), len(data)-1)
		padded[i] = data[j]
	}
	// The reference adds pad to x before measuring distances; that addition
	// can round x + 1e-16 to an integer and shift the taps against their
	// coefficients by one. Measuring from the unpadded x avoids it.
	idx := make([]int, len(padded))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		da, db := math.Abs(x-float64(idx[a]-pad)), math.Abs(x-float64(idx[b]-pad))
		if da != db {
			return da < db
		}
		return idx[a] < idx[b]
	})
	idx = idx[:n]
	sort.Ints(idx)
	vals := make([]float64, n)
	for i, j := range idx {
		vals[i] = padded[j]
		idx[i] = j - pad
	}
	return idx, vals
}

func (r refResize) interp1D(data []float64, scale float64, outLen int, x float64, roi []float64) float64 {
	in := float64(len(data))
	outW := scale * in
	var xo float64
	switch r.ctm {
	case "align_corners":
		if outW == 1 {
			xo = 0
		} else {
			xo = x * (in - 1) / (outW - 1)
		}
	case "asymmetric":
		xo = x / scale
	case "tf_crop_and_resize":
		if outW == 1 {
			xo = (roi[1] - roi[0]) * (in - 1) / 2
		} else {
			xo = x * (roi[1] - roi[0]) * (in - 1) / (outW - 1)
		}
		xo += roi[0] * (in - 1)
		if xo < 0 || xo > in-1 {
			return r.extrap
		}
	case "pytorch_half_pixel":
		if outLen == 1 {
			xo = 0
		} else {
			xo = (x+0.5)/scale - 0.5
		}
	case "half_pixel":
		xo = (x+0.5)/scale - 0.5
	case "half_pixel_symmetric":
		adj := float64(outLen) / outW
		center := in / 2
		off := center * (1 - adj)
		xo = off + (x+0.5)/scale - 0.5
	case "tf_half_pixel_for_nn":
		xo = (x + 0.5) / scale
	}
	ratio := xo - math.Floor(xo)
	if xo == math.Trunc(xo) {
		ratio = 1
	}
	c := r.coeffs(ratio, scale)
	idx, pts := refNeighbors(xo, len(c), data)
	if r.exclude {
		sum := 0.0
		for i, j := range idx {
			if j < 0 || j >= len(data) {
				c[i] = 0
			}
			sum += c[i]
		}
		for i := range c {
			c[i] /= sum
		}
	}
	s := 0.0
	for i := range c {
		s += c[i] * pts[i]
	}
	return s
}

// interpND interpolates data (shape) at output coordinate x.
func (r refResize) interpND(data []float64, shape []int, scales []float64, out []int, x []int, roi []float64) float64 {
	n := len(shape)
	roiOf := func(d int) []float64 {
		if roi == nil {
			return nil
		}
		return []float64{roi[d], roi[n+d]}
	}
	if n == 1 {
		return r.interp1D(data, scales[0], out[0], float64(x[0]), roiOf(0))
	}
	inner := len(data) / shape[0]
	var sub []float64
	if roi != nil {
		sub = append(append([]float64{}, roi[1:n]...), roi[n+1:]...)
	}
	res := make([]float64, shape[0])
	for i := range res {
		res[i] = r.interpND(data[i*inner:(i+1)*inner], shape[1:], scales[1:], out[1:], x[1:], sub)
	}
	return r.interp1D(res, scales[0], out[0], float64(x[0]), roiOf(0))
}

// run resizes data (shape) to out with the given per-axis scales.
func (r refResize) run(data []float64, shape, out []int, scales, roi []float64) []float64 {
	total := 1
	for _, d := range out {
		total *= d
	}
	res := make([]float64, total)
	x := make([]int, len(out))
	for i := range res {
		rem := i
		for d := len(out) - 1; d >= 0; d-- {
			x[d] = rem % out[d]
			rem /= out[d]
		}
		res[i] = r.interpND(data, shape, scales, out, x, roi)
	}
	return res
}
