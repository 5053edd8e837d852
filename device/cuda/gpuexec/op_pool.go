package gpuexec

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/ops"
)

func (c *compiler) pool(s *step) error {
	n := s.node
	xd, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	if len(xd) == 5 {
		return c.pool3d(s) // op_conv3d.go
	}
	if len(xd) != 4 && len(xd) != 3 {
		return fmt.Errorf("%w: %d-D pooling (only 1-D, 2-D and 3-D have a CUDA implementation)", ErrUnsupported, len(xd)-2)
	}
	rank := len(xd) - 2
	xd = as2D(xd)
	xr, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	yd = as2D(yd)
	pa, err := ops.ParsePoolAttrs(n, c.g.Opset()) // the CPU's rules (ops/nn)
	if err != nil {
		return err
	}
	win, err := readWindow(&pa.WindowAttrs, rank, xd[2], xd[3], yd[2], yd[3], 0, 0)
	if err != nil {
		return err
	}
	mode := poolMode(n.OpType, &pa)
	if c.readsNHWC(n, 0) { // x and y NHWC (layout.go)
		total := int64(xd[0]) * int64(yd[2]) * int64(yd[3]) * int64(xd[1])
		k := "pool2d_nhwc_f16"
		if xd[1]%8 == 0 { // 8 channels a thread, 16-byte accesses
			k, total = "pool2d_nhwc8_f16", total/8
		}
		s.launches = []launch{elemLaunch(k, total, pArg(yr), pArg(xr), iArg(xd[0]), iArg(xd[1]),
			iArg(xd[2]), iArg(xd[3]), iArg(yd[2]), iArg(yd[3]), iArg(win.kh), iArg(win.kw), iArg(win.sh), iArg(win.sw),
			iArg(win.ph), iArg(win.pw), iArg(win.dh), iArg(win.dw), iArg(win.peh), iArg(win.pew), iArg(mode))}
		return nil
	}
	nc := int64(xd[0]) * int64(xd[1])
	s.launches = []launch{elemLaunch(c.fk("pool2d"), nc*int64(yd[2])*int64(yd[3]), pArg(yr), pArg(xr), lArg(nc),
		iArg(xd[2]), iArg(xd[3]), iArg(yd[2]), iArg(yd[3]), iArg(win.kh), iArg(win.kw), iArg(win.sh), iArg(win.sw),
		iArg(win.ph), iArg(win.pw), iArg(win.dh), iArg(win.dw), iArg(win.peh), iArg(win.pew), iArg(mode))}
	return nil
}

// poolMode is the pool kernels' mode: 0 max, 1 average over the input
// elements, 2 average counting the pads.
func poolMode(op string, a *ops.PoolAttrs) int {
	switch {
	case op != "AveragePool":
		return 0
	case a.CountIncludePad:
		return 2
	}
	return 1
}

func (c *compiler) globalPool(s *step) error {
	n := s.node
	xd, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	if len(xd) < 3 {
		return fmt.Errorf("%w: %s of %v", ErrGraph, n.OpType, xd)
	}
	xr, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	rows, cols := int64(xd[0])*int64(xd[1]), prod(xd[2:])
	if cols > math.MaxInt32 {
		return fmt.Errorf("%w: %s over %d elements", ErrUnsupported, n.OpType, cols)
	}
	mode := 0
	if n.OpType == "GlobalMaxPool" {
		mode = 1
	}
	if c.readsNHWC(n, 0) { // x NHWC (layout.go); y is N x C x 1 x 1 either way
		s.launches = []launch{elemLaunch("global_pool_nhwc_f16", rows, pArg(yr), pArg(xr), iArg(xd[0]), iArg(int(cols)), iArg(xd[1]), iArg(mode))}
		return nil
	}
	s.launches = []launch{rowsLaunch(c.fk("reduce_rows"), rows, rowThreads(int(cols)), 0, pArg(yr), pArg(xr), lArg(rows), iArg(int(cols)), iArg(mode))}
	return nil
}

// poolKernels are the pooling ops.
var poolKernels = []kernelDef{
	{op: "MaxPool", types: float32Only, emit: (*compiler).pool},
	{op: "AveragePool", types: float32Only, emit: (*compiler).pool},
	{op: "GlobalAveragePool", types: float32Only, emit: (*compiler).globalPool},
	{op: "GlobalMaxPool", types: float32Only, emit: (*compiler).globalPool},
}
