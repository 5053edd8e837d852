//go:build amd64 && !purego && linux

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// The guarded buffers (guardBuf, guards, guardLarge) are poolguard_amd64_test.go's.

// TestGuardPadPlane runs directInput (padPlane, padPlaneSmallAVX512,
// padPlaneS2AVX512) with the source planes and the padded planes each
// ending at, or starting right after, an unmapped page, against the copy
// row by row in Go.
func TestGuardPadPlane(t *testing.T) {
	if !directAsm {
		t.Skip("no AVX-512")
	}
	defer func() { padPlaneOff, padSmallOff = false, false }()
	gs := newGuards(t)
	shapes := 0
	ws := []int{1, 2, 3, 5, 7, 13, 14, 15, 16, 17, 18, 29, 31, 32, 33, 34, 35, 46, 47, 48, 49, 50, 63, 64, 65}
	hs := []int{1, 2, 3, 7}
	if guardLarge {
		ws, hs = nil, []int{1, 2, 3, 4, 5, 7, 9}
		for i := 1; i <= 70; i++ {
			ws = append(ws, i)
		}
	}
	for _, c := range []int{1, 3} {
		for _, h := range hs {
			for _, w := range ws {
				for _, pad := range [][4]int{{0, 0, 0, 0}, {1, 1, 1, 1}, {2, 2, 2, 2}, {0, 2, 1, 0}, {1, 0, 0, 2}} {
					for _, g := range []struct{ s, k int }{{1, 3}, {2, 3}, {2, 1}, {1, 1}} {
						p := cpu.Conv2DParams{N: 1, C: c, H: h, W: w, M: 8, KH: g.k, KW: g.k, Group: 1, StrideH: g.s, StrideW: g.s,
							DilH: 1, DilW: 1, PadTop: pad[0], PadLeft: pad[1], PadBottom: pad[2], PadRight: pad[3]}
						hp, wp := h+pad[0]+pad[2], w+pad[1]+pad[3]
						hq, wq := (hp+g.s-1)/g.s, (wp+g.s-1)/g.s
						ph, pw := min(g.s, g.k), min(g.s, g.k)
						n := c * ph * pw * hq * wq
						x := make([]float32, c*h*w)
						for i := range x {
							x[i] = float32(i + 1)
						}
						want := make([]float32, n)
						padPlaneOff = true
						directInput(p, x, want, hq, wq, ph, pw)
						padPlaneOff = false
						for v := 0; v < 8; v++ {
							padSmallOff = v&4 != 0
							xg, dg := gs.get(t, 0, len(x), v&1 == 0), gs.get(t, 1, n, v&2 == 0)
							copy(xg, x)
							for i := range dg {
								dg[i] = -7
							}
							directInput(p, xg, dg, hq, wq, ph, pw)
							for i := range want {
								if dg[i] != want[i] {
									t.Fatalf("%+v variant %d: [%d] = %v, want %v", p, v, i, dg[i], want[i])
								}
							}
						}
						shapes++
					}
				}
			}
		}
	}
	t.Logf("%d pad shapes, 8 guard variants each", shapes)
}

// TestGuardConvDirect runs convDirect (the padded copy, the tile and vector
// kernels, the copy out) with its input, its output and its phase-plane
// scratch each ending at, or starting right after, an unmapped page, on
// small planes (1x1 .. 48 wide, C 1 .. 17), against cpu.Conv2D.
func TestGuardConvDirect(t *testing.T) {
	if !directAsm {
		t.Skip("no AVX-512")
	}
	if err := cpu.SetThreads(1); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cpu.SetThreads(0) }()
	defer func() { directInScratch, directOutScratch = nil, nil }()
	r := rand.New(rand.NewPCG(4, 44))
	ws := []int{1, 2, 5, 7, 14, 15, 16, 17, 18, 31, 32, 33, 34, 47, 48}
	cs := []int{1, 3, 8, 17}
	if guardLarge {
		ws = nil
		for i := 1; i <= 48; i++ {
			ws = append(ws, i)
		}
		cs = []int{1, 2, 3, 5, 8, 9, 16, 17}
	}
	shapes := 0
	for _, w := range ws {
		for _, c := range cs {
			for _, g := range []struct{ k, s, pad int }{{3, 1, 1}, {1, 1, 0}, {3, 2, 1}, {3, 1, 0}, {5, 1, 2}, {1, 2, 0}} {
				h := []int{1, 3, 7, 14}[(w+c)%4]
				if h+2*g.pad < g.k || w+2*g.pad < g.k {
					continue
				}
				m := []int{3, 8, 13}[(w+c+g.k)%3]
				p := cpu.Conv2DParams{N: 1, C: c, H: h, W: w, M: m, KH: g.k, KW: g.k, Group: 1, StrideH: g.s, StrideW: g.s, DilH: 1, DilW: 1,
					PadTop: g.pad, PadLeft: g.pad, PadBottom: g.pad, PadRight: g.pad, Act: cpu.ActRelu}
				if !directApplies(p) {
					t.Fatalf("directApplies(%+v) = false", p)
				}
				x := make([]float32, c*h*w)
				wt := make([]float32, m*c*g.k*g.k)
				bias := make([]float32, m)
				for _, s := range [][]float32{x, wt, bias} {
					for i := range s {
						s[i] = r.Float32()*2 - 1
					}
				}
				n := m * p.OutH() * p.OutW()
				want := make([]float32, n)
				cpu.Conv2D(p, x, wt, bias, want)
				f := newDirectFilter(wt, m, c, g.k, g.k)
				hq, wq := (h+2*g.pad+g.s-1)/g.s, (w+2*g.pad+g.s-1)/g.s
				ph, pw := min(g.s, g.k), min(g.s, g.k)
				srcLen := c*ph*pw*hq*wq + directSlack + g.k
				for _, layout := range []int{layoutAuto, layoutRows, layoutWide, layoutVecs} {
					old := directLayout
					directLayout = layout
					for v := 0; v < 8; v++ {
						xg, yg := newGuard(t, len(x), v&1 == 0), newGuard(t, n, v&2 == 0)
						copy(xg.f, x)
						for i := range yg.f {
							yg.f[i] = float32(math.NaN())
						}
						// the phase-plane scratch at a guard edge too (a
						// pointwise convolution reads x in place instead)
						sg := newGuard(t, srcLen, v&4 == 0)
						directInScratch = func(n int) []float32 {
							if n != srcLen {
								t.Fatalf("%+v: scratch of %d floats, want %d", p, n, srcLen)
							}
							return sg.f
						}
						// and the wide rows the tiles write before the copy
						// out
						var og *guardBuf
						directOutScratch = func(n int) []float32 {
							og = newGuard(t, n, v&4 != 0)
							return og.f
						}
						convDirect(p, xg.f, f, bias, yg.f, nil, nil)
						for i := range want {
							if d := math.Abs(float64(yg.f[i] - want[i])); !(d <= 1e-4*(1+math.Abs(float64(want[i])))) {
								t.Fatalf("%+v layout %d variant %d: output %d = %g, cpu.Conv2D %g", p, layout, v, i, yg.f[i], want[i])
							}
						}
						xg.free()
						yg.free()
						sg.free()
						if og != nil {
							og.free()
						}
					}
					directLayout = old
				}
				shapes++
			}
		}
	}
	t.Logf("%d conv shapes, 4 layouts and 8 guard variants each", shapes)
}
