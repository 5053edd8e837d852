package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// upsampleKernels is the deprecated Upsample (opsets 7 to 9): Resize-10's
// rules (asymmetric coordinates; nearest takes the floor when enlarging)
// with the scales attribute (opset 7) or a constant scales input (opset 9),
// run by Resize's kernels (op_resize.go: resize_nearest and, for linear,
// resize_taps) over the last two dims.
var upsampleKernels = []kernelDef{
	{op: "Upsample", check: upsampleCheck, emit: (*compiler).upsample},
}

func upsampleCheck(n *ir.Node) error {
	if err := resizedInput(n); err != nil {
		return err
	}
	// the mode is read alike at every opset (ops.ParseUpsampleAttrs); the
	// scales attribute of opsets 7 and 8 is checked by the emit
	a, err := ops.ParseUpsampleAttrs(n, 9)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrGraph, err)
	}
	if a.Mode == "linear" {
		if err := float32In(n, 0); err != nil {
			return err
		}
	}
	if v := input(n, 1); v != nil && v.Const == nil {
		return fmt.Errorf("%w: Upsample scales computed at run time", ErrUnsupported)
	}
	return nil
}

// upsampleScales reads the scales: the attribute (a.Scales, before opset
// 9), or the constant input.
func upsampleScales(n *ir.Node, a *ops.UpsampleAttrs) ([]float64, error) {
	if v := input(n, 1); v != nil && a.Scales == nil {
		if v.Const == nil {
			return nil, fmt.Errorf("%w: Upsample scales computed at run time", ErrUnsupported)
		}
		if !v.Const.DType.IsFloat() {
			return nil, fmt.Errorf("%w: Upsample scales of %v", ErrGraph, v.Const.DType)
		}
		s := make([]float64, v.Const.Len())
		for i := range s {
			s[i] = v.Const.Float(i)
		}
		return s, nil
	}
	var s []float64
	for _, f := range a.Scales {
		s = append(s, float64(f))
	}
	if len(s) == 0 {
		return nil, fmt.Errorf("%w: Upsample without scales", ErrGraph)
	}
	return s, nil
}

func (c *compiler) upsample(s *step) error {
	n := s.node
	a, err := ops.ParseUpsampleAttrs(n, c.g.Opset()) // the CPU's rules (ops/image)
	if err != nil {
		return err
	}
	mode := a.Mode
	scales, err := upsampleScales(n, &a)
	if err != nil {
		return err
	}
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	r := len(xd)
	if len(scales) != r || len(yd) != r || r < 2 {
		return fmt.Errorf("%w: Upsample of %v with scales %v to %v", ErrGraph, xd, scales, yd)
	}
	for d := 0; d < r-2; d++ {
		if xd[d] != yd[d] {
			return fmt.Errorf("%w: Upsample of %v to %v (only the last two dims may change)", ErrUnsupported, xd, yd)
		}
	}
	if mode == "linear" {
		return c.resizeTaps(s, mode, "asymmetric", -0.75, false, false, xr, yr, xd, yd, scales)
	}
	k := "resize_nearest"
	switch c.esize(dtypeOf(n.Inputs[0])) {
	case 2:
		k += "_f16"
	case 4:
		k += "_f32"
	default:
		return fmt.Errorf("%w: Upsample of %v", ErrUnsupported, dtypeOf(n.Inputs[0]))
	}
	var meta []int64
	for _, d := range []int{r - 2, r - 1} {
		in, out := xd[d], yd[d]
		if in == 0 && out > 0 {
			return fmt.Errorf("%w: Upsample of an empty dim to %d", ErrGraph, out)
		}
		for o := range out {
			src, err := nearestSource("asymmetric", "simple", float64(o), in, out, scales[d])
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
