package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// BenchmarkDirectBands times resnet_mini-sized stride-1 3x3 direct layers
// (C = M, ReLU), one alone and 2 or 4 back to back (each layer's output the
// next one's input, as in a model), with the input copy and the copy out
// dealt by channel ("chan", before section 32), by the bands of rows each
// thread's tiles compute ("band") or run on the calling thread alone ("one"),
// or by channel with the tiles in tile order whatever directBlockOuter says ("tile"), at one and two threads; wall time per
// call (ns/op) and the process's CPU time (NOTES.md section 32):
//
//	go test ./device/cpu/kernels -run '^$' -bench DirectBands -benchtime 2000x -count 5
func BenchmarkDirectBands(b *testing.B) {
	for _, s := range []struct{ c, hw int }{{16, 56}, {32, 28}, {64, 14}} {
		p := cpu.Conv2DParams{N: 1, C: s.c, H: s.hw, W: s.hw, M: s.c, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1,
			StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, Act: cpu.ActRelu}
		r := rand.New(rand.NewPCG(3, uint64(s.c)))
		rnd := func(n int, scale float32) []float32 {
			v := make([]float32, n)
			for i := range v {
				v[i] = (r.Float32()*2 - 1) * scale
			}
			return v
		}
		const layers = 4
		n := p.C * p.H * p.W
		acts := [layers + 1][]float32{}
		for i := range acts {
			acts[i] = rnd(n, 1)
		}
		var fs [layers]*directFilter
		var bs [layers][]float32
		for i := range fs {
			fs[i] = newDirectFilter(rnd(p.M*p.C*9, 0.1), p.M, p.C, 3, 3)
			bs[i] = rnd(p.M, 0.1)
		}
		for _, chain := range []int{1, 2, 4} {
			for _, threads := range []int{1, 2} {
				for _, mode := range []string{"chan", "band", "one", "tile"} {
					if threads == 1 && mode != "chan" {
						continue
					}
					band := mode == "band"
					b.Run(fmt.Sprintf("c%d_%dx%d/x%d/t%d/%s", s.c, s.hw, s.hw, chain, threads, mode), func(b *testing.B) {
						if err := cpu.SetThreads(threads); err != nil {
							b.Fatal(err)
						}
						defer cpu.SetThreads(0)
						directBand = band
						switch mode {
						case "one":
							directCopyOne = 1 << 30
						case "tile":
							directOrder = orderTile
						}
						defer func() { directBand, directCopyOne, directOrder = false, 0, orderAuto }()
						runtime.LockOSThread()
						defer runtime.UnlockOSThread()
						c0 := cpuUsed(true)
						for b.Loop() {
							for l := range chain {
								convDirect(p, acts[l], fs[l], bs[l], acts[l+1], nil, nil)
							}
						}
						b.ReportMetric(float64((cpuUsed(true)-c0).Microseconds())/float64(b.N), "cpu-us/op")
					})
				}
			}
		}
	}
}
