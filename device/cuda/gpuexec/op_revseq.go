package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// revSeqKernels is ReverseSequence (kernels/op_revseq.cu): elements of any
// movable type, batch and time axes 0 and 1 in either order, int32 or
// int64 sequence lengths read on the device.
var revSeqKernels = []kernelDef{
	{op: "ReverseSequence", inputs: 2, check: revSeqCheck, emit: (*compiler).reverseSequence},
}

func revSeqCheck(n *ir.Node) error {
	if err := movedInput(n); err != nil {
		return err
	}
	if err := typeIn(n, 1, tensor.Int32, tensor.Int64); err != nil {
		return err
	}
	_, err := revSeqAxes(n)
	return err
}

func revSeqAxes(n *ir.Node) (int, error) {
	a := ops.AttrsOf(n)
	b, t := a.Int("batch_axis", 1), a.Int("time_axis", 0)
	if (b != 0 && b != 1) || (t != 0 && t != 1) || b == t {
		return 0, fmt.Errorf("%w: ReverseSequence batch_axis %d and time_axis %d", ErrGraph, b, t)
	}
	return int(b), a.Err()
}

func (c *compiler) reverseSequence(s *step) error {
	n := s.node
	ba, err := revSeqAxes(n)
	if err != nil {
		return err
	}
	xd, xr, yr, _, err := c.inOut(n)
	if err != nil {
		return err
	}
	if len(xd) < 2 {
		return fmt.Errorf("%w: ReverseSequence of %v", ErrGraph, xd)
	}
	lr, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	k, err := c.byteSuffix(dtypeOf(n.Inputs[0]))
	if err != nil {
		return err
	}
	lens64 := 0
	if dtypeOf(n.Inputs[1]) == tensor.Int64 {
		lens64 = 1
	}
	if total := prod(xd); total > 0 {
		s.launches = []launch{elemLaunch("revseq_"+k, total, pArg(yr), pArg(xr), pArg(lr), iArg(lens64), lArg(int64(xd[0])), lArg(int64(xd[1])),
			lArg(prod(xd[2:])), iArg(ba))}
	}
	return nil
}
