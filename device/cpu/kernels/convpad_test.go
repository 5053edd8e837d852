package kernels

import (
	"fmt"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// TestPadPlane compares directInput's copies through padPlane and
// padPlaneS2 and padPlaneS2x2 (the AVX-512 kernels where they run) with its row-by-row Go
// copy, for strides 1 and 2 (kernels 1x1, 3x3 and 7x7: one, two or four
// phase planes per channel), on planes narrower than, as wide as and wider
// than a vector, with pads of 0-3 on each side, and checks that nothing
// past the planes is written.
func TestPadPlane(t *testing.T) {
	for _, tc := range []struct{ c, h, w, pt, pl, pb, pr int }{
		{1, 1, 1, 1, 1, 1, 1}, {2, 5, 7, 1, 1, 1, 1}, {3, 9, 16, 1, 1, 1, 1}, {2, 4, 14, 0, 2, 2, 0},
		{1, 6, 31, 3, 0, 0, 3}, {2, 3, 33, 2, 3, 1, 0}, {1, 56, 56, 1, 1, 1, 1}, {1, 2, 100, 0, 0, 0, 0},
		{3, 23, 69, 3, 3, 3, 3},
	} {
		for _, g := range []struct{ s, k int }{{1, 3}, {2, 3}, {2, 1}, {2, 7}} {
			p := cpu.Conv2DParams{N: 1, C: tc.c, H: tc.h, W: tc.w, M: 8, KH: g.k, KW: g.k, Group: 1, StrideH: g.s, StrideW: g.s,
				DilH: 1, DilW: 1, PadTop: tc.pt, PadLeft: tc.pl, PadBottom: tc.pb, PadRight: tc.pr}
			hp, wp := tc.h+tc.pt+tc.pb, tc.w+tc.pl+tc.pr
			hq, wq := (hp+g.s-1)/g.s, (wp+g.s-1)/g.s
			ph, pw := min(g.s, g.k), min(g.s, g.k)
			n := tc.c * ph * pw * hq * wq
			x := make([]float32, tc.c*tc.h*tc.w)
			for i := range x {
				x[i] = float32(i + 1)
			}
			var got [3][]float32
			// AVX-512 (column phases in pairs), Go, AVX-512 one plane per call
			for k, off := range []bool{false, true, false} {
				padPlaneOff, padPairOff = off, k == 2
				buf := make([]float32, n+32)
				for i := range buf {
					buf[i] = -7
				}
				directInput(p, x, buf[:n], hq, wq, ph, pw)
				for i, v := range buf[n:] {
					if v != -7 {
						t.Fatalf("%+v %+v padPlaneOff=%v: wrote %v past the planes at %d", tc, g, off, v, i)
					}
				}
				got[k] = buf[:n]
			}
			padPlaneOff, padPairOff = false, false
			for i := range got[0] {
				// channel c, phase (a, b), phase row r, column j
				it, r, j := i/(hq*wq), i/wq%hq, i%wq
				c, a, b := it/(ph*pw), it/pw%ph, it%pw
				sr, sc := a+r*g.s-tc.pt, b+j*g.s-tc.pl
				want := float32(0)
				if sr >= 0 && sr < tc.h && sc >= 0 && sc < tc.w {
					want = x[(c*tc.h+sr)*tc.w+sc]
				}
				if got[0][i] != want || got[1][i] != want || got[2][i] != want {
					t.Fatalf("%+v %+v: plane %d [%d][%d] = %v (AVX-512), %v (Go), %v (AVX-512, a plane per call), want %v", tc, g, it, r, j, got[0][i], got[1][i], got[2][i], want)
				}
			}
		}
	}
}

// BenchmarkDirectInput times the direct convolution's padded (and, at
// stride 2, phase-split) input copy of resnet_mini's layers with the
// AVX-512 kernels and row by row.
func BenchmarkDirectInput(b *testing.B) {
	for _, l := range []struct{ c, hw, k, s, pad int }{{3, 32, 3, 1, 1}, {8, 16, 3, 1, 1}, {16, 56, 3, 1, 1}, {32, 28, 3, 1, 1}, {64, 14, 3, 1, 1}, {128, 7, 3, 1, 1},
		{3, 224, 7, 2, 3}, {16, 56, 3, 2, 1}, {32, 28, 3, 2, 1}, {64, 14, 3, 2, 1}, {3, 224, 3, 2, 0}, {3, 320, 3, 2, 1}} {
		p := cpu.Conv2DParams{N: 1, C: l.c, H: l.hw, W: l.hw, M: l.c, KH: l.k, KW: l.k, Group: 1, StrideH: l.s, StrideW: l.s,
			DilH: 1, DilW: 1, PadTop: l.pad, PadLeft: l.pad, PadBottom: l.pad, PadRight: l.pad}
		hq := (l.hw + 2*l.pad + l.s - 1) / l.s
		wq, ph := hq, min(l.s, l.k)
		x := make([]float32, l.c*l.hw*l.hw)
		xin := make([]float32, l.c*ph*ph*hq*wq)
		for i, off := range []bool{false, true, false, false} {
			name := fmt.Sprintf("c%d_%d_k%d_s%d/rows=%v", l.c, l.hw, l.k, l.s, off)
			switch {
			case i == 2:
				// rows of up to 3 chunks with padPlaneAVX512's loop
				name = fmt.Sprintf("c%d_%d_k%d_s%d/nosmall", l.c, l.hw, l.k, l.s)
			case i == 3 && l.s == 2:
				// a padPlaneS2 call per phase plane, not per pair
				name = fmt.Sprintf("c%d_%d_k%d_s%d/nopair", l.c, l.hw, l.k, l.s)
			case i == 3:
				continue
			}
			b.Run(name, func(b *testing.B) {
				padPlaneOff, padSmallOff, padPairOff = off, i == 2, i == 3
				defer func() { padPlaneOff, padSmallOff, padPairOff = false, false, false }()
				b.ReportAllocs()
				c0 := cpuUsed(true)
				for b.Loop() {
					directInput(p, x, xin, hq, wq, ph, ph)
				}
				b.ReportMetric(float64((cpuUsed(true)-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
