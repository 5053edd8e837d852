package shape

import (
	"sync"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// gatherRows copies rows of inner elements: row r of dst is row src[r] of
// src. Rows are copied with copy(), split over all cores when there are many.
func gatherRows(dst, src *tensor.Tensor, rows []int, inner int) {
	switch {
	case dst.DType == tensor.String:
		gatherRowsT(dst.Strings, src.Strings, rows, inner)
	case dst.DType.Size() == 1:
		gatherRowsT(dst.Data, src.Data, rows, inner)
	case dst.DType.Size() == 2:
		gatherRowsT(view[uint16](dst.Data), view[uint16](src.Data), rows, inner)
	case dst.DType.Size() == 4:
		gatherRowsT(view[uint32](dst.Data), view[uint32](src.Data), rows, inner)
	default:
		gatherRowsT(view[uint64](dst.Data), view[uint64](src.Data), rows, inner)
	}
}

func gatherRowsT[T any](dst, src []T, rows []int, inner int) {
	if inner == 0 {
		return
	}
	grain := max(1, copyGrain/inner)
	if len(rows) <= grain {
		// one range: on the caller, without a closure to allocate
		gatherRange(dst, src, rows, inner, 0, len(rows))
		return
	}
	parallel.For(len(rows), grain, func(lo, hi int) { gatherRange(dst, src, rows, inner, lo, hi) })
}

// gatherRange is gatherRowsT of rows [lo, hi).
func gatherRange[T any](dst, src []T, rows []int, inner, lo, hi int) {
	if inner == 1 {
		for i := lo; i < hi; i++ {
			dst[i] = src[rows[i]]
		}
		return
	}
	for i := lo; i < hi; i++ {
		s := rows[i] * inner
		copy(dst[i*inner:(i+1)*inner], src[s:s+inner])
	}
}

// intsPool recycles Gather's index and row lists (*[]int).
var intsPool sync.Pool

// getInts returns a pooled slice of n ints (contents undefined); putInts
// returns it.
func getInts(n int) *[]int {
	p, _ := intsPool.Get().(*[]int)
	if p == nil {
		p = new([]int)
	}
	if cap(*p) < n {
		*p = make([]int, n, max(n, 256))
	}
	*p = (*p)[:n]
	return p
}

func putInts(p *[]int) { intsPool.Put(p) }

// gatherOp is ONNX Gather along axis.
type gatherOp struct{ axis int64 }

func prepareGather(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseGatherAttrs(n, opset)
	return &gatherOp{axis: a.Axis}, err
}

// Def.Attrs of the ops of this file.
func gatherAttrs(n *ir.Node, opset int64) (any, error)   { return ops.ParseGatherAttrs(n, opset) }
func gatherNDAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseGatherNDAttrs(n, opset) }

func (k *gatherOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("Gather", in, 2); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[0].Type.DType}
	s, is := in[0].Type.Shape, in[1].Type.Shape
	if s == nil || is == nil {
		return []ir.Type{t}, nil
	}
	ax, err := normAxis("Gather", k.axis, len(s))
	if err != nil {
		return nil, err
	}
	out := append(append(append(ir.Shape{}, s[:ax]...), is...), s[ax+1:]...)
	t.Shape = out
	return []ir.Type{t}, nil
}

// ShapeValue gathers from a 1-D shape value with constant indices.
func (k *gatherOp) ShapeValue(in []*ir.Value) []ir.Dim {
	data, idx := arg(in, 0), arg(in, 1)
	if data == nil || idx == nil || data.ShapeValue == nil || (k.axis != 0 && k.axis != -1) {
		return nil
	}
	if data.Type.Shape != nil && len(data.Type.Shape) != 1 {
		return nil
	}
	ids, ok := constInts(idx)
	if !ok {
		return nil
	}
	n := int64(len(data.ShapeValue))
	out := make([]ir.Dim, len(ids))
	for i, j := range ids {
		if j < 0 {
			j += n
		}
		if j < 0 || j >= n {
			return nil
		}
		out[i] = data.ShapeValue[j]
	}
	return out
}

// indexValues returns the elements of an index tensor normalized to
// [0, size) (negative indices count from the end).
func indexValues(op string, t *tensor.Tensor, size int) ([]int, error) {
	if t == nil {
		return nil, badInput("%s: indices are missing", op)
	}
	out := make([]int, t.Len())
	if err := indexValuesInto(op, t, size, out); err != nil {
		return nil, err
	}
	return out, nil
}

// indexValuesInto is indexValues writing into out (t.Len() long).
func indexValuesInto(op string, t *tensor.Tensor, size int, out []int) error {
	if t == nil {
		return badInput("%s: indices are missing", op)
	}
	if t.DType != tensor.Int64 && t.DType != tensor.Int32 {
		return badInput("%s: indices have type %v, want int32 or int64", op, t.DType)
	}
	if err := checkData(op, t); err != nil {
		return err
	}
	n := t.Len()
	for i := 0; i < n; i++ {
		var v int64
		if t.DType == tensor.Int64 {
			v = t.Int64s()[i]
		} else {
			v = int64(t.Int32s()[i])
		}
		if v < 0 {
			v += int64(size)
		}
		if v < 0 || v >= int64(size) {
			return ops.IndexError("%s: index %d is out of range [%d, %d)", op, t.Int(i), -size, size)
		}
		out[i] = int(v)
	}
	return nil
}

func (k *gatherOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x, it := arg(in, 0), arg(in, 1)
	if err := checkData("Gather", x); err != nil {
		return nil, err
	}
	ax, err := normAxis("Gather", k.axis, x.Rank())
	if err != nil {
		return nil, err
	}
	A := x.Shape[ax]
	if it == nil {
		return nil, badInput("Gather: indices are missing")
	}
	var sb [8]int // the output shape, on the stack (NewOutput copies it)
	shape := append(append(append(sb[:0], x.Shape[:ax]...), it.Shape...), x.Shape[ax+1:]...)
	outer := prod(x.Shape[:ax])
	inner := prod(x.Shape[ax+1:])
	ni := it.Len()
	buf := getInts(ni + outer*ni)
	defer putInts(buf)
	idx, rows := (*buf)[:ni], (*buf)[ni:]
	if err := indexValuesInto("Gather", it, A, idx); err != nil {
		return nil, err
	}
	y, err := ops.NewOutput(env, x.DType, shape)
	if err != nil {
		return nil, err
	}
	for o := 0; o < outer; o++ {
		r := rows[o*ni : (o+1)*ni]
		for j, v := range idx {
			r[j] = o*A + v
		}
	}
	gatherRows(y, x, rows, inner)
	return env.One(y), nil
}

// gatherElementsOp is ONNX GatherElements along axis.
type gatherElementsOp struct{ axis int64 }

func prepareGatherElements(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseGatherAttrs(n, opset)
	return &gatherElementsOp{axis: a.Axis}, err
}

func (k *gatherElementsOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("GatherElements", in, 2); err != nil {
		return nil, err
	}
	s, is := in[0].Type.Shape, in[1].Type.Shape
	if s != nil && is != nil && len(s) != len(is) {
		return nil, badInput("GatherElements: data %v and indices %v differ in rank", s, is)
	}
	if s != nil {
		if _, err := normAxis("GatherElements", k.axis, len(s)); err != nil {
			return nil, err
		}
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: is.Clone()}}, nil
}

// elementOffsets returns, for every element of an index tensor of shape
// ishape along axis of a tensor of shape dshape, the flat offset of the
// element of the data tensor it designates (indices idx along axis, the
// element's own coordinates elsewhere).
func elementOffsets(op string, dshape, ishape []int, ax int, idx []int) ([]int, error) {
	if len(dshape) != len(ishape) {
		return nil, badInput("%s: data %v and indices %v differ in rank", op, dshape, ishape)
	}
	for i := range ishape {
		if i != ax && ishape[i] > dshape[i] {
			return nil, badInput("%s: indices %v do not fit data %v", op, ishape, dshape)
		}
	}
	ds := strides(dshape)
	offs := make([]int, len(idx))
	if len(idx) == 0 {
		return offs, nil
	}
	coord := make([]int, len(ishape))
	base := 0 // offset of coord with the axis coordinate left out
	for i, v := range idx {
		offs[i] = base + v*ds[ax]
		for d := len(ishape) - 1; d >= 0; d-- {
			coord[d]++
			if d != ax {
				base += ds[d]
			}
			if coord[d] < ishape[d] {
				break
			}
			if d != ax {
				base -= ds[d] * ishape[d]
			}
			coord[d] = 0
		}
	}
	return offs, nil
}

func (k *gatherElementsOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x, it := arg(in, 0), arg(in, 1)
	if err := checkData("GatherElements", x); err != nil {
		return nil, err
	}
	ax, err := normAxis("GatherElements", k.axis, x.Rank())
	if err != nil {
		return nil, err
	}
	idx, err := indexValues("GatherElements", it, x.Shape[ax])
	if err != nil {
		return nil, err
	}
	offs, err := elementOffsets("GatherElements", x.Shape, it.Shape, ax, idx)
	if err != nil {
		return nil, err
	}
	y, err := tensor.Make(x.DType, it.Shape)
	if err != nil {
		return nil, err
	}
	gatherRows(y, x, offs, 1)
	return []*tensor.Tensor{y}, nil
}

// gatherNDOp is ONNX GatherND with batch_dims.
type gatherNDOp struct{ batch int }

func prepareGatherND(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseGatherNDAttrs(n, opset)
	return &gatherNDOp{batch: a.BatchDims}, err
}

func (k *gatherNDOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("GatherND", in, 2); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[0].Type.DType}
	s, is := in[0].Type.Shape, in[1].Type.Shape
	if s == nil || is == nil || len(is) == 0 || !is[len(is)-1].Known() {
		return []ir.Type{t}, nil
	}
	q := len(is)
	kk := int(is[q-1].Val)
	if k.batch >= q || k.batch+kk > len(s) {
		return nil, badInput("GatherND: indices %v with batch_dims %d for data %v", is, k.batch, s)
	}
	out := ir.Shape{}
	for i := 0; i < q-1; i++ {
		d := is[i]
		if i < k.batch {
			d = sameDim(d, s[i])
		}
		out = append(out, d)
	}
	t.Shape = append(out, s[k.batch+kk:]...)
	return []ir.Type{t}, nil
}

// ndRows returns, for indices of shape ishape whose last axis holds
// coordinates into data of shape dshape after b batch axes, the row numbers
// (in units of the slice each tuple selects) and the slice size.
func ndRows(op string, dshape []int, it *tensor.Tensor, b int) (rows []int, inner int, err error) {
	ishape := it.Shape
	q := len(ishape)
	if q < 1 || b >= q || b > len(dshape) {
		return nil, 0, badInput("%s: indices %v with batch_dims %d for data %v", op, ishape, b, dshape)
	}
	kk := ishape[q-1]
	if b+kk > len(dshape) {
		return nil, 0, badInput("%s: index tuples of length %d for data %v with %d batch dims", op, kk, dshape, b)
	}
	for i := 0; i < b; i++ {
		if ishape[i] != dshape[i] {
			return nil, 0, badInput("%s: batch dims of indices %v and data %v differ", op, ishape, dshape)
		}
	}
	if it.DType != tensor.Int64 && it.DType != tensor.Int32 {
		return nil, 0, badInput("%s: indices have type %v, want int64", op, it.DType)
	}
	if err := checkData(op, it); err != nil {
		return nil, 0, err
	}
	inner = prod(dshape[b+kk:])
	batches := prod(dshape[:b])
	perBatch := prod(ishape[b : q-1])
	// data viewed as [batches, dshape[b..b+kk], inner]: row strides in units of inner
	rs := strides(dshape[b : b+kk])
	sliceRows := prod(dshape[b : b+kk])
	rows = make([]int, batches*perBatch)
	raw := it.Ints()
	for bi := 0; bi < batches; bi++ {
		for j := 0; j < perBatch; j++ {
			t := bi*perBatch + j
			tuple := raw[t*kk : (t+1)*kk]
			r := bi * sliceRows
			for c, v := range tuple {
				d := int64(dshape[b+c])
				if v < 0 {
					v += d
				}
				if v < 0 || v >= d {
					return nil, 0, ops.IndexError("%s: index %d is out of range for dimension %d of %v", op, tuple[c], b+c, dshape)
				}
				r += int(v) * rs[c]
			}
			rows[t] = r
		}
	}
	return rows, inner, nil
}

func (k *gatherNDOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x, it := arg(in, 0), arg(in, 1)
	if err := checkData("GatherND", x); err != nil {
		return nil, err
	}
	if it == nil {
		return nil, badInput("GatherND: indices are missing")
	}
	rows, inner, err := ndRows("GatherND", x.Shape, it, k.batch)
	if err != nil {
		return nil, err
	}
	q := it.Rank()
	shape := append(append([]int{}, it.Shape[:q-1]...), x.Shape[k.batch+it.Shape[q-1]:]...)
	y, err := tensor.Make(x.DType, shape)
	if err != nil {
		return nil, err
	}
	gatherRows(y, x, rows, inner)
	return []*tensor.Tensor{y}, nil
}

func init() {
	ops.Register(ops.Def{Type: "Gather", Attrs: gatherAttrs, Traits: ops.HasFloat16, Prepare: prepareGather})
	ops.Register(ops.Def{Type: "GatherElements", Attrs: gatherAttrs, Traits: ops.HasFloat16, Prepare: prepareGatherElements})
	ops.Register(ops.Def{Type: "GatherND", Attrs: gatherNDAttrs, Traits: ops.HasFloat16, Prepare: prepareGatherND})
}
