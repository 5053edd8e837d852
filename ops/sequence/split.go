package sequence

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// copyBlock copies, for each of outer rows, n elements of src starting at
// element so+row*sstride into dst at element do+row*dstride.
func copyBlock(dst *tensor.Tensor, do, dstride int, src *tensor.Tensor, so, sstride, n, outer int) {
	if n == 0 {
		return
	}
	for r := 0; r < outer; r++ {
		d, s := do+r*dstride, so+r*sstride
		if dst.DType == tensor.String {
			copy(dst.Strings[d:d+n], src.Strings[s:s+n])
			continue
		}
		sz := dst.DType.Size()
		copy(dst.Data[d*sz:(d+n)*sz], src.Data[s*sz:(s+n)*sz])
	}
}

// splitOp is SplitToSequence: the input split along axis into a sequence,
// into pieces of length 1 without split (the axis removed unless keepdims),
// of length split (the last one shorter) for a scalar split, or of the
// lengths a 1-D split lists.
type splitOp struct {
	native
	axis     int64
	keepdims bool
}

func prepareSplit(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseSplitToSequenceAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &splitOp{axis: a.Axis, keepdims: a.KeepDims}, nil
}

func (k *splitOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	x, err := tensorType("SplitToSequence", ops.Arg(in, 0), 0)
	if err != nil {
		return nil, err
	}
	split := ops.Arg(in, 1)
	if split != nil {
		if dt := split.Type.DType; dt != tensor.Undefined && dt != tensor.Int32 && dt != tensor.Int64 {
			return nil, ops.BadInput("SplitToSequence: split is %v, want int32 or int64", split.Type)
		}
	}
	elem := ir.Type{DType: x.DType}
	if x.Shape == nil {
		return []ir.Type{ir.SequenceOf(elem)}, nil
	}
	ax, err := ops.NormAxis("SplitToSequence", k.axis, len(x.Shape))
	if err != nil {
		return nil, err
	}
	s := x.Shape.Clone()
	switch {
	case split == nil && !k.keepdims:
		s = append(s[:ax], s[ax+1:]...)
	case split == nil:
		s[ax] = ir.D(1)
	default:
		s[ax] = ir.U()
		if c := split.Const; c != nil && c.Len() > 0 && (c.DType == tensor.Int32 || c.DType == tensor.Int64) {
			if v := c.Int(0); c.Rank() == 0 && x.Shape[ax].Known() && v > 0 && x.Shape[ax].Val%v == 0 {
				s[ax] = ir.D(v)
			} else if c.Rank() == 1 {
				same := true
				for i := 1; i < c.Len(); i++ {
					same = same && c.Int(i) == v
				}
				if same && v >= 0 {
					s[ax] = ir.D(v)
				}
			}
		}
	}
	elem.Shape = s
	return []ir.Type{ir.SequenceOf(elem)}, nil
}

func (k *splitOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x, err := tensorArg("SplitToSequence", in, 0)
	if err != nil {
		return nil, err
	}
	if x.Rank() == 0 {
		return nil, ops.BadInput("SplitToSequence: the input is a scalar, it has no axis to split")
	}
	ax, err := ops.NormAxis("SplitToSequence", k.axis, x.Rank())
	if err != nil {
		return nil, err
	}
	dim := x.Shape[ax]
	var lens []int
	squeeze := false
	if sp := ops.Arg(in, 1); sp != nil {
		if err := checkTensor("SplitToSequence", "split", sp); err != nil {
			return nil, err
		}
		if sp.DType != tensor.Int32 && sp.DType != tensor.Int64 {
			return nil, ops.BadInput("SplitToSequence: split is %v, want int32 or int64", sp.DType)
		}
		switch sp.Rank() {
		case 0:
			v := sp.Int(0)
			if v <= 0 {
				return nil, ops.BadInput("SplitToSequence: split is %d, want a positive length", v)
			}
			for off := 0; off < dim; off += int(v) {
				lens = append(lens, min(int(v), dim-off))
			}
		case 1:
			sum := int64(0)
			for i := 0; i < sp.Len(); i++ {
				v := sp.Int(i)
				if v < 0 || v > int64(dim) {
					return nil, ops.BadInput("SplitToSequence: split[%d] is %d, out of range for axis %d of length %d", i, v, ax, dim)
				}
				sum += v
				lens = append(lens, int(v))
			}
			if sum != int64(dim) {
				return nil, ops.BadInput("SplitToSequence: split %v sums to %d, axis %d has length %d", sp.Ints(), sum, ax, dim)
			}
		default:
			return nil, ops.BadInput("SplitToSequence: split has rank %d, want a scalar or 1-D", sp.Rank())
		}
	} else {
		lens = make([]int, dim)
		for i := range lens {
			lens[i] = 1
		}
		squeeze = !k.keepdims
	}
	outer := tensor.NumElements(x.Shape[:ax])
	inner := tensor.NumElements(x.Shape[ax+1:])
	elems := make([]*tensor.Tensor, len(lens))
	off := 0
	for i, l := range lens {
		shape := append([]int{}, x.Shape...)
		shape[ax] = l
		if squeeze {
			shape = append(shape[:ax], shape[ax+1:]...)
		}
		e, err := tensor.Make(x.DType, shape)
		if err != nil {
			return nil, ops.BadInput("SplitToSequence: %v", err)
		}
		copyBlock(e, 0, l*inner, x, off*inner, dim*inner, l*inner, outer)
		elems[i] = e
		off += l
	}
	return []*tensor.Tensor{tensor.NewSequence(elems)}, nil
}

// concatOp is ConcatFromSequence: the elements concatenated along axis, or
// stacked along a new axis with new_axis.
type concatOp struct {
	native
	axis    int64
	newAxis bool
}

func prepareConcat(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseConcatFromSequenceAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &concatOp{axis: a.Axis, newAxis: a.NewAxis}, nil
}

func (k *concatOp) rank(elemRank int) int {
	if k.newAxis {
		return elemRank + 1
	}
	return elemRank
}

func (k *concatOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	elem, err := seqType("ConcatFromSequence", ops.Arg(in, 0), 0)
	if err != nil {
		return nil, err
	}
	out := ir.Type{DType: elem.DType}
	if elem.Shape == nil {
		return []ir.Type{out}, nil
	}
	r := k.rank(len(elem.Shape))
	ax, err := ops.NormAxis("ConcatFromSequence", k.axis, r)
	if err != nil {
		return nil, err
	}
	s := elem.Shape.Clone()
	if k.newAxis {
		s = append(s[:ax], append(ir.Shape{ir.U()}, s[ax:]...)...)
	} else {
		s[ax] = ir.U()
	}
	out.Shape = s
	return []ir.Type{out}, nil
}

func (k *concatOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	s, err := seqArg("ConcatFromSequence", in, 0)
	if err != nil {
		return nil, err
	}
	if len(s.Elems) == 0 {
		return nil, ops.BadInput("ConcatFromSequence: the sequence is empty (nothing to concatenate)")
	}
	first := s.Elems[0]
	for i, e := range s.Elems {
		if err := checkTensor("ConcatFromSequence", fmt.Sprintf("element %d", i), e); err != nil {
			return nil, err
		}
		if e.DType != first.DType {
			return nil, ops.BadInput("ConcatFromSequence: element %d is %v, element 0 is %v", i, e.DType, first.DType)
		}
	}
	r := k.rank(first.Rank())
	if r == 0 {
		return nil, ops.BadInput("ConcatFromSequence: the elements are scalars; concatenating needs rank 1 or new_axis=1")
	}
	ax, err := ops.NormAxis("ConcatFromSequence", k.axis, r)
	if err != nil {
		return nil, err
	}
	total := 0
	for i, e := range s.Elems {
		if e.Rank() != first.Rank() {
			return nil, ops.BadInput("ConcatFromSequence: element %d has shape %v, element 0 has %v (ranks differ)", i, e.Shape, first.Shape)
		}
		for d := range e.Shape {
			if (k.newAxis || d != ax) && e.Shape[d] != first.Shape[d] {
				return nil, ops.BadInput("ConcatFromSequence: element %d has shape %v, element 0 has %v", i, e.Shape, first.Shape)
			}
		}
		if k.newAxis {
			total++
		} else {
			total += e.Shape[ax]
		}
	}
	var shape []int
	if k.newAxis {
		shape = append(shape, first.Shape[:ax]...)
		shape = append(shape, total)
		shape = append(shape, first.Shape[ax:]...)
	} else {
		shape = append([]int{}, first.Shape...)
		shape[ax] = total
	}
	if err := tensor.CheckShape(shape); err != nil {
		return nil, ops.BadInput("ConcatFromSequence: %v", err)
	}
	out, err := ops.NewOutput(env, first.DType, shape)
	if err != nil {
		return nil, err
	}
	outer := tensor.NumElements(shape[:ax])
	inner := tensor.NumElements(shape[ax+1:])
	off := 0
	for _, e := range s.Elems {
		l := 1
		if !k.newAxis {
			l = e.Shape[ax]
		}
		copyBlock(out, off*inner, total*inner, e, 0, l*inner, l*inner, outer)
		off += l
	}
	return []*tensor.Tensor{out}, nil
}

func init() {
	ops.Register(ops.Def{Type: "SplitToSequence", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseSplitToSequenceAttrs(n, opset) }, Prepare: prepareSplit})
	ops.Register(ops.Def{Type: "ConcatFromSequence", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseConcatFromSequenceAttrs(n, opset) }, Prepare: prepareConcat})
}
