package shape

import (
	"strconv"
	"strings"
	"unsafe"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// Shared helpers of package ops, under the names this package uses.
var (
	badInput = ops.BadInput
	normAxis = ops.NormAxis
)

// arg returns in[i], or nil when it is absent.
func arg[T any](in []*T, i int) *T { return ops.Arg(in, i) }

// need checks that the first n inputs of op are present.
func need[T any](op string, in []*T, n int) error { return ops.Need(op, in, n) }

// normAxes normalizes a list of axes for rank and rejects duplicates.
func normAxes(op string, axes []int64, rank int) ([]int, error) {
	out := make([]int, len(axes))
	seen := make([]bool, rank)
	for i, a := range axes {
		ax, err := normAxis(op, a, rank)
		if err != nil {
			return nil, err
		}
		if seen[ax] {
			return nil, badInput("%s: axis %d is repeated", op, a)
		}
		seen[ax] = true
		out[i] = ax
	}
	return out, nil
}

// intValues returns the elements of an integer tensor (int32 or int64, or
// any integer type) as int64.
func intValues(op, what string, t *tensor.Tensor) ([]int64, error) {
	if t == nil {
		return nil, badInput("%s: %s is missing", op, what)
	}
	switch t.DType {
	case tensor.Int64:
		return append([]int64(nil), t.Int64s()...), nil
	case tensor.Int32:
		v := t.Int32s()
		out := make([]int64, len(v))
		for i, x := range v {
			out[i] = int64(x)
		}
		return out, nil
	}
	if !t.DType.IsInt() {
		return nil, badInput("%s: %s has type %v, want an integer type", op, what, t.DType)
	}
	return t.Ints(), nil
}

// intVector is intValues for a tensor that must be 0-D or 1-D.
func intVector(op, what string, t *tensor.Tensor) ([]int64, error) {
	if t != nil && t.Rank() > 1 {
		return nil, badInput("%s: %s has shape %v, want a vector", op, what, t.Shape)
	}
	return intValues(op, what, t)
}

// constInts returns the elements of v when v is a known constant integer
// tensor or a fully known shape value.
func constInts(v *ir.Value) ([]int64, bool) {
	if v == nil {
		return nil, false
	}
	if v.Const != nil {
		if !v.Const.DType.IsInt() || v.Const.Rank() > 1 {
			return nil, false
		}
		return v.Const.Ints(), true
	}
	if v.ShapeValue != nil {
		out := make([]int64, len(v.ShapeValue))
		for i, d := range v.ShapeValue {
			if !d.Known() {
				return nil, false
			}
			out[i] = d.Val
		}
		return out, true
	}
	return nil, false
}

// dimsOf returns the elements of a 0-D or 1-D integer value as dims: from
// its constant contents (negative numbers such as -1 become unknown dims) or
// from its ShapeValue; when neither is known but the value's length is, it
// returns that many unknown dims. ok is false when not even the length is
// known.
func dimsOf(v *ir.Value) (dims []ir.Dim, ok bool) {
	if v == nil {
		return nil, false
	}
	if v.Const != nil {
		if !v.Const.DType.IsInt() || v.Const.Rank() > 1 {
			return nil, false
		}
		vals := v.Const.Ints()
		dims = make([]ir.Dim, len(vals))
		for i, x := range vals {
			if x >= 0 {
				dims[i] = ir.D(x)
			} else {
				dims[i] = ir.U()
			}
		}
		return dims, true
	}
	if v.ShapeValue != nil {
		return append([]ir.Dim{}, v.ShapeValue...), true
	}
	s := v.Type.Shape
	switch {
	case s == nil:
		return nil, false
	case len(s) == 0:
		return []ir.Dim{ir.U()}, true
	case len(s) == 1 && s[0].Known():
		dims = make([]ir.Dim, s[0].Val)
		for i := range dims {
			dims[i] = ir.U()
		}
		return dims, true
	}
	return nil, false
}

// unknownShape returns a shape of rank unknown dims.
func unknownShape(rank int) ir.Shape {
	s := make(ir.Shape, rank)
	for i := range s {
		s[i] = ir.U()
	}
	return s
}

// factors is a dimension written as a product: a known integer times named
// symbols.
type factors struct {
	k    int64
	syms []string
}

// factorize splits the dims' product into a known part and symbols ("a*b*4"
// counts as a, b and 4). ok is false when a dim is unknown.
func factorize(dims ...ir.Dim) (f factors, ok bool) {
	f.k = 1
	for _, d := range dims {
		switch {
		case d.Known():
			f.k *= d.Val
		case d.Sym != "":
			for _, p := range strings.Split(d.Sym, "*") {
				if n, err := strconv.ParseInt(p, 10, 64); err == nil && n >= 0 {
					f.k *= n
				} else {
					f.syms = append(f.syms, p)
				}
			}
		default:
			return f, false
		}
	}
	return f, true
}

// divDims returns num / den when it can be written exactly (every symbol of
// den cancels one of num and the known parts divide), else an unknown dim.
func divDims(num, den []ir.Dim) ir.Dim {
	n, ok1 := factorize(num...)
	d, ok2 := factorize(den...)
	if !ok1 || !ok2 || d.k == 0 || n.k%d.k != 0 {
		return ir.U()
	}
	rest := append([]string(nil), n.syms...)
	for _, s := range d.syms {
		found := false
		for i, r := range rest {
			if r == s {
				rest = append(rest[:i], rest[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			return ir.U()
		}
	}
	parts := make([]ir.Dim, 0, len(rest)+1)
	for _, s := range rest {
		parts = append(parts, ir.S(s))
	}
	parts = append(parts, ir.D(n.k/d.k))
	return ir.MulDims(parts...)
}

// addDims returns the sum of dims when it is known, or the single
// non-zero dim when all others are known zeros, else unknown.
func addDims(dims ...ir.Dim) ir.Dim {
	var sum int64
	var other *ir.Dim
	for i := range dims {
		d := dims[i]
		switch {
		case d.Known():
			sum += d.Val
		case other == nil:
			other = &dims[i]
		default:
			return ir.U()
		}
	}
	if other != nil {
		if sum == 0 {
			return *other
		}
		return ir.U()
	}
	return ir.D(sum)
}

// sameDim returns the more informative of two dims that must be equal.
func sameDim(a, b ir.Dim) ir.Dim {
	if a.Known() || a.Symbolic() {
		return a
	}
	return b
}

// strides returns the row-major element strides of shape.
func strides(shape []int) []int { return tensor.Strides(shape) }

// prod returns the product of dims.
func prod(dims []int) int { return tensor.NumElements(dims) }

// view reinterprets a byte slice as a slice of T.
func view[T any](b []byte) []T {
	if len(b) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), len(b)/int(unsafe.Sizeof(z)))
}

// copyElems copies n elements of src starting at element si into dst at
// element di; both tensors have the same type.
func copyElems(dst *tensor.Tensor, di int, src *tensor.Tensor, si, n int) {
	if dst.DType == tensor.String {
		copy(dst.Strings[di:di+n], src.Strings[si:si+n])
		return
	}
	es := dst.DType.Size()
	copy(dst.Data[di*es:(di+n)*es], src.Data[si*es:(si+n)*es])
}

// checkData checks that a tensor's storage holds as many elements as its
// shape says, so that kernels can index it freely.
func checkData(op string, t *tensor.Tensor) error {
	if t == nil {
		return badInput("%s: input is missing", op)
	}
	if err := tensor.CheckShape(t.Shape); err != nil {
		return badInput("%s: %v", op, err)
	}
	n := t.Len()
	if t.DType == tensor.String {
		if len(t.Strings) < n {
			return badInput("%s: string tensor %v holds %d elements", op, t.Shape, len(t.Strings))
		}
		return nil
	}
	if !t.DType.Valid() {
		return badInput("%s: unsupported type %v", op, t.DType)
	}
	if len(t.Data) < n*t.DType.Size() {
		return badInput("%s: tensor %v %v holds %d bytes", op, t.DType, t.Shape, len(t.Data))
	}
	return nil
}

// fillValue fills elements [lo, hi) of t with the single element of v
// (same type).
func fillValue(t *tensor.Tensor, lo, hi int, v *tensor.Tensor) {
	if hi <= lo {
		return
	}
	if t.DType == tensor.String {
		for i := lo; i < hi; i++ {
			t.Strings[i] = v.Strings[0]
		}
		return
	}
	es := t.DType.Size()
	pat := v.Data[:es]
	zero := true
	for _, b := range pat {
		if b != 0 {
			zero = false
			break
		}
	}
	dst := t.Data[lo*es : hi*es]
	if zero {
		clear(dst)
		return
	}
	copy(dst, pat)
	for n := es; n < len(dst); n *= 2 {
		copy(dst[n:], dst[:n])
	}
}

// setInt stores v at element i of an integer tensor with wrap-around.
func setInt(t *tensor.Tensor, i int, v int64) {
	switch t.DType {
	case tensor.Int64:
		t.Int64s()[i] = v
	case tensor.Uint64:
		t.Uint64s()[i] = uint64(v)
	case tensor.Int32:
		t.Int32s()[i] = int32(v)
	case tensor.Uint32:
		t.Uint32s()[i] = uint32(v)
	case tensor.Int16:
		t.Int16s()[i] = int16(v)
	case tensor.Uint16:
		t.Uint16s()[i] = uint16(v)
	case tensor.Int8:
		t.Int8s()[i] = int8(v)
	case tensor.Uint8:
		t.Uint8s()[i] = uint8(v)
	default:
		t.SetFloat(i, float64(v))
	}
}

// toInts converts int64 dims into ints, checking them with CheckShape.
func toInts(op string, v []int64) ([]int, error) {
	out := make([]int, len(v))
	for i, x := range v {
		if x < 0 || x > tensor.MaxElements {
			return nil, badInput("%s: bad dimension %d", op, x)
		}
		out[i] = int(x)
	}
	if err := tensor.CheckShape(out); err != nil {
		return nil, badInput("%s: %v", op, err)
	}
	return out, nil
}
