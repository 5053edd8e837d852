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

// TensorMapIm2col describes an im2col tensor map of bytes
// (cuTensorMapEncodeIm2col, CU_TENSOR_MAP_DATA_TYPE_UINT8): a tensor of
// rank 3 to 5 whose dimension 0 is the channels C and the last the batch N
// (NHWC is Dims {C, W, H, N}), Strides the byte strides of dimensions 1 and
// up (multiples of 16). One copy (cp.async.bulk.tensor's im2col mode)
// moves PixelsPerColumn pixels of ChannelsPerPixel channels each, the
// pixels walked through the bounding box (W fastest, then H, D and N), each
// read at the filter offsets the instruction gives; positions outside the
// tensor read zeros. Lower and Upper are the bounding box's corners
// relative to each spatial dimension's extent (len(Dims)-2 of them,
// dimension 1 first: W, then H, D): the box spans Lower[i] to Dims[i+1] - 1
// + Upper[i]. A 3x3 convolution with padding 1 has Lower -1 and Upper 1 -
// 2 = -1. ElementStrides (nil: all 1) are the traversal strides (1 to 8),
// element 0 the channels'.
type TensorMapIm2col struct {
	Addr             DevicePtr
	Dims             []uint64
	Strides          []uint64
	Lower, Upper     []int32
	ChannelsPerPixel uint32
	PixelsPerColumn  uint32
	ElementStrides   []uint32
	Swizzle          TensorMapSwizzle
	L2Promotion      int
}

// im2colCornerLimit is the bound of the bounding box's corners by rank:
// [-limit, limit-1] (16-bit signed fields: 2^15 for rank 3, 2^7 for rank
// 4, 2^4 for rank 5; PTX ISA "im2col mode", bounding box).
var im2colCornerLimit = map[int]int32{3: 1 << 15, 4: 1 << 7, 5: 1 << 4}

// check validates t against the driver's documented limits
// (cuTensorMapEncodeIm2col), as TensorMapTiled.check does for a tiled map.
func (t TensorMapIm2col) check() error {
	r := len(t.Dims)
	switch {
	case r < 3 || r > 5:
		return fmt.Errorf("cuda: im2col tensor map of rank %d (3 to 5)", r)
	case len(t.Strides) != r-1:
		return fmt.Errorf("cuda: im2col tensor map of rank %d with %d strides (want %d)", r, len(t.Strides), r-1)
	case len(t.Lower) != r-2 || len(t.Upper) != r-2:
		return fmt.Errorf("cuda: im2col tensor map of rank %d with %d/%d corner coordinates (want %d)", r, len(t.Lower), len(t.Upper), r-2)
	case t.ElementStrides != nil && len(t.ElementStrides) != r:
		return fmt.Errorf("cuda: im2col tensor map of rank %d with %d element strides", r, len(t.ElementStrides))
	case t.Addr%16 != 0:
		return fmt.Errorf("cuda: tensor map address %#x not 16-byte aligned", uint64(t.Addr))
	case t.L2Promotion < 0 || t.L2Promotion > 3:
		return fmt.Errorf("cuda: tensor map L2 promotion %d (0 to 3)", t.L2Promotion)
	case t.Swizzle < SwizzleNone || t.Swizzle > Swizzle128B:
		return fmt.Errorf("cuda: tensor map swizzle %d", t.Swizzle)
	case t.ChannelsPerPixel == 0 || t.ChannelsPerPixel > 256:
		return fmt.Errorf("cuda: im2col tensor map of %d channels a pixel (1 to 256)", t.ChannelsPerPixel)
	case t.ChannelsPerPixel%16 != 0:
		return fmt.Errorf("cuda: im2col tensor map of %d channels a pixel: the inner dimension of %d bytes (a multiple of 16)", t.ChannelsPerPixel, t.ChannelsPerPixel)
	case t.PixelsPerColumn == 0 || t.PixelsPerColumn > 1024:
		return fmt.Errorf("cuda: im2col tensor map of %d pixels a column (1 to 1024)", t.PixelsPerColumn)
	}
	if s := t.Swizzle.swizzleBytes(); s > 0 && int(t.ChannelsPerPixel) > s {
		return fmt.Errorf("cuda: im2col tensor map's %d-byte pixels are wider than its %d-byte swizzle", t.ChannelsPerPixel, s)
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
	}
	for i, e := range t.ElementStrides {
		if e == 0 || e > 8 {
			return fmt.Errorf("cuda: tensor map element stride %d of %d (1 to 8)", i, e)
		}
	}
	lim := im2colCornerLimit[r]
	for i := range r - 2 {
		lo, up := t.Lower[i], t.Upper[i]
		if lo < -lim || lo >= lim || up < -lim || up >= lim {
			return fmt.Errorf("cuda: im2col corner %d of (%d, %d) outside [%d, %d] at rank %d", i, lo, up, -lim, lim-1, r)
		}
		// the box spans lo .. dim-1+up: at least one position
		if int64(t.Dims[i+1])-1+int64(up) < int64(lo) {
			return fmt.Errorf("cuda: im2col bounding box of dimension %d empty (%d to %d)", i+1, lo, int64(t.Dims[i+1])-1+int64(up))
		}
	}
	return nil
}

// EncodeTensorMapIm2col builds the im2col tensor map t describes
// (cuTensorMapEncodeIm2col, CUDA 12.0 and later, looked up on first use):
// UINT8 elements, no interleave, out-of-bounds fill zeros.
func (d *Driver) EncodeTensorMapIm2col(t TensorMapIm2col) (TensorMap, error) {
	var m TensorMap
	if err := t.check(); err != nil {
		return m, err
	}
	fn, err := d.lib.sym("cuTensorMapEncodeIm2col")
	if err != nil {
		return m, &Error{Call: "cuTensorMapEncodeIm2col", Code: 500, Name: "CUDA_ERROR_NOT_FOUND", Msg: "the driver has no cuTensorMapEncodeIm2col"}
	}
	r := len(t.Dims)
	const mapOff = 64
	// the map, then dims (5 x 8), strides (5 x 8), element strides (5 x
	// 4), lower and upper corners (3 x 4 each)
	mem := cMalloc(mapOff + 128 + 40 + 40 + 20 + 12 + 12)
	defer cFree(mem)
	base := uintptr(mem)
	out := unsafe.Add(mem, int((base+mapOff-1)&^(mapOff-1)-base))
	arrays := unsafe.Add(mem, mapOff+128)
	dims := unsafe.Slice((*uint64)(arrays), 5)
	strides := unsafe.Slice((*uint64)(unsafe.Add(arrays, 40)), 5)
	elem := unsafe.Slice((*uint32)(unsafe.Add(arrays, 80)), 5)
	lower := unsafe.Slice((*int32)(unsafe.Add(arrays, 100)), 3)
	upper := unsafe.Slice((*int32)(unsafe.Add(arrays, 112)), 3)
	for i := range r {
		dims[i], elem[i] = t.Dims[i], 1
		if t.ElementStrides != nil {
			elem[i] = t.ElementStrides[i]
		}
		if i > 0 {
			strides[i-1] = t.Strides[i-1]
		}
	}
	for i := range r - 2 {
		lower[i], upper[i] = t.Lower[i], t.Upper[i]
	}
	const dataTypeUint8, interleaveNone, oobFillZero = 0, 0, 0
	if res := callC(fn, uintptr(out), dataTypeUint8, uintptr(r), uintptr(t.Addr),
		uintptr(unsafe.Pointer(&dims[0])), uintptr(unsafe.Pointer(&strides[0])),
		uintptr(unsafe.Pointer(&lower[0])), uintptr(unsafe.Pointer(&upper[0])),
		uintptr(t.ChannelsPerPixel), uintptr(t.PixelsPerColumn), uintptr(unsafe.Pointer(&elem[0])),
		interleaveNone, uintptr(t.Swizzle), uintptr(t.L2Promotion), oobFillZero); res != 0 {
		return m, d.err("cuTensorMapEncodeIm2col", res)
	}
	copy(m[:], unsafe.Slice((*byte)(out), 128))
	return m, nil
}
