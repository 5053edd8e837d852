package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestSgemmPackedPrefetch checks SgemmPacked against the reference, with
// every kernel, on blockings with several K blocks, row blocks and column
// panels, ragged last panels and row blocks, and B's last rows at the end
// of its memory: the kernels prefetch B eight rows ahead, past the end of
// each K block and of B itself, which must change nothing (and fault on
// nothing). Two runs give the same bits.
func TestSgemmPackedPrefetch(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(21, 22))
		for _, tc := range []struct {
			m, n, k int
			bl      Blocking
		}{
			{128, 768, 768, Blocking{}},
			{128, 2304, 768, Blocking{MC: 144, KC: 256, NC: 1024}},
			{30, 100, 70, Blocking{MC: 14, KC: 16, NC: 64}},
			{45, 33, 129, Blocking{MC: 28, KC: 32, NC: 32}},
			{200, 65, 40, Blocking{MC: 56, KC: 384, NC: 2048}},
			{16, 40, 1000, Blocking{}},
		} {
			name := fmt.Sprintf("%dx%dx%d %v", tc.m, tc.n, tc.k, tc.bl)
			a := randSlice(r, tc.m*tc.k)
			b := randSlice(r, tc.k*tc.n)
			pb := PackB(tc.k, tc.n, b, tc.n)
			want, scale := refGemm(false, false, tc.m, tc.n, tc.k, 1, a, tc.k, b, tc.n, 0, nil, tc.n)
			var got [2][]float32
			for i := range 2 {
				c := make([]float32, tc.m*tc.n)
				SgemmPacked(tc.bl, tc.m, a, tc.k, pb, c, tc.n, nil)
				for j, v := range c {
					if math.Abs(float64(v)-want[j]) > 1e-5*(scale[j]+1) {
						t.Fatalf("%s run %d: C[%d,%d] = %g, want %g", name, i, j/tc.n, j%tc.n, v, want[j])
					}
				}
				got[i] = c
			}
			for j := range got[0] {
				if math.Float32bits(got[0][j]) != math.Float32bits(got[1][j]) {
					t.Fatalf("%s: C[%d,%d] = %g, then %g", name, j/tc.n, j%tc.n, got[0][j], got[1][j])
				}
			}
		}
	})
}

// TestSgemmPackedOnly checks SgemmPacked with B from PackBOnly (no unpacked
// B kept, the source overwritten after packing) against the reference, with
// every kernel: products small enough for the unpacked paths (one row, one
// column, under 2^17 multiply-adds) run the packed kernel, and B packed for
// another kernel than the one in use is unpacked from its panels.
func TestSgemmPackedOnly(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(23, 24))
		for _, tc := range []struct{ m, n, k int }{
			{49, 512, 4608 / 8}, {1, 300, 70}, {7, 1, 40}, {5, 33, 16}, {196, 1024, 256}, {30, 100, 70},
		} {
			name := fmt.Sprintf("%dx%dx%d", tc.m, tc.n, tc.k)
			a := randSlice(r, tc.m*tc.k)
			b := randSlice(r, tc.k*tc.n)
			want, scale := refGemm(false, false, tc.m, tc.n, tc.k, 1, a, tc.k, b, tc.n, 0, nil, tc.n)
			cur, other := active, kernels()[0]
			if other == cur {
				other = kernels()[len(kernels())-1]
			}
			pb := PackBOnly(tc.k, tc.n, b, tc.n)
			active = other
			pbOther := PackBOnly(tc.k, tc.n, b, tc.n)
			active = cur
			for i := range b {
				b[i] = float32(math.NaN()) // the source is the caller's again
			}
			for _, c := range []struct {
				name string
				pb   *PackedB
			}{{"packed", pb}, {"packed for another kernel", pbOther}} {
				got := make([]float32, tc.m*tc.n)
				SgemmPacked(Blocking{}, tc.m, a, tc.k, c.pb, got, tc.n, nil)
				for j, v := range got {
					if math.Abs(float64(v)-want[j]) > 1e-5*(scale[j]+1) {
						t.Fatalf("%s %s: C[%d,%d] = %g, want %g", name, c.name, j/tc.n, j%tc.n, v, want[j])
					}
				}
			}
		}
	})
}
