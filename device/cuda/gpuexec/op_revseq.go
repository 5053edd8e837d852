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
	// The opset is not known here; the attributes are the same in every
	// opset that has the op (the CPU's rules, ops/shape).
	a, err := ops.ParseReverseSequenceAttrs(n, ops.MaxOpset)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrGraph, err)
	}
	return a.BatchAxis, nil
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
