package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// forEachKernel runs f once with each kernel this CPU has active, the
// pure-Go one included.
func forEachKernel(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := active
	defer func() { active = saved }()
	for _, k := range kernels() {
		active = k
		t.Run(k.name, f)
	}
}

// withBlocking runs f with the cache blocking set to tiny sizes, so that
// small products cross every block boundary.
func withBlocking(mc, kc, nc int, f func()) {
	smc, skc, snc := blockMC, blockKC, blockNC
	defer func() { blockMC, blockKC, blockNC = smc, skc, snc }()
	blockMC, blockKC, blockNC = mc, kc, nc
	f()
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// refGemm is the obviously right triple loop, in float64; it also returns,
// per element, the sum of the magnitudes of the terms (the error scale).
func refGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) (want, scale []float64) {
	want = make([]float64, m*n)
	scale = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, sa float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
				sa += math.Abs(float64(av) * float64(bv))
			}
			v := float64(alpha) * s
			sc := math.Abs(float64(alpha)) * sa
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
				sc += math.Abs(float64(beta) * float64(c[i*ldc+j]))
			}
			want[i*n+j] = v
			scale[i*n+j] = sc
		}
	}
	return want, scale
}

type gemmCase struct {
	transA, transB bool
	m, n, k        int
	pad            int // extra elements per row of A, B and C
	alpha, beta    float32
}

func (tc gemmCase) String() string {
	return fmt.Sprintf("tA=%v tB=%v m=%d n=%d k=%d pad=%d alpha=%g beta=%g", tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.pad, tc.alpha, tc.beta)
}

// check runs one case through Sgemm and compares it with refGemm.
func (tc gemmCase) check(t *testing.T, r *rand.Rand) {
	t.Helper()
	ar, ac := tc.m, tc.k
	if tc.transA {
		ar, ac = ac, ar
	}
	br, bc := tc.k, tc.n
	if tc.transB {
		br, bc = bc, br
	}
	lda, ldb, ldc := max(ac, 1)+tc.pad, max(bc, 1)+tc.pad, max(tc.n, 1)+tc.pad
	a := randSlice(r, max(ar*lda-tc.pad, 0))
	b := randSlice(r, max(br*ldb-tc.pad, 0))
	c := randSlice(r, max(tc.m*ldc-tc.pad, 0))
	if tc.beta == 0 {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	// The padding between rows of C must not be touched.
	const sentinel = 12345.5
	for i := 0; i < tc.m; i++ {
		for j := tc.n; j < ldc && i*ldc+j < len(c); j++ {
			c[i*ldc+j] = sentinel
		}
	}
	want, scale := refGemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	Sgemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	bad := 0
	for i := 0; i < tc.m; i++ {
		for j := 0; j < ldc && i*ldc+j < len(c); j++ {
			got := float64(c[i*ldc+j])
			if j >= tc.n {
				if got != sentinel {
					t.Fatalf("%v: padding C[%d][%d] overwritten with %g", tc, i, j, got)
				}
				continue
			}
			w := want[i*tc.n+j]
			if math.IsNaN(got) || math.Abs(got-w) > 1e-4*scale[i*tc.n+j]+1e-30 {
				if bad++; bad <= 5 {
					t.Errorf("%v: C[%d][%d] = %g, want %g (scale %g)", tc, i, j, got, w, scale[i*tc.n+j])
				}
			}
		}
	}
	if bad > 5 {
		t.Errorf("%v: %d wrong elements in all", tc, bad)
	}
}

var gemmShapes = [][3]int{
	{1, 1, 1}, {1, 7, 5}, {7, 1, 5}, {2, 3, 4}, {1, 33, 17}, {33, 1, 17},
	{5, 5, 0}, {3, 40, 300}, {4, 17, 64}, {8, 100, 33}, {9, 31, 2},
	{13, 29, 7}, {14, 32, 16}, {15, 33, 31}, {16, 64, 64}, {17, 65, 19},
	{28, 64, 129}, {31, 47, 53}, {45, 97, 70}, {64, 64, 64}, {1, 300, 257},
	{300, 1, 129}, {100, 3, 50}, {129, 130, 65}, {200, 37, 300}, {257, 259, 261},
}

// forEachPacking runs f with each packing policy of the packed GEMM.
func forEachPacking(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	defer func() { packing = packAuto }()
	for _, m := range []int{packAuto, packAlways, packNever} {
		packing = m
		t.Run(fmt.Sprint("packing", m), f)
	}
}

func TestSgemm(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		ab := [][2]float32{{1, 0}, {0.5, -1.5}, {-2, 1}}
		for si, s := range gemmShapes {
			for tr := 0; tr < 4; tr++ {
				for ai, x := range ab {
					if s[0]*s[1]*s[2] > 1<<20 && ai > 0 {
						continue // the big shapes once per transpose
					}
					tc := gemmCase{transA: tr&1 != 0, transB: tr&2 != 0, m: s[0], n: s[1], k: s[2], pad: (si + tr + ai) % 3 * 5, alpha: x[0], beta: x[1]}
					tc.check(t, r)
				}
			}
		}
	})
}

// TestSgemmBlocks shrinks the cache blocks so that small products use
// several blocks of M, N and K (and so beta is applied only once).
func TestSgemmBlocks(t *testing.T) {
	forEachKernel(t, func(t *testing.T) { forEachPacking(t, testSgemmBlocks) })
}

// TestSgemmPacking runs the medium shapes with each packing policy.
func TestSgemmPacking(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		forEachPacking(t, func(t *testing.T) {
			r := rand.New(rand.NewPCG(13, 14))
			for si, s := range gemmShapes {
				if s[0]*s[1]*s[2] > 1<<20 {
					continue
				}
				for tr := 0; tr < 4; tr++ {
					tc := gemmCase{transA: tr&1 != 0, transB: tr&2 != 0, m: s[0], n: s[1], k: s[2], pad: (si + tr) % 3 * 3, alpha: 0.75, beta: -0.5}
					tc.check(t, r)
				}
			}
		})
	})
}

func testSgemmBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	withBlocking(2*active.mr+1, 7, 2*active.nr+3, func() {
		for _, s := range [][3]int{{5, 9, 30}, {40, 70, 23}, {3 * active.mr, 5 * active.nr, 15}, {60, 150, 50}} {
			for tr := 0; tr < 4; tr++ {
				tc := gemmCase{transA: tr&1 != 0, transB: tr&2 != 0, m: s[0], n: s[1], k: s[2], pad: tr, alpha: 1.5, beta: 0.5}
				tc.check(t, r)
				tc.beta = 0
				tc.check(t, r)
			}
		}
	})
}

// TestSgemmAlphaZero checks the quick paths: alpha == 0 and k == 0 only
// scale C, and beta == 0 clears NaNs.
func TestSgemmAlphaZero(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []gemmCase{
		{m: 4, n: 5, k: 3, alpha: 0, beta: 2},
		{m: 4, n: 5, k: 3, alpha: 0, beta: 0},
		{m: 4, n: 5, k: 0, alpha: 1, beta: 0},
		{m: 4, n: 5, k: 0, alpha: 1, beta: 1},
		{m: 0, n: 5, k: 3, alpha: 1, beta: 1},
	} {
		tc.check(t, r)
	}
}

func TestSgemmPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"short a": func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		},
		"short b": func() {
			Sgemm(false, true, 2, 3, 2, 1, make([]float32, 4), 2, make([]float32, 5), 2, 0, make([]float32, 6), 3)
		},
		"short c": func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
		},
		"small lda": func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 4), 1, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		},
		"negative": func() { Sgemm(false, false, -1, 2, 2, 1, nil, 2, make([]float32, 4), 2, 0, nil, 2) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic")
				}
			}()
			f()
		})
	}
}

func TestSgemmStridedBatched(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, s := range [][4]int{{3, 5, 7, 4}, {20, 30, 40, 3}, {64, 64, 64, 2}, {1, 16, 8, 5}} {
			m, n, k, batch := s[0], s[1], s[2], s[3]
			for _, shareB := range []bool{false, true} {
				sa, sb, sc := m*k+3, k*n+1, m*n+2
				if shareB {
					sb = 0
				}
				a := randSlice(r, batch*sa)
				b := randSlice(r, max(batch*sb, k*n))
				c := randSlice(r, batch*sc)
				want := make([][]float64, batch)
				scale := make([][]float64, batch)
				for i := 0; i < batch; i++ {
					want[i], scale[i] = refGemm(false, true, m, n, k, 1, a[i*sa:], k, b[i*sb:], k, 0.5, c[i*sc:], n)
				}
				SgemmStridedBatched(false, true, m, n, k, 1, a, k, sa, b, k, sb, 0.5, c, n, sc, batch)
				for i := 0; i < batch; i++ {
					for e := range want[i] {
						got := float64(c[i*sc+e])
						if math.Abs(got-want[i][e]) > 1e-4*scale[i][e]+1e-30 {
							t.Fatalf("m=%d n=%d k=%d batch %d elem %d: got %g want %g", m, n, k, i, e, got, want[i][e])
						}
					}
				}
			}
		}
	})
}

// TestKernelEdge checks every tile shape of the kernels that write ragged
// tiles in place, including that nothing around the tile is touched.
func TestKernelEdge(t *testing.T) {
	if ks := kernels(); ks[0].name == "avx512" && ks[0].edge == nil {
		t.Fatalf("the avx512 kernel has no edge kernel")
	}
	forEachKernel(t, func(t *testing.T) {
		kern := active
		if kern.edge == nil {
			t.Skip("no edge kernel")
		}
		r := rand.New(rand.NewPCG(15, 16))
		for _, k := range []int{1, 6} {
			for mr := 1; mr <= kern.mr; mr++ {
				for nr := 1; nr <= kern.nr; nr++ {
					lda, ldb, ldc := k+1, nr+3, nr+2
					a := randSlice(r, mr*lda)
					b := randSlice(r, k*ldb)
					c := randSlice(r, (mr+1)*ldc)
					c0 := append([]float32(nil), c...)
					kern.edge(mr, nr, k, &a[0], lda, &b[0], ldb, &c[0], ldc, 1.5, 0.5)
					for i := 0; i <= mr; i++ {
						for j := 0; j < ldc; j++ {
							got := c[i*ldc+j]
							if i == mr || j >= nr {
								if got != c0[i*ldc+j] {
									t.Fatalf("k=%d %dx%d: C[%d][%d] outside the tile changed", k, mr, nr, i, j)
								}
								continue
							}
							var s float64
							for p := 0; p < k; p++ {
								s += float64(a[i*lda+p]) * float64(b[p*ldb+j])
							}
							want := 1.5*s + 0.5*float64(c0[i*ldc+j])
							if math.Abs(float64(got)-want) > 1e-4*(math.Abs(want)+1) {
								t.Fatalf("k=%d %dx%d: C[%d][%d] = %g, want %g", k, mr, nr, i, j, got, want)
							}
						}
					}
				}
			}
		}
	})
}
