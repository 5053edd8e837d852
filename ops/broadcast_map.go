package ops

import (
	"github.com/kilnai/kiln/device/cpu"
)

// BinaryMap applies f elementwise with numpy broadcasting to typed slices a
// (shape as) and b (shape bs), writing dst (shape out). Same-shape and
// scalar operands take fast paths; large tensors are split over all cores.
func BinaryMap[A, B, C any](a []A, as []int, b []B, bs []int, dst []C, out []int, f func(A, B) C) {
	n := len(dst)
	switch {
	case len(a) == n && len(b) == n:
		cpu.ParallelFor(n, ElemGrain, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = f(a[i], b[i])
			}
		})
	case len(b) == 1 && len(a) == n:
		y := b[0]
		cpu.ParallelFor(n, ElemGrain, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = f(a[i], y)
			}
		})
	case len(a) == 1 && len(b) == n:
		x := a[0]
		cpu.ParallelFor(n, ElemGrain, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = f(x, b[i])
			}
		})
	default:
		// Common case: b broadcast along trailing dims (e.g. [N,C,H,W] + [C,1,1])
		// is handled by the general index path; it is simple and correct.
		idx := BroadcastIndex(out, as, bs)
		ia, ib := idx[0], idx[1]
		cpu.ParallelFor(n, ElemGrain, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = f(a[ia[i]], b[ib[i]])
			}
		})
	}
}
