package image

import (
	"unsafe"

	"github.com/kilnai/kiln/internal/parallel"
)

// up2x2Go is up2x2 in Go: one 64-bit store per output pair.
func up2x2Go(dst, src []uint32, w int) {
	rows := len(src) / w
	for i := 0; i < rows; i++ {
		d64 := unsafe.Slice((*uint64)(unsafe.Pointer(&dst[2*i*2*w])), 2*w)
		a, b := d64[:w], d64[w:2*w]
		for j, v := range src[i*w : (i+1)*w] {
			p := uint64(v) | uint64(v)<<32
			a[j], b[j] = p, p
		}
	}
}

// up2Grain is about how many input elements one goroutine enlarges.
const up2Grain = 1 << 13

// upsample2x2 is blockUpsample's case of 4-byte elements enlarged 2x along
// the two innermost axes: whole runs of input rows per kernel call, split
// over the cores.
func upsample2x2(dst, src []uint32, w int) {
	rows := len(src) / w
	grain := max(1, up2Grain/w)
	parallel.For(rows, grain, func(lo, hi int) {
		up2x2(dst[4*lo*w:4*hi*w], src[lo*w:hi*w], w)
	})
}
