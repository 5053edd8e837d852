//go:build amd64 && !purego

package nn

//go:generate go run gen_convwino_amd64.go

// The AVX-512 transforms of the Winograd convolution (convwino.go); the Go
// versions (winoDeint4Go, ...) say what they compute.
//
//go:noescape
func winoDeint4AVX512(src *float32, n int, dst *float32, ld int)

//go:noescape
func winoBtAVX512(n int, src *[6]*float32, dst *float32, ds int)

//go:noescape
func winoAtAVX512(n int, src *[6]*float32, dst *float32, ds int)

//go:noescape
func winoInt4AVX512(src *float32, ls, n int, dst *float32, bias, lo, hi float32, clamp bool, tail uint64)

// winoKernelsGo makes convWino use the Go transforms (tests compare them).
var winoKernelsGo bool

func winoDeint4(src []float32, n int, dst []float32, ld int) {
	_ = src[64*n-1]
	_ = dst[3*ld+16*n-1]
	if winoKernelsGo {
		winoDeint4Go(src, n, dst, ld)
		return
	}
	winoDeint4AVX512(&src[0], n, &dst[0], ld)
}

func winoBt(n int, src *[6][]float32, dst []float32, ds int) {
	if winoKernelsGo {
		winoBtGo(n, src, dst, ds)
		return
	}
	var sp [6]*float32
	for i := range sp {
		_ = src[i][n-1]
		sp[i] = &src[i][0]
	}
	_ = dst[5*ds+n-1]
	winoBtAVX512(n, &sp, &dst[0], ds)
}

func winoAt(n int, src *[6][]float32, dst []float32, ds int) {
	if winoKernelsGo {
		winoAtGo(n, src, dst, ds)
		return
	}
	var sp [6]*float32
	for i := range sp {
		_ = src[i][n-1]
		sp[i] = &src[i][0]
	}
	_ = dst[3*ds+n-1]
	winoAtAVX512(n, &sp, &dst[0], ds)
}

func winoInt4(src []float32, ls, n int, dst []float32, bias, lo, hi float32, clamp bool, valid int) {
	_ = src[3*ls+16*n-1]
	_ = dst[valid-1]
	if winoKernelsGo {
		winoInt4Go(src, ls, n, dst, bias, lo, hi, clamp, valid)
		return
	}
	tail := ^uint64(0)
	if r := valid - 64*(n-1); r < 64 {
		tail = 1<<uint(r) - 1
	}
	winoInt4AVX512(&src[0], ls, n, &dst[0], bias, lo, hi, clamp, tail)
}
