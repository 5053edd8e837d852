package gpuexec

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// resize runs Resize over the last two dims (the others unchanged). In
// nearest mode the source row and column of every output row and column
// are computed here, with the coordinate transforms and rounding rules of
// the ONNX specification, and the kernel gathers through them; linear and
// cubic modes likewise get their taps and weights (resizeTaps). Scales or
// sizes must be constants (they are once the graph's shapes are known).
func (c *compiler) resize(s *step) error {
	n := s.node
	a, err := ops.ParseResizeAttrs(n, c.g.Opset()) // the CPU's rules (ops/image)
	if err != nil {
		return err
	}
	mode, ctm, nearest := a.Mode, a.CoordinateTransformationMode, a.NearestMode
	scalesIn := 2
	if a.Legacy { // Resize-10: scales are input 1, asymmetric, Upsample's nearest rule
		nearest, scalesIn = "simple", 1
	} else if (mode == "nearest" && a.ExcludeOutside) || a.Axes != nil || a.KeepAspectRatioPolicy != "stretch" || ctm == "tf_crop_and_resize" {
		return fmt.Errorf("%w: Resize with axes, keep_aspect_ratio_policy or tf_crop_and_resize (or nearest with exclude_outside)", ErrUnsupported)
	}
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	k := "resize_nearest"
	switch c.esize(dtypeOf(x)) {
	case 2:
		k += "_f16"
	case 4:
		k += "_f32"
	default:
		return fmt.Errorf("%w: Resize of %v", ErrUnsupported, dtypeOf(x))
	}
	if mode != "nearest" {
		if dt := dtypeOf(x); dt != tensor.Float32 && dt != tensor.Float16 {
			return fmt.Errorf("%w: %s Resize of %v", ErrUnsupported, mode, dt)
		}
	}
	var scales []float64
	if v := input(n, scalesIn); v != nil && v.Const != nil && v.Const.Len() > 0 {
		if !v.Const.DType.IsFloat() || v.Const.Len() != len(xd) {
			return fmt.Errorf("%w: Resize scales %v for input %v", ErrGraph, v.Const.Shape, xd)
		}
		for i := range v.Const.Len() {
			scales = append(scales, v.Const.Float(i))
		}
	} else if v != nil && v.Const == nil {
		return fmt.Errorf("%w: Resize scales computed at run time", ErrUnsupported)
	}
	if v := input(n, 3); scales == nil && v != nil && v.Const == nil {
		return fmt.Errorf("%w: Resize sizes computed at run time", ErrUnsupported)
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	r := len(xd)
	if r < 2 || len(yd) != r {
		return fmt.Errorf("%w: Resize of %v to %v", ErrUnsupported, xd, yd)
	}
	for d := 0; d < r-2; d++ {
		if xd[d] != yd[d] {
			return fmt.Errorf("%w: Resize of %v to %v (only the last two dims may change)", ErrUnsupported, xd, yd)
		}
	}
	if mode != "nearest" {
		return c.resizeTaps(s, mode, ctm, float64(a.CubicCoeffA), a.ExcludeOutside, a.Antialias, xr, yr, xd, yd, scales)
	}
	var meta []int64
	for _, d := range []int{r - 2, r - 1} {
		in, out := xd[d], yd[d]
		if in == 0 && out > 0 {
			return fmt.Errorf("%w: Resize of an empty dim to %d", ErrGraph, out)
		}
		scale := float64(out) / float64(max(in, 1))
		if scales != nil {
			scale = scales[d]
		}
		for o := range out {
			src, err := nearestSource(ctm, nearest, float64(o), in, out, scale)
			if err != nil {
				return err
			}
			meta = append(meta, int64(src))
		}
	}
	nc := prod(xd[:r-2])
	total := nc * int64(yd[r-2]) * int64(yd[r-1])
	if total == 0 {
		return nil
	}
	s.launches = []launch{elemLaunch(k, total, pArg(yr), pArg(xr), pArg(c.meta(meta)), lArg(nc),
		iArg(xd[r-2]), iArg(xd[r-1]), iArg(yd[r-2]), iArg(yd[r-1]))}
	return nil
}

// nearestSource is the input index that output index x of an axis reads
// (ONNX Resize, nearest mode; "simple" is Resize-10's rule: floor when
// enlarging, ceil when shrinking), clamped to [0, in).
func nearestSource(ctm, mode string, x float64, in, out int, scale float64) (int, error) {
	fin := float64(in)
	outW := scale * fin
	var xo float64
	switch ctm {
	case "half_pixel":
		xo = (x+0.5)/scale - 0.5
	case "half_pixel_symmetric":
		adj := float64(out) / outW
		xo = fin/2*(1-adj) + (x+0.5)/scale - 0.5
	case "pytorch_half_pixel":
		if out > 1 {
			xo = (x+0.5)/scale - 0.5
		}
	case "align_corners":
		if outW != 1 {
			xo = x * (fin - 1) / (outW - 1)
		}
	case "asymmetric":
		xo = x / scale
	case "tf_half_pixel_for_nn":
		xo = (x + 0.5) / scale
	default:
		return 0, fmt.Errorf("%w: Resize coordinate_transformation_mode %q", ErrUnsupported, ctm)
	}
	f := math.Floor(xo)
	var i float64
	switch {
	case mode == "simple":
		if scale < 1 {
			i = math.Ceil(xo)
		} else {
			i = f
		}
	case xo == f:
		i = xo
	case mode == "round_prefer_floor":
		if xo-f <= 0.5 {
			i = f
		} else {
			i = f + 1
		}
	case mode == "round_prefer_ceil":
		if xo-f < 0.5 {
			i = f
		} else {
			i = f + 1
		}
	case mode == "floor":
		i = f
	case mode == "ceil":
		i = f + 1
	default:
		return 0, fmt.Errorf("%w: Resize nearest_mode %q", ErrUnsupported, mode)
	}
	return int(max(0, min(i, fin-1))), nil
}

// resizedInput: nearest Resize moves 2- and 4-byte elements; linear and
// cubic interpolate float32 and float16.
func resizedInput(n *ir.Node) error {
	if dt := dtypeOf(n.Inputs[0]); dt.Size() != 2 && dt.Size() != 4 {
		return fmt.Errorf("%w: Resize of %v", ErrUnsupported, dt)
	}
	return nil
}

// resizeKernels are Resize (nearest, linear and cubic) and 2-D
// GridSample.
var resizeKernels = []kernelDef{
	{op: "Resize", check: resizedInput, emit: (*compiler).resize},
	{op: "GridSample", inputs: 2, types: float32Only, f32: []int{1}, emit: (*compiler).gridSample},
}

// gridSample runs 2-D GridSample (every mode, padding mode and
// align_corners).
func (c *compiler) gridSample(s *step) error {
	n := s.node
	a, err := ops.ParseGridSampleAttrs(n, c.g.Opset()) // the CPU's rules (ops/image)
	if err != nil {
		return err
	}
	mode := map[string]int{"nearest": 0, "linear": 1, "cubic": 2}[a.Mode]
	pad := map[string]int{"zeros": 0, "border": 1, "reflection": 2}[a.PaddingMode]
	align := b2i(a.AlignCorners)
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	gd, err := c.dims(n.Inputs[1])
	if err != nil {
		return err
	}
	if len(xd) != 4 || len(gd) != 4 || gd[3] != 2 || len(yd) != 4 {
		return fmt.Errorf("%w: GridSample of %v at %v (only 2-D has a CUDA implementation)", ErrUnsupported, xd, gd)
	}
	if xd[2] == 0 || xd[3] == 0 {
		return fmt.Errorf("%w: GridSample of an empty input %v", ErrGraph, xd)
	}
	gr, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	if total := prod(yd); total > 0 {
		s.launches = []launch{elemLaunch(c.fk("grid_sample"), total, pArg(yr), pArg(xr), pArg(gr), iArg(xd[0]), iArg(xd[1]), iArg(xd[2]), iArg(xd[3]),
			iArg(yd[2]), iArg(yd[3]), iArg(mode), iArg(pad), iArg(align))}
	}
	return nil
}

// resizeTaps runs linear or cubic Resize over the last two dims with
// resize_taps: per output row and column, the taps' input indices and
// weights (the CPU's per-axis tables: the ONNX coordinate transforms,
// Keys cubic with cubic_coeff_a, exclude_outside and antialias).
func (c *compiler) resizeTaps(s *step, mode, ctm string, cubicA float64, exclude, antialias bool, xr, yr ref, xd, yd []int, scales []float64) error {
	r := len(xd)
	var idx []int64
	var wts []float32
	var taps [2]int
	for i, d := range []int{r - 2, r - 1} {
		in, out := xd[d], yd[d]
		if in == 0 {
			return fmt.Errorf("%w: %s Resize of an empty dim", ErrUnsupported, mode)
		}
		scale := float64(out) / float64(in)
		if scales != nil {
			scale = scales[d]
		}
		ti, tw, n, err := interpTable(mode, ctm, cubicA, exclude, antialias, in, out, scale)
		if err != nil {
			return err
		}
		taps[i] = n
		idx = append(idx, ti...)
		wts = append(wts, tw...)
	}
	nc := prod(xd[:r-2])
	total := nc * int64(yd[r-2]) * int64(yd[r-1])
	if total == 0 {
		return nil
	}
	wb := make([]byte, 4*len(wts))
	for i, w := range wts {
		binary.LittleEndian.PutUint32(wb[4*i:], math.Float32bits(w))
	}
	wr := ref{buf: bufWeights, off: c.addWeights(wb)}
	s.launches = []launch{elemLaunch(c.fk("resize_taps"), total, pArg(yr), pArg(xr), pArg(c.meta(idx)), pArg(wr), lArg(nc),
		iArg(xd[r-2]), iArg(xd[r-1]), iArg(yd[r-2]), iArg(yd[r-1]), iArg(taps[0]), iArg(taps[1]))}
	return nil
}

// sourceCoord maps output coordinate x of an axis to the input coordinate
// (ONNX Resize's coordinate_transformation_mode).
func sourceCoord(ctm string, x float64, in, out int, scale float64) (float64, error) {
	fin := float64(in)
	outW := scale * fin
	switch ctm {
	case "half_pixel":
		return (x+0.5)/scale - 0.5, nil
	case "half_pixel_symmetric":
		adj := float64(out) / outW
		return fin/2*(1-adj) + (x+0.5)/scale - 0.5, nil
	case "pytorch_half_pixel":
		if out <= 1 {
			return 0, nil
		}
		return (x+0.5)/scale - 0.5, nil
	case "align_corners":
		if outW == 1 {
			return 0, nil
		}
		return x * (fin - 1) / (outW - 1), nil
	case "asymmetric":
		return x / scale, nil
	case "tf_half_pixel_for_nn":
		return (x + 0.5) / scale, nil
	}
	return 0, fmt.Errorf("%w: Resize coordinate_transformation_mode %q", ErrUnsupported, ctm)
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

// interpTable is the interpolation table of one axis: for each output
// coordinate, taps input indices (clamped to [0, in)) and weights.
func interpTable(mode, ctm string, cubicA float64, exclude, antialias bool, in, out int, scale float64) ([]int64, []float32, int, error) {
	linear := mode == "linear"
	aa := antialias && scale < 1
	start := -1
	if linear {
		start = 0
	}
	if aa {
		if linear {
			start = int(math.Floor(-1/scale)) + 1
		} else {
			start = int(math.Floor(-2/scale)) + 1
		}
	}
	taps := 2 - 2*start
	idx := make([]int64, out*taps)
	wts := make([]float32, out*taps)
	sc := math.Min(scale, 1)
	w := make([]float64, taps)
	for o := range out {
		x, err := sourceCoord(ctm, float64(o), in, out, scale)
		if err != nil {
			return nil, nil, 0, err
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			x = 0
		}
		i0 := math.Floor(x)
		ratio := x - i0
		if ratio == 0 {
			i0--
			ratio = 1
		}
		switch {
		case linear && !aa:
			w[0], w[1] = 1-ratio, ratio
		case !linear && !aa:
			a := cubicA
			r1, r2 := ratio+1, 1-ratio
			w[0] = ((a*r1-5*a)*r1+8*a)*r1 - 4*a
			w[1] = ((a+2)*ratio-(a+3))*ratio*ratio + 1
			w[2] = ((a+2)*r2-(a+3))*r2*r2 + 1
			w[3] = ((a*(r2+1)-5*a)*(r2+1)+8*a)*(r2+1) - 4*a
		default:
			sum := 0.0
			for j := range w {
				d := sc * (float64(start+j) - ratio)
				if linear {
					w[j] = math.Max(0, 1-math.Abs(d))
				} else {
					w[j] = cubicWeight(d, cubicA)
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
		if exclude {
			sum := 0.0
			for j := range w {
				if p := base + j; p < 0 || p >= in {
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
		for j := range taps {
			idx[o*taps+j] = int64(min(max(base+j, 0), in-1))
			wts[o*taps+j] = float32(w[j])
		}
	}
	return idx, wts, taps, nil
}
