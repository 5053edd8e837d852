package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestSgemmEpilogue checks SgemmEpilogue, SgemmSerial and SgemmPacked
// (B packed for the kernel in use, and for another one) against the
// reference product with every kernel, on shapes that take each path (a
// row, a column, small products on one goroutine, blocks split by rows and
// by columns, padded strides, a non-default blocking), and that the
// epilogue's blocks cover C exactly once, each after it is final.
func TestSgemmEpilogue(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 12))
		for _, tc := range []struct {
			m, n, k, pad int
			bl           Blocking
		}{
			{1, 40, 30, 0, Blocking{}}, {25, 1, 17, 0, Blocking{}}, {7, 9, 5, 3, Blocking{}},
			{128, 512, 128, 0, Blocking{}}, {300, 40, 70, 5, Blocking{}}, {128, 128, 512, 0, Blocking{MC: 144, KC: 256, NC: 1024}},
			{60, 700, 33, 1, Blocking{}}, {3, 2, 0, 0, Blocking{}}, {0, 5, 4, 0, Blocking{}}, {4, 0, 3, 0, Blocking{}},
		} {
			name := fmt.Sprintf("%dx%dx%d pad %d %v", tc.m, tc.n, tc.k, tc.pad, tc.bl)
			lda, ldb, ldc := max(1, tc.k+tc.pad), max(1, tc.n+tc.pad), max(1, tc.n+tc.pad)
			a := randSlice(r, max(1, tc.m*lda))
			b := randSlice(r, max(1, tc.k*ldb))
			want, scale := refGemm(false, false, tc.m, tc.n, tc.k, 1, a, lda, b, ldb, 0, nil, ldc)
			// B packed for another kernel than the one in use (where the
			// CPU has two): SgemmPacked must read it unpacked.
			cur, other := active, kernels()[0]
			if other == cur {
				other = kernels()[len(kernels())-1]
			}
			active = other
			packedOther := PackB(tc.k, tc.n, b, ldb)
			active = cur
			for _, mode := range []string{"epilogue", "serial", "packed", "packed-other"} {
				serial := mode == "serial"
				c := make([]float32, tc.m*ldc)
				for i := range c {
					c[i] = float32(math.NaN()) // beta 0: never read
				}
				seen := make([]int, tc.m*tc.n)
				var mu sync.Mutex
				if serial && tc.k == 0 {
					continue // Sgemm's own k = 0 path
				}
				epi := func(i0, i1, j0, j1 int) {
					mu.Lock()
					defer mu.Unlock()
					for i := i0; i < i1; i++ {
						for j := j0; j < j1; j++ {
							seen[i*tc.n+j]++
							c[i*ldc+j] += 1 // the epilogue adds 1 to final values
						}
					}
				}
				switch mode {
				case "serial":
					SgemmSerial(tc.bl, tc.m, tc.n, tc.k, a, lda, b, ldb, c, ldc)
				case "packed":
					SgemmPacked(tc.bl, tc.m, a, lda, PackB(tc.k, tc.n, b, ldb), c, ldc, epi)
				case "packed-other":
					SgemmPacked(tc.bl, tc.m, a, lda, packedOther, c, ldc, epi)
				default:
					SgemmEpilogue(tc.bl, tc.m, tc.n, tc.k, a, lda, b, ldb, c, ldc, epi)
				}
				for i := 0; i < tc.m; i++ {
					for j := 0; j < tc.n; j++ {
						w := want[i*tc.n+j]
						if !serial {
							w++
							if seen[i*tc.n+j] != 1 {
								t.Fatalf("%s: element (%d,%d) in %d epilogue blocks", name, i, j, seen[i*tc.n+j])
							}
						}
						got := float64(c[i*ldc+j])
						if math.Abs(got-w) > 1e-5*(scale[i*tc.n+j]+1) {
							t.Fatalf("%s %s: C[%d,%d] = %g, want %g", name, mode, i, j, got, w)
						}
					}
				}
			}
		}
	})
}
