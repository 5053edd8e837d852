package kernels

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// TestDirectBands checks the banded split of convDirect (directBand,
// NOTES.md section 32) at two and three threads: directInputBands writes
// the same phase planes as directInput into a buffer filled with NaN, and
// convDirect's output, with and without an epilogue and a residual (also
// in the output's own memory), in each tile layout, is bit for bit the
// output of the channel split; directSplit's bands cover the output rows
// in order.
func TestDirectBands(t *testing.T) {
	if !directAsm {
		t.Skip("no AVX-512: the direct convolution does not run")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	defer cpu.SetThreads(0)
	defer func(b bool, l int) { directBand, directLayout = b, l }(directBand, directLayout)
	cases := []cpu.Conv2DParams{
		{N: 1, C: 16, H: 56, W: 56, M: 16, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 1, StrideW: 1, Act: cpu.ActRelu},
		{N: 2, C: 16, H: 56, W: 56, M: 32, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 2, StrideW: 2},
		{N: 1, C: 32, H: 28, W: 28, M: 32, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 1, StrideW: 1},
		{N: 1, C: 5, H: 15, W: 13, M: 9, KH: 3, KW: 3, PadTop: 0, PadLeft: 1, PadBottom: 2, PadRight: 0, StrideH: 2, StrideW: 2},
		{N: 1, C: 4, H: 10, W: 20, M: 8, KH: 2, KW: 5, PadTop: 1, PadLeft: 2, PadBottom: 0, PadRight: 2, StrideH: 2, StrideW: 1},
		{N: 1, C: 3, H: 224, W: 224, M: 16, KH: 7, KW: 7, PadTop: 3, PadLeft: 3, PadBottom: 3, PadRight: 3, StrideH: 2, StrideW: 2},
		{N: 1, C: 16, H: 55, W: 55, M: 64, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, StrideH: 1, StrideW: 1, Act: cpu.ActRelu},
		{N: 1, C: 16, H: 56, W: 56, M: 32, KH: 1, KW: 1, StrideH: 2, StrideW: 2},
	}
	for ci, p := range cases {
		p.DilH, p.DilW, p.Group = 1, 1, 1
		r := rand.New(rand.NewPCG(5, uint64(ci)))
		rnd := func(n int) []float32 {
			v := make([]float32, n)
			for i := range v {
				v[i] = r.Float32()*2 - 1
			}
			return v
		}
		x, w, bias := rnd(p.N*p.C*p.H*p.W), rnd(p.M*p.C*p.KH*p.KW), rnd(p.M)
		n := p.N * p.M * p.OutH() * p.OutW()
		z := rnd(n)
		f := newDirectFilter(w, p.M, p.C, p.KH, p.KW)
		sh, sw := p.StrideH, p.StrideW
		hq := (p.H + p.PadTop + p.PadBottom + sh - 1) / sh
		wq := (p.W + p.PadLeft + p.PadRight + sw - 1) / sw
		ph, pw := min(sh, p.KH), min(sw, p.KW)
		planes := p.C * ph * pw * hq * wq
		for _, threads := range []int{2, 3} {
			if err := cpu.SetThreads(threads); err != nil {
				t.Fatal(err)
			}
			directBand = true
			bd := directSplit(p, len(f.packed), planes+directSlack+p.KW, wq, false)
			if bd.n > 0 {
				for q := 0; q < bd.n; q++ {
					if bd.row[q] > bd.row[q+1] || bd.row[q+1] > p.OutH() {
						t.Fatalf("case %d, %d threads: bands %v", ci, threads, bd.row[:bd.n+1])
					}
				}
				want := make([]float32, planes)
				got := make([]float32, planes)
				for i := range got {
					got[i] = float32(math.NaN())
				}
				directInput(p, x[:p.C*p.H*p.W], want, hq, wq, ph, pw)
				directInputBands(p, x[:p.C*p.H*p.W], got, hq, wq, ph, pw, bd)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("case %d, %d threads, bands %v: phase planes [%d] = %g, directInput %g", ci, threads, bd.row[:bd.n+1], i, got[i], want[i])
					}
				}
			} else if ci == 0 {
				t.Fatalf("case 0, %d threads: no bands", threads)
			}
			for _, layout := range []int{layoutAuto, layoutRows, layoutWide} {
				directLayout = layout
				for _, act := range []string{"", actRelu, actSiLU, actNone} {
					var ep *epilogue
					var zz []float32
					if act != "" {
						ep, zz = &epilogue{act: act, p0: -0.5, p1: 0.7}, z
					}
					var outs [2][]float32
					for i, band := range []bool{false, true} {
						directBand = band
						outs[i] = make([]float32, n)
						for j := range outs[i] {
							outs[i][j] = float32(math.NaN())
						}
						convDirect(p, x, f, bias, outs[i], zz, ep)
					}
					for j := range outs[0] {
						if math.Float32bits(outs[0][j]) != math.Float32bits(outs[1][j]) {
							t.Fatalf("case %d, %d threads, layout %d, %q: output %d banded %g, by channel %g", ci, threads, layout, act, j, outs[1][j], outs[0][j])
						}
					}
					if act == actRelu {
						// the residual in the output's own memory
						got := append([]float32(nil), z...)
						directBand = true
						convDirect(p, x, f, bias, got, got, ep)
						for j := range got {
							if math.Float32bits(got[j]) != math.Float32bits(outs[0][j]) {
								t.Fatalf("case %d, %d threads, layout %d: residual in place, output %d banded %g, by channel %g", ci, threads, layout, j, got[j], outs[0][j])
							}
						}
					}
				}
			}
		}
	}
}
