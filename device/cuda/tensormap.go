package cuda

import (
	"fmt"
	"unsafe"
)

// TensorMap is a CUtensorMap: the 128 opaque bytes that describe a tiled
// view of a tensor in device memory to Hopper's bulk tensor copy engine
// (cp.async.bulk.tensor). A kernel reads it from its parameters
// (__grid_constant__), constant or global memory, 64-byte aligned.
type TensorMap [128]byte

// TensorMapSwizzle is CUtensorMapSwizzle: how the copy engine permutes the
// 16-byte chunks of each row of a box in shared memory.
type TensorMapSwizzle int

const (
	SwizzleNone TensorMapSwizzle = 0 // CU_TENSOR_MAP_SWIZZLE_NONE
	Swizzle32B  TensorMapSwizzle = 1 // CU_TENSOR_MAP_SWIZZLE_32B
	Swizzle64B  TensorMapSwizzle = 2 // CU_TENSOR_MAP_SWIZZLE_64B
	Swizzle128B TensorMapSwizzle = 3 // CU_TENSOR_MAP_SWIZZLE_128B
)

// swizzleBytes is the span of a swizzle pattern (0 without one): a box's
// inner dimension may not be wider.
func (s TensorMapSwizzle) swizzleBytes() int {
	return map[TensorMapSwizzle]int{Swizzle32B: 32, Swizzle64B: 64, Swizzle128B: 128}[s]
}

// TensorMapTiled describes a tiled tensor map of bytes (int8 or uint8
// elements, CU_TENSOR_MAP_DATA_TYPE_UINT8), dimension 0 the innermost:
// Dims the tensor's extent in elements, Strides the byte strides of
// dimensions 1 and up (len(Dims)-1 of them, multiples of 16), Box the
// extent of the box one copy moves (each 1 to 256; Box[0] no wider than the
// swizzle span), and L2Promotion the L2 fetch granule (0 none, 1 64 B, 2
// 128 B, 3 256 B). Element strides are 1, interleave none, out-of-bounds
// fill zeros.
type TensorMapTiled struct {
	Addr        DevicePtr
	Dims        []uint64
	Strides     []uint64
	Box         []uint32
	Swizzle     TensorMapSwizzle
	L2Promotion int
}

// check validates t against the driver's documented limits, so that a
// bad map is reported with its reason rather than as
// CUDA_ERROR_INVALID_VALUE.
func (t TensorMapTiled) check() error {
	r := len(t.Dims)
	switch {
	case r < 1 || r > 5:
		return fmt.Errorf("cuda: tensor map of rank %d (1 to 5)", r)
	case len(t.Box) != r:
		return fmt.Errorf("cuda: tensor map of rank %d with %d box dimensions", r, len(t.Box))
	case len(t.Strides) != r-1:
		return fmt.Errorf("cuda: tensor map of rank %d with %d strides (want %d)", r, len(t.Strides), r-1)
	case t.Addr%16 != 0:
		return fmt.Errorf("cuda: tensor map address %#x not 16-byte aligned", uint64(t.Addr))
	case t.L2Promotion < 0 || t.L2Promotion > 3:
		return fmt.Errorf("cuda: tensor map L2 promotion %d (0 to 3)", t.L2Promotion)
	case t.Swizzle < SwizzleNone || t.Swizzle > Swizzle128B:
		return fmt.Errorf("cuda: tensor map swizzle %d", t.Swizzle)
	}
	for i, s := range t.Strides {
		if s%16 != 0 || s == 0 || s >= 1<<40 {
			return fmt.Errorf("cuda: tensor map stride %d of %d bytes (a multiple of 16 below 2^40)", i+1, s)
		}
	}
	for i, d := range t.Dims {
		if d == 0 || d > 1<<32 {
			return fmt.Errorf("cuda: tensor map dimension %d of %d elements (1 to 2^32)", i, d)
		}
		if b := t.Box[i]; b == 0 || b > 256 {
			return fmt.Errorf("cuda: tensor map box dimension %d of %d (1 to 256)", i, b)
		}
	}
	if t.Box[0]%16 != 0 {
		return fmt.Errorf("cuda: tensor map box's inner dimension of %d bytes (a multiple of 16)", t.Box[0])
	}
	if s := t.Swizzle.swizzleBytes(); s > 0 && int(t.Box[0]) > s {
		return fmt.Errorf("cuda: tensor map box's inner dimension of %d bytes is wider than its %d-byte swizzle", t.Box[0], s)
	}
	return nil
}

// EncodeTensorMapTiled builds the tensor map t describes
// (cuTensorMapEncodeTiled, CUDA 12.0 and later; the symbol is looked up on
// first use, so that older drivers load as before).
func (d *Driver) EncodeTensorMapTiled(t TensorMapTiled) (TensorMap, error) {
	var m TensorMap
	if err := t.check(); err != nil {
		return m, err
	}
	fn, err := d.lib.sym("cuTensorMapEncodeTiled")
	if err != nil {
		return m, &Error{Call: "cuTensorMapEncodeTiled", Code: 500, Name: "CUDA_ERROR_NOT_FOUND", Msg: "the driver has no cuTensorMapEncodeTiled"}
	}
	r := len(t.Dims)
	// C memory for the map (64-byte aligned) and the arrays: the driver
	// keeps no pointer to them after the call.
	const mapOff = 64
	mem := cMalloc(mapOff + 128 + 8*5*2 + 4*5*2)
	defer cFree(mem)
	base := uintptr(mem)
	out := unsafe.Add(mem, int((base+mapOff-1)&^(mapOff-1)-base))
	arrays := unsafe.Add(mem, mapOff+128)
	dims := unsafe.Slice((*uint64)(arrays), 5)
	strides := unsafe.Slice((*uint64)(unsafe.Add(arrays, 40)), 5)
	box := unsafe.Slice((*uint32)(unsafe.Add(arrays, 80)), 5)
	elem := unsafe.Slice((*uint32)(unsafe.Add(arrays, 100)), 5)
	for i := range r {
		dims[i], box[i], elem[i] = t.Dims[i], t.Box[i], 1
		if i > 0 {
			strides[i-1] = t.Strides[i-1]
		}
	}
	const dataTypeUint8, interleaveNone, oobFillZero = 0, 0, 0
	if res := callC(fn, uintptr(out), dataTypeUint8, uintptr(r), uintptr(t.Addr),
		uintptr(unsafe.Pointer(&dims[0])), uintptr(unsafe.Pointer(&strides[0])),
		uintptr(unsafe.Pointer(&box[0])), uintptr(unsafe.Pointer(&elem[0])),
		interleaveNone, uintptr(t.Swizzle), uintptr(t.L2Promotion), oobFillZero); res != 0 {
		return m, d.err("cuTensorMapEncodeTiled", res)
	}
	copy(m[:], unsafe.Slice((*byte)(out), 128))
	return m, nil
}
