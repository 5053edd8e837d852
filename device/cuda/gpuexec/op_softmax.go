package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ops"
)

func (c *compiler) softmax(s *step) error {
	n := s.node
	xd, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	opset := c.g.Opset()
	def := int64(-1)
	if opset < 13 {
		def = 1
	}
	axis, err := ops.NormAxis("Softmax", ops.AttrsOf(n).Int("axis", def), len(xd))
	if err != nil {
		return err
	}
	if opset >= 13 && axis != len(xd)-1 {
		return fmt.Errorf("%w: Softmax over axis %d of %d (only the last)", ErrUnsupported, axis, len(xd))
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

// softmaxKernels are the Softmax family.
var softmaxKernels = []kernelDef{
	{op: "Softmax", f32: []int{0}, emit: (*compiler).softmax},
}
