package cpu

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// BenchmarkBlockedGatherAB times resnet50's strided 1x1 layers (the
// downsamples) read in place (A, bdGather off) and gathered into a compact
// input first (B), alternating rounds; weights cold (copies taken in turn,
// 96 MiB), y from buffers taken in turn, as BenchmarkBlockedR50. CPU us
// per call; only pairs in the same SMT mode count (ratio within
// 0.75-1.33): the median ratio B/A and pairs B won.
//
//	go test ./device/cpu -run '^$' -bench BlockedGatherAB -cpu 1,2 -benchtime 1x
func BenchmarkBlockedGatherAB(b *testing.B) {
	c := func(ch, h, m, s int) Conv2DParams {
		return Conv2DParams{N: 1, C: ch, H: h, W: h, M: m, KH: 1, KW: 1, Group: 1, StrideH: s, StrideW: s, DilH: 1, DilW: 1,
			Act: ActRelu}
	}
	layers := []struct {
		name string
		p    Conv2DParams
	}{
		{"layer2_down_256-512_s2_56", c(256, 56, 512, 2)},
		{"layer3_down_512-1024_s2_28", c(512, 28, 1024, 2)},
		{"layer4_down_1024-2048_s2_14", c(1024, 14, 2048, 2)},
		{"rmini_down_64-128_s2_14", c(64, 14, 128, 2)},
	}
	defer func() { bdGather = true }()
	for i, l := range layers {
		b.Run(l.name, func(b *testing.B) {
			if err := SetThreads(runtime.GOMAXPROCS(0)); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = SetThreads(0) }()
			p := l.p
			r := rand.New(rand.NewPCG(13, uint64(i)))
			x := randSlice(r, p.N*p.C*p.H*p.W)
			w := randSlice(r, p.M*p.C)
			bias := randSlice(r, p.M)
			xb := make([]float32, BlockedLen(p.N, p.C, p.H*p.W))
			ToBlocked(p.N, p.C, p.H*p.W, x, xb)
			ylen := BlockedLen(p.N, p.M, p.OutH()*p.OutW())
			var fs []*BlockedFilter
			for len(fs) == 0 || len(fs)*len(w)*4 < 96<<20 && len(fs) < 64 {
				fs = append(fs, PackBlockedFilter(p, false, w))
			}
			var ys [][]float32
			for len(ys)*ylen*4 < 32<<20 {
				ys = append(ys, make([]float32, ylen))
			}
			k := 0
			reps := max(16, (1<<27)/(p.C*p.M*p.OutH()*p.OutW())) // rounds of a few ms
			timeIt := func(gather bool) float64 {
				bdGather = gather
				t0 := bdCPUTime()
				for range reps {
					k++
					BlockedConv2D(fs[k%len(fs)], xb, bias, nil, ys[k%len(ys)])
				}
				return float64((bdCPUTime() - t0).Microseconds()) / float64(reps)
			}
			for range max(len(fs), len(ys)) / 16 {
				timeIt(true)
			}
			var as, bs, ratios []float64
			won := 0
			for round := range 30 {
				var a, e float64
				if round%2 == 0 {
					a, e = timeIt(false), timeIt(true)
				} else {
					e, a = timeIt(true), timeIt(false)
				}
				if q := e / a; q < 0.75 || q > 1.33 {
					continue
				}
				as, bs, ratios = append(as, a), append(bs, e), append(ratios, e/a)
				if e < a {
					won++
				}
			}
			if len(ratios) == 0 {
				b.Fatal("no same-mode pairs")
			}
			slices.Sort(as)
			slices.Sort(bs)
			slices.Sort(ratios)
			b.ReportMetric(as[len(as)/2], "inplace-us")
			b.ReportMetric(bs[len(bs)/2], "gathered-us")
			b.ReportMetric(ratios[len(ratios)/2], "ratio")
			b.ReportMetric(float64(won), "won")
			b.ReportMetric(float64(len(ratios)), "pairs")
		})
	}
}
