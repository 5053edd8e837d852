package cpu

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
)

// BenchmarkBlockedBandsAB times resnet50's flat 1x1 layers with the bands
// of bandLen and a remainder (A, bdEvenBands off) and equal bands (B) in
// alternating rounds, wall time per call (a band's imbalance is a thread
// waiting, which CPU time does not show). Only pairs in the same SMT mode
// count (ratio within 0.75-1.33, NOTES-blocked.md): the median ratio B/A
// and how many pairs B won.
//
//	go test ./device/cpu -run '^$' -bench BlockedBandsAB -cpu 1,2 -benchtime 1x
func BenchmarkBlockedBandsAB(b *testing.B) {
	c := func(ch, h, m int) Conv2DParams {
		return Conv2DParams{N: 1, C: ch, H: h, W: h, M: m, KH: 1, KW: 1, Group: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1,
			Act: ActRelu}
	}
	layers := []struct {
		name string
		p    Conv2DParams
	}{
		{"layer1_reduce_256-64_56", c(256, 56, 64)},
		{"layer1.0_conv1_64-64_56", c(64, 56, 64)},
		{"layer1_expand_64-256_56", c(64, 56, 256)},
		{"layer2_reduce_512-128_28", c(512, 28, 128)},
		{"layer3_reduce_1024-256_14", c(1024, 14, 256)},
	}
	defer func() { bdEvenBands = true }()
	for i, l := range layers {
		b.Run(l.name, func(b *testing.B) {
			if err := SetThreads(runtime.GOMAXPROCS(0)); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = SetThreads(0) }()
			p := l.p
			r := rand.New(rand.NewPCG(12, uint64(i)))
			x := randSlice(r, p.N*p.C*p.H*p.W)
			w := randSlice(r, p.M*p.C)
			bias := randSlice(r, p.M)
			xb := make([]float32, BlockedLen(p.N, p.C, p.H*p.W))
			ToBlocked(p.N, p.C, p.H*p.W, x, xb)
			y := make([]float32, BlockedLen(p.N, p.M, p.H*p.W))
			f := PackBlockedFilter(p, false, w)
			timeIt := func(even bool) float64 {
				bdEvenBands = even
				var ts []float64
				for range 15 {
					t0 := time.Now()
					BlockedConv2D(f, xb, bias, nil, y)
					ts = append(ts, float64(time.Since(t0).Nanoseconds())/1e3)
				}
				slices.Sort(ts)
				return ts[len(ts)/2]
			}
			timeIt(false)
			timeIt(true)
			var as, bs, ratios []float64
			won := 0
			for round := range 40 {
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
			b.ReportMetric(as[len(as)/2], "remainder-us")
			b.ReportMetric(bs[len(bs)/2], "even-us")
			b.ReportMetric(ratios[len(ratios)/2], "ratio")
			b.ReportMetric(float64(won), "won")
			b.ReportMetric(float64(len(ratios)), "pairs")
		})
	}
}
