package math

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// elems returns t's data as a slice of T, sharing its storage. The caller
// picks T to match t.DType (its size at least).
func elems[T any](t *tensor.Tensor) []T {
	var z T
	sz := int(unsafe.Sizeof(z))
	if len(t.Data) < sz {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&t.Data[0])), len(t.Data)/sz)
}

// plan is the broadcast of some operands to an output shape, with adjacent
// output dimensions merged wherever every operand walks them contiguously
// (or not at all), and dimensions of size 1 dropped. Along the innermost
// merged dimension every operand's stride is 0 or 1.
type plan struct {
	n    int     // output elements
	dims []int   // merged output dims, at least one
	st   [][]int // st[k][d]: element stride of operand k along dims[d]
}

func newPlan(out []int, ins ...[]int) *plan {
	p := &plan{n: tensor.NumElements(out), st: make([][]int, len(ins))}
	full := make([][]int, len(ins))
	for k, s := range ins {
		full[k] = ops.BroadcastStrides(s, out)
	}
	for d, sz := range out {
		if sz == 1 {
			continue
		}
		if last := len(p.dims) - 1; last >= 0 {
			merge := true
			for k := range ins {
				if p.st[k][last] != full[k][d]*sz {
					merge = false
					break
				}
			}
			if merge {
				p.dims[last] *= sz
				for k := range ins {
					p.st[k][last] = full[k][d]
				}
				continue
			}
		}
		p.dims = append(p.dims, sz)
		for k := range ins {
			p.st[k] = append(p.st[k], full[k][d])
		}
	}
	if len(p.dims) == 0 {
		p.dims = []int{1}
		for k := range ins {
			p.st[k] = []int{0}
		}
	}
	return p
}

// inner returns operand k's stride (0 or 1) along the innermost dimension.
func (p *plan) inner(k int) int { return p.st[k][len(p.dims)-1] }

// runs calls fn for each run of output elements [o, o+cnt) within [lo, hi)
// that lies inside one innermost row; offs[k] is operand k's offset of the
// run's first element (valid only during the call).
func (p *plan) runs(lo, hi int, fn func(o int, offs []int, cnt int)) {
	r := len(p.dims)
	coord := make([]int, r)
	offs := make([]int, len(p.st))
	rem := lo
	for d := r - 1; d >= 0; d-- {
		coord[d] = rem % p.dims[d]
		rem /= p.dims[d]
		for k := range offs {
			offs[k] += coord[d] * p.st[k][d]
		}
	}
	inner := p.dims[r-1]
	for o := lo; o < hi; {
		cnt := min(inner-coord[r-1], hi-o)
		fn(o, offs, cnt)
		o += cnt
		coord[r-1] += cnt
		for k := range offs {
			offs[k] += cnt * p.st[k][r-1]
		}
		if coord[r-1] < inner {
			continue
		}
		coord[r-1] = 0
		for k := range offs {
			offs[k] -= inner * p.st[k][r-1]
		}
		for d := r - 2; d >= 0; d-- {
			coord[d]++
			for k := range offs {
				offs[k] += p.st[k][d]
			}
			if coord[d] < p.dims[d] {
				break
			}
			coord[d] = 0
			for k := range offs {
				offs[k] -= p.dims[d] * p.st[k][d]
			}
		}
	}
}

// parallel runs fn over all output runs, split over the cores for big outputs.
func (p *plan) parallel(fn func(o int, offs []int, cnt int)) {
	parallel.For(p.n, ops.ElemGrain, func(lo, hi int) { p.runs(lo, hi, fn) })
}

// binaryLoop computes dst = f(a, b) elementwise over plan p of two operands.
func binaryLoop[A, B, C any](p *plan, a []A, b []B, dst []C, f func(A, B) C) {
	sa, sb := p.inner(0), p.inner(1)
	p.parallel(func(o int, offs []int, cnt int) {
		d := dst[o : o+cnt]
		ia, ib := offs[0], offs[1]
		switch {
		case sa == 1 && sb == 1:
			x, y := a[ia:ia+cnt], b[ib:ib+cnt]
			for i := range d {
				d[i] = f(x[i], y[i])
			}
		case sa == 1:
			x, y := a[ia:ia+cnt], b[ib]
			for i := range d {
				d[i] = f(x[i], y)
			}
		case sb == 1:
			x, y := a[ia], b[ib:ib+cnt]
			for i := range d {
				d[i] = f(x, y[i])
			}
		default:
			v := f(a[ia], b[ib])
			for i := range d {
				d[i] = v
			}
		}
	})
}

// unaryLoop computes dst = f(src) elementwise, split over the cores.
func unaryLoop[A, B any](src []A, dst []B, f func(A) B) {
	parallel.For(len(dst), ops.ElemGrain, func(lo, hi int) {
		s, d := src[lo:hi], dst[lo:hi]
		for i := range d {
			d[i] = f(s[i])
		}
	})
}

// halfToF32 returns the elements of a float16 or bfloat16 tensor as float32.
func halfToF32(t *tensor.Tensor) []float32 {
	h := elems[uint16](t)
	out := make([]float32, t.Len())
	if t.DType == tensor.BFloat16 {
		for i := range out {
			out[i] = tensor.BF16ToFloat32(h[i])
		}
	} else {
		for i := range out {
			out[i] = tensor.HalfToFloat32(h[i])
		}
	}
	return out
}

// storeHalf rounds v into the float16 or bfloat16 tensor t.
func storeHalf(t *tensor.Tensor, v []float32) {
	h := elems[uint16](t)
	if t.DType == tensor.BFloat16 {
		for i, x := range v {
			h[i] = tensor.Float32ToBF16(x)
		}
	} else {
		for i, x := range v {
			h[i] = tensor.Float32ToHalf(x)
		}
	}
}

// isHalf reports whether dt is a 16-bit float type computed through float32.
func isHalf(dt tensor.DType) bool { return dt == tensor.Float16 || dt == tensor.BFloat16 }

// checkInputs returns an error unless in has between lo and hi entries and
// the first lo are present.
func checkInputs[T comparable](name string, in []T, lo, hi int) error {
	var zero T
	if len(in) < lo || len(in) > hi {
		if lo == hi {
			return fmt.Errorf("%w: %s takes %d inputs, got %d", ops.ErrBadInput, name, lo, len(in))
		}
		return fmt.Errorf("%w: %s takes %d to %d inputs, got %d", ops.ErrBadInput, name, lo, hi, len(in))
	}
	for i := 0; i < lo; i++ {
		if in[i] == zero {
			return fmt.Errorf("%w: %s input %d is missing", ops.ErrBadInput, name, i)
		}
	}
	return nil
}

// sameDType returns an error when two known dtypes differ.
func sameDType(name string, a, b tensor.DType) error {
	if a != tensor.Undefined && b != tensor.Undefined && a != b {
		return fmt.Errorf("%w: %s inputs have types %v and %v", ops.ErrBadInput, name, a, b)
	}
	return nil
}

// inferBroadcast infers the output of an elementwise op of the given inputs
// whose output type is dt.
func inferBroadcast(dt tensor.DType, in ...*ir.Value) ([]ir.Type, error) {
	s, err := ops.InferBroadcast(in...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	return []ir.Type{{DType: dt, Shape: s}}, nil
}

// badType is the error for an input of a type an op does not take.
func badType(name string, dt tensor.DType) error {
	return fmt.Errorf("%w: %s does not take %v inputs", ops.ErrBadInput, name, dt)
}

// broadcastOut returns an output of type dt with the broadcast shape of the
// tensors (see ops.NewOutput: callers write every element).
func broadcastOut(env *ops.Env, dt tensor.DType, ts ...*tensor.Tensor) (*tensor.Tensor, error) {
	if len(ts) == 2 {
		var sb [8]int // on the stack: NewOutput copies the shape
		if shape, ok := ops.BroadcastShapeInto(sb[:], ts[0].Shape, ts[1].Shape); ok {
			return ops.NewOutput(env, dt, shape)
		}
	}
	shapes := make([][]int, len(ts))
	for i, t := range ts {
		shapes[i] = t.Shape
	}
	shape, err := ops.BroadcastShape(shapes...)
	if err != nil {
		return nil, err
	}
	return ops.NewOutput(env, dt, shape)
}

// checkTensors is checkInputs for run-time tensors, which it also checks for
// consistency: a valid type, a valid shape, and enough data for it.
func checkTensors(name string, in []*tensor.Tensor, lo, hi int) error {
	if err := checkInputs(name, in, lo, hi); err != nil {
		return err
	}
	for i, t := range in {
		if t == nil {
			continue
		}
		if err := wellFormed(t); err != nil {
			return fmt.Errorf("%w: %s input %d: %v", ops.ErrBadInput, name, i, err)
		}
	}
	return nil
}

// wellFormed checks that t's storage holds the elements its shape says.
func wellFormed(t *tensor.Tensor) error {
	if !t.DType.Valid() {
		return fmt.Errorf("unsupported type %v", t.DType)
	}
	if err := tensor.CheckShape(t.Shape); err != nil {
		return err
	}
	n := t.Len()
	if t.DType == tensor.String {
		if len(t.Strings) < n {
			return fmt.Errorf("%d strings for shape %v", len(t.Strings), t.Shape)
		}
		return nil
	}
	if len(t.Data) < n*t.DType.Size() {
		return fmt.Errorf("%d bytes for %v%v", len(t.Data), t.DType, t.Shape)
	}
	return nil
}

// convert stores src converted to D in dst, with Go's conversion rules
// (integers wrap, floats truncate toward zero).
func convert[S, D ops.Number](src []S, dst []D) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = D(v)
	}
}

// numbers returns the elements of a numeric or bool tensor converted to D.
func numbers[D ops.Number](t *tensor.Tensor) []D {
	n := t.Len()
	out := make([]D, n)
	switch t.DType {
	case tensor.Float32:
		convert(elems[float32](t), out)
	case tensor.Float64:
		convert(elems[float64](t), out)
	case tensor.Float16, tensor.BFloat16:
		convert(halfToF32(t), out)
	case tensor.Int8:
		convert(elems[int8](t), out)
	case tensor.Int16:
		convert(elems[int16](t), out)
	case tensor.Int32:
		convert(elems[int32](t), out)
	case tensor.Int64:
		convert(elems[int64](t), out)
	case tensor.Uint8:
		convert(elems[uint8](t), out)
	case tensor.Uint16:
		convert(elems[uint16](t), out)
	case tensor.Uint32:
		convert(elems[uint32](t), out)
	case tensor.Uint64:
		convert(elems[uint64](t), out)
	case tensor.Bool:
		for i, b := range elems[bool](t)[:n] {
			if b {
				out[i] = 1
			}
		}
	}
	return out
}

// store writes v converted to t's numeric or bool type into t.
func store[S ops.Number](t *tensor.Tensor, v []S) {
	switch t.DType {
	case tensor.Float32:
		convert(v, elems[float32](t))
	case tensor.Float64:
		convert(v, elems[float64](t))
	case tensor.Float16, tensor.BFloat16:
		f := make([]float32, len(v))
		if f64, ok := any(v).([]float64); ok {
			// one rounding from float64: through float32 rounded to odd
			for i, x := range f64 {
				f[i] = toOddF32(x)
			}
		} else {
			convert(v, f)
		}
		storeHalf(t, f)
	case tensor.Int8:
		convert(v, elems[int8](t))
	case tensor.Int16:
		convert(v, elems[int16](t))
	case tensor.Int32:
		convert(v, elems[int32](t))
	case tensor.Int64:
		convert(v, elems[int64](t))
	case tensor.Uint8:
		convert(v, elems[uint8](t))
	case tensor.Uint16:
		convert(v, elems[uint16](t))
	case tensor.Uint32:
		convert(v, elems[uint32](t))
	case tensor.Uint64:
		convert(v, elems[uint64](t))
	case tensor.Bool:
		b := elems[bool](t)
		for i, x := range v {
			b[i] = x != 0
		}
	}
}

// toOddF32 rounds x to float32 toward zero and sets the last bit when that
// was inexact ("round to odd"), so that a second rounding to a narrower type
// gives the correctly rounded result.
func toOddF32(x float64) float32 {
	f := float32(x)
	if float64(f) == x || f != f || math.IsInf(float64(f), 0) && math.IsInf(x, 0) {
		return f
	}
	bits := math.Float32bits(f)
	if math.Abs(float64(f)) > math.Abs(x) {
		bits-- // back toward zero
	}
	return math.Float32frombits(bits | 1)
}

// legacyBcast is the broadcasting of binary ops before opset 7: with
// broadcast=1 and an axis, B's shape lines up with A's starting at axis
// (B gets trailing 1s); otherwise B lines up with A's trailing dims, which
// is what numpy broadcasting does as well.
type legacyBcast struct {
	on   bool
	axis int64
}

// readLegacy reads n's broadcasting attributes (ops.BroadcastAttrs).
func readLegacy(n *ir.Node, opset int64) (legacyBcast, error) {
	a, err := ops.ParseBroadcastAttrs(n, opset)
	return legacyBcast{on: a.Legacy, axis: a.Axis}, err
}

// broadcastAttrs is the Def.Attrs of the binary ops whose only attributes
// are the broadcasting ones.
func broadcastAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseBroadcastAttrs(n, opset) }

// shape returns B's shape lined up with a rank-ra A.
func (l legacyBcast) shape(ra, rb int) (pad int, err error) {
	axis := l.axis
	if axis < 0 {
		axis += int64(ra)
	}
	if axis < 0 || int(axis)+rb > ra {
		return 0, fmt.Errorf("%w: broadcast axis %d for ranks %d and %d", ops.ErrBadInput, l.axis, ra, rb)
	}
	return ra - int(axis) - rb, nil
}

// tensor returns b reshaped (sharing storage) to line up with a.
func (l legacyBcast) tensor(a, b *tensor.Tensor) (*tensor.Tensor, error) {
	if !l.on {
		return b, nil
	}
	pad, err := l.shape(len(a.Shape), len(b.Shape))
	if err != nil || pad == 0 {
		return b, err
	}
	c := *b
	c.Shape = append(append([]int{}, b.Shape...), make([]int, pad)...)
	for i := len(b.Shape); i < len(c.Shape); i++ {
		c.Shape[i] = 1
	}
	return &c, nil
}

// value returns b with its shape lined up with a (unknown when a's rank is).
func (l legacyBcast) value(a, b *ir.Value) (*ir.Value, error) {
	if !l.on || b == nil || a == nil || b.Type.Shape == nil {
		return b, nil
	}
	c := *b
	if a.Type.Shape == nil {
		c.Type.Shape = nil
		return &c, nil
	}
	pad, err := l.shape(len(a.Type.Shape), len(b.Type.Shape))
	if err != nil {
		return nil, err
	}
	c.Type.Shape = b.Type.Shape.Clone()
	for i := 0; i < pad; i++ {
		c.Type.Shape = append(c.Type.Shape, ir.D(1))
	}
	return &c, nil
}
