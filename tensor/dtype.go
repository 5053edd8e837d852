package tensor

import "fmt"

// DType is an element type. The numeric values are those of ONNX's
// TensorProto.DataType, so a DType converts to and from the wire directly.
type DType int32

// The element types kiln knows, numbered as in onnx.proto.
const (
	Undefined  DType = 0
	Float32    DType = 1
	Uint8      DType = 2
	Int8       DType = 3
	Uint16     DType = 4
	Int16      DType = 5
	Int32      DType = 6
	Int64      DType = 7
	String     DType = 8
	Bool       DType = 9
	Float16    DType = 10
	Float64    DType = 11
	Uint32     DType = 12
	Uint64     DType = 13
	Complex64  DType = 14
	Complex128 DType = 15
	BFloat16   DType = 16
)

// Sequence and Optional are not element types but the kinds of the
// non-tensor values ONNX has: a Tensor of DType Sequence is a sequence value
// (its elements, tensors of one element type, in Elems); a Tensor of DType
// Optional is an empty optional value (an optional holding a value is that
// value itself). Neither has Data or a Shape. Their numbers lie outside
// onnx.proto's range.
const (
	Sequence DType = 1 << 20
	Optional DType = 1<<20 + 1
)

var dtypeNames = map[DType]string{
	Undefined: "undefined", Float32: "float32", Uint8: "uint8", Int8: "int8", Uint16: "uint16",
	Int16: "int16", Int32: "int32", Int64: "int64", String: "string", Bool: "bool",
	Float16: "float16", Float64: "float64", Uint32: "uint32", Uint64: "uint64",
	Complex64: "complex64", Complex128: "complex128", BFloat16: "bfloat16",
	Sequence: "sequence", Optional: "optional",
}

// String returns the lower-case name of the type, e.g. "float32".
func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("dtype(%d)", int32(d))
}

// ParseDType returns the DType named s (as printed by DType.String).
func ParseDType(s string) (DType, error) {
	for d, n := range dtypeNames {
		if n == s {
			return d, nil
		}
	}
	return Undefined, fmt.Errorf("%w: unknown data type %q", ErrDType, s)
}

// Size returns the size in bytes of one element, 0 for String and Undefined.
func (d DType) Size() int {
	switch d {
	case Float32, Int32, Uint32:
		return 4
	case Uint8, Int8, Bool:
		return 1
	case Uint16, Int16, Float16, BFloat16:
		return 2
	case Int64, Float64, Uint64, Complex64:
		return 8
	case Complex128:
		return 16
	}
	return 0
}

// Valid reports whether d is a type kiln can hold in a Tensor.
func (d DType) Valid() bool {
	return d == String || (d.Size() > 0 && d != Complex64 && d != Complex128)
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	return d == Float32 || d == Float16 || d == BFloat16 || d == Float64
}

// IsInt reports whether d is a signed or unsigned integer type.
func (d DType) IsInt() bool {
	switch d {
	case Uint8, Int8, Uint16, Int16, Int32, Int64, Uint32, Uint64:
		return true
	}
	return false
}

// IsSigned reports whether d is a signed integer or floating-point type.
func (d DType) IsSigned() bool {
	switch d {
	case Int8, Int16, Int32, Int64:
		return true
	}
	return d.IsFloat()
}
