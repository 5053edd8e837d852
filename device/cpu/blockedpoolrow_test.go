package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestBlockedPoolRow: the blocked pools' row kernel (BlockedPoolRow, AVX-512 where the
// machine has it) equals its Go form, max and average, for window sizes,
// steps and counts of outputs around its four-at-a-time loop.
func TestBlockedPoolRow(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 6))
	src := make([]float32, 1<<14)
	for i := range src {
		src[i] = float32(r.Float64()*2 - 1)
	}
	for _, tc := range []struct{ n, kh, kw, sx, rs, cs int }{
		{1, 1, 1, 0, 0, 0}, {1, 3, 3, 0, 16 * 9, 16}, {4, 3, 3, 32, 16 * 20, 16}, {7, 3, 3, 32, 16 * 20, 16},
		{9, 2, 2, 32, 16 * 18, 16}, {5, 3, 3, 16, 16 * 10, 32}, {13, 1, 7, 16, 0, 16}, {3, 7, 7, 48, 16 * 40, 16},
	} {
		for _, avg := range []bool{false, true} {
			name := fmt.Sprintf("%+v avg %v", tc, avg)
			want := make([]float32, tc.n*Block)
			got := make([]float32, tc.n*Block)
			scale := 1 / float32(tc.kh*tc.kw)
			BlockedPoolRowGo(want, src, tc.n, tc.kh, tc.kw, tc.sx, tc.rs, tc.cs, avg, scale)
			BlockedPoolRow(got, src, tc.n, tc.kh, tc.kw, tc.sx, tc.rs, tc.cs, avg, scale)
			for i := range want {
				if d := got[i] - want[i]; d > 1e-6 || d < -1e-6 {
					t.Fatalf("%s: [%d] = %g, want %g (asm %v)", name, i, got[i], want[i], BlockedPoolAsm)
				}
			}
		}
	}
}
