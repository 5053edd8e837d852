package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// movable reports whether elements of type dt are moved by the copy
// kernels (1, 2, 4 or 8 bytes; float32 in either precision).
func movable(dt tensor.DType) bool {
	switch dt.Size() {
	case 1, 2, 4, 8:
		return true
	}
	return false
}

func notMovable(dt tensor.DType) error {
	return fmt.Errorf("%w: %v elements (only 1-, 2-, 4- and 8-byte types are moved on the GPU)", ErrUnsupported, dt)
}

func movedOutput(n *ir.Node) error {
	if dt := n.Outputs[0].Type.DType; !movable(dt) {
		return notMovable(dt)
	}
	return nil
}

func movedInput(n *ir.Node) error {
	if dt := dtypeOf(n.Inputs[0]); !movable(dt) {
		return notMovable(dt)
	}
	return nil
}

func gatherTypes(n *ir.Node) error {
	if dt := dtypeOf(n.Inputs[1]); dt != tensor.Int64 {
		return fmt.Errorf("%w: Gather indices of %v (only int64)", ErrUnsupported, dt)
	}
	return movedInput(n)
}

var aliasOps = map[string]bool{"Reshape": true, "Flatten": true, "Squeeze": true, "Unsqueeze": true, "Identity": true, "Dropout": true}

// copyKernel returns the 2-, 4- or 8-byte variant of a data-movement
// kernel for elements of type dt as they are stored.
func (c *compiler) copyKernel(base string, dt tensor.DType) (string, error) {
	switch c.esize(dt) {
	case 1:
		return base + "_b8", nil
	case 2:
		return base + "_b16", nil
	case 4:
		return base + "_b32", nil
	case 8:
		return base + "_b64", nil
	}
	return "", notMovable(dt)
}

func (c *compiler) concat(s *step) error {
	n := s.node
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("copy_rows", n.Outputs[0].Type.DType)
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("Concat", ops.AttrsOf(n).Int("axis", 0), len(yd))
	if err != nil {
		return err
	}
	outer, inner := prod(yd[:axis]), prod(yd[axis+1:])
	ys := int64(yd[axis]) * inner
	var off int64
	for _, v := range n.Inputs {
		if v == nil {
			continue
		}
		d, err := c.dims(v)
		if err != nil {
			return err
		}
		r, err := c.ref(v)
		if err != nil {
			return err
		}
		if len(d) != len(yd) {
			return fmt.Errorf("%w: Concat input %v for output %v", ErrGraph, d, yd)
		}
		cols := int64(d[axis]) * inner
		if cols > 0 {
			s.launches = append(s.launches, elemLaunch(k, outer*cols, pArg(yr), pArg(r), lArg(outer), lArg(cols), lArg(ys), lArg(off), lArg(cols), lArg(0)))
		}
		off += cols
	}
	return nil
}

func (c *compiler) split(s *step) error {
	n := s.node
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("copy_rows", dtypeOf(x))
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("Split", ops.AttrsOf(n).Int("axis", 0), len(xd))
	if err != nil {
		return err
	}
	outer, inner := prod(xd[:axis]), prod(xd[axis+1:])
	xs := int64(xd[axis]) * inner
	var off int64
	for i, o := range n.Outputs {
		if o == nil {
			continue
		}
		yr, yd, err := c.out(n, i)
		if err != nil {
			return err
		}
		cols := int64(yd[axis]) * inner
		if cols > 0 {
			s.launches = append(s.launches, elemLaunch(k, outer*cols, pArg(yr), pArg(xr), lArg(outer), lArg(cols), lArg(cols), lArg(0), lArg(xs), lArg(off)))
		}
		off += cols
	}
	if off != xs {
		return fmt.Errorf("%w: Split outputs cover %d of %d elements per row", ErrGraph, off, xs)
	}
	return nil
}

func (c *compiler) transpose(s *step) error {
	n := s.node
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("permute", dtypeOf(x))
	if err != nil {
		return err
	}
	perm := ops.AttrsOf(n).Ints("perm", nil)
	if perm == nil {
		for i := len(xd) - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != len(xd) {
		return fmt.Errorf("%w: perm %v for rank %d", ErrGraph, perm, len(xd))
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	st := tensor.Strides(xd)
	meta := []int64{int64(len(yd))}
	for _, d := range yd {
		meta = append(meta, int64(d))
	}
	for _, p := range perm {
		if p < 0 || int(p) >= len(xd) {
			return fmt.Errorf("%w: perm %v", ErrGraph, perm)
		}
		meta = append(meta, int64(st[p]))
	}
	total := prod(yd)
	s.launches = []launch{elemLaunch(k, total, pArg(yr), pArg(xr), pArg(c.meta(meta)), lArg(total))}
	return nil
}

func (c *compiler) gather(s *step) error {
	n := s.node
	x, idx := n.Inputs[0], n.Inputs[1] // int64 indices (gatherTypes)
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	id, err := c.dims(idx)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("gather", dtypeOf(x))
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("Gather", ops.AttrsOf(n).Int("axis", 0), len(xd))
	if err != nil {
		return err
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	ir_, err := c.ref(idx)
	if err != nil {
		return err
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	outer, inner, nidx := prod(xd[:axis]), prod(xd[axis+1:]), prod(id)
	s.launches = []launch{elemLaunch(k, outer*nidx*inner, pArg(yr), pArg(xr), pArg(ir_), lArg(outer), lArg(int64(xd[axis])), lArg(nidx), lArg(inner))}
	return nil
}

// movementKernels move elements of 2, 4 or 8 bytes: the reshapes are
// aliases of their input's storage.
var movementKernels = []kernelDef{
	{op: "Reshape", emit: emitAlias},
	{op: "Flatten", emit: emitAlias},
	{op: "Squeeze", emit: emitAlias},
	{op: "Unsqueeze", emit: emitAlias},
	{op: "Identity", emit: emitAlias},
	{op: "Dropout", emit: emitAlias},
	{op: "Concat", check: movedOutput, emit: (*compiler).concat},
	{op: "Split", outputs: -1, check: movedInput, emit: (*compiler).split},
	{op: "Transpose", check: movedInput, emit: (*compiler).transpose},
	{op: "Slice", check: movedInput, emit: (*compiler).slice},
	{op: "Gather", inputs: 2, check: gatherTypes, emit: (*compiler).gather},
}

func emitAlias(c *compiler, s *step) error { return c.alias(s.node) }
