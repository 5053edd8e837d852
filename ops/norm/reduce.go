package norm

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// reduceKind selects one of the Reduce* operators.
type reduceKind int

const (
	rSum reduceKind = iota
	rMean
	rMax
	rMin
	rProd
	rL1
	rL2
	rLogSum
	rLogSumExp
	rSumSquare
)

var reduceNames = map[reduceKind]string{
	rSum: "ReduceSum", rMean: "ReduceMean", rMax: "ReduceMax", rMin: "ReduceMin", rProd: "ReduceProd",
	rL1: "ReduceL1", rL2: "ReduceL2", rLogSum: "ReduceLogSum", rLogSumExp: "ReduceLogSumExp",
	rSumSquare: "ReduceSumSquare",
}

// reduceOp is one Reduce* operator. Its axes come from the axes attribute
// (ReduceSum before opset 13, the others before 18) or from the optional
// second input (later opsets).
type reduceOp struct {
	kind      reduceKind
	name      string
	axes      []int64 // the attribute; nil when absent or empty
	axesInput bool
	keepdims  bool
	noop      bool // noop_with_empty_axes
}

func prepareReduce(kind reduceKind) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseReduceAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		return &reduceOp{kind: kind, name: reduceNames[kind], axes: a.Axes, axesInput: a.AxesInput, keepdims: a.KeepDims, noop: a.NoopWithEmptyAxes}, nil
	}
}

// reduceAttrs is the Def.Attrs of the reductions.
func reduceAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseReduceAttrs(n, opset) }

// reduceTypeOK reports whether the op accepts element type dt.
func (k *reduceOp) typeOK(dt tensor.DType) bool {
	if isFloatType(dt) || dt.IsInt() {
		return true
	}
	return dt == tensor.Bool && (k.kind == rMax || k.kind == rMin)
}

// axesFrom returns the requested axes, whether they are known, from the
// attribute or the axes input value.
func (k *reduceOp) axesOf(in []*ir.Value) ([]int64, bool) {
	if !k.axesInput {
		return k.axes, true
	}
	v := input(in, 1)
	if v == nil {
		return k.axes, true
	}
	if v.Const == nil {
		return nil, false
	}
	return v.Const.Ints(), true
}

// reducedDims resolves axes against rank: the set of reduced dims, or an
// error for an out-of-range or repeated axis.
func (k *reduceOp) reducedDims(axes []int64, rank int) ([]bool, error) {
	red := make([]bool, rank)
	if len(axes) == 0 {
		if !k.noop {
			for i := range red {
				red[i] = true
			}
		}
		return red, nil
	}
	for _, a := range axes {
		ax, err := normAxis(k.name, a, rank)
		if err != nil {
			return nil, err
		}
		if red[ax] {
			return nil, fmt.Errorf("%w: %s axis %d repeated", ops.ErrBadInput, k.name, a)
		}
		red[ax] = true
	}
	return red, nil
}

func (k *reduceOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues(k.name, in, 1); err != nil {
		return nil, err
	}
	t := in[0].Type
	if t.DType != tensor.Undefined && !k.typeOK(t.DType) {
		return nil, fmt.Errorf("%w: %s of %v", ops.ErrBadInput, k.name, t.DType)
	}
	out := ir.Type{DType: t.DType}
	if t.Shape == nil {
		return []ir.Type{out}, nil
	}
	axes, known := k.axesOf(in)
	if !known {
		if k.keepdims {
			out.Shape = make(ir.Shape, len(t.Shape))
			for i, d := range t.Shape {
				out.Shape[i] = ir.U()
				if d.Known() && d.Val == 1 {
					out.Shape[i] = d
				}
			}
		}
		return []ir.Type{out}, nil
	}
	red, err := k.reducedDims(axes, len(t.Shape))
	if err != nil {
		return nil, err
	}
	out.Shape = ir.Shape{}
	for i, d := range t.Shape {
		switch {
		case !red[i]:
			out.Shape = append(out.Shape, d)
		case k.keepdims:
			out.Shape = append(out.Shape, ir.D(1))
		}
	}
	return []ir.Type{out}, nil
}

func (k *reduceOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needTensors(k.name, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if !k.typeOK(x.DType) {
		return nil, fmt.Errorf("%w: %s of %v", ops.ErrBadInput, k.name, x.DType)
	}
	axes := k.axes
	if k.axesInput {
		if a := input(in, 1); a != nil {
			if !a.DType.IsInt() || a.Rank() > 1 {
				return nil, fmt.Errorf("%w: %s axes must be a 1-D integer tensor, got %v%v", ops.ErrBadInput, k.name, a.DType, a.Shape)
			}
			axes = a.Ints()
		}
	}
	red, err := k.reducedDims(axes, x.Rank())
	if err != nil {
		return nil, err
	}
	var outShape []int
	for i, d := range x.Shape {
		switch {
		case !red[i]:
			outShape = append(outShape, d)
		case k.keepdims:
			outShape = append(outShape, 1)
		}
	}
	if outShape == nil {
		outShape = []int{}
	}
	lay := makeLayout(x.Shape, red)
	if x.DType == tensor.Float16 || x.DType == tensor.BFloat16 {
		out, err := newFloatOut(env, x.DType, outShape)
		if err != nil {
			return nil, err
		}
		reduceFloat(k.kind, float32s(x), out.f32, lay)
		return []*tensor.Tensor{out.done()}, nil
	}
	out, err := ops.NewOutput(env, x.DType, outShape)
	if err != nil {
		return nil, err
	}
	switch x.DType {
	case tensor.Float32:
		reduceFloat(k.kind, x.Float32s(), out.Float32s(), lay)
	case tensor.Float64:
		reduceFloat(k.kind, x.Float64s(), out.Float64s(), lay)
	case tensor.Int8:
		reduceInt(k.kind, x.Int8s(), out.Int8s(), lay)
	case tensor.Int16:
		reduceInt(k.kind, x.Int16s(), out.Int16s(), lay)
	case tensor.Int32:
		reduceInt(k.kind, x.Int32s(), out.Int32s(), lay)
	case tensor.Int64:
		reduceInt(k.kind, x.Int64s(), out.Int64s(), lay)
	case tensor.Uint8:
		reduceInt(k.kind, x.Uint8s(), out.Uint8s(), lay)
	case tensor.Bool:
		reduceInt(k.kind, x.Data, out.Data, lay)
	case tensor.Uint16:
		reduceInt(k.kind, x.Uint16s(), out.Uint16s(), lay)
	case tensor.Uint32:
		reduceInt(k.kind, x.Uint32s(), out.Uint32s(), lay)
	case tensor.Uint64:
		reduceInt(k.kind, x.Uint64s(), out.Uint64s(), lay)
	default:
		return nil, fmt.Errorf("%w: %s of %v", ops.ErrBadInput, k.name, x.DType)
	}
	return []*tensor.Tensor{out}, nil
}

// layout describes how the elements of a reduction are found. When offs is
// nil the input is [outer, n, inner] and the output [outer, inner], reducing
// the middle dim; otherwise output element o reduces the input elements at
// base[o] + offs[r] for every r.
type layout struct {
	outer, n, inner int
	base, offs      []int
}

// makeLayout coalesces the dims of shape into runs of reduced and kept dims
// (dims of size 1 belong to neither) and picks the [outer, n, inner] form
// when the reduced dims are one run, else the general offsets form.
func makeLayout(shape []int, red []bool) layout {
	type run struct {
		size int
		red  bool
	}
	var runs []run
	for i, d := range shape {
		if d == 1 {
			continue
		}
		if len(runs) > 0 && runs[len(runs)-1].red == red[i] {
			runs[len(runs)-1].size *= d
			continue
		}
		runs = append(runs, run{d, red[i]})
	}
	nred := 0
	for _, r := range runs {
		if r.red {
			nred++
		}
	}
	l := layout{outer: 1, n: 1, inner: 1}
	if nred <= 1 {
		seen := false
		for _, r := range runs {
			switch {
			case r.red:
				l.n, seen = r.size, true
			case seen:
				l.inner *= r.size
			default:
				l.outer *= r.size
			}
		}
		return l
	}
	strides := tensor.Strides(shape)
	var ks, kst, rs, rst []int
	for i, d := range shape {
		if red[i] {
			rs, rst = append(rs, d), append(rst, strides[i])
		} else {
			ks, kst = append(ks, d), append(kst, strides[i])
		}
	}
	l.base, l.offs = offsets(ks, kst), offsets(rs, rst)
	l.outer, l.n = len(l.base), len(l.offs)
	return l
}

// offsets lists, in row-major order, the flat offsets sum(idx[i]*strides[i])
// of every index of a box of the given sizes.
func offsets(sizes, strides []int) []int {
	out := make([]int, 0, product(sizes))
	idx := make([]int, len(sizes))
	if product(sizes) == 0 {
		return out
	}
	off := 0
	for {
		out = append(out, off)
		d := len(sizes) - 1
		for ; d >= 0; d-- {
			idx[d]++
			off += strides[d]
			if idx[d] < sizes[d] {
				break
			}
			off -= strides[d] * sizes[d]
			idx[d] = 0
		}
		if d < 0 {
			return out
		}
	}
}

// reduceFloat reduces x into y as laid out by l.
func reduceFloat[T ops.Float](kind reduceKind, x, y []T, l layout) {
	if len(y) == 0 {
		return
	}
	switch {
	case l.offs != nil:
		parallel.For(l.outer, max(1, rowGrain/max(l.n, 1)), func(lo, hi int) {
			buf := make([]T, l.n)
			for o := lo; o < hi; o++ {
				b := l.base[o]
				for r, off := range l.offs {
					buf[r] = x[b+off]
				}
				y[o] = reduceRowF(kind, buf)
			}
		})
	case l.inner == 1 && l.outer < parallel.Threads() && l.n >= 1<<16 && kind != rProd && kind != rLogSumExp:
		for o := 0; o < l.outer; o++ {
			y[o] = reduceLongRow(kind, x[o*l.n:(o+1)*l.n])
		}
	case l.inner == 1:
		n := l.n
		parallel.For(l.outer, max(1, rowGrain/max(n, 1)), func(lo, hi int) {
			for o := lo; o < hi; o++ {
				y[o] = reduceRowF(kind, x[o*n:(o+1)*n])
			}
		})
	default:
		reduceColumnsF(kind, x, y, l)
	}
}

// term returns the per-element term a sum kind adds up.
func term[T ops.Float](kind reduceKind, v T) float64 {
	switch kind {
	case rL1:
		return math.Abs(float64(v))
	case rL2, rSumSquare:
		return float64(v) * float64(v)
	}
	return float64(v)
}

// finish turns the sum s of n terms into the result of a sum kind.
func finish(kind reduceKind, s float64, n int) float64 {
	switch kind {
	case rMean:
		return s / float64(n)
	case rL2:
		return math.Sqrt(s)
	case rLogSum:
		return math.Log(s)
	}
	return s
}

// sumTerms adds up the terms of kind over x with four accumulators.
func sumTerms[T ops.Float](kind reduceKind, x []T) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	switch kind {
	case rL1:
		for ; i+4 <= len(x); i += 4 {
			s0 += math.Abs(float64(x[i]))
			s1 += math.Abs(float64(x[i+1]))
			s2 += math.Abs(float64(x[i+2]))
			s3 += math.Abs(float64(x[i+3]))
		}
	case rL2, rSumSquare:
		for ; i+4 <= len(x); i += 4 {
			a, b, c, d := float64(x[i]), float64(x[i+1]), float64(x[i+2]), float64(x[i+3])
			s0 += a * a
			s1 += b * b
			s2 += c * c
			s3 += d * d
		}
	default:
		for ; i+4 <= len(x); i += 4 {
			s0 += float64(x[i])
			s1 += float64(x[i+1])
			s2 += float64(x[i+2])
			s3 += float64(x[i+3])
		}
	}
	for ; i < len(x); i++ {
		s0 += term(kind, x[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// maxOf and minOf return the extreme of x (NaN if x holds one), or -Inf/+Inf
// for an empty x.
func maxOf[T ops.Float](x []T) T {
	m := T(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		} else if v != v {
			return v
		}
	}
	return m
}

func minOf[T ops.Float](x []T) T {
	m := T(math.Inf(1))
	for _, v := range x {
		if v < m {
			m = v
		} else if v != v {
			return v
		}
	}
	return m
}

// reduceRowF reduces the contiguous elements x.
func reduceRowF[T ops.Float](kind reduceKind, x []T) T {
	switch kind {
	case rMax:
		return maxOf(x)
	case rMin:
		return minOf(x)
	case rProd:
		p := 1.0
		for _, v := range x {
			p *= float64(v)
		}
		return T(p)
	case rLogSumExp:
		m := float64(maxOf(x))
		if math.IsInf(m, 0) || math.IsNaN(m) {
			return T(m)
		}
		var s float64
		for _, v := range x {
			s += math.Exp(float64(v) - m)
		}
		return T(m + math.Log(s))
	}
	return T(finish(kind, sumTerms(kind, x), len(x)))
}

// reduceLongRow reduces one long contiguous row with all cores: partial
// results of chunks are combined. kind is a sum kind, rMax or rMin.
func reduceLongRow[T ops.Float](kind reduceKind, x []T) T {
	nt := parallel.Threads()
	parts := make([]float64, nt)
	chunk := (len(x) + nt - 1) / nt
	parallel.For(nt, 1, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			s := x[min(p*chunk, len(x)):min((p+1)*chunk, len(x))]
			switch kind {
			case rMax:
				parts[p] = float64(maxOf(s))
			case rMin:
				parts[p] = float64(minOf(s))
			default:
				parts[p] = sumTerms(kind, s)
			}
		}
	})
	switch kind {
	case rMax:
		return T(maxOf(parts))
	case rMin:
		return T(minOf(parts))
	}
	var s float64
	for _, v := range parts {
		s += v
	}
	return T(finish(kind, s, len(x)))
}

// reduceColumnsF reduces the middle dim of x viewed as [outer, n, inner],
// a whole inner row at a time.
func reduceColumnsF[T ops.Float](kind reduceKind, x, y []T, l layout) {
	n, inner := l.n, l.inner
	// Split over outer blocks and, within them, over inner chunks.
	const chunk = 1024
	nch := (inner + chunk - 1) / chunk
	parallel.For(l.outer*nch, max(1, rowGrain/max(n*min(inner, chunk), 1)), func(lo, hi int) {
		acc := make([]float64, min(inner, chunk))
		m := make([]T, min(inner, chunk))
		for t := lo; t < hi; t++ {
			o, c := t/nch, t%nch
			i0, i1 := c*chunk, min((c+1)*chunk, inner)
			w := i1 - i0
			yo := y[o*inner+i0 : o*inner+i1]
			base := o*n*inner + i0
			switch kind {
			case rMax, rMin:
				for i := range w {
					m[i] = T(math.Inf(1))
					if kind == rMax {
						m[i] = T(math.Inf(-1))
					}
				}
				for j := 0; j < n; j++ {
					row := x[base+j*inner : base+j*inner+w]
					for i, v := range row {
						if (kind == rMax && v > m[i]) || (kind == rMin && v < m[i]) || v != v {
							m[i] = v
						}
					}
				}
				copy(yo, m[:w])
			case rProd, rLogSumExp:
				buf := make([]T, n)
				for i := range w {
					for j := range buf {
						buf[j] = x[base+j*inner+i]
					}
					yo[i] = reduceRowF(kind, buf)
				}
			default:
				a := acc[:w]
				clear(a)
				for j := 0; j < n; j++ {
					row := x[base+j*inner : base+j*inner+w]
					switch kind {
					case rL1:
						for i, v := range row {
							a[i] += math.Abs(float64(v))
						}
					case rL2, rSumSquare:
						for i, v := range row {
							a[i] += float64(v) * float64(v)
						}
					default:
						for i, v := range row {
							a[i] += float64(v)
						}
					}
				}
				for i, s := range a {
					yo[i] = T(finish(kind, s, n))
				}
			}
		}
	})
}

// integer is the set of Go types integer tensors (and bool, as bytes) hold.
type integer interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// reduceInt reduces integer x into y as laid out by l; sums and products
// wrap around in the element type, other kinds go through float64.
func reduceInt[T integer](kind reduceKind, x, y []T, l layout) {
	if len(y) == 0 {
		return
	}
	parallel.For(l.outer*l.inner, max(1, rowGrain/max(l.n, 1)), func(lo, hi int) {
		buf := make([]T, l.n)
		for t := lo; t < hi; t++ {
			if l.offs != nil {
				b := l.base[t]
				for r, off := range l.offs {
					buf[r] = x[b+off]
				}
			} else {
				o, i := t/l.inner, t%l.inner
				for j := range buf {
					buf[j] = x[(o*l.n+j)*l.inner+i]
				}
			}
			y[t] = reduceRowI(kind, buf)
		}
	})
}

// reduceRowI reduces the integer elements x.
func reduceRowI[T integer](kind reduceKind, x []T) T {
	var s T
	switch kind {
	case rSum, rMean, rLogSum:
		var f float64
		for _, v := range x {
			s += v
			f += float64(v)
		}
		switch kind {
		case rMean:
			return T(f / float64(len(x)))
		case rLogSum:
			return T(math.Log(f))
		}
		return s
	case rSumSquare, rL2:
		for _, v := range x {
			s += v * v
		}
		if kind == rL2 {
			return T(math.Sqrt(float64(s)))
		}
		return s
	case rL1:
		for _, v := range x {
			if v < 0 {
				v = -v
			}
			s += v
		}
		return s
	case rProd:
		s = 1
		for _, v := range x {
			s *= v
		}
		return s
	case rMax, rMin:
		if len(x) == 0 {
			lo, hi := intRange[T]()
			if kind == rMax {
				return lo
			}
			return hi
		}
		s = x[0]
		for _, v := range x[1:] {
			if (kind == rMax && v > s) || (kind == rMin && v < s) {
				s = v
			}
		}
		return s
	case rLogSumExp:
		var f float64
		for _, v := range x {
			f += math.Exp(float64(v))
		}
		return T(math.Log(f))
	}
	return s
}

// intRange returns the smallest and largest values of T.
func intRange[T integer]() (lo, hi T) {
	hi = ^T(0)
	if hi < 0 { // signed: all ones is -1
		var z T
		hi = ^(T(1) << (8*unsafe.Sizeof(z) - 1))
		lo = ^hi
	}
	return lo, hi
}

func init() {
	for kind, name := range reduceNames {
		ops.Register(ops.Def{Type: name, Prepare: prepareReduce(kind), Attrs: reduceAttrs})
	}
}
