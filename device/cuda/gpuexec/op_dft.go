package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// dftKernels is DFT (opset 17's axis attribute and opset 20's constant axis
// input; forward and inverse, onesided, real and complex signals, a
// constant dft_length) as a direct sum per output bin
// (kernels/op_dft.cu): O(n) a bin, fine for the short transforms of
// audio front ends, not an FFT. STFT likewise (a constant frame_step,
// optional window, onesided or not), each bin of each frame a direct sum.
var dftKernels = []kernelDef{
	{op: "DFT", check: dftCheck, emit: (*compiler).dft},
	{op: "STFT", inputs: 2, check: stftCheck, emit: (*compiler).stft},
}

func stftCheck(n *ir.Node) error {
	if err := typeIn(n, 0, tensor.Float32, tensor.Float64); err != nil {
		return err
	}
	if err := sameTypeIn(n, 2); err != nil {
		return err
	}
	for i, what := range map[int]string{1: "frame_step", 3: "frame_length"} {
		if v := input(n, i); v != nil {
			if _, ok := constInts(v); !ok {
				return fmt.Errorf("%w: STFT %s computed at run time", ErrUnsupported, what)
			}
		}
	}
	return nil
}

func (c *compiler) stft(s *step) error {
	n := s.node
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	if len(xd) != 3 || (xd[2] != 1 && xd[2] != 2) || len(yd) != 4 || yd[0] != xd[0] {
		return fmt.Errorf("%w: STFT of %v to %v", ErrGraph, xd, yd)
	}
	steps, ok := constInts(n.Inputs[1])
	if !ok || len(steps) != 1 || steps[0] < 1 {
		return fmt.Errorf("%w: STFT frame_step %v", ErrUnsupported, steps)
	}
	fl := int64(xd[1])
	var wr *ref
	if w := input(n, 2); w != nil {
		wd, err := c.dims(w)
		if err != nil {
			return err
		}
		if len(wd) != 1 {
			return fmt.Errorf("%w: STFT window of %v", ErrGraph, wd)
		}
		r, err := c.ref(w)
		if err != nil {
			return err
		}
		wr, fl = &r, int64(wd[0])
	}
	if v := input(n, 3); v != nil {
		vals, ok := constInts(v)
		if !ok || len(vals) != 1 || (wr != nil && vals[0] != fl) {
			return fmt.Errorf("%w: STFT frame_length %v for a window of %d", ErrGraph, vals, fl)
		}
		fl = vals[0]
	}
	frames, bins := int64(yd[1]), int64(yd[2])
	if fl < 1 || fl > int64(xd[1]) || (frames > 0 && (frames-1)*steps[0]+fl > int64(xd[1])) || bins > fl {
		return fmt.Errorf("%w: STFT of %v, frame_length %d, frame_step %d to %v", ErrGraph, xd, fl, steps[0], yd)
	}
	sfx, err := c.suffix(dtypeOf(n.Inputs[0]))
	if err != nil {
		return err
	}
	if total := int64(xd[0]) * frames * bins; total > 0 {
		s.launches = []launch{elemLaunch("stft_"+sfx, total, pArg(yr), pArg(xr), optArg(wr), lArg(int64(xd[0])), lArg(int64(xd[1])), iArg(xd[2]),
			lArg(frames), lArg(steps[0]), lArg(fl), lArg(bins))}
	}
	return nil
}

func dftCheck(n *ir.Node) error {
	if err := typeIn(n, 0, tensor.Float32, tensor.Float64); err != nil {
		return err
	}
	for i, what := range []string{1: "dft_length", 2: "axis"} {
		if v := input(n, i); i > 0 && v != nil {
			if _, ok := constInts(v); !ok {
				return fmt.Errorf("%w: DFT %s computed at run time", ErrUnsupported, what)
			}
		}
	}
	return nil
}

func (c *compiler) dft(s *step) error {
	n := s.node
	a, err := ops.ParseDFTAttrs(n, c.g.Opset()) // the CPU's rules (ops/image)
	if err != nil {
		return err
	}
	axis := a.Axis
	if v := input(n, 2); a.AxisInput && v != nil {
		vals, ok := constInts(v)
		if !ok || len(vals) != 1 {
			return fmt.Errorf("%w: DFT axis computed at run time", ErrUnsupported)
		}
		axis = vals[0]
	}
	inverse := b2i(a.Inverse)
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	r := len(xd)
	if r < 2 || (xd[r-1] != 1 && xd[r-1] != 2) || len(yd) != r {
		return fmt.Errorf("%w: DFT of %v", ErrGraph, xd)
	}
	if axis < 0 {
		axis += int64(r)
	}
	if axis < 0 || axis > int64(r)-2 {
		return fmt.Errorf("%w: DFT axis %d for rank %d", ErrGraph, axis, r)
	}
	ax := int(axis)
	length := int64(xd[ax])
	if v := input(n, 1); v != nil {
		vals, ok := constInts(v)
		if !ok || len(vals) != 1 {
			return fmt.Errorf("%w: DFT dft_length computed at run time", ErrUnsupported)
		}
		length = vals[0]
	}
	if length < 1 {
		return fmt.Errorf("%w: DFT of length %d", ErrGraph, length)
	}
	sfx, err := c.suffix(dtypeOf(n.Inputs[0]))
	if err != nil {
		return err
	}
	outer, inner, keep := prod(xd[:ax]), prod(xd[ax+1:r-1]), int64(yd[ax])
	if total := outer * keep * inner; total > 0 {
		s.launches = []launch{elemLaunch("dft_"+sfx, total, pArg(yr), pArg(xr), lArg(outer), lArg(int64(xd[ax])), lArg(inner), iArg(xd[r-1]),
			lArg(length), lArg(keep), iArg(inverse))}
	}
	return nil
}
