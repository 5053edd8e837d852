package gpuexec

import (
	"github.com/kilnai/kiln/ops"
)

func (c *compiler) softmax(s *step) error {
	n := s.node
	xd, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	a, err := ops.ParseSoftmaxAttrs(n, c.g.Opset()) // the CPU's rules (ops/norm)
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("Softmax", a.Axis, len(xd))
	if err != nil {
		return err
	}
	if !a.Legacy && axis != len(xd)-1 {
		return c.softmaxAxis(s, 0)
	}
	rows, cols := prod(xd[:axis]), prod(xd[axis:])
	xr, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	s.launches = []launch{rowsLaunch(c.fk("softmax"), rows, rowThreads(int(cols)), 0, pArg(yr), pArg(xr), lArg(rows), iArg(int(cols)))}
	return nil
}

// softmaxKernels are the Softmax family: Softmax over the last axis (or
// the flattened trailing axes of opsets before 13) by one block per row,
// over any other axis, and LogSoftmax and Hardmax, by softmax_axis.
var softmaxKernels = []kernelDef{
	{op: "Softmax", types: float32Only, emit: (*compiler).softmax},
	{op: "LogSoftmax", check: floatIn0, emit: func(c *compiler, s *step) error { return c.softmaxAxis(s, 1) }},
	{op: "Hardmax", check: floatIn0, emit: func(c *compiler, s *step) error { return c.softmaxAxis(s, 2) }},
}

// softmaxAxis runs softmax_axis in mode 0 (Softmax), 1 (LogSoftmax) or 2
// (Hardmax): over one axis from opset 13, over the flattened axes from
// axis on before.
func (c *compiler) softmaxAxis(s *step, mode int) error {
	n := s.node
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	a, err := ops.ParseSoftmaxAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis(n.OpType, a.Axis, len(xd))
	if err != nil {
		return err
	}
	outer, ln, inner := axisSplit(xd, axis)
	if a.Legacy {
		ln, inner = prod(xd[axis:]), 1
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	sfx, err := c.suffix(dtypeOf(x))
	if err != nil {
		return err
	}
	if outer*inner > 0 && ln > 0 {
		s.launches = []launch{elemLaunch("softmax_axis_"+sfx, outer*inner, pArg(yr), pArg(xr), lArg(outer), lArg(ln), lArg(inner), iArg(mode))}
	}
	return nil
}
