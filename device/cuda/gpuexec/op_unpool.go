package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// unpoolKernels is MaxUnpool of any rank (kernels/op_unpool.cu): the
// output zeroed, then every element of X moved to its index, a flat
// position in the shape kernel_shape, strides and pads give, laid into the
// top-left corner of output_shape when that input makes the output larger
// (as the CPU kernel does). Elements of 2, 4 or 8 bytes; output_shape must
// be known when the engine is built (it is the output's shape). Indices
// that repeat land in an unspecified order; MaxPool's do not repeat.
var unpoolKernels = []kernelDef{
	{op: "MaxUnpool", inputs: 2, check: unpoolCheck, emit: (*compiler).maxUnpool},
}

func unpoolCheck(n *ir.Node) error {
	if err := typeIn(n, 1, tensor.Int64); err != nil {
		return err
	}
	if dt := dtypeOf(n.Inputs[0]); dt.Size() != 2 && dt.Size() != 4 && dt.Size() != 8 {
		return fmt.Errorf("%w: MaxUnpool of %v", ErrUnsupported, dt)
	}
	if a, err := ops.ParseMaxUnpoolAttrs(n, ops.MaxOpset); err != nil || len(a.KernelShape) == 0 {
		return fmt.Errorf("%w: MaxUnpool without kernel_shape, or bad attributes (%v)", ErrGraph, err)
	}
	return nil
}

func (c *compiler) maxUnpool(s *step) error {
	n := s.node
	a, err := ops.ParseMaxUnpoolAttrs(n, c.g.Opset()) // the CPU's rules (ops/nn)
	if err != nil {
		return err
	}
	ks, strides, pads := a.KernelShape, a.Strides, a.Pads
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	r := len(ks)
	if len(xd) != r+2 || len(yd) != len(xd) || (strides != nil && len(strides) != r) || (pads != nil && len(pads) != 2*r) {
		return fmt.Errorf("%w: MaxUnpool of %v with kernel_shape %v", ErrGraph, xd, ks)
	}
	// the inferred shape: (in - 1) * stride + kernel - pads
	inferred := []int64{int64(xd[0]), int64(xd[1])}
	for i, d := range xd[2:] {
		st, pb, pe := int64(1), int64(0), int64(0)
		if strides != nil {
			st = strides[i]
		}
		if pads != nil {
			pb, pe = pads[i], pads[i+r]
		}
		inferred = append(inferred, (int64(d)-1)*st+ks[i]-pb-pe)
	}
	for i, d := range inferred {
		if d < 0 || d > int64(yd[i]) {
			return fmt.Errorf("%w: MaxUnpool output %v smaller than %v", ErrGraph, yd, inferred)
		}
	}
	ir2, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	sfx, err := c.byteSuffix(dtypeOf(n.Inputs[0]))
	if err != nil || sfx == "b8" {
		return fmt.Errorf("%w: MaxUnpool of %v", ErrUnsupported, dtypeOf(n.Inputs[0]))
	}
	meta := append([]int64{int64(len(yd))}, inferred...)
	st := int64(1)
	ys := make([]int64, len(yd))
	for i := len(yd) - 1; i >= 0; i-- {
		ys[i] = st
		st *= int64(yd[i])
	}
	meta = append(meta, ys...)
	limit := int64(1)
	for _, d := range inferred {
		limit *= d
	}
	total := prod(yd)
	if total == 0 {
		return nil
	}
	s.launches = []launch{elemLaunch("unpool_zero_"+sfx, total, pArg(yr), lArg(total))}
	if nx := prod(xd); nx > 0 {
		s.launches = append(s.launches, elemLaunch("unpool_scatter_"+sfx, nx, pArg(yr), pArg(xr), pArg(ir2), pArg(c.meta(meta)), lArg(nx), lArg(limit)))
	}
	return nil
}
