package ops

// Float is the set of Go float types kernels are generic over.
type Float interface{ ~float32 | ~float64 }

// Number is the set of Go numeric types that tensors hold.
type Number interface {
	~float32 | ~float64 | ~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// ElemGrain is the minimum number of elements one goroutine of an
// elementwise loop handles.
const ElemGrain = 1 << 15
