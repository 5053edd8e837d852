package ir

import (
	"fmt"
	"strconv"
	"strings"
)

// Dim is one dimension of a shape: a known size (Val >= 0), a symbolic size
// named by Sym (Val < 0, Sym != ""), or unknown (Val < 0, Sym == "").
type Dim struct {
	Val int64
	Sym string
}

// D returns a known dimension of size v.
func D(v int64) Dim { return Dim{Val: v} }

// S returns a symbolic dimension named s.
func S(s string) Dim { return Dim{Val: -1, Sym: s} }

// U returns an unknown dimension.
func U() Dim { return Dim{Val: -1} }

// Known reports whether the size of d is known.
func (d Dim) Known() bool { return d.Val >= 0 }

// Symbolic reports whether d is a named symbolic size.
func (d Dim) Symbolic() bool { return d.Val < 0 && d.Sym != "" }

// String returns the size, the symbol, or "?".
func (d Dim) String() string {
	switch {
	case d.Val >= 0:
		return strconv.FormatInt(d.Val, 10)
	case d.Sym != "":
		return d.Sym
	}
	return "?"
}

// Equal reports whether d and e are certainly the same size: both known and
// equal, or the same symbol.
func (d Dim) Equal(e Dim) bool {
	if d.Known() || e.Known() {
		return d.Val == e.Val
	}
	return d.Sym != "" && d.Sym == e.Sym
}

// MulDims returns the product of dims: known if all are known, a symbolic
// product such as "batch*12" if the unknown ones are all symbolic, else unknown.
func MulDims(dims ...Dim) Dim {
	var k int64 = 1
	var syms []string
	for _, d := range dims {
		switch {
		case d.Known():
			k *= d.Val
		case d.Sym != "":
			syms = append(syms, d.Sym)
		default:
			return U()
		}
	}
	if len(syms) == 0 {
		return D(k)
	}
	if k == 0 {
		return D(0)
	}
	if k != 1 {
		syms = append(syms, strconv.FormatInt(k, 10))
	}
	return S(strings.Join(syms, "*"))
}

// Shape is a list of dimensions. A nil Shape means the rank is unknown; a
// scalar has the empty, non-nil Shape{}.
type Shape []Dim

// Scalar returns the shape of a rank-0 tensor.
func Scalar() Shape { return Shape{} }

// KnownShape returns a shape of known dimensions.
func KnownShape(dims ...int) Shape {
	s := make(Shape, len(dims))
	for i, d := range dims {
		s[i] = D(int64(d))
	}
	return s
}

// RankKnown reports whether the rank of s is known.
func (s Shape) RankKnown() bool { return s != nil }

// Rank returns the rank of s, or -1 when it is unknown.
func (s Shape) Rank() int {
	if s == nil {
		return -1
	}
	return len(s)
}

// FullyKnown reports whether the rank and every dimension are known.
func (s Shape) FullyKnown() bool {
	if s == nil {
		return false
	}
	for _, d := range s {
		if !d.Known() {
			return false
		}
	}
	return true
}

// Ints returns the dimensions as ints; ok is false unless FullyKnown.
func (s Shape) Ints() (dims []int, ok bool) {
	if !s.FullyKnown() {
		return nil, false
	}
	dims = make([]int, len(s))
	for i, d := range s {
		dims[i] = int(d.Val)
	}
	return dims, true
}

// Clone returns a copy of s (nil stays nil).
func (s Shape) Clone() Shape {
	if s == nil {
		return nil
	}
	return append(Shape{}, s...)
}

// String formats s as [batch,3,224,224], or [*] when the rank is unknown.
func (s Shape) String() string {
	if s == nil {
		return "[*]"
	}
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = d.String()
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// Matches reports whether concrete dims fit s: same rank and every known
// dimension equal. Symbolic dims are checked for consistency by the caller.
func (s Shape) Matches(dims []int) bool {
	if s == nil {
		return true
	}
	if len(s) != len(dims) {
		return false
	}
	for i, d := range s {
		if d.Known() && int(d.Val) != dims[i] {
			return false
		}
	}
	return true
}

// Broadcast returns the numpy-style broadcast of shapes. Unknown ranks give
// an unknown result; incompatible known dims are an error.
func Broadcast(shapes ...Shape) (Shape, error) {
	rank := 0
	for _, s := range shapes {
		if s == nil {
			return nil, nil
		}
		rank = max(rank, len(s))
	}
	out := make(Shape, rank)
	for i := range out {
		out[i] = D(1)
	}
	for _, s := range shapes {
		off := rank - len(s)
		for i, d := range s {
			o := out[off+i]
			switch {
			case d.Known() && d.Val == 1:
			case o.Known() && o.Val == 1:
				out[off+i] = d
			case d.Known() && o.Known():
				if d.Val != o.Val {
					return nil, fmt.Errorf("%w: cannot broadcast %v with %v", ErrShape, shapes[0], s)
				}
			case d.Equal(o):
			case d.Known():
				out[off+i] = d // assume the unknown one is 1 or equal
			case o.Known():
			default:
				out[off+i] = U()
			}
		}
	}
	return out, nil
}
