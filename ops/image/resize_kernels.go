package image

import (
	"math"
	"unsafe"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/tensor"
)

// This file holds Resize's arithmetic. Each axis gets a table that says,
// for every output coordinate, which input indices it reads and with which
// weights (the ONNX reference's per-axis coefficients). Nearest mode is a
// gather through per-axis index maps; linear and cubic modes apply the
// tables one axis at a time, which is the same linear map as the
// reference's nested interpolation.

// axisTable is the interpolation of one axis.
type axisTable struct {
	taps int
	idx  []int     // len out*taps; clamped to [0, in); -1 marks extrapolation (nearest)
	w    []float64 // len out*taps (linear and cubic)
	ext  []bool    // per output: use the extrapolation value (tf_crop_and_resize)
}

// sourceCoord maps output coordinate x of an axis to the input coordinate
// (the formulas of the ONNX specification, evaluated as the reference
// implementation does). outside reports a tf_crop_and_resize coordinate
// outside the input, which takes the extrapolation value.
func (k *resizeOp) sourceCoord(x float64, inLen, outLen int, scale, roiStart, roiEnd float64) (xo float64, outside bool) {
	in := float64(inLen)
	outW := scale * in
	switch k.ctm {
	case ctmHalfPixel:
		return (x+0.5)/scale - 0.5, false
	case ctmHalfPixelSymmetric:
		adjustment := float64(outLen) / outW
		center := in / 2
		offset := center * (1 - adjustment)
		return offset + (x+0.5)/scale - 0.5, false
	case ctmPytorchHalfPixel:
		if outLen <= 1 {
			return 0, false
		}
		return (x+0.5)/scale - 0.5, false
	case ctmAlignCorners:
		if outW == 1 {
			return 0, false
		}
		return x * (in - 1) / (outW - 1), false
	case ctmAsymmetric:
		return x / scale, false
	case ctmTFHalfPixelForNN:
		return (x + 0.5) / scale, false
	case ctmTFCropAndResize:
		if outW == 1 {
			xo = (roiEnd - roiStart) * (in - 1) / 2
		} else {
			xo = x * (roiEnd - roiStart) * (in - 1) / (outW - 1)
		}
		xo += roiStart * (in - 1)
		return xo, xo < 0 || xo > in-1
	}
	return x / scale, false
}

// nearestIndex rounds input coordinate x to an index following the
// nearest_mode, clamped to [0, inLen).
func (k *resizeOp) nearestIndex(x float64, inLen int, scale float64) int {
	f := math.Floor(x)
	var i float64
	switch {
	case k.nearest == nearestSimple:
		if scale < 1 {
			i = math.Ceil(x)
		} else {
			i = f
		}
	case x == f:
		i = x
	case k.nearest == nearestRoundPreferFloor:
		if x-f <= 0.5 {
			i = f
		} else {
			i = f + 1
		}
	case k.nearest == nearestRoundPreferCeil:
		if x-f < 0.5 {
			i = f
		} else {
			i = f + 1
		}
	case k.nearest == nearestFloor:
		i = f
	default: // ceil
		i = f + 1
	}
	return clampIndex(i, inLen)
}

// clampIndex converts i to an int clamped to [0, n).
func clampIndex(i float64, n int) int {
	switch {
	case !(i > 0): // also NaN
		return 0
	case i >= float64(n-1):
		return n - 1
	}
	return int(i)
}

// cubicWeight is the Keys cubic convolution kernel with parameter a.
func cubicWeight(x, a float64) float64 {
	x = math.Abs(x)
	switch {
	case x <= 1:
		return ((a+2)*x-(a+3))*x*x + 1
	case x < 2:
		return ((a*x-5*a)*x+8*a)*x - 4*a
	}
	return 0
}

// footprint returns the first tap's offset relative to floor and the number
// of taps of linear or cubic interpolation at the given scale.
func (k *resizeOp) footprint(scale float64) (start, taps int) {
	if k.mode == modeLinear {
		start = 0
		if k.antialias && scale < 1 {
			start = int(math.Floor(-1/scale)) + 1
		}
	} else {
		start = -1
		if k.antialias && scale < 1 {
			start = int(math.Floor(-2/scale)) + 1
		}
	}
	return start, 2 - 2*start
}

// table computes the interpolation table of one axis.
func (k *resizeOp) table(inLen, outLen int, scale, roiStart, roiEnd float64) *axisTable {
	t := &axisTable{taps: 1}
	if k.mode == modeNearest {
		t.idx = make([]int, outLen)
		for o := range t.idx {
			x, outside := k.sourceCoord(float64(o), inLen, outLen, scale, roiStart, roiEnd)
			if outside {
				t.idx[o] = -1
				continue
			}
			t.idx[o] = k.nearestIndex(x, inLen, scale)
		}
		return t
	}
	start, taps := k.footprint(scale)
	t.taps = taps
	t.idx = make([]int, outLen*taps)
	t.w = make([]float64, outLen*taps)
	s := math.Min(scale, 1)
	aa := k.antialias && scale < 1
	for o := 0; o < outLen; o++ {
		x, outside := k.sourceCoord(float64(o), inLen, outLen, scale, roiStart, roiEnd)
		idx, w := t.idx[o*taps:(o+1)*taps], t.w[o*taps:(o+1)*taps]
		if outside {
			if t.ext == nil {
				t.ext = make([]bool, outLen)
			}
			t.ext[o] = true
			continue
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			x = 0
		}
		// the reference picks the taps left of x when x is an integer:
		// ratio lies in (0, 1]
		i0 := math.Floor(x)
		ratio := x - i0
		if ratio == 0 {
			i0--
			ratio = 1
		}
		switch {
		case k.mode == modeLinear && !aa:
			w[0], w[1] = 1-ratio, ratio
		case k.mode == modeCubic && !aa:
			a := k.cubicA
			r1, r2 := ratio+1, 1-ratio
			w[0] = ((a*r1-5*a)*r1+8*a)*r1 - 4*a
			w[1] = ((a+2)*ratio-(a+3))*ratio*ratio + 1
			w[2] = ((a+2)*r2-(a+3))*r2*r2 + 1
			w[3] = ((a*(r2+1)-5*a)*(r2+1)+8*a)*(r2+1) - 4*a
		default:
			sum := 0.0
			for j := range w {
				d := s * (float64(start+j) - ratio)
				if k.mode == modeLinear {
					w[j] = math.Max(0, 1-math.Abs(d))
				} else {
					w[j] = cubicWeight(d, k.cubicA)
				}
				sum += w[j]
			}
			if sum != 0 {
				for j := range w {
					w[j] /= sum
				}
			}
		}
		base := int(i0) + start
		if k.excludeOutside {
			sum := 0.0
			for j := range w {
				if p := base + j; p < 0 || p >= inLen {
					w[j] = 0
				}
				sum += w[j]
			}
			if sum != 0 {
				for j := range w {
					w[j] /= sum
				}
			}
		}
		for j := range idx {
			idx[j] = min(max(base+j, 0), inLen-1)
		}
	}
	return t
}

// identity reports whether the table maps an axis of length n onto itself.
func (t *axisTable) identity(n int) bool {
	if len(t.idx) != n*t.taps || t.ext != nil {
		return false
	}
	for o := 0; o < n; o++ {
		if t.w == nil {
			if t.idx[o] != o {
				return false
			}
			continue
		}
		for j := 0; j < t.taps; j++ {
			w, i := t.w[o*t.taps+j], t.idx[o*t.taps+j]
			if !(w == 0 || (w == 1 && i == o)) {
				return false
			}
		}
	}
	return true
}

// tables computes the tables of every axis.
func (k *resizeOp) tables(p *resizePlan) []*axisTable {
	r := len(p.in)
	ts := make([]*axisTable, r)
	for d := range ts {
		rs, re := 0.0, 1.0
		if p.roi != nil {
			rs, re = p.roi[d], p.roi[r+d]
		}
		ts[d] = k.table(p.in[d], p.out[d], p.scales[d], rs, re)
	}
	return ts
}

// runNearest resizes by gathering: every output element copies one input
// element (or takes the extrapolation value).
func (k *resizeOp) runNearest(x, out *tensor.Tensor, p *resizePlan) error {
	ts := k.tables(p)
	maps := make([][]int, len(ts))
	for d, t := range ts {
		maps[d] = t.idx
	}
	ext := tensor.New(x.DType)
	if x.DType != tensor.String {
		ext.SetFloat(0, k.extrapolation)
	}
	switch {
	case x.DType == tensor.String:
		nearestGather(x.Strings, out.Strings, p.in, p.out, maps, "")
	case x.DType.Size() == 1:
		nearestGather(elems[uint8](x), elems[uint8](out), p.in, p.out, maps, elems[uint8](ext)[0])
	case x.DType.Size() == 2:
		nearestGather(elems[uint16](x), elems[uint16](out), p.in, p.out, maps, elems[uint16](ext)[0])
	case x.DType.Size() == 4:
		nearestGather(elems[uint32](x), elems[uint32](out), p.in, p.out, maps, elems[uint32](ext)[0])
	case x.DType.Size() == 8:
		nearestGather(elems[uint64](x), elems[uint64](out), p.in, p.out, maps, elems[uint64](ext)[0])
	default:
		return badInput("%s: %v input is not supported", k.op, x.DType)
	}
	return nil
}

// gatherGrain is about how many output elements one goroutine produces.
const gatherGrain = 1 << 14

// nearestGather fills dst (shape out) from src (shape in): the element at
// output index (o_0, ..., o_r-1) is the input element (maps[0][o_0], ...,
// maps[r-1][o_r-1]), or ext where a map holds -1. Output rows are
// processed in parallel; a row whose source row is the one of the row
// before it is copied from that row, and the innermost axis has fast paths
// for identity and integer enlargement.
func nearestGather[T any](src, dst []T, in, out []int, maps [][]int, ext T) {
	r := len(in)
	if r >= 2 && blockUpsample(src, dst, in, out, maps) {
		return
	}
	inStrides := tensor.Strides(in)
	last := maps[r-1]
	outW, inW := out[r-1], in[r-1]
	rows := len(dst) / outW
	// classify the innermost map
	factor := 0 // > 0: last[j] == j/factor, outW == factor*inW
	if outW%inW == 0 {
		f := outW / inW
		factor = f
		for j, v := range last {
			if v != j/f {
				factor = 0
				break
			}
		}
	}
	hasExt := false
	for _, v := range last {
		if v < 0 {
			hasExt = true
			factor = 0
			break
		}
	}
	gatherRow := func(d, s []T) {
		switch {
		case factor == 1:
			copy(d, s[:inW])
		case factor == 2:
			dup2(d[:2*inW], s[:inW])
		case factor > 0:
			for i, v := range s[:inW] {
				row := d[i*factor : (i+1)*factor]
				for j := range row {
					row[j] = v
				}
			}
		case hasExt:
			for j, v := range last {
				if v < 0 {
					d[j] = ext
				} else {
					d[j] = s[v]
				}
			}
		default:
			for j, v := range last {
				d[j] = s[v]
			}
		}
	}
	grain := max(1, gatherGrain/outW)
	parallel.For(rows, grain, func(lo, hi int) {
		// odometer over the outer output dims, starting at row lo
		pos := make([]int, r-1)
		rem := lo
		for d := r - 2; d >= 0; d-- {
			pos[d] = rem % out[d]
			rem /= out[d]
		}
		prev := -2
		for row := lo; row < hi; row++ {
			srcOff := 0
			for d := 0; d < r-1; d++ {
				v := maps[d][pos[d]]
				if v < 0 {
					srcOff = -1
					break
				}
				srcOff += v * inStrides[d]
			}
			drow := dst[row*outW : (row+1)*outW]
			switch {
			case srcOff < 0:
				for j := range drow {
					drow[j] = ext
				}
			case srcOff == prev:
				copy(drow, dst[(row-1)*outW:row*outW])
			default:
				gatherRow(drow, src[srcOff:srcOff+inW])
			}
			prev = srcOff
			for d := r - 2; d >= 0; d-- {
				pos[d]++
				if pos[d] < out[d] {
					break
				}
				pos[d] = 0
			}
		}
	})
}

// dup2 writes every element of s twice into d (len(d) == 2*len(s)), with
// one 64-bit store per pair for 4-byte elements.
func dup2[T any](d, s []T) {
	if s32, ok := any(s).([]uint32); ok && len(s32) > 0 {
		d64 := unsafe.Slice((*uint64)(unsafe.Pointer(&any(d).([]uint32)[0])), len(s32))
		for i, v := range s32 {
			d64[i] = uint64(v) | uint64(v)<<32
		}
		return
	}
	d = d[:2*len(s)]
	for i, v := range s {
		d[2*i], d[2*i+1] = v, v
	}
}

// intFactor returns f > 0 when m maps an axis of length n to one of
// length f*n by repeating every index f times, else 0.
func intFactor(m []int, n int) int {
	if n == 0 || len(m)%n != 0 {
		return 0
	}
	f := len(m) / n
	for o, v := range m {
		if v != o/f {
			return 0
		}
	}
	return f
}

// blockUpsample is nearestGather's fast path for enlarging the two
// innermost axes by integer factors (g rows, f columns) while every other
// axis is copied (the 2x upsampling of detection networks): each input row
// becomes g identical output rows. It reports false when the maps do not
// have that form.
func blockUpsample[T any](src, dst []T, in, out []int, maps [][]int) bool {
	r := len(in)
	for d := 0; d < r-2; d++ {
		if intFactor(maps[d], in[d]) != 1 {
			return false
		}
	}
	g, f := intFactor(maps[r-2], in[r-2]), intFactor(maps[r-1], in[r-1])
	if g == 0 || f == 0 {
		return false
	}
	inW, outW := in[r-1], out[r-1]
	rows := len(src) / inW
	if s32, ok := any(src).([]uint32); ok && f == 2 && g == 2 {
		// both output rows in one sweep, vector stores (AVX-512)
		upsample2x2(any(dst).([]uint32), s32, inW)
		return true
	}
	grain := max(1, gatherGrain/(g*outW))
	parallel.For(rows, grain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			first := dst[i*g*outW : (i*g+1)*outW]
			switch {
			case f == 1:
				copy(first, src[i*inW:(i+1)*inW])
			case f == 2:
				dup2(first, src[i*inW:(i+1)*inW])
			default:
				for j, v := range src[i*inW : (i+1)*inW] {
					row := first[j*f : (j+1)*f]
					for k := range row {
						row[k] = v
					}
				}
			}
			for k := 1; k < g; k++ {
				copy(dst[(i*g+k)*outW:(i*g+k+1)*outW], first)
			}
		}
	})
	return true
}

// runInterp resizes with linear or cubic interpolation, one axis at a time.
// Float32, float16 and bfloat16 are computed in float32; float64 and the
// integer types in float64.
func (k *resizeOp) runInterp(x, out *tensor.Tensor, p *resizePlan) error {
	ts := k.tables(p)
	order := passOrder(p, ts)
	switch x.DType {
	case tensor.Float32, tensor.Float16, tensor.BFloat16:
		var dst []float32
		if out.DType == tensor.Float32 {
			dst = out.Float32s()
		} else {
			dst = make([]float32, out.Len())
		}
		src := toFloat32(x)
		if r := len(p.in); len(order) == 2 && min(order[0], order[1]) == r-2 && max(order[0], order[1]) == r-1 &&
			bilinearable(ts[r-2]) && bilinearable(ts[r-1]) {
			bilinear2D(src, dst, p, ts[r-2], ts[r-1])
		} else {
			interpolate(src, dst, p, ts, order, float32(k.extrapolation))
		}
		if out.DType != tensor.Float32 {
			storeFloat32(out, dst)
		}
	default:
		var src []float64
		if x.DType == tensor.Float64 {
			src = x.Float64s()
		} else {
			src = toFloat64(x)
		}
		dst := make([]float64, out.Len())
		interpolate(src, dst, p, ts, order, k.extrapolation)
		storeFloat64(out, dst)
	}
	return nil
}

// passOrder returns the axes that need a pass, the most shrinking first
// so that intermediate results stay small.
func passOrder(p *resizePlan, ts []*axisTable) []int {
	var order []int
	for d, t := range ts {
		if !t.identity(p.in[d]) {
			order = append(order, d)
		}
	}
	ratio := func(d int) float64 { return float64(p.out[d]) / float64(p.in[d]) }
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && ratio(order[j]) < ratio(order[j-1]); j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	return order
}

// interpolate applies the passes of order to src (shape p.in) and writes
// the result (shape p.out) to dst.
func interpolate[F float32 | float64](src, dst []F, p *resizePlan, ts []*axisTable, order []int, ext F) {
	shape := append([]int{}, p.in...)
	cur := src
	for i, d := range order {
		outer := tensor.NumElements(shape[:d])
		inner := tensor.NumElements(shape[d+1:])
		next := dst
		if i < len(order)-1 {
			next = make([]F, outer*p.out[d]*inner)
		}
		resizePass(cur, next, outer, shape[d], p.out[d], inner, ts[d], ext)
		shape[d] = p.out[d]
		cur = next
	}
	if len(order) == 0 {
		copy(dst, src)
	}
}

// passGrain is about how many multiply-adds one goroutine does.
const passGrain = 1 << 15

// resizePass interpolates the middle axis of src, viewed as
// [outer, inLen, inner], into dst, viewed as [outer, outLen, inner].
func resizePass[F float32 | float64](src, dst []F, outer, inLen, outLen, inner int, t *axisTable, ext F) {
	taps := t.taps
	w := make([]F, len(t.w))
	for i, v := range t.w {
		w[i] = F(v)
	}
	if inner == 1 {
		grain := max(1, passGrain/max(1, outLen*taps))
		parallel.For(outer, grain, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				s := src[r*inLen : (r+1)*inLen]
				d := dst[r*outLen : (r+1)*outLen]
				switch {
				case taps == 2 && t.ext == nil:
					for o := range d {
						i := 2 * o
						d[o] = w[i]*s[t.idx[i]] + w[i+1]*s[t.idx[i+1]]
					}
				default:
					for o := range d {
						if t.ext != nil && t.ext[o] {
							d[o] = ext
							continue
						}
						var acc F
						for j := o * taps; j < (o+1)*taps; j++ {
							acc += w[j] * s[t.idx[j]]
						}
						d[o] = acc
					}
				}
			}
		})
		return
	}
	grain := max(1, passGrain/max(1, inner*taps))
	parallel.For(outer*outLen, grain, func(lo, hi int) {
		for u := lo; u < hi; u++ {
			r, o := u/outLen, u%outLen
			d := dst[u*inner : (u+1)*inner]
			if t.ext != nil && t.ext[o] {
				for i := range d {
					d[i] = ext
				}
				continue
			}
			base := r * inLen * inner
			idx, wt := t.idx[o*taps:(o+1)*taps], w[o*taps:(o+1)*taps]
			if taps == 2 {
				a := src[base+idx[0]*inner : base+(idx[0]+1)*inner]
				b := src[base+idx[1]*inner : base+(idx[1]+1)*inner]
				w0, w1 := wt[0], wt[1]
				switch {
				case w1 == 0:
					for i := range d {
						d[i] = w0 * a[i]
					}
				case w0 == 0:
					for i := range d {
						d[i] = w1 * b[i]
					}
				default:
					for i := range d {
						d[i] = w0*a[i] + w1*b[i]
					}
				}
				continue
			}
			for i := range d {
				d[i] = 0
			}
			for j, wj := range wt {
				if wj == 0 {
					continue
				}
				s := src[base+idx[j]*inner : base+(idx[j]+1)*inner]
				for i := range d {
					d[i] += wj * s[i]
				}
			}
		}
	})
}
