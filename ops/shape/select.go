package shape

import (
	"cmp"
	"math"
	"sort"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// isNonZero reports whether element i of t is not zero (a non-empty string).
func isNonZero(t *tensor.Tensor, i int) bool {
	switch t.DType {
	case tensor.String:
		return t.Strings[i] != ""
	case tensor.Bool:
		return t.Data[i] != 0
	case tensor.Int64:
		return t.Int64s()[i] != 0
	case tensor.Uint64:
		return t.Uint64s()[i] != 0
	case tensor.Float32:
		return t.Float32s()[i] != 0
	}
	return t.Float(i) != 0
}

// nonZeroOp is ONNX NonZero: the coordinates of the non-zero elements, one
// row per axis, in row-major order.
type nonZeroOp struct{}

func (nonZeroOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("NonZero", in, 1); err != nil {
		return nil, err
	}
	t := ir.Type{DType: tensor.Int64}
	if s := in[0].Type.Shape; s != nil {
		t.Shape = ir.Shape{ir.D(int64(max(len(s), 1))), ir.U()}
	}
	return []ir.Type{t}, nil
}

func (nonZeroOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData("NonZero", x); err != nil {
		return nil, err
	}
	n := x.Len()
	var hits []int
	for i := 0; i < n; i++ {
		if isNonZero(x, i) {
			hits = append(hits, i)
		}
	}
	r := x.Rank()
	shape := x.Shape
	if r == 0 {
		r, shape = 1, []int{1}
	}
	y, err := tensor.Make(tensor.Int64, []int{r, len(hits)})
	if err != nil {
		return nil, err
	}
	out := y.Int64s()
	for j, h := range hits {
		for a := r - 1; a >= 0; a-- {
			out[a*len(hits)+j] = int64(h % shape[a])
			h /= shape[a]
		}
	}
	return []*tensor.Tensor{y}, nil
}

// compressOp is ONNX Compress: the slices along axis (of the flattened input
// when axis is absent) whose condition is true.
type compressOp struct {
	axis    int64
	hasAxis bool
}

func prepareCompress(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseCompressAttrs(n, opset)
	return &compressOp{axis: a.Axis, hasAxis: a.HasAxis}, err
}

func (k *compressOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("Compress", in, 2); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[0].Type.DType}
	count := ir.U()
	if c := in[1].Const; c != nil && checkData("Compress", c) == nil {
		n := 0
		for i := 0; i < c.Len(); i++ {
			if isNonZero(c, i) {
				n++
			}
		}
		count = ir.D(int64(n))
	}
	s := in[0].Type.Shape
	switch {
	case !k.hasAxis:
		t.Shape = ir.Shape{count}
	case s != nil:
		ax, err := normAxis("Compress", k.axis, len(s))
		if err != nil {
			return nil, err
		}
		t.Shape = s.Clone()
		t.Shape[ax] = count
	}
	return []ir.Type{t}, nil
}

func (k *compressOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x, c := arg(in, 0), arg(in, 1)
	if err := checkData("Compress", x); err != nil {
		return nil, err
	}
	if err := checkData("Compress", c); err != nil {
		return nil, err
	}
	if c.Rank() != 1 {
		return nil, badInput("Compress: condition has shape %v, want 1-D", c.Shape)
	}
	shape := x.Shape
	ax := 0
	if !k.hasAxis {
		shape = []int{x.Len()}
	} else {
		var err error
		if ax, err = normAxis("Compress", k.axis, x.Rank()); err != nil {
			return nil, err
		}
	}
	dim := shape[ax]
	var keep []int
	for i := 0; i < c.Len(); i++ {
		if isNonZero(c, i) {
			if i >= dim {
				return nil, badInput("Compress: condition of length %d for dimension %d", c.Len(), dim)
			}
			keep = append(keep, i)
		}
	}
	out := append([]int{}, shape...)
	out[ax] = len(keep)
	y, err := tensor.Make(x.DType, out)
	if err != nil {
		return nil, err
	}
	outer, inner := prod(shape[:ax]), prod(shape[ax+1:])
	rows := make([]int, 0, outer*len(keep))
	for o := 0; o < outer; o++ {
		for _, i := range keep {
			rows = append(rows, o*dim+i)
		}
	}
	gatherRows(y, x, rows, inner)
	return []*tensor.Tensor{y}, nil
}

// uniqueOp is ONNX Unique: the distinct elements (or slices along axis),
// sorted or in order of first occurrence, with their first indices, the
// inverse mapping and the counts.
type uniqueOp struct {
	sorted  bool
	axis    int64
	hasAxis bool
}

func prepareUnique(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseUniqueAttrs(n, opset)
	return &uniqueOp{sorted: a.Sorted, axis: a.Axis, hasAxis: a.HasAxis}, err
}

func (k *uniqueOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("Unique", in, 1); err != nil {
		return nil, err
	}
	y := ir.Type{DType: in[0].Type.DType, Shape: ir.Shape{ir.U()}}
	if s := in[0].Type.Shape; k.hasAxis {
		y.Shape = nil
		if s != nil {
			ax, err := normAxis("Unique", k.axis, len(s))
			if err != nil {
				return nil, err
			}
			y.Shape = s.Clone()
			y.Shape[ax] = ir.U()
		}
	}
	idx := ir.Type{DType: tensor.Int64, Shape: ir.Shape{ir.U()}}
	inv := idx
	if s := in[0].Type.Shape; s != nil {
		if k.hasAxis {
			if ax, err := normAxis("Unique", k.axis, len(s)); err == nil {
				inv.Shape = ir.Shape{s[ax]}
			}
		} else {
			inv.Shape = ir.Shape{ir.MulDims(s...)}
		}
	}
	return []ir.Type{y, idx, inv, idx}, nil
}

// compareElems orders element i of a before element j of b (same type).
func compareElems(a *tensor.Tensor, i int, b *tensor.Tensor, j int) int {
	switch {
	case a.DType == tensor.String:
		return cmp.Compare(a.Strings[i], b.Strings[j])
	case a.DType == tensor.Uint64:
		return cmp.Compare(a.Uint64s()[i], b.Uint64s()[j])
	case a.DType.IsInt():
		return cmp.Compare(a.Int(i), b.Int(j))
	}
	x, y := a.Float(i), b.Float(j)
	if math.IsNaN(x) || math.IsNaN(y) {
		return cmp.Compare(x, y) // NaNs first, and equal to each other
	}
	return cmp.Compare(x, y)
}

func (k *uniqueOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData("Unique", x); err != nil {
		return nil, err
	}
	shape := []int{x.Len()}
	ax := 0
	if k.hasAxis {
		var err error
		if ax, err = normAxis("Unique", k.axis, x.Rank()); err != nil {
			return nil, err
		}
		shape = x.Shape
	}
	outer, n, inner := prod(shape[:ax]), shape[ax], prod(shape[ax+1:])
	// item i is the slice at index i along axis, compared in row-major order
	cmpItems := func(i, j int) int {
		for o := 0; o < outer; o++ {
			for e := 0; e < inner; e++ {
				if c := compareElems(x, (o*n+i)*inner+e, x, (o*n+j)*inner+e); c != 0 {
					return c
				}
			}
		}
		return 0
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return cmpItems(order[a], order[b]) < 0 })
	// groups of equal items, each with its first index (the stable sort
	// keeps the smallest index first)
	group := make([]int, n) // item -> group
	var first []int
	var counts []int64
	for p, it := range order {
		if p == 0 || cmpItems(order[p-1], it) != 0 {
			first = append(first, it)
			counts = append(counts, 0)
		}
		g := len(first) - 1
		group[it] = g
		counts[g]++
	}
	// output position of each group
	pos := make([]int, len(first))
	for g := range pos {
		pos[g] = g
	}
	if !k.sorted {
		byFirst := make([]int, len(first))
		for g := range byFirst {
			byFirst[g] = g
		}
		sort.Slice(byFirst, func(a, b int) bool { return first[byFirst[a]] < first[byFirst[b]] })
		for p, g := range byFirst {
			pos[g] = p
		}
	}
	u := len(first)
	yshape := append([]int{}, shape...)
	yshape[ax] = u
	y, err := tensor.Make(x.DType, yshape)
	if err != nil {
		return nil, err
	}
	indices := tensor.New(tensor.Int64, u)
	inverse := tensor.New(tensor.Int64, n)
	cnt := tensor.New(tensor.Int64, u)
	rows := make([]int, outer*u)
	for g, f := range first {
		p := pos[g]
		indices.Int64s()[p] = int64(f)
		cnt.Int64s()[p] = counts[g]
		for o := 0; o < outer; o++ {
			rows[o*u+p] = o*n + f
		}
	}
	for i := 0; i < n; i++ {
		inverse.Int64s()[i] = int64(pos[group[i]])
	}
	gatherRows(y, x, rows, inner)
	return []*tensor.Tensor{y, indices, inverse, cnt}, nil
}

func init() {
	ops.Register(ops.Def{Type: "NonZero", Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return nonZeroOp{}, nil }})
	ops.Register(ops.Def{Type: "Compress", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseCompressAttrs(n, opset) }, Traits: ops.HasFloat16, Prepare: prepareCompress})
	ops.Register(ops.Def{Type: "Unique", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseUniqueAttrs(n, opset) }, Prepare: prepareUnique})
}
