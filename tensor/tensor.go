package tensor

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unsafe"
)

// Alignment is the byte alignment of every buffer New allocates.
const Alignment = 64

// MaxElements bounds the number of elements of one tensor (2^40), so that a
// corrupt shape is an error and not an attempt to allocate the impossible.
const MaxElements = 1 << 40

// Tensor is a dense, row-major n-dimensional array. Data holds the elements'
// bytes (little endian); string tensors keep their elements in Strings
// instead. A tensor with an empty shape is a scalar with one element. A
// Tensor of DType Sequence is a sequence value whose elements are in Elems,
// and one of DType Optional an empty optional value (see Sequence).
type Tensor struct {
	DType   DType
	Shape   []int
	Data    []byte
	Strings []string
	Elems   []*Tensor
}

// NewSequence returns a sequence value holding elems (not copied).
func NewSequence(elems []*Tensor) *Tensor {
	if elems == nil {
		elems = []*Tensor{}
	}
	return &Tensor{DType: Sequence, Elems: elems}
}

// NoneOptional returns an empty optional value.
func NoneOptional() *Tensor { return &Tensor{DType: Optional} }

// IsSequence reports whether t is a sequence value.
func (t *Tensor) IsSequence() bool { return t != nil && t.DType == Sequence }

// IsNone reports whether t is an empty optional value.
func (t *Tensor) IsNone() bool { return t != nil && t.DType == Optional }

// NumElements returns the product of the dimensions of shape (1 for a scalar).
func NumElements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// CheckShape returns an error if a dimension is negative or the element count
// overflows MaxElements.
func CheckShape(shape []int) error {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("%w: negative dimension in %v", ErrShape, slices.Clone(shape)) // a copy: shape does not escape
		}
		if d != 0 && n > MaxElements/d {
			return fmt.Errorf("%w: %v has too many elements", ErrShape, slices.Clone(shape))
		}
		n *= d
	}
	return nil
}

// AlignedBytes returns a zeroed byte slice of length n whose first byte is
// aligned to Alignment.
func AlignedBytes(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	words := make([]uint64, (n+Alignment)/8+1)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	off := int((Alignment - uintptr(unsafe.Pointer(&b[0]))%Alignment) % Alignment)
	return b[off : off+n : off+n]
}

// New returns a zeroed tensor of the given type and shape. It panics on an
// invalid type or shape: callers handling user input call CheckShape first
// or use Make.
func New(dt DType, shape ...int) *Tensor {
	t, err := Make(dt, shape)
	if err != nil {
		panic(err)
	}
	return t
}

// Make returns a zeroed tensor of the given type and shape, or an error if
// the type or shape is invalid.
func Make(dt DType, shape []int) (*Tensor, error) {
	if !dt.Valid() {
		return nil, fmt.Errorf("%w: %v", ErrDType, dt)
	}
	if err := CheckShape(shape); err != nil {
		return nil, err
	}
	t := withShape(shape)
	t.DType = dt
	n := NumElements(shape)
	if dt == String {
		t.Strings = make([]string, n)
	} else {
		t.Data = AlignedBytes(n * dt.Size())
	}
	return t, nil
}

// FromBytes wraps data as a tensor without copying when data is aligned for
// the element type, and copies it into an aligned buffer otherwise.
func FromBytes(dt DType, shape []int, data []byte) (*Tensor, error) {
	if !dt.Valid() || dt == String {
		return nil, fmt.Errorf("%w: %v", ErrDType, dt)
	}
	if err := CheckShape(shape); err != nil {
		return nil, err
	}
	n := NumElements(shape)
	if len(data) != n*dt.Size() {
		return nil, fmt.Errorf("%w: %d bytes for %v %v (want %d)", ErrShape, len(data), dt, shape, n*dt.Size())
	}
	t := &Tensor{DType: dt, Shape: append([]int{}, shape...)}
	if len(data) > 0 && uintptr(unsafe.Pointer(&data[0]))%uintptr(dt.Size()) != 0 {
		t.Data = AlignedBytes(len(data))
		copy(t.Data, data)
	} else {
		t.Data = data
	}
	return t, nil
}

// Len returns the number of elements.
func (t *Tensor) Len() int { return NumElements(t.Shape) }

// Rank returns the number of dimensions.
func (t *Tensor) Rank() int { return len(t.Shape) }

// Clone returns a deep copy of t.
func (t *Tensor) Clone() *Tensor {
	c := &Tensor{DType: t.DType, Shape: append([]int{}, t.Shape...)}
	switch t.DType {
	case Sequence:
		c.Elems = make([]*Tensor, len(t.Elems))
		for i, e := range t.Elems {
			c.Elems[i] = e.Clone()
		}
		return c
	case Optional:
		return c
	}
	if t.DType == String {
		c.Strings = append([]string{}, t.Strings...)
	} else {
		c.Data = AlignedBytes(len(t.Data))
		copy(c.Data, t.Data)
	}
	return c
}

// Reshape returns a tensor sharing t's data with a new shape of the same size.
func (t *Tensor) Reshape(shape []int) (*Tensor, error) {
	if err := CheckShape(shape); err != nil {
		return nil, err
	}
	if NumElements(shape) != t.Len() {
		return nil, fmt.Errorf("%w: cannot reshape %v to %v", ErrShape, t.Shape, slices.Clone(shape))
	}
	r := withShape(shape)
	r.DType, r.Data, r.Strings = t.DType, t.Data, t.Strings
	return r, nil
}

// shapedTensor is a tensor with room for a small shape: a tensor and its
// shape in one allocation.
type shapedTensor struct {
	t    Tensor
	dims [4]int
}

// withShape returns a new tensor with a copy of shape (never nil).
func withShape(shape []int) *Tensor {
	if len(shape) > 4 {
		return &Tensor{Shape: append([]int{}, shape...)}
	}
	st := &shapedTensor{}
	st.t.Shape = append(st.dims[:0:len(shape)], shape...)
	return &st.t
}

func view[T any](t *Tensor, want DType) []T {
	if t.DType != want {
		panic(fmt.Sprintf("tensor: %v view of a %v tensor", want, t.DType))
	}
	if len(t.Data) == 0 {
		return []T{}
	}
	var z T
	return unsafe.Slice((*T)(unsafe.Pointer(&t.Data[0])), len(t.Data)/int(unsafe.Sizeof(z)))
}

// Float32s returns the elements of a float32 tensor, sharing its storage.
func (t *Tensor) Float32s() []float32 { return view[float32](t, Float32) }

// Float64s returns the elements of a float64 tensor, sharing its storage.
func (t *Tensor) Float64s() []float64 { return view[float64](t, Float64) }

// Int64s returns the elements of an int64 tensor, sharing its storage.
func (t *Tensor) Int64s() []int64 { return view[int64](t, Int64) }

// Int32s returns the elements of an int32 tensor, sharing its storage.
func (t *Tensor) Int32s() []int32 { return view[int32](t, Int32) }

// Int16s returns the elements of an int16 tensor, sharing its storage.
func (t *Tensor) Int16s() []int16 { return view[int16](t, Int16) }

// Int8s returns the elements of an int8 tensor, sharing its storage.
func (t *Tensor) Int8s() []int8 { return view[int8](t, Int8) }

// Uint8s returns the elements of a uint8 tensor, sharing its storage.
func (t *Tensor) Uint8s() []uint8 { return view[uint8](t, Uint8) }

// Uint16s returns the elements of a uint16 tensor, sharing its storage.
func (t *Tensor) Uint16s() []uint16 { return view[uint16](t, Uint16) }

// Uint32s returns the elements of a uint32 tensor, sharing its storage.
func (t *Tensor) Uint32s() []uint32 { return view[uint32](t, Uint32) }

// Uint64s returns the elements of a uint64 tensor, sharing its storage.
func (t *Tensor) Uint64s() []uint64 { return view[uint64](t, Uint64) }

// Bools returns the elements of a bool tensor, sharing its storage.
func (t *Tensor) Bools() []bool { return view[bool](t, Bool) }

// Halfs returns the raw 16-bit elements of a float16 tensor.
func (t *Tensor) Halfs() []uint16 { return view[uint16](t, Float16) }

// BHalfs returns the raw 16-bit elements of a bfloat16 tensor.
func (t *Tensor) BHalfs() []uint16 { return view[uint16](t, BFloat16) }

// FromFloat32 returns a float32 tensor holding a copy of v with the given shape.
func FromFloat32(v []float32, shape ...int) *Tensor {
	t := New(Float32, shape...)
	if copy(t.Float32s(), v) != len(v) || len(v) != t.Len() {
		panic(fmt.Sprintf("tensor: %d values for shape %v", len(v), shape))
	}
	return t
}

// FromInt64 returns an int64 tensor holding a copy of v with the given shape.
func FromInt64(v []int64, shape ...int) *Tensor {
	t := New(Int64, shape...)
	if copy(t.Int64s(), v) != len(v) || len(v) != t.Len() {
		panic(fmt.Sprintf("tensor: %d values for shape %v", len(v), shape))
	}
	return t
}

// Scalar returns a rank-0 tensor of type dt holding v converted to dt.
func Scalar(dt DType, v float64) *Tensor {
	t := New(dt)
	t.SetFloat(0, v)
	return t
}

// Float returns element i converted to float64 (NaN for strings).
func (t *Tensor) Float(i int) float64 {
	switch t.DType {
	case Float32:
		return float64(t.Float32s()[i])
	case Float64:
		return t.Float64s()[i]
	case Float16:
		return float64(HalfToFloat32(t.Halfs()[i]))
	case BFloat16:
		return float64(BF16ToFloat32(t.BHalfs()[i]))
	case Int8:
		return float64(t.Int8s()[i])
	case Int16:
		return float64(t.Int16s()[i])
	case Int32:
		return float64(t.Int32s()[i])
	case Int64:
		return float64(t.Int64s()[i])
	case Uint8:
		return float64(t.Uint8s()[i])
	case Uint16:
		return float64(t.Uint16s()[i])
	case Uint32:
		return float64(t.Uint32s()[i])
	case Uint64:
		return float64(t.Uint64s()[i])
	case Bool:
		if t.Bools()[i] {
			return 1
		}
		return 0
	}
	return math.NaN()
}

// Int returns element i converted to int64 (truncating floats).
func (t *Tensor) Int(i int) int64 {
	switch t.DType {
	case Int64:
		return t.Int64s()[i]
	case Int32:
		return int64(t.Int32s()[i])
	case Uint64:
		return int64(t.Uint64s()[i])
	}
	return int64(t.Float(i))
}

// SetFloat stores v converted to t's type at element i.
func (t *Tensor) SetFloat(i int, v float64) {
	switch t.DType {
	case Float32:
		t.Float32s()[i] = float32(v)
	case Float64:
		t.Float64s()[i] = v
	case Float16:
		t.Halfs()[i] = Float32ToHalf(float32(v))
	case BFloat16:
		t.BHalfs()[i] = Float32ToBF16(float32(v))
	case Int8:
		t.Int8s()[i] = int8(v)
	case Int16:
		t.Int16s()[i] = int16(v)
	case Int32:
		t.Int32s()[i] = int32(v)
	case Int64:
		t.Int64s()[i] = int64(v)
	case Uint8:
		t.Uint8s()[i] = uint8(v)
	case Uint16:
		t.Uint16s()[i] = uint16(v)
	case Uint32:
		t.Uint32s()[i] = uint32(v)
	case Uint64:
		t.Uint64s()[i] = uint64(v)
	case Bool:
		t.Bools()[i] = v != 0
	}
}

// Ints returns all elements converted to int64 (for shape-like tensors).
func (t *Tensor) Ints() []int64 {
	out := make([]int64, t.Len())
	for i := range out {
		out[i] = t.Int(i)
	}
	return out
}

// ToFloat32 returns the elements converted to float32 (a copy unless t is
// already float32, in which case the storage is shared).
func (t *Tensor) ToFloat32() []float32 {
	if t.DType == Float32 {
		return t.Float32s()
	}
	out := make([]float32, t.Len())
	for i := range out {
		out[i] = float32(t.Float(i))
	}
	return out
}

// String returns a short description: type, shape and the first elements.
func (t *Tensor) String() string {
	var b strings.Builder
	switch t.DType {
	case Sequence:
		b.WriteString("sequence(")
		for i, e := range t.Elems {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(e.String())
		}
		b.WriteByte(')')
		return b.String()
	case Optional:
		return "optional(none)"
	}
	fmt.Fprintf(&b, "%v%v[", t.DType, t.Shape)
	n := t.Len()
	for i := 0; i < n && i < 8; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		if t.DType == String {
			fmt.Fprintf(&b, "%q", t.Strings[i])
		} else {
			fmt.Fprintf(&b, "%g", t.Float(i))
		}
	}
	if n > 8 {
		b.WriteString(" ...")
	}
	b.WriteByte(']')
	return b.String()
}

// ShapeString formats a shape as 1x3x224x224 ("scalar" for rank 0).
func ShapeString(shape []int) string {
	if len(shape) == 0 {
		return "scalar"
	}
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return strings.Join(parts, "x")
}

// Strides returns the row-major element strides of shape.
func Strides(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}
