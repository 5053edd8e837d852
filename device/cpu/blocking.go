package cpu

import (
	"errors"
	"fmt"
)

// ErrInvalidBlocking is returned by Blocking.Validate and ParseBlocking.
var ErrInvalidBlocking = errors.New("cpu: invalid GEMM blocking")

// Blocking is the cache blocking of the packed GEMM, in elements: an MC x KC
// block of A is packed to stay in L2 while KC x NC of B streams through it,
// one KC x nr micro-panel at a time from L1. MC and NC are rounded down to
// multiples of the micro-kernel's register block. The zero Blocking stands
// for the default one.
type Blocking struct{ MC, KC, NC int }

// DefaultBlocking returns the blocking Sgemm uses.
func DefaultBlocking() Blocking { return Blocking{MC: blockMC, KC: blockKC, NC: blockNC} }

// String spells b as "mc336-kc384-nc2048" (ParseBlocking reads it back).
func (b Blocking) String() string { return fmt.Sprintf("mc%d-kc%d-nc%d", b.MC, b.KC, b.NC) }

// Validate reports, wrapping ErrInvalidBlocking, a size that is not
// positive or so large that the packed blocks would not fit in memory
// sensibly (more than 1<<16 elements on a side).
func (b Blocking) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"MC", b.MC}, {"KC", b.KC}, {"NC", b.NC}} {
		if f.v <= 0 || f.v > 1<<16 {
			return fmt.Errorf("%w: %s = %d, want 1..65536", ErrInvalidBlocking, f.name, f.v)
		}
	}
	return nil
}

// ParseBlocking reads a blocking spelled as by Blocking.String.
func ParseBlocking(s string) (Blocking, error) {
	var b Blocking
	if _, err := fmt.Sscanf(s, "mc%d-kc%d-nc%d", &b.MC, &b.KC, &b.NC); err != nil || b.String() != s {
		return Blocking{}, fmt.Errorf("%w: %q, want mcN-kcN-ncN", ErrInvalidBlocking, s)
	}
	return b, b.Validate()
}

// Blockings returns the candidate blockings a tactic search times: the
// default first, then smaller blocks (for caches shared with other work),
// a deeper K (fewer passes over C) and wider, shallower blocks (more reuse
// of each packed panel of A).
func Blockings() []Blocking {
	return []Blocking{
		DefaultBlocking(),
		{MC: 144, KC: 256, NC: 1024},
		{MC: 192, KC: 768, NC: 2048},
		{MC: 672, KC: 192, NC: 4096},
	}
}

// PackedGemm reports whether Sgemm computes a product of these sizes with
// the packed, cache-blocked path, the only one the blocking changes (single
// rows and columns go to GEMV kernels and few rows against a transposed B to
// dot products).
func PackedGemm(transA, transB bool, m, n, k int) bool {
	return m > 1 && n > 1 && k > 0 && !(transB && m <= 8 && !transA)
}

// SgemmBlocked is Sgemm with the cache blocking bl instead of the default
// one. The result equals Sgemm's up to the rounding of the sums, whose
// order along K follows KC. It panics as Sgemm does, and if bl is not valid.
func SgemmBlocked(bl Blocking, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if err := bl.Validate(); err != nil {
		panic(err)
	}
	sgemmBlocked(bl, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, Threads())
}

// SgemmStridedBatchedBlocked is SgemmStridedBatched with the cache blocking
// bl. It panics as SgemmStridedBatched does, and if bl is not valid.
func SgemmStridedBatchedBlocked(bl Blocking, transA, transB bool, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int, batch int) {
	if err := bl.Validate(); err != nil {
		panic(err)
	}
	sgemmStridedBatched(bl, transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch)
}
