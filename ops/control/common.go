package control

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// badInput returns an error wrapping ops.ErrBadInput.
var badInput = ops.BadInput

// badAttr returns an error wrapping ops.ErrBadAttr about attribute name.
func badAttr(name, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ops.ErrBadAttr, name, fmt.Sprintf(format, args...))
}

// errNotTensor explains a missing value where control flow needs one (a
// condition, a loop-carried value). Sequence and optional values flow
// through If and Loop as tensors do (see ops/sequence).
func errNotTensor(op, what string) error {
	return badInput("%s: %s is missing", op, what)
}

// joinType returns the most precise type that covers both a and b: a dim is
// kept where both agree and unknown elsewhere; different ranks give an
// unknown rank. An undefined dtype on one side takes the other's.
func joinType(a, b ir.Type) (ir.Type, error) {
	if !a.IsTensor() || !b.IsTensor() {
		return joinHolder(a, b)
	}
	out := ir.Type{DType: a.DType}
	switch {
	case a.DType == tensor.Undefined:
		out.DType = b.DType
	case b.DType != tensor.Undefined && a.DType != b.DType:
		return ir.Type{}, fmt.Errorf("%w: element types %v and %v differ", ops.ErrBadInput, a.DType, b.DType)
	}
	out.Shape = joinShape(a.Shape, b.Shape)
	return out, nil
}

// joinHolder is joinType for sequence and optional types: their element
// types are joined. A sequence and an optional of it join to the optional.
func joinHolder(a, b ir.Type) (ir.Type, error) {
	switch {
	case a.DType == tensor.Undefined:
		return b, nil
	case b.DType == tensor.Undefined:
		return a, nil
	case a.DType == b.DType:
		if a.Elem == nil || b.Elem == nil {
			return ir.Type{DType: a.DType}, nil
		}
		e, err := joinType(*a.Elem, *b.Elem)
		if err != nil {
			return ir.Type{}, err
		}
		return ir.Type{DType: a.DType, Elem: &e}, nil
	case a.DType == tensor.Optional:
		return joinHolder(a, ir.OptionalOf(b))
	case b.DType == tensor.Optional:
		return joinHolder(ir.OptionalOf(a), b)
	}
	return ir.Type{}, fmt.Errorf("%w: types %v and %v differ", ops.ErrBadInput, a, b)
}

func joinShape(a, b ir.Shape) ir.Shape {
	if a == nil || b == nil || len(a) != len(b) {
		return nil
	}
	s := make(ir.Shape, len(a))
	for i := range a {
		if a[i].Equal(b[i]) {
			s[i] = a[i]
		} else {
			s[i] = ir.U()
		}
	}
	return s
}

// carriedType is the type a subgraph input standing for a loop-carried value
// (a Loop dependency, a Scan state) is given for inference. Its value may
// change shape from one iteration to the next, so only what both the
// initial value and the body's declaration promise is kept: the rank, and
// the dims on which they agree. The declaration alone is not trusted, nor
// the initial value alone (a shape that grows each iteration must not be
// folded into constants).
func carriedType(declared, initial ir.Type) ir.Type {
	if !declared.IsTensor() || !initial.IsTensor() {
		// a sequence (or optional) may change length and element shapes
		// from one iteration to the next: keep its kind and element type
		t := declared.Clone()
		if t.DType == tensor.Undefined || (t.DType == tensor.Sequence && initial.DType == tensor.Optional) {
			t = initial.Clone()
		}
		if e := t.Elem; e != nil && e.IsTensor() && e.Shape != nil {
			for i := range e.Shape {
				e.Shape[i] = ir.U()
			}
		}
		return t
	}
	t := ir.Type{DType: initial.DType}
	if t.DType == tensor.Undefined {
		t.DType = declared.DType
	}
	switch {
	case initial.Shape != nil:
		t.Shape = make(ir.Shape, len(initial.Shape))
		same := declared.Shape != nil && len(declared.Shape) == len(initial.Shape)
		for i, d := range initial.Shape {
			if same && declared.Shape[i].Equal(d) {
				t.Shape[i] = d
			} else {
				t.Shape[i] = ir.U()
			}
		}
	case declared.Shape != nil:
		t.Shape = make(ir.Shape, len(declared.Shape))
		for i := range t.Shape {
			t.Shape[i] = ir.U()
		}
	}
	return t
}

// scalarInputType is the type of a subgraph input fed a one-element value
// (Loop's iteration number and condition): rank 0, or [1] when the body
// declares rank 1.
func scalarInputType(declared ir.Type, dt tensor.DType) ir.Type {
	if declared.Shape.Rank() == 1 {
		return ir.Type{DType: dt, Shape: ir.KnownShape(1)}
	}
	return ir.Type{DType: dt, Shape: ir.Scalar()}
}

// truth returns the value of a one-element condition tensor.
func truth(op, what string, t *tensor.Tensor) (bool, error) {
	if t == nil {
		return false, errNotTensor(op, what)
	}
	if t.Len() != 1 || t.DType == tensor.String || !t.DType.Valid() || len(t.Data) < t.DType.Size() {
		return false, badInput("%s: %s must hold one bool, got %v%v", op, what, t.DType, t.Shape)
	}
	if t.DType == tensor.Bool {
		return t.Data[0] != 0, nil
	}
	return t.Float(0) != 0, nil
}

// scalarTensor returns a one-element tensor of type dt holding v, with shape
// [] or [1] to match the declared rank of the subgraph input it feeds.
func scalarTensor(dt tensor.DType, v float64, rank1 bool) *tensor.Tensor {
	t := tensor.Scalar(dt, v)
	if rank1 {
		t.Shape = []int{1}
	}
	return t
}

// copyElems copies n elements of src starting at element so into dst
// starting at element do (same dtype).
func copyElems(dst *tensor.Tensor, do int, src *tensor.Tensor, so, n int) {
	if n == 0 {
		return
	}
	if dst.DType == tensor.String {
		copy(dst.Strings[do:do+n], src.Strings[so:so+n])
		return
	}
	sz := dst.DType.Size()
	copy(dst.Data[do*sz:(do+n)*sz], src.Data[so*sz:(so+n)*sz])
}

// checkTensor verifies that t's storage fits its shape, so that copies
// cannot go out of range.
func checkTensor(op, what string, t *tensor.Tensor) error {
	if t == nil {
		return errNotTensor(op, what)
	}
	if err := tensor.CheckShape(t.Shape); err != nil {
		return badInput("%s: %s: %v", op, what, err)
	}
	if t.DType == tensor.String {
		if len(t.Strings) != t.Len() {
			return badInput("%s: %s has %d strings for shape %v", op, what, len(t.Strings), t.Shape)
		}
		return nil
	}
	if !t.DType.Valid() || len(t.Data) != t.Len()*t.DType.Size() {
		return badInput("%s: %s: %d bytes do not fit %v%v", op, what, len(t.Data), t.DType, t.Shape)
	}
	return nil
}

// sameDims reports whether two concrete shapes are equal.
func sameDims(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// stacker collects one tensor per iteration and stacks them along a new
// axis: the per-iteration values must all have the same type and shape.
type stacker struct {
	op, what string
	items    []*tensor.Tensor
}

func (s *stacker) add(t *tensor.Tensor) error {
	if err := checkTensor(s.op, s.what, t); err != nil {
		return err
	}
	if len(s.items) > 0 {
		f := s.items[0]
		if f.DType != t.DType || !sameDims(f.Shape, t.Shape) {
			return badInput("%s: %s is %v%v in iteration %d but %v%v in iteration 0", s.op, s.what,
				t.DType, t.Shape, len(s.items), f.DType, f.Shape)
		}
	}
	s.items = append(s.items, t)
	return nil
}

// stack returns the items stacked along a new axis (in [-r-1, r] for items
// of rank r), item k going to position k, or n-1-k when reverse. With no
// items the result has elem's type and shape with a 0-long axis (unknown
// dims of elem become 0).
func (s *stacker) stack(axis int64, reverse bool, elem ir.Type) (*tensor.Tensor, error) {
	n := len(s.items)
	var es []int
	dt := elem.DType
	if n > 0 {
		es, dt = s.items[0].Shape, s.items[0].DType
	} else {
		// an element of unknown rank gives a 1-D empty result, as in ONNX Runtime
		if dt == tensor.Undefined {
			return nil, badInput("%s: %s: no iteration ran and the element type %v is not known", s.op, s.what, elem)
		}
		for _, d := range elem.Shape {
			es = append(es, max(int(d.Val), 0))
		}
	}
	r := int64(len(es)) + 1
	if axis < -r || axis >= r {
		return nil, badInput("%s: %s: output axis %d is out of range for rank %d", s.op, s.what, axis, r)
	}
	if axis < 0 {
		axis += r
	}
	shape := make([]int, 0, len(es)+1)
	shape = append(shape, es[:axis]...)
	shape = append(shape, n)
	shape = append(shape, es[axis:]...)
	out, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, badInput("%s: %s: %v", s.op, s.what, err)
	}
	outer := tensor.NumElements(es[:axis])
	inner := tensor.NumElements(es[axis:])
	for k, it := range s.items {
		p := k
		if reverse {
			p = n - 1 - k
		}
		for o := 0; o < outer; o++ {
			copyElems(out, (o*n+p)*inner, it, o*inner, inner)
		}
	}
	return out, nil
}

// sliceAxis returns element t of x along axis (the axis removed).
func sliceAxis(x *tensor.Tensor, axis, t int) (*tensor.Tensor, error) {
	shape := make([]int, 0, len(x.Shape)-1)
	shape = append(shape, x.Shape[:axis]...)
	shape = append(shape, x.Shape[axis+1:]...)
	out, err := tensor.Make(x.DType, shape)
	if err != nil {
		return nil, err
	}
	n := x.Shape[axis]
	outer := tensor.NumElements(x.Shape[:axis])
	inner := tensor.NumElements(x.Shape[axis+1:])
	for o := 0; o < outer; o++ {
		copyElems(out, o*inner, x, (o*n+t)*inner, inner)
	}
	return out, nil
}

// inferBody prepares body for inference with the given input types and
// infers it, returning the types of its outputs.
func inferBody(op string, body *ir.Graph, in []ir.Type) ([]ir.Type, error) {
	for i, t := range in {
		body.Inputs[i].Type = t
	}
	if _, err := ops.InferGraph(body); err != nil {
		return nil, fmt.Errorf("%s body %q: %w", op, body.Name, err)
	}
	out := make([]ir.Type, len(body.Outputs))
	for i, v := range body.Outputs {
		if v == nil {
			return nil, fmt.Errorf("%w: %s body %q has a missing output %d", ops.ErrBadInput, op, body.Name, i)
		}
		out[i] = v.Type
	}
	return out, nil
}
