package cpu

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestGemmEdgeSplit checks that merging a last row tile of 1-3 rows with
// the full tile before it (two tiles of about equal height) gives C bit
// for bit as the short tile did: each element's sum over K runs in the same
// order whichever tile computes it. Shapes whose row count leaves such a
// tile (bert_mini's 128 tokens: 9 x 14 + 2), with A packed and read in
// place, B packed once, several K blocks and beta.
func TestGemmEdgeSplit(t *testing.T) {
	if active.edge == nil {
		t.Skip("kernel without an edge variant: no split")
	}
	defer func(v int) { edgeMinRows = v }(edgeMinRows)
	defer func() { packing = packAuto }()
	r := rand.New(rand.NewPCG(21, 22))
	mr := active.mr
	for _, tc := range []struct {
		m, n, k int
		packed  bool
		pack    int
	}{
		{mr + 1, 40, 17, false, packAuto},
		{mr + 2, 64, 33, true, packAuto},
		{2*mr + 3, 70, 9, false, packAlways},
		{128, 512, 128, true, packAuto},
		{128, 128, 512, true, packAuto},
		{128, 96, 700, false, packAlways},
		{9*mr + 2, 33, 64, false, packNever},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d/packed=%v/packing%d", tc.m, tc.n, tc.k, tc.packed, tc.pack), func(t *testing.T) {
			if e := tc.m % mr; e == 0 || e >= 4 {
				t.Fatalf("m=%d leaves a last tile of %d rows: not a split case", tc.m, e)
			}
			packing = tc.pack
			a, b := randSlice(r, tc.m*tc.k), randSlice(r, tc.k*tc.n)
			c0 := randSlice(r, tc.m*tc.n)
			var pb *PackedB
			if tc.packed {
				pb = PackB(tc.k, tc.n, b, tc.n)
			}
			out := map[int][]float32{}
			for _, v := range []int{0, 4} {
				edgeMinRows = v
				c := append([]float32(nil), c0...)
				g := gemmJob{kern: active, m: tc.m, n: tc.n, k: tc.k, alpha: 1.25, beta: 0.5,
					a: a, lda: tc.k, b: b, ldb: tc.n, c: c, ldc: tc.n, pb: pb}
				g.run(0, tc.m, 0, tc.n)
				out[v] = c
			}
			for i := range out[0] {
				if out[0][i] != out[4][i] {
					t.Fatalf("C[%d][%d] = %g with the split, %g without", i/tc.n, i%tc.n, out[4][i], out[0][i])
				}
			}
		})
	}
}

// TestEvenRowSplit checks the split of a product into equal row ranges
// (epiJob.evenRows): for row counts that whole row panels would share
// unevenly, on 2-4 goroutines, every element of C is in exactly one
// epilogue block and equals, bit for bit, the product on one goroutine.
func TestEvenRowSplit(t *testing.T) {
	defer func(v bool) { evenRows = v }(evenRows)
	r := rand.New(rand.NewPCG(23, 24))
	for _, tc := range []struct{ m, n, k, nt int }{
		{128, 128, 512, 2}, {128, 128, 128, 2}, {100, 64, 40, 3}, {43, 32, 17, 2}, {29, 40, 9, 2}, {130, 96, 33, 4},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d/nt=%d", tc.m, tc.n, tc.k, tc.nt), func(t *testing.T) {
			a, b := randSlice(r, tc.m*tc.k), randSlice(r, tc.k*tc.n)
			want := make([]float32, tc.m*tc.n)
			sgemmBlocked(Blocking{}, false, false, tc.m, tc.n, tc.k, 1, a, tc.k, b, tc.n, 0, want, tc.n, 1)
			evenRows = true
			c := make([]float32, tc.m*tc.n)
			seen := make([]int32, tc.m*tc.n)
			var mu sync.Mutex
			e := &epiJob{}
			e.colsFn, e.rowsFn, e.evenRowsFn = e.cols, e.rows, e.evenRows
			e.g = gemmJob{kern: active, m: tc.m, n: tc.n, k: tc.k, alpha: 1, a: a, lda: tc.k, b: b, ldb: tc.n, c: c, ldc: tc.n}
			e.epi = func(i0, i1, j0, j1 int) {
				mu.Lock()
				defer mu.Unlock()
				for i := i0; i < i1; i++ {
					for j := j0; j < j1; j++ {
						seen[i*tc.n+j]++
					}
				}
			}
			e.split(tc.nt)
			for i := range c {
				if seen[i] != 1 {
					t.Fatalf("C[%d][%d] in %d epilogue blocks", i/tc.n, i%tc.n, seen[i])
				}
				if c[i] != want[i] {
					t.Fatalf("C[%d][%d] = %g split, %g on one goroutine", i/tc.n, i%tc.n, c[i], want[i])
				}
			}
		})
	}
}

// TestSgemmPackedBias checks that SgemmPackedBias gives, with every
// kernel, bit for bit what SgemmPacked followed by adding the bias gives
// (the AVX-512 kernel adds it as it stores a tile's final values, the
// others after the product), on shapes that take each path: GEMV rows,
// products too small to split, several K blocks (the bias once, after the
// last), ragged tiles, splits by rows and by columns, and k = 0; and that
// the epilogue sees the bias already added.
func TestSgemmPackedBias(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(25, 26))
		for _, tc := range []struct{ m, n, k int }{
			{1, 40, 30}, {7, 9, 5}, {128, 512, 128}, {128, 128, 512}, {128, 384, 128},
			{60, 700, 33}, {30, 70, 900}, {17, 33, 400}, {3, 2, 0},
		} {
			t.Run(fmt.Sprintf("%dx%dx%d", tc.m, tc.n, tc.k), func(t *testing.T) {
				a, b := randSlice(r, max(1, tc.m*tc.k)), randSlice(r, max(1, tc.k*tc.n))
				bias := randSlice(r, tc.n)
				pb := PackB(tc.k, tc.n, b, tc.n)
				want := make([]float32, tc.m*tc.n)
				SgemmPacked(Blocking{}, tc.m, a, tc.k, pb, want, tc.n, nil)
				addBias(want, tc.n, bias, 0, tc.m, 0, tc.n)
				got := make([]float32, tc.m*tc.n)
				var mu sync.Mutex
				bad := 0
				SgemmPackedBias(Blocking{}, tc.m, a, tc.k, pb, bias, got, tc.n, func(i0, i1, j0, j1 int) {
					mu.Lock()
					defer mu.Unlock()
					for i := i0; i < i1; i++ {
						for j := j0; j < j1; j++ {
							if got[i*tc.n+j] != want[i*tc.n+j] {
								bad++
							}
						}
					}
				})
				if bad > 0 {
					t.Errorf("the epilogue saw %d elements without their final value", bad)
				}
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("C[%d][%d] = %g, want %g (product then bias)", i/tc.n, i%tc.n, got[i], want[i])
					}
				}
			})
		}
	})
}
