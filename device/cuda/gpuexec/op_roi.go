package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// roiKernels are the region-of-interest poolings: RoiAlign (avg and max,
// both coordinate transformation modes, any sampling_ratio) and
// MaxRoiPool; kernels/op_roi.cu, one thread per output element. Float32
// (in half precision the boxes are stored in binary16 too, so
// coordinates beyond 2048 lose their fractions).
var roiKernels = []kernelDef{
	{op: "RoiAlign", inputs: 3, types: float32Only, f32: []int{1}, check: roiAlignCheck, emit: (*compiler).roiAlign},
	{op: "MaxRoiPool", inputs: 2, types: float32Only, f32: []int{1}, check: maxRoiPoolCheck, emit: (*compiler).maxRoiPool},
}

// roiAlignAttrs are RoiAlign's attributes.
type roiAlignAttrs struct {
	max           bool
	oh, ow, ratio int
	scale, offset float32
}

// parseRoiAlign reads RoiAlign's typed attributes (ops.RoiAlignAttrs, the
// CPU's rules) in the kernel's form.
func parseRoiAlign(n *ir.Node, opset int64) (roiAlignAttrs, error) {
	a, err := ops.ParseRoiAlignAttrs(n, opset)
	if err != nil {
		return roiAlignAttrs{}, fmt.Errorf("%w: %v", ErrGraph, err)
	}
	r := roiAlignAttrs{max: a.Max, oh: int(a.OutputHeight), ow: int(a.OutputWidth), ratio: int(a.SamplingRatio), scale: a.SpatialScale}
	if a.HalfPixel {
		r.offset = 0.5
	}
	return r, nil
}

func roiAlignCheck(n *ir.Node) error {
	if _, err := parseRoiAlign(n, 16); err != nil {
		return err
	}
	return typeIn(n, 2, tensor.Int64)
}

func maxRoiPoolCheck(n *ir.Node) error {
	if _, err := ops.ParseMaxRoiPoolAttrs(n, ops.MaxOpset); err != nil {
		return fmt.Errorf("%w: %v", ErrGraph, err)
	}
	return nil
}

func (c *compiler) roiAlign(s *step) error {
	n := s.node
	at, err := parseRoiAlign(n, c.g.Opset())
	if err != nil {
		return err
	}
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	rd, err := c.dims(n.Inputs[1])
	if err != nil {
		return err
	}
	if len(xd) != 4 || len(rd) != 2 || rd[1] != 4 || len(yd) != 4 || yd[0] != rd[0] {
		return fmt.Errorf("%w: RoiAlign of X %v, rois %v", ErrGraph, xd, rd)
	}
	rr, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	br, err := c.ref(n.Inputs[2])
	if err != nil {
		return err
	}
	if total := prod(yd); total > 0 {
		if xd[2] == 0 || xd[3] == 0 {
			return fmt.Errorf("%w: RoiAlign of an empty feature map %v", ErrGraph, xd)
		}
		s.launches = []launch{elemLaunch(c.fk("roialign"), total, pArg(yr), pArg(xr), pArg(rr), pArg(br), lArg(int64(rd[0])),
			iArg(xd[0]), iArg(xd[1]), iArg(xd[2]), iArg(xd[3]), iArg(at.oh), iArg(at.ow), iArg(at.ratio), fArg(at.scale), fArg(at.offset), iArg(b2i(at.max)))}
	}
	return nil
}

func (c *compiler) maxRoiPool(s *step) error {
	n := s.node
	a, err := ops.ParseMaxRoiPoolAttrs(n, c.g.Opset()) // the CPU's rules (ops/nn)
	if err != nil {
		return err
	}
	ps, scale := a.PooledShape, a.SpatialScale
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	rd, err := c.dims(n.Inputs[1])
	if err != nil {
		return err
	}
	if len(xd) != 4 || len(rd) != 2 || rd[1] != 5 {
		return fmt.Errorf("%w: MaxRoiPool of X %v, rois %v", ErrGraph, xd, rd)
	}
	rr, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	if total := prod(yd); total > 0 {
		s.launches = []launch{elemLaunch(c.fk("maxroipool"), total, pArg(yr), pArg(xr), pArg(rr), lArg(int64(rd[0])),
			iArg(xd[0]), iArg(xd[1]), iArg(xd[2]), iArg(xd[3]), iArg(int(ps[0])), iArg(int(ps[1])), fArg(scale))}
	}
	return nil
}
