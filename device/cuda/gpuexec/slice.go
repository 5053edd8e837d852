package gpuexec

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// constInts returns the elements of a constant int64 or int32 input, nil
// for an absent one; ok is false when it is not a constant.
func constInts(v *ir.Value) (vals []int64, ok bool) {
	if v == nil {
		return nil, true
	}
	if v.Const == nil || (v.Const.DType != tensor.Int64 && v.Const.DType != tensor.Int32) {
		return nil, false
	}
	return v.Const.Ints(), true
}

// slice runs Slice as a strided copy: the permute kernel with the identity
// permutation, the input's strides times the steps, and the input pointer
// moved to the first element.
func (c *compiler) slice(s *step) error {
	n := s.node
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	dt := dtypeOf(x)
	k, err := c.copyKernel("permute", dt)
	if err != nil {
		return err
	}
	var starts, ends, axes, steps []int64
	a, err := ops.ParseSliceAttrs(n, c.g.Opset()) // the CPU's rules (ops/shape)
	if err != nil {
		return err
	}
	if a.FromAttrs {
		starts, ends, axes = a.Starts, a.Ends, a.Axes
	} else {
		var ok [4]bool
		starts, ok[0] = constInts(input(n, 1))
		ends, ok[1] = constInts(input(n, 2))
		axes, ok[2] = constInts(input(n, 3))
		steps, ok[3] = constInts(input(n, 4))
		if !ok[0] || !ok[1] || !ok[2] || !ok[3] {
			return fmt.Errorf("%w: Slice with starts, ends, axes or steps computed at run time", ErrUnsupported)
		}
	}
	r := len(xd)
	if starts == nil || len(ends) != len(starts) || (axes != nil && len(axes) != len(starts)) || (steps != nil && len(steps) != len(starts)) {
		return fmt.Errorf("%w: Slice starts %v, ends %v, axes %v, steps %v", ErrGraph, starts, ends, axes, steps)
	}
	start := make([]int64, r)
	step := make([]int64, r)
	count := make([]int64, r)
	for i := range step {
		step[i], count[i] = 1, int64(xd[i])
	}
	for i := range starts {
		ax := int64(i)
		if axes != nil {
			ax = axes[i]
		}
		d, err := ops.NormAxis("Slice", ax, r)
		if err != nil {
			return err
		}
		st := int64(1)
		if steps != nil {
			st = steps[i]
		}
		if st == 0 {
			return fmt.Errorf("%w: Slice step 0 on axis %d", ErrGraph, ax)
		}
		if st == math.MinInt64 {
			st = -math.MaxInt64
		}
		b, e, dim := starts[i], ends[i], int64(xd[d])
		if b < 0 {
			b += dim
		}
		if e < 0 {
			e += dim
		}
		var cnt int64
		if st > 0 {
			b, e = min(max(b, 0), dim), min(max(e, 0), dim)
			if e > b {
				cnt = (e-b-1)/st + 1
			}
		} else {
			b, e = min(max(b, 0), dim-1), min(max(e, -1), dim-1)
			if b > e {
				cnt = (b-e-1)/(-st) + 1
			}
		}
		if cnt == 0 {
			b = 0
		}
		start[d], step[d], count[d] = b, st, cnt
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	if len(yd) != r {
		return fmt.Errorf("%w: Slice of rank %d gives %v", ErrGraph, r, yd)
	}
	for d := range yd {
		if int64(yd[d]) != count[d] {
			return fmt.Errorf("%w: Slice output %v, the arguments give %v", ErrGraph, yd, count)
		}
	}
	strides := tensor.Strides(xd)
	meta := []int64{int64(r)}
	for _, v := range yd {
		meta = append(meta, int64(v))
	}
	var base int64
	for d := range yd {
		meta = append(meta, int64(strides[d])*step[d])
		base += start[d] * int64(strides[d])
	}
	total := prod(yd)
	if total == 0 {
		return nil
	}
	xr.off += base * c.esize(dt)
	s.launches = []launch{elemLaunch(k, total, pArg(yr), pArg(xr), pArg(c.meta(meta)), lArg(total))}
	return nil
}
