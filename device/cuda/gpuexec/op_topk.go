package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// topKKernels is TopK: the k largest or smallest elements along an axis
// and their int64 indices, sorted (sorted=0 leaves the order free: sorted
// is one), equal values in index order, NaNs last, as the CPU kernel
// orders them; kernels/op_topk.cu. k must be known when the engine is
// built (the attribute, or a constant K input), so that the outputs have
// static shapes.
var topKKernels = []kernelDef{
	{op: "TopK", outputs: 2, check: topKCheck, emit: (*compiler).topK},
}

func topKCheck(n *ir.Node) error {
	if err := typeIn(n, 0, tensor.Float32, tensor.Float16, tensor.Float64, tensor.Int32, tensor.Int64); err != nil {
		return err
	}
	if k := input(n, 1); k != nil {
		if _, ok := constInts(k); !ok {
			return fmt.Errorf("%w: TopK's K computed at run time", ErrUnsupported)
		}
	}
	return nil
}

func (c *compiler) topK(s *step) error {
	n := s.node
	a, err := ops.ParseTopKAttrs(n, c.g.Opset()) // the CPU's rules (ops/norm)
	if err != nil {
		return err
	}
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("TopK", a.Axis, len(xd))
	if err != nil {
		return err
	}
	largest := 0
	if a.Largest {
		largest = 1
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	if len(yd) != len(xd) {
		return fmt.Errorf("%w: TopK output %v for input %v", ErrGraph, yd, xd)
	}
	k := int64(yd[axis])
	outer, ln, inner := axisSplit(xd, axis)
	if k > ln {
		return fmt.Errorf("%w: TopK k=%d exceeds axis size %d", ErrGraph, k, ln)
	}
	var idx ref
	if o := output(n, 1); o != nil {
		if idx, _, err = c.out(n, 1); err != nil {
			return err
		}
	} else {
		idx = c.scratch(8 * outer * k * inner)
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	sfx, err := c.suffix(dtypeOf(x))
	if err != nil {
		return err
	}
	if outer*inner > 0 && k > 0 {
		s.launches = []launch{rowsLaunch("topk_"+sfx, outer*inner, 256, 0, pArg(yr), pArg(idx), pArg(xr),
			lArg(outer), lArg(ln), lArg(inner), lArg(k), iArg(largest))}
	}
	return nil
}

// output is n's output i, nil when absent.
func output(n *ir.Node, i int) *ir.Value {
	if i < len(n.Outputs) {
		return n.Outputs[i]
	}
	return nil
}
