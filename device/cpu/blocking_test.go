package cpu

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestBlockingString(t *testing.T) {
	for _, b := range append(Blockings(), Blocking{MC: 1, KC: 2, NC: 3}) {
		got, err := ParseBlocking(b.String())
		if err != nil || got != b {
			t.Errorf("ParseBlocking(%q) = %v, %v", b.String(), got, err)
		}
	}
	if Blockings()[0] != DefaultBlocking() {
		t.Errorf("Blockings()[0] = %v, want the default %v", Blockings()[0], DefaultBlocking())
	}
	for _, s := range []string{"", "mc1-kc2", "mc0-kc1-nc1", "mc1-kc-1-nc1", "mc01-kc1-nc1", "mc1-kc1-nc1x", "mc1-kc1-nc99999999"} {
		if _, err := ParseBlocking(s); !errors.Is(err, ErrInvalidBlocking) {
			t.Errorf("ParseBlocking(%q): err = %v, want ErrInvalidBlocking", s, err)
		}
	}
}

func TestPackedGemm(t *testing.T) {
	for _, tc := range []struct {
		tA, tB  bool
		m, n, k int
		want    bool
	}{
		{false, false, 64, 64, 64, true},
		{false, false, 1, 64, 64, false},
		{false, false, 64, 1, 64, false},
		{false, false, 64, 64, 0, false},
		{false, true, 8, 64, 64, false},
		{false, true, 9, 64, 64, true},
		{true, true, 4, 64, 64, true},
	} {
		if got := PackedGemm(tc.tA, tc.tB, tc.m, tc.n, tc.k); got != tc.want {
			t.Errorf("PackedGemm(%v, %v, %d, %d, %d) = %v", tc.tA, tc.tB, tc.m, tc.n, tc.k, got)
		}
	}
}

// TestSgemmBlocked runs every candidate blocking (and a tiny one that
// crosses every block boundary) on odd shapes, transposes and betas,
// against the reference, with each kernel of this CPU.
func TestSgemmBlocked(t *testing.T) {
	saved := active
	defer func() { active = saved }()
	r := rand.New(rand.NewPCG(31, 32))
	blockings := append(Blockings(), Blocking{MC: 5, KC: 7, NC: 33})
	shapes := [][3]int{{2, 3, 4}, {13, 29, 7}, {17, 65, 19}, {45, 97, 70}, {129, 130, 65}, {200, 37, 800}, {1, 30, 9}, {6, 0, 3}}
	for si, s := range shapes {
		for tr := 0; tr < 4; tr++ {
			tA, tB := tr&1 != 0, tr&2 != 0
			m, n, k := s[0], s[1], s[2]
			beta := float32(0)
			if (si+tr)%2 == 1 {
				beta = 0.5
			}
			lda, ldb, ldc := k+1, n+2, n+3
			if tA {
				lda = m + 1
			}
			if tB {
				ldb = k + 2
			}
			a := randSlice(r, (max(m, k)+1)*lda)
			b := randSlice(r, (max(n, k)+1)*ldb)
			c0 := randSlice(r, max(m*ldc, 1))
			if beta == 0 {
				for i := range c0 {
					c0[i] = float32(math.NaN())
				}
			}
			want, scale := refGemm(tA, tB, m, n, k, 1.5, a, lda, b, ldb, beta, c0, ldc)
			for _, kern := range kernels() {
				active = kern
				for _, bl := range blockings {
					c := append([]float32(nil), c0...)
					SgemmBlocked(bl, tA, tB, m, n, k, 1.5, a, lda, b, ldb, beta, c, ldc)
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							got := float64(c[i*ldc+j])
							if math.IsNaN(got) || math.Abs(got-want[i*n+j]) > 1e-4*scale[i*n+j]+1e-30 {
								t.Fatalf("%s %v tA=%v tB=%v %dx%dx%d: C[%d][%d] = %g, want %g", kern.name, bl, tA, tB, m, n, k, i, j, got, want[i*n+j])
							}
						}
					}
				}
			}
		}
	}
	// Batched, B shared and not.
	m, n, k, batch := 20, 30, 40, 3
	for _, sb := range []int{0, k*n + 1} {
		sa, sc := m*k+3, m*n+2
		a := randSlice(r, batch*sa)
		b := randSlice(r, max(batch*sb, k*n))
		c := randSlice(r, batch*sc)
		want := make([][]float64, batch)
		scale := make([][]float64, batch)
		for i := range batch {
			want[i], scale[i] = refGemm(false, false, m, n, k, 1, a[i*sa:], k, b[i*sb:], n, 0, c[i*sc:], n)
		}
		for _, bl := range blockings {
			SgemmStridedBatchedBlocked(bl, false, false, m, n, k, 1, a, k, sa, b, n, sb, 0, c, n, sc, batch)
			for i := range batch {
				for e := range want[i] {
					got := float64(c[i*sc+e])
					if math.Abs(got-want[i][e]) > 1e-4*scale[i][e]+1e-30 {
						t.Fatalf("%v batch %d elem %d: got %g want %g", bl, i, e, got, want[i][e])
					}
				}
			}
		}
	}
}

func TestSgemmBlockedPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Error("SgemmBlocked with an invalid blocking did not panic")
		} else if err, ok := r.(error); !ok || !errors.Is(err, ErrInvalidBlocking) {
			t.Errorf("panic %v, want ErrInvalidBlocking", r)
		}
	}()
	SgemmBlocked(Blocking{MC: 0, KC: 1, NC: 1}, false, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
}

// FuzzParseBlocking: ParseBlocking never panics, and what it accepts is
// valid and spelled back the same.
func FuzzParseBlocking(f *testing.F) {
	for _, b := range Blockings() {
		f.Add(b.String())
	}
	f.Add("mc-1-kc2-nc3")
	f.Add("mc1-kc2-nc3 ")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBlocking(s)
		if err != nil {
			return
		}
		if b.Validate() != nil || b.String() != s {
			t.Fatalf("ParseBlocking(%q) = %v", s, b)
		}
	})
}
