package cpu

import (
	"sync"
	"unsafe"
)

// kernel is one implementation of the inner loops that Sgemm and its GEMV
// paths are built from. Exactly one is active at a time (active); the
// assembly ones are picked at start-up from the CPU's features and tests flip
// between all of them, the pure-Go one included.
type kernel struct {
	name string
	// mr x nr is the register block of gemm.
	mr, nr int
	// gemm computes the mr x nr tile C = alpha*A*B + beta*C over k steps.
	// A is mr x k with row stride lda, B is k x nr with row stride ldb
	// and C is mr x nr with row stride ldc. When beta is zero (of either
	// sign), C is only written, never read.
	gemm func(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
	// edge, when not nil, is gemm on the first mr rows and nr columns of
	// a tile only, reading and writing nothing outside them; without it
	// edge tiles go through a scratch tile.
	edge func(mr, nr, k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
	// edgeBias, when not nil, is edge adding bias[j] to column j of the
	// tile's every row after alpha*A*B + beta*C (the GEMM's epilogue
	// bias); without it the bias is added in Go after the product.
	edgeBias func(mr, nr, k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, bias *float32)
	// gemvN sets y[j] = sum over i < k of x[i]*b[i*ldb+j], for j < n.
	gemvN func(k int, x, b *float32, ldb int, y *float32, n int)
	// dot4 sets out[r] = sum over p < k of x[p]*b[r*ldb+p], for r < 4.
	dot4 func(k int, x, b *float32, ldb int, out *float32)
	// nAlign is the column block gemvN is fastest on; threads split the
	// columns of a GEMV at multiples of it.
	nAlign int
	// dw3x3s1 and dw3x3s2 compute one output plane (oh x ow, row stride
	// ldo) of a 3x3 depthwise convolution with stride 1 or 2 from a padded
	// input plane with row stride ld, the nine weights and a bias, clamped
	// to [lo, hi]. in holds dwSlack floats past the plane's last row.
	dw3x3s1, dw3x3s2 func(in []float32, ld int, wt, dst []float32, ldo, oh, ow int, b, lo, hi float32)
	// gather2 sets dst[i] = src[2*i] for every i of dst; len(src) must be
	// at least 2*len(dst)-1.
	gather2 func(dst, src []float32)
}

// dwSlack is how many floats past an input plane the depthwise kernels may
// read (and ignore).
const dwSlack = 64

// maxMR and maxNR bound the register block of every kernel; edge tiles are
// computed into a scratch tile of this size.
const (
	maxMR = 16
	maxNR = 32
)

// active is the kernel Sgemm and Conv2D use. Tests set it to each entry of
// kernels() in turn, so that the pure-Go fallback is always exercised.
var active = kernels()[0]

// ISA names the instruction set of the kernels in use: "avx512", "avx2" or
// "generic" (pure Go). It belongs in a plan's device fingerprint.
func ISA() string { return active.name }

// Cache blocking of the packed GEMM, in elements: a kc x nr panel of B should
// stay in L1 while the mc x kc block of A sits in L2 and the kc x nc block of
// B in L2/L3. mc and nc are rounded down to multiples of mr and nr.
var (
	blockMC = 336
	blockKC = 384
	blockNC = 2048
)

// floatPool hands out float32 scratch buffers aligned to 64 bytes. Each use
// has its own pool so that buffers of very different sizes do not evict
// each other.
type floatPool struct{ p sync.Pool }

// get returns a buffer of length n; its contents are undefined.
func (fp *floatPool) get(n int) *[]float32 {
	scratchAdd(int64(n) * 4)
	if v, ok := fp.p.Get().(*[]float32); ok {
		if cap(*v) >= n {
			*v = (*v)[:n]
			return v
		}
	}
	s := alignedFloats(n)
	return &s
}

func (fp *floatPool) put(v *[]float32) {
	scratchAdd(-int64(len(*v)) * 4)
	fp.p.Put(v)
}

// alignedFloats allocates n float32s starting at a 64-byte boundary.
func alignedFloats(n int) []float32 {
	s := make([]float32, n+16)
	off := int((64 - uintptr(unsafe.Pointer(&s[0]))%64) % 64 / 4)
	return s[off : off+n : off+n]
}
