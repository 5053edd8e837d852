package gpuexec

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// typeSuffixes names the storage types of the typed kernels (op_*.cu);
// bool is stored as one byte, like uint8.
var typeSuffixes = map[tensor.DType]string{
	tensor.Float32: "f32", tensor.Float16: "f16", tensor.Float64: "f64",
	tensor.Int8: "i8", tensor.Int16: "i16", tensor.Int32: "i32", tensor.Int64: "i64",
	tensor.Uint8: "u8", tensor.Uint16: "u16", tensor.Uint32: "u32", tensor.Uint64: "u64", tensor.Bool: "u8",
}

// suffix is the kernel suffix of elements of type dt as the engine stores
// them (float32 as f16 in half precision).
func (c *compiler) suffix(dt tensor.DType) (string, error) {
	s, ok := typeSuffixes[c.storedType(dt)]
	if !ok {
		return "", fmt.Errorf("%w: %v elements", ErrUnsupported, dt)
	}
	return s, nil
}

// byteSuffix is the b8..b64 suffix of the movement kernels for elements of
// type dt as stored.
func (c *compiler) byteSuffix(dt tensor.DType) (string, error) {
	switch c.esize(dt) {
	case 1:
		return "b8", nil
	case 2:
		return "b16", nil
	case 4:
		return "b32", nil
	case 8:
		return "b64", nil
	}
	return "", notMovable(dt)
}

// typeIn checks that input i of n (when present) has one of the types.
func typeIn(n *ir.Node, i int, types ...tensor.DType) error {
	v := input(n, i)
	if v == nil {
		return nil
	}
	dt := dtypeOf(v)
	for _, t := range types {
		if t == dt {
			return nil
		}
	}
	return fmt.Errorf("%w: input %d of %s is %v (CUDA kernels take %v)", ErrUnsupported, i, n.OpType, dt, types)
}

// sameTypeIn checks that the inputs (present ones) have input 0's type.
func sameTypeIn(n *ir.Node, idx ...int) error {
	dt := dtypeOf(n.Inputs[0])
	for _, i := range idx {
		if v := input(n, i); v != nil && dtypeOf(v) != dt {
			return fmt.Errorf("%w: input %d of %s is %v, input 0 %v", ErrUnsupported, i, n.OpType, dtypeOf(v), dt)
		}
	}
	return nil
}

var (
	floatTypes   = []tensor.DType{tensor.Float32, tensor.Float16}
	intTypes     = []tensor.DType{tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64}
	numericTypes = append(append([]tensor.DType{tensor.Float64}, floatTypes...), intTypes...)
)

// bcastMeta is the meta array of a broadcast over output dims yd: {r,
// yd[r], then each operand's strides[r]} (0 on broadcast dims).
func bcastMeta(yd []int, operands ...[]int) ([]int64, error) {
	r := len(yd)
	meta := []int64{int64(r)}
	for _, d := range yd {
		meta = append(meta, int64(d))
	}
	for _, od := range operands {
		if len(od) > r {
			return nil, fmt.Errorf("%w: %v broadcast to %v", ErrGraph, od, yd)
		}
		st := make([]int64, r)
		s := int64(1)
		for i := len(od) - 1; i >= 0; i-- {
			yi := r - len(od) + i
			switch {
			case od[i] == yd[yi]:
				st[yi] = s
			case od[i] == 1:
			default:
				return nil, fmt.Errorf("%w: %v does not broadcast to %v", ErrGraph, od, yd)
			}
			s *= int64(od[i])
		}
		meta = append(meta, st...)
	}
	return meta, nil
}

// scalar uploads one element of type dt (as stored) with value v.
func (c *compiler) scalar(dt tensor.DType, v float64) ref {
	b := make([]byte, 8)
	switch c.storedType(dt) {
	case tensor.Float16:
		binary.LittleEndian.PutUint16(b, tensor.Float32ToHalf(float32(v)))
	case tensor.Float32:
		binary.LittleEndian.PutUint32(b, math.Float32bits(float32(v)))
	case tensor.Float64:
		binary.LittleEndian.PutUint64(b, math.Float64bits(v))
	default:
		binary.LittleEndian.PutUint64(b, uint64(int64(v)))
	}
	return ref{buf: bufWeights, off: c.addWeights(b)}
}

// elemBits is v as the bits of one stored element of type dt, in the low
// bytes of a uint64 (a kernel's by-value constant).
func (c *compiler) elemBits(dt tensor.DType, v float64) uint64 {
	switch c.storedType(dt) {
	case tensor.Float16:
		return uint64(tensor.Float32ToHalf(float32(v)))
	case tensor.Float32:
		return uint64(math.Float32bits(float32(v)))
	case tensor.Float64:
		return math.Float64bits(v)
	case tensor.Bool:
		if v != 0 {
			return 1
		}
		return 0
	}
	return uint64(int64(v))
}

// axisSplit is x's dims as [outer, len, inner] around axis.
func axisSplit(xd []int, axis int) (outer, n, inner int64) {
	return prod(xd[:axis]), int64(xd[axis]), prod(xd[axis+1:])
}
