package cpu

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// BenchmarkBlockedR50 times BlockedConv2D on resnet50's convolution shapes
// as a whole model meets them: the weights (copies taken in turn, 96 MiB
// in all) and y and z (buffers taken in turn, 64 MiB or more) come from
// memory. It reports the median CPU time per call (cpu-us-med; the mean
// is skewed by a loaded machine's stalls). It uses only BlockedConv2D's
// API, so that the same file runs against an older kernel, in alternating
// rounds:
//
//	go test ./device/cpu -run '^$' -bench BlockedR50 -cpu 1,2 -benchtime 60x
func BenchmarkBlockedR50(b *testing.B) {
	c := func(ch, h, m, k, s, pad int) Conv2DParams {
		return Conv2DParams{N: 1, C: ch, H: h, W: h, M: m, KH: k, KW: k, Group: 1, StrideH: s, StrideW: s, DilH: 1, DilW: 1,
			PadTop: pad, PadLeft: pad, PadBottom: pad, PadRight: pad, Act: ActRelu}
	}
	layers := []struct {
		name string
		p    Conv2DParams
		z    bool
	}{
		{"layer1_reduce_256-64_56", c(256, 56, 64, 1, 1, 0), false},
		{"layer1_3x3_64-64_56", c(64, 56, 64, 3, 1, 1), false},
		{"layer1_expand_64-256_56", c(64, 56, 256, 1, 1, 0), true},
		{"layer2_down_256-512_s2_56", c(256, 56, 512, 1, 2, 0), false},
		{"layer2_expand_128-512_28", c(128, 28, 512, 1, 1, 0), true},
		{"layer2_3x3_128-128_28", c(128, 28, 128, 3, 1, 1), false},
		{"layer3_down_512-1024_s2_28", c(512, 28, 1024, 1, 2, 0), false},
		{"layer3_reduce_1024-256_14", c(1024, 14, 256, 1, 1, 0), false},
		{"layer3_3x3_256-256_14", c(256, 14, 256, 3, 1, 1), false},
		{"layer3_expand_256-1024_14", c(256, 14, 1024, 1, 1, 0), true},
		{"layer4_reduce0_1024-512_14", c(1024, 14, 512, 1, 1, 0), false},
		{"layer4_3x3_512-512_s2_14", c(512, 14, 512, 3, 2, 1), false},
		{"layer4_down_1024-2048_s2_14", c(1024, 14, 2048, 1, 2, 0), false},
		{"layer4_reduce_2048-512_7", c(2048, 7, 512, 1, 1, 0), false},
		{"layer4_3x3_512-512_7", c(512, 7, 512, 3, 1, 1), false},
		{"layer4_expand_512-2048_7", c(512, 7, 2048, 1, 1, 0), true},
	}
	for i, l := range layers {
		b.Run(l.name, func(b *testing.B) {
			if err := SetThreads(0); err != nil {
				b.Fatal(err)
			}
			p := l.p
			r := rand.New(rand.NewPCG(11, uint64(i)))
			x := randSlice(r, p.N*p.C*p.H*p.W)
			w := randSlice(r, p.M*p.C*p.KH*p.KW)
			bias := randSlice(r, p.M)
			xb := make([]float32, BlockedLen(p.N, p.C, p.H*p.W))
			ToBlocked(p.N, p.C, p.H*p.W, x, xb)
			ylen := BlockedLen(p.N, p.M, p.OutH()*p.OutW())
			var fs []*BlockedFilter
			for len(fs) == 0 || len(fs)*len(w)*4 < 96<<20 && len(fs) < 64 {
				fs = append(fs, PackBlockedFilter(p, false, w))
			}
			var ys, zs [][]float32
			for len(ys)*ylen*4*2 < 64<<20 {
				ys = append(ys, make([]float32, ylen))
				if l.z {
					zs = append(zs, randSlice(r, ylen))
				} else {
					zs = append(zs, nil)
				}
			}
			k := 0
			call := func() float64 {
				k++
				c0 := bdCPUTime()
				BlockedConv2D(fs[k%len(fs)], xb, bias, zs[k%len(ys)], ys[k%len(ys)])
				return float64((bdCPUTime() - c0).Microseconds())
			}
			for range max(len(fs), len(ys)) { // every buffer touched (mapped) before timing
				call()
			}
			var ts []float64
			for b.Loop() {
				ts = append(ts, call())
			}
			slices.Sort(ts)
			b.ReportMetric(ts[len(ts)/2], "cpu-us-med")
			b.ReportMetric(2*float64(p.M*p.OutH()*p.OutW())*float64(p.C*p.KH*p.KW)/ts[len(ts)/2]/1e3, "GFLOP/cpu-s")
		})
	}
}
