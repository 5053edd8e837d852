package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// lpPoolKernels are LpPool over 1-D and 2-D windows (pads, strides,
// dilations, auto_pad) and GlobalLpPool over every spatial dim:
// kernels/op_lppool.cu, (sum of |x|^p)^(1/p) in float32 in both
// precisions, padding adding nothing. Float32 only.
var lpPoolKernels = []kernelDef{
	{op: "LpPool", types: float32Only, check: lpPoolCheck, emit: (*compiler).lpPool},
	{op: "GlobalLpPool", types: float32Only, check: lpPoolCheck, emit: (*compiler).globalLpPool},
}

// lpPoolP reads p (ops.PoolAttrs.P, ops.LpPoolAttrs.P: a float at opset
// 1, an int since, 2 by default, positive).
func lpPoolP(n *ir.Node, opset int64) (float32, error) {
	if n.OpType == "GlobalLpPool" {
		a, err := ops.ParseLpPoolAttrs(n, opset)
		return float32(a.P), err
	}
	a, err := ops.ParsePoolAttrs(n, opset)
	return float32(a.P), err
}

func lpPoolCheck(n *ir.Node) error {
	// p is read alike at every opset (ops.ParsePoolAttrs)
	if _, err := lpPoolP(n, ops.MaxOpset); err != nil {
		return fmt.Errorf("%w: %v", ErrGraph, err)
	}
	return nil
}

func (c *compiler) lpPool(s *step) error {
	n := s.node
	a, err := ops.ParsePoolAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	p := float32(a.P)
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	if len(xd) != 3 && len(xd) != 4 {
		return fmt.Errorf("%w: %d-D LpPool (only 1-D and 2-D have a CUDA implementation)", ErrUnsupported, len(xd)-2)
	}
	rank := len(xd) - 2
	xd, yd = as2D(xd), as2D(yd)
	win, err := readWindow(&a.WindowAttrs, rank, xd[2], xd[3], yd[2], yd[3], 0, 0)
	if err != nil {
		return err
	}
	nc := int64(xd[0]) * int64(xd[1])
	if total := nc * int64(yd[2]) * int64(yd[3]); total > 0 {
		s.launches = []launch{elemLaunch(c.fk("lppool2d"), total, pArg(yr), pArg(xr), lArg(nc),
			iArg(xd[2]), iArg(xd[3]), iArg(yd[2]), iArg(yd[3]), iArg(win.kh), iArg(win.kw), iArg(win.sh), iArg(win.sw),
			iArg(win.ph), iArg(win.pw), iArg(win.dh), iArg(win.dw), fArg(p))}
	}
	return nil
}

func (c *compiler) globalLpPool(s *step) error {
	n := s.node
	p, err := lpPoolP(n, c.g.Opset())
	if err != nil {
		return err
	}
	xd, xr, yr, _, err := c.inOut(n)
	if err != nil {
		return err
	}
	if len(xd) < 3 {
		return fmt.Errorf("%w: GlobalLpPool of %v", ErrGraph, xd)
	}
	rows, cols := int64(xd[0])*int64(xd[1]), prod(xd[2:])
	if rows > 0 {
		s.launches = []launch{rowsLaunch(c.fk("global_lppool"), rows, rowThreads(int(min(cols, 1024))), 0, pArg(yr), pArg(xr),
			lArg(rows), lArg(cols), fArg(p))}
	}
	return nil
}
