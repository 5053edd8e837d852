package gpuexec

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// resize runs Resize in nearest mode over the last two dims (the others
// unchanged): the source row and column of every output row and column
// are computed here, with the coordinate transforms and rounding rules of
// the ONNX specification, and the kernel gathers through them. Scales or
// sizes must be constants (they are once the graph's shapes are known).
func (c *compiler) resize(s *step) error {
	n := s.node
	a := ops.AttrsOf(n)
	opset := c.g.Opset()
	if m := a.String("mode", "nearest"); m != "nearest" {
		return fmt.Errorf("%w: Resize mode %q (only nearest)", ErrUnsupported, m)
	}
	ctm, nearest := "asymmetric", "simple" // Resize-10
	scalesIn := 1
	if opset >= 11 {
		ctm = a.String("coordinate_transformation_mode", "half_pixel")
		nearest = a.String("nearest_mode", "round_prefer_floor")
		scalesIn = 2
		if a.Int("exclude_outside", 0) != 0 || a.Ints("axes", nil) != nil ||
			a.String("keep_aspect_ratio_policy", "stretch") != "stretch" {
			return fmt.Errorf("%w: Resize with axes, exclude_outside or keep_aspect_ratio_policy", ErrUnsupported)
		}
	}
	if err := a.Err(); err != nil {
		return err
	}
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("resize_nearest", dtypeOf(x))
	if err != nil {
		return err
	}
	k = k[:len(k)-4] // the copy kernels' _bNN suffix
	switch c.esize(dtypeOf(x)) {
	case 2:
		k += "_f16"
	case 4:
		k += "_f32"
	default:
		return fmt.Errorf("%w: Resize of %v", ErrUnsupported, dtypeOf(x))
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

// resizedInput: nearest Resize moves 2- and 4-byte elements.
func resizedInput(n *ir.Node) error {
	if dt := dtypeOf(n.Inputs[0]); dt.Size() != 2 && dt.Size() != 4 {
		return fmt.Errorf("%w: Resize of %v", ErrUnsupported, dt)
	}
	return nil
}

// resizeKernels are Resize and Upsample.
var resizeKernels = []kernelDef{
	{op: "Resize", check: resizedInput, emit: (*compiler).resize},
}
