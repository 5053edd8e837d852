package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// detKernels is Det of matrices up to 16 x 16 (kernels/op_det.cu), one
// thread a matrix, pivoting as the CPU kernel does; larger matrices stay
// on the CPU.
var detKernels = []kernelDef{
	{op: "Det", check: func(n *ir.Node) error { return typeIn(n, 0, tensor.Float32, tensor.Float64) }, emit: (*compiler).det},
}

// detMax is the largest matrix the kernel takes (DET_MAX).
const detMax = 16

func (c *compiler) det(s *step) error {
	n := s.node
	xd, xr, yr, _, err := c.inOut(n)
	if err != nil {
		return err
	}
	r := len(xd)
	if r < 2 || xd[r-1] != xd[r-2] {
		return fmt.Errorf("%w: Det of %v", ErrGraph, xd)
	}
	m := xd[r-1]
	if m > detMax {
		return fmt.Errorf("%w: Det of %dx%d matrices (at most %dx%d on the GPU)", ErrUnsupported, m, m, detMax, detMax)
	}
	sfx, err := c.suffix(dtypeOf(n.Inputs[0]))
	if err != nil {
		return err
	}
	if batch := prod(xd[:r-2]); batch > 0 {
		s.launches = []launch{elemLaunch("det_"+sfx, batch, pArg(yr), pArg(xr), lArg(batch), iArg(m))}
	}
	return nil
}
