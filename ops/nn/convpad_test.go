package nn

import (
	"fmt"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// TestPadPlane compares directInput's stride-1 copy through padPlane (the
// AVX-512 kernel where it runs) with its row-by-row Go copy, on planes
// narrower than, as wide as and wider than a vector, with pads of 0-3 on
// each side, and checks that nothing past the planes is written.
func TestPadPlane(t *testing.T) {
	for _, tc := range []struct{ c, h, w, pt, pl, pb, pr int }{
		{1, 1, 1, 1, 1, 1, 1}, {2, 5, 7, 1, 1, 1, 1}, {3, 9, 16, 1, 1, 1, 1}, {2, 4, 14, 0, 2, 2, 0},
		{1, 6, 31, 3, 0, 0, 3}, {2, 3, 33, 2, 3, 1, 0}, {1, 56, 56, 1, 1, 1, 1}, {1, 2, 100, 0, 0, 0, 0},
	} {
		p := cpu.Conv2DParams{N: 1, C: tc.c, H: tc.h, W: tc.w, M: 8, KH: 3, KW: 3, Group: 1, StrideH: 1, StrideW: 1,
			DilH: 1, DilW: 1, PadTop: tc.pt, PadLeft: tc.pl, PadBottom: tc.pb, PadRight: tc.pr}
		hq, wq := tc.h+tc.pt+tc.pb, tc.w+tc.pl+tc.pr
		x := make([]float32, tc.c*tc.h*tc.w)
		for i := range x {
			x[i] = float32(i + 1)
		}
		var got [2][]float32
		for k, off := range []bool{false, true} {
			padPlaneOff = off
			buf := make([]float32, tc.c*hq*wq+32)
			for i := range buf {
				buf[i] = -7
			}
			directInput(p, x, buf[:tc.c*hq*wq], hq, wq, 1, 1)
			for i, v := range buf[tc.c*hq*wq:] {
				if v != -7 {
					t.Fatalf("%+v padPlaneOff=%v: wrote %v past the planes at %d", tc, off, v, i)
				}
			}
			got[k] = buf[:tc.c*hq*wq]
		}
		padPlaneOff = false
		for i := range got[0] {
			c, r, j := i/(hq*wq), i/wq%hq, i%wq
			want := float32(0)
			if r >= tc.pt && r < tc.pt+tc.h && j >= tc.pl && j < tc.pl+tc.w {
				want = x[(c*tc.h+r-tc.pt)*tc.w+j-tc.pl]
			}
			if got[0][i] != want || got[1][i] != want {
				t.Fatalf("%+v: [%d][%d][%d] = %v (padPlane), %v (Go), want %v", tc, c, r, j, got[0][i], got[1][i], want)
			}
		}
	}
}

// BenchmarkDirectInput times the direct convolution's stride-1 padded
// input copy of resnet_mini's 3x3 layers with padPlane and row by row.
func BenchmarkDirectInput(b *testing.B) {
	for _, l := range []struct{ c, hw int }{{16, 56}, {32, 28}, {64, 14}, {128, 7}} {
		p := cpu.Conv2DParams{N: 1, C: l.c, H: l.hw, W: l.hw, M: l.c, KH: 3, KW: 3, Group: 1, StrideH: 1, StrideW: 1,
			DilH: 1, DilW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}
		hq, wq := l.hw+2, l.hw+2
		x := make([]float32, l.c*l.hw*l.hw)
		xin := make([]float32, l.c*hq*wq)
		for _, off := range []bool{false, true} {
			b.Run(fmt.Sprintf("c%d_%d/rows=%v", l.c, l.hw, off), func(b *testing.B) {
				padPlaneOff = off
				defer func() { padPlaneOff = false }()
				b.ReportAllocs()
				for b.Loop() {
					directInput(p, x, xin, hq, wq, 1, 1)
				}
			})
		}
	}
}
