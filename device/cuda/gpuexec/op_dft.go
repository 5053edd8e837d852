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
// audio front ends, not an FFT. STFT stays on the CPU.
var dftKernels = []kernelDef{
	{op: "DFT", check: dftCheck, emit: (*compiler).dft},
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
	a := ops.AttrsOf(n)
	axis := int64(-2)
	if c.g.Opset() < 20 {
		axis = a.Int("axis", 1)
	} else if v := input(n, 2); v != nil {
		vals, ok := constInts(v)
		if !ok || len(vals) != 1 {
			return fmt.Errorf("%w: DFT axis computed at run time", ErrUnsupported)
		}
		axis = vals[0]
	}
	inverse := b2i(a.Int("inverse", 0) != 0)
	if err := a.Err(); err != nil {
		return err
	}
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
