package shape

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// reduction is how a scatter combines an update with the existing value.
type reduction int

const (
	reduceNone reduction = iota
	reduceAdd
	reduceMul
	reduceMax
	reduceMin
)

// reductionOf maps the attribute "reduction" (ops.ScatterElementsAttrs,
// ops.ScatterNDAttrs) to its kernel's reduction.
func reductionOf(r string) reduction {
	switch r {
	case "add":
		return reduceAdd
	case "mul":
		return reduceMul
	case "max":
		return reduceMax
	case "min":
		return reduceMin
	}
	return reduceNone
}

func reduceFunc[T ops.Number](r reduction) func(a, b T) T {
	switch r {
	case reduceAdd:
		return func(a, b T) T { return a + b }
	case reduceMul:
		return func(a, b T) T { return a * b }
	case reduceMax:
		return func(a, b T) T { return max(a, b) }
	case reduceMin:
		return func(a, b T) T { return min(a, b) }
	}
	return func(_, b T) T { return b }
}

func scatterRowsT[T ops.Number](dst, src []T, rows []int, inner int, r reduction) {
	f := reduceFunc[T](r)
	for i, row := range rows {
		d := dst[row*inner : (row+1)*inner]
		s := src[i*inner : (i+1)*inner]
		for k := range d {
			d[k] = f(d[k], s[k])
		}
	}
}

// scatterRows writes row i of src over (or combined with) row rows[i] of
// dst, in order, so that later updates of the same row win.
func scatterRows(dst, src *tensor.Tensor, rows []int, inner int, r reduction) error {
	if r == reduceNone {
		for i, row := range rows {
			copyElems(dst, row*inner, src, i*inner, inner)
		}
		return nil
	}
	switch dst.DType {
	case tensor.Float32:
		scatterRowsT(dst.Float32s(), src.Float32s(), rows, inner, r)
	case tensor.Float64:
		scatterRowsT(dst.Float64s(), src.Float64s(), rows, inner, r)
	case tensor.Int64:
		scatterRowsT(dst.Int64s(), src.Int64s(), rows, inner, r)
	case tensor.Int32:
		scatterRowsT(dst.Int32s(), src.Int32s(), rows, inner, r)
	case tensor.Int16:
		scatterRowsT(dst.Int16s(), src.Int16s(), rows, inner, r)
	case tensor.Int8:
		scatterRowsT(dst.Int8s(), src.Int8s(), rows, inner, r)
	case tensor.Uint64:
		scatterRowsT(dst.Uint64s(), src.Uint64s(), rows, inner, r)
	case tensor.Uint32:
		scatterRowsT(dst.Uint32s(), src.Uint32s(), rows, inner, r)
	case tensor.Uint16:
		scatterRowsT(dst.Uint16s(), src.Uint16s(), rows, inner, r)
	case tensor.Uint8:
		scatterRowsT(dst.Uint8s(), src.Uint8s(), rows, inner, r)
	case tensor.Float16, tensor.BFloat16:
		f := reduceFunc[float32](r)
		for i, row := range rows {
			for k := 0; k < inner; k++ {
				d := row*inner + k
				dst.SetFloat(d, float64(f(float32(dst.Float(d)), float32(src.Float(i*inner+k)))))
			}
		}
	default:
		return badInput("scatter reduction on %v", dst.DType)
	}
	return nil
}

// scatterNDOp is ONNX ScatterND.
type scatterNDOp struct{ red reduction }

func prepareScatterND(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseScatterNDAttrs(n, opset)
	return &scatterNDOp{red: reductionOf(a.Reduction)}, err
}

// Def.Attrs of the ops of this file.
func scatterNDAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseScatterNDAttrs(n, opset) }
func scatterElementsAttrs(n *ir.Node, opset int64) (any, error) {
	return ops.ParseScatterElementsAttrs(n, opset)
}

func (k *scatterNDOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("ScatterND", in, 3); err != nil {
		return nil, err
	}
	return []ir.Type{in[0].Type}, nil
}

func (k *scatterNDOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x, it, u := arg(in, 0), arg(in, 1), arg(in, 2)
	if err := checkData("ScatterND", x); err != nil {
		return nil, err
	}
	if err := checkData("ScatterND", u); err != nil {
		return nil, err
	}
	if it == nil {
		return nil, badInput("ScatterND: indices are missing")
	}
	if u.DType != x.DType {
		return nil, badInput("ScatterND: updates are %v, data %v", u.DType, x.DType)
	}
	rows, inner, err := ndRows("ScatterND", x.Shape, it, 0)
	if err != nil {
		return nil, err
	}
	q := it.Rank()
	want := append(append([]int{}, it.Shape[:q-1]...), x.Shape[it.Shape[q-1]:]...)
	if !equalInts(u.Shape, want) {
		return nil, badInput("ScatterND: updates have shape %v, want %v", u.Shape, want)
	}
	y := x.Clone()
	if err := scatterRows(y, u, rows, inner, k.red); err != nil {
		return nil, err
	}
	return []*tensor.Tensor{y}, nil
}

func equalInts(a, b []int) bool {
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

// scatterElementsOp is ONNX ScatterElements and the deprecated Scatter.
type scatterElementsOp struct {
	name string
	axis int64
	red  reduction
}

func prepareScatterElements(name string) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseScatterElementsAttrs(n, opset)
		return &scatterElementsOp{name: name, axis: a.Axis, red: reductionOf(a.Reduction)}, err
	}
}

func (k *scatterElementsOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need(k.name, in, 3); err != nil {
		return nil, err
	}
	if s := in[0].Type.Shape; s != nil {
		if _, err := normAxis(k.name, k.axis, len(s)); err != nil {
			return nil, err
		}
	}
	return []ir.Type{in[0].Type}, nil
}

func (k *scatterElementsOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x, it, u := arg(in, 0), arg(in, 1), arg(in, 2)
	if err := checkData(k.name, x); err != nil {
		return nil, err
	}
	if err := checkData(k.name, u); err != nil {
		return nil, err
	}
	if u.DType != x.DType {
		return nil, badInput("%s: updates are %v, data %v", k.name, u.DType, x.DType)
	}
	ax, err := normAxis(k.name, k.axis, x.Rank())
	if err != nil {
		return nil, err
	}
	idx, err := indexValues(k.name, it, x.Shape[ax])
	if err != nil {
		return nil, err
	}
	if !equalInts(it.Shape, u.Shape) {
		return nil, badInput("%s: indices %v and updates %v differ in shape", k.name, it.Shape, u.Shape)
	}
	offs, err := elementOffsets(k.name, x.Shape, it.Shape, ax, idx)
	if err != nil {
		return nil, err
	}
	y := x.Clone()
	if err := scatterRows(y, u, offs, 1, k.red); err != nil {
		return nil, err
	}
	return []*tensor.Tensor{y}, nil
}

func init() {
	ops.Register(ops.Def{Type: "ScatterND", Attrs: scatterNDAttrs, Traits: ops.HasFloat16, Prepare: prepareScatterND})
	ops.Register(ops.Def{Type: "ScatterElements", Attrs: scatterElementsAttrs, Traits: ops.HasFloat16, Prepare: prepareScatterElements("ScatterElements")})
	ops.Register(ops.Def{Type: "Scatter", Attrs: scatterElementsAttrs, Traits: ops.HasFloat16, Prepare: prepareScatterElements("Scatter")})
}
