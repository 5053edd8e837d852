package shape

import (
	"unsafe"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// concatOp is ONNX Concat along axis.
type concatOp struct{ axis int64 }

func prepareConcat(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseConcatAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &concatOp{axis: a.Axis}, nil
}

func concatAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseConcatAttrs(n, opset) }

func (k *concatOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if len(in) == 0 {
		return nil, badInput("Concat: no inputs")
	}
	if err := need("Concat", in, len(in)); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[0].Type.DType}
	for _, v := range in {
		if v.Type.Shape == nil {
			// the rank is the same as any known one
			for _, w := range in {
				if w.Type.Shape != nil {
					t.Shape = unknownShape(len(w.Type.Shape))
					break
				}
			}
			return []ir.Type{t}, nil
		}
	}
	rank := len(in[0].Type.Shape)
	ax, err := normAxis("Concat", k.axis, rank)
	if err != nil {
		return nil, err
	}
	out := in[0].Type.Shape.Clone()
	sum := []ir.Dim{}
	for _, v := range in {
		s := v.Type.Shape
		if len(s) != rank {
			return nil, badInput("Concat: inputs of ranks %d and %d", rank, len(s))
		}
		for i, d := range s {
			if i == ax {
				sum = append(sum, d)
				continue
			}
			if d.Known() && out[i].Known() && d.Val != out[i].Val {
				return nil, badInput("Concat: dimension %d differs: %v and %v", i, in[0].Type.Shape, s)
			}
			out[i] = sameDim(out[i], d)
		}
	}
	out[ax] = addDims(sum...)
	t.Shape = out
	return []ir.Type{t}, nil
}

// ShapeValue concatenates 1-D shape values and constants.
func (k *concatOp) ShapeValue(in []*ir.Value) []ir.Dim {
	if k.axis != 0 && k.axis != -1 {
		return nil
	}
	var out []ir.Dim
	sym := false
	for _, v := range in {
		if v == nil || (v.Type.Shape != nil && len(v.Type.Shape) != 1) {
			return nil
		}
		d, ok := dimsOf(v)
		if !ok {
			return nil
		}
		if v.ShapeValue != nil {
			sym = true
		}
		out = append(out, d...)
	}
	if !sym {
		return nil // a constant concat is folded instead
	}
	return out
}

func (k *concatOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) == 0 {
		return nil, badInput("Concat: no inputs")
	}
	for i, x := range in {
		if err := checkData("Concat", x); err != nil {
			return nil, err
		}
		if x.DType != in[0].DType {
			return nil, badInput("Concat: input %d is %v, input 0 is %v", i, x.DType, in[0].DType)
		}
	}
	rank := in[0].Rank()
	ax, err := normAxis("Concat", k.axis, rank)
	if err != nil {
		return nil, err
	}
	var sb [8]int // the output shape, on the stack (NewOutput copies it)
	shape := append(sb[:0], in[0].Shape...)
	shape[ax] = 0
	for _, x := range in {
		if x.Rank() != rank {
			return nil, badInput("Concat: inputs of shapes %v and %v", in[0].Shape, x.Shape)
		}
		for i, d := range x.Shape {
			if i != ax && d != shape[i] {
				return nil, badInput("Concat: inputs of shapes %v and %v", in[0].Shape, x.Shape)
			}
		}
		shape[ax] += x.Shape[ax]
	}
	y, err := ops.NewOutput(env, in[0].DType, shape)
	if err != nil {
		return nil, err
	}
	outer := prod(shape[:ax])
	inner := prod(shape[ax+1:])
	row := shape[ax] * inner
	// The engine's memory planner may have put inputs inside y where
	// they belong (their producers wrote into the Concat's buffer): those
	// need no copy. An input that overlaps y anywhere else (planned at
	// other sizes) is copied aside before y is written.
	es := y.DType.Size()
	inPlace := func(x *tensor.Tensor, off int) bool {
		return outer == 1 && len(x.Data) > 0 && off*es < len(y.Data) && &x.Data[0] == &y.Data[off*es]
	}
	src := in
	off := 0
	for i, x := range in {
		w := x.Shape[ax] * inner
		if w > 0 && outer > 0 && overlaps(x.Data, y.Data) && !inPlace(x, off) {
			if len(src) > 0 && &src[0] == &in[0] {
				src = append([]*tensor.Tensor(nil), in...)
			}
			src[i] = x.Clone()
		}
		off += w
	}
	off = 0
	for _, x := range src {
		w := x.Shape[ax] * inner
		if w > 0 && outer > 0 && !inPlace(x, off) {
			copyND(y, off, []int{row, 1}, x, 0, []int{w, 1}, []int{outer, w})
		}
		off += w
	}
	return env.One(y), nil
}

// overlaps reports whether a and b share memory.
func overlaps(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&b[0]))
	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}

// splitOp is ONNX Split into nOut outputs along axis: by the split sizes
// (attribute before opset 13, input from 13) or into equal chunks, the last
// one smaller when the dimension does not divide (num_outputs, opset 18).
type splitOp struct {
	axis  int64
	nOut  int
	split []int64
	attr  bool // split sizes come from the attribute
	input int  // index of the split input, or -1
}

func prepareSplit(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseSplitAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &splitOp{axis: a.Axis, nOut: len(n.Outputs), input: a.SplitInput, split: a.Split, attr: a.Split != nil}
	if k.nOut < 1 {
		return nil, badInput("Split: the node has no outputs")
	}
	return k, nil
}

func splitAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseSplitAttrs(n, opset) }

// sizes returns the chunk sizes for a dimension of size dim; split is nil
// for equal chunks.
func (k *splitOp) sizes(dim int, split []int64) ([]int, error) {
	out := make([]int, k.nOut)
	if split != nil {
		if len(split) != k.nOut {
			return nil, badInput("Split: split %v for %d outputs", split, k.nOut)
		}
		sum := 0
		for i, s := range split {
			if s < 0 || s > int64(dim) {
				return nil, badInput("Split: bad split %v for dimension %d", split, dim)
			}
			out[i] = int(s)
			sum += int(s)
		}
		if sum != dim {
			return nil, badInput("Split: split %v does not add up to dimension %d", split, dim)
		}
		return out, nil
	}
	chunk := (dim + k.nOut - 1) / k.nOut
	rest := dim
	for i := range out {
		out[i] = min(chunk, rest)
		rest -= out[i]
	}
	if k.nOut > 1 && out[k.nOut-1] == 0 && dim > 0 && chunk*(k.nOut-1) > dim {
		return nil, badInput("Split: dimension %d cannot be split into %d chunks", dim, k.nOut)
	}
	return out, nil
}

func (k *splitOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("Split", in, 1); err != nil {
		return nil, err
	}
	types := make([]ir.Type, k.nOut)
	s := in[0].Type.Shape
	for i := range types {
		types[i].DType = in[0].Type.DType
	}
	if s == nil {
		return types, nil
	}
	ax, err := normAxis("Split", k.axis, len(s))
	if err != nil {
		return nil, err
	}
	split := k.split
	known := true
	if k.input >= 0 && arg(in, k.input) != nil {
		split, known = constInts(in[k.input])
		if len(split) == 0 {
			split = nil // an empty split input means equal chunks
		}
	}
	var sizes []int
	if known && (split != nil || s[ax].Known()) {
		dim := int(s[ax].Val)
		if !s[ax].Known() {
			dim = 0
			for _, v := range split {
				dim += int(v)
			}
		}
		if sizes, err = k.sizes(dim, split); err != nil {
			return nil, err
		}
	}
	for i := range types {
		sh := s.Clone()
		sh[ax] = ir.U()
		if sizes != nil {
			sh[ax] = ir.D(int64(sizes[i]))
		} else if k.nOut == 1 {
			sh[ax] = s[ax]
		}
		types[i].Shape = sh
	}
	return types, nil
}

func (k *splitOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData("Split", x); err != nil {
		return nil, err
	}
	ax, err := normAxis("Split", k.axis, x.Rank())
	if err != nil {
		return nil, err
	}
	split := k.split
	if k.input >= 0 && arg(in, k.input) != nil {
		if split, err = intVector("Split", "split", in[k.input]); err != nil {
			return nil, err
		}
		if len(split) == 0 {
			split = nil
		}
	}
	sizes, err := k.sizes(x.Shape[ax], split)
	if err != nil {
		return nil, err
	}
	outer := prod(x.Shape[:ax])
	inner := prod(x.Shape[ax+1:])
	row := x.Shape[ax] * inner
	outs := make([]*tensor.Tensor, k.nOut)
	off := 0
	for i, sz := range sizes {
		shape := append([]int{}, x.Shape...)
		shape[ax] = sz
		y, err := ops.NewOutput(env, x.DType, shape)
		if err != nil {
			return nil, err
		}
		w := sz * inner
		if w > 0 && outer > 0 {
			copyND(y, 0, []int{w, 1}, x, off, []int{row, 1}, []int{outer, w})
		}
		off += w
		outs[i] = y
	}
	return outs, nil
}

func init() {
	ops.Register(ops.Def{Type: "Concat", Traits: ops.HasFloat16, Attrs: concatAttrs, Prepare: prepareConcat})
	ops.Register(ops.Def{Type: "Split", Traits: ops.HasFloat16, Attrs: splitAttrs, Prepare: prepareSplit})
}
