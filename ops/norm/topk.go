package norm

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// topKOp is TopK: the k largest (or smallest) elements along axis and their
// int64 indices, sorted, equal values in index order, NaNs last. k is an
// attribute before opset 10 and the second input from then on.
type topKOp struct {
	axis    int64
	largest bool
	k       int64 // the attribute (opset < 10), else -1
}

func prepareTopK(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseTopKAttrs(n, opset)
	// sorted=0 leaves the order unspecified: the sorted order is one.
	return &topKOp{axis: a.Axis, largest: a.Largest, k: a.K}, err
}

// topKAttrs is TopK's Def.Attrs.
func topKAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseTopKAttrs(n, opset) }

// kOf returns k from the attribute or the K input tensor.
func (k *topKOp) kOf(kt *tensor.Tensor) (int, error) {
	if k.k >= 0 {
		return int(k.k), nil
	}
	if kt == nil {
		return 0, fmt.Errorf("%w: TopK needs input K", ops.ErrBadInput)
	}
	if !kt.DType.IsInt() || kt.Len() != 1 || kt.Rank() > 1 {
		return 0, fmt.Errorf("%w: TopK K must be a 1-element integer tensor, got %v%v", ops.ErrBadInput, kt.DType, kt.Shape)
	}
	v := kt.Int(0)
	if v < 0 {
		return 0, fmt.Errorf("%w: TopK K=%d is negative", ops.ErrBadInput, v)
	}
	return int(min(v, 1<<40)), nil
}

func (k *topKOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("TopK", in, 1); err != nil {
		return nil, err
	}
	t := in[0].Type
	if t.DType != tensor.Undefined && !numericType(t.DType) {
		return nil, fmt.Errorf("%w: TopK of %v", ops.ErrBadInput, t.DType)
	}
	vals, idx := ir.Type{DType: t.DType}, ir.Type{DType: tensor.Int64}
	ax, ok, err := inferAxis("TopK", k.axis, t.Shape)
	if err != nil || !ok {
		return []ir.Type{vals, idx}, err
	}
	s := t.Shape.Clone()
	s[ax] = ir.U()
	if k.k >= 0 {
		s[ax] = ir.D(k.k)
	} else if kv := input(in, 1); kv != nil && kv.Const != nil {
		kk, err := k.kOf(kv.Const)
		if err != nil {
			return nil, err
		}
		s[ax] = ir.D(int64(kk))
	}
	if d := t.Shape[ax]; d.Known() && s[ax].Known() && s[ax].Val > d.Val {
		return nil, fmt.Errorf("%w: TopK k=%d exceeds axis size %d", ops.ErrBadInput, s[ax].Val, d.Val)
	}
	vals.Shape, idx.Shape = s, s.Clone()
	return []ir.Type{vals, idx}, nil
}

func (k *topKOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needTensors("TopK", in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if !numericType(x.DType) {
		return nil, fmt.Errorf("%w: TopK of %v", ops.ErrBadInput, x.DType)
	}
	kk, err := k.kOf(input(in, 1))
	if err != nil {
		return nil, err
	}
	ax, err := normAxis("TopK", k.axis, x.Rank())
	if err != nil {
		return nil, err
	}
	if kk > x.Shape[ax] {
		return nil, fmt.Errorf("%w: TopK k=%d exceeds axis size %d", ops.ErrBadInput, kk, x.Shape[ax])
	}
	shape := slices.Clone(x.Shape)
	shape[ax] = kk
	vals, err := tensor.Make(x.DType, shape)
	if err != nil {
		return nil, err
	}
	idx, err := tensor.Make(tensor.Int64, shape)
	if err != nil {
		return nil, err
	}
	outer, n, inner := product(x.Shape[:ax]), x.Shape[ax], product(x.Shape[ax+1:])
	g := topKGeom{outer: outer, n: n, inner: inner, k: kk, largest: k.largest}
	iv := idx.Int64s()
	switch x.DType {
	case tensor.Float32:
		topK(x.Float32s(), vals.Float32s(), iv, g)
	case tensor.Float16, tensor.BFloat16:
		out := make([]float32, vals.Len())
		topK(float32s(x), out, iv, g)
		for i, v := range out {
			vals.SetFloat(i, float64(v))
		}
	case tensor.Float64:
		topK(x.Float64s(), vals.Float64s(), iv, g)
	case tensor.Int8:
		topK(x.Int8s(), vals.Int8s(), iv, g)
	case tensor.Int16:
		topK(x.Int16s(), vals.Int16s(), iv, g)
	case tensor.Int32:
		topK(x.Int32s(), vals.Int32s(), iv, g)
	case tensor.Int64:
		topK(x.Int64s(), vals.Int64s(), iv, g)
	case tensor.Uint8:
		topK(x.Uint8s(), vals.Uint8s(), iv, g)
	case tensor.Uint16:
		topK(x.Uint16s(), vals.Uint16s(), iv, g)
	case tensor.Uint32:
		topK(x.Uint32s(), vals.Uint32s(), iv, g)
	case tensor.Uint64:
		topK(x.Uint64s(), vals.Uint64s(), iv, g)
	}
	return []*tensor.Tensor{vals, idx}, nil
}

// topKGeom is the view of a TopK input as [outer, n, inner], selecting k
// along the middle dim.
type topKGeom struct {
	outer, n, inner, k int
	largest            bool
}

// topK selects, for every (outer, inner) position, the k best elements.
func topK[T ops.Number](x, vals []T, idx []int64, g topKGeom) {
	if g.k == 0 || len(vals) == 0 {
		return
	}
	// cmpf orders element a (index ia) against b (index ib): best first.
	cmpf := func(a, b T, ia, ib int) int {
		an, bn := a != a, b != b
		switch {
		case an && bn:
		case an:
			return 1
		case bn:
			return -1
		case a != b:
			if (a > b) == g.largest {
				return -1
			}
			return 1
		}
		return cmp.Compare(ia, ib)
	}
	parallel.For(g.outer*g.inner, max(1, rowGrain/max(g.n, 1)), func(lo, hi int) {
		order := make([]int32, g.n)
		for t := lo; t < hi; t++ {
			o, i := t/g.inner, t%g.inner
			base := o*g.n*g.inner + i
			for j := range order {
				order[j] = int32(j)
			}
			c := func(a, b int32) int {
				return cmpf(x[base+int(a)*g.inner], x[base+int(b)*g.inner], int(a), int(b))
			}
			if g.k*4 < g.n {
				partialSort(order, g.k, c)
			} else {
				slices.SortFunc(order, c)
			}
			ob := o*g.k*g.inner + i
			for j := 0; j < g.k; j++ {
				src := int(order[j])
				vals[ob+j*g.inner] = x[base+src*g.inner]
				idx[ob+j*g.inner] = int64(src)
			}
		}
	})
}

// partialSort moves the k smallest elements of s under c, sorted, to its
// front: a bounded max-heap of k elements, then a sort of the heap.
func partialSort(s []int32, k int, c func(a, b int32) int) {
	h := s[:k]
	// sift down in a max-heap (largest under c at the root)
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= k {
				return
			}
			if r := l + 1; r < k && c(h[r], h[l]) > 0 {
				l = r
			}
			if c(h[l], h[i]) <= 0 {
				return
			}
			h[i], h[l] = h[l], h[i]
			i = l
		}
	}
	for i := k/2 - 1; i >= 0; i-- {
		down(i)
	}
	for j := k; j < len(s); j++ {
		if c(s[j], h[0]) < 0 {
			h[0] = s[j]
			down(0)
		}
	}
	slices.SortFunc(h, c)
}

func init() {
	ops.Register(ops.Def{Type: "TopK", Attrs: topKAttrs, Prepare: prepareTopK})
}
