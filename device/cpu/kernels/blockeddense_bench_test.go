package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/device/cpu/kernels"
)

// BenchmarkBlockedDenseVsTactic times cpu.BlockedConv2D (issue 15's blocked
// layout: blocked input and output, the stems' input NCHW) against every
// NCHW tactic a plan can pick for the same layer (cpu.ConvAlgos, the
// transformed Winograd filter, direct, direct-cl, gemm-t, wino4-*): the
// layers of the shared CNNs that lose most to ONNX Runtime (NOTES.md
// section 35), ReLU fused, CPU time per call. The plan's tactic is the
// fastest NCHW one; device/cpu/NOTES-blocked.md quotes rounds of
//
//	go test ./device/cpu/kernels -run '^$' -bench BlockedDenseVsTactic -cpu 1,2 -benchtime 30x
//
// denseLayers are the layers of the shared CNNs that lose most to ONNX
// Runtime (NOTES.md section 35), ReLU fused.
func denseLayers() []denseLayer {
	c := func(ch, h, m, k, s, pad int) cpu.Conv2DParams {
		return cpu.Conv2DParams{N: 1, C: ch, H: h, W: h, M: m, KH: k, KW: k, Group: 1, StrideH: s, StrideW: s, DilH: 1, DilW: 1,
			PadTop: pad, PadLeft: pad, PadBottom: pad, PadRight: pad, Act: cpu.ActRelu}
	}
	return []denseLayer{
		{"resnet_stem_3-16_7x7s2_224", c(3, 224, 16, 7, 2, 3), true},
		{"resnet_16-32_3x3s2_56", c(16, 56, 32, 3, 2, 1), false},
		{"resnet_64-64_3x3_14", c(64, 14, 64, 3, 1, 1), false},
		{"resnet_128-128_3x3_7", c(128, 7, 128, 3, 1, 1), false},
		{"squeeze_stem_3-64_3x3s2_224", c(3, 224, 64, 3, 2, 0), true},
		{"squeeze_expand3x3_16-64_55", c(16, 55, 64, 3, 1, 1), false},
		{"squeeze_expand3x3_64-256_13", c(64, 13, 256, 3, 1, 1), false},
		{"squeeze_squeeze1x1_128-16_55", c(128, 55, 16, 1, 1, 0), false},
		{"squeeze_squeeze1x1_512-64_13", c(512, 13, 64, 1, 1, 0), false},
		{"squeeze_classifier_512-1000_13", c(512, 13, 1000, 1, 1, 0), false},
		{"yolo_16-32_3x3s2_160", c(16, 160, 32, 3, 2, 1), false},
		{"yolo_stem_3-16_3x3s2_320", c(3, 320, 16, 3, 2, 1), true},
	}
}

type denseLayer struct {
	name   string
	p      cpu.Conv2DParams
	inNCHW bool
}

// denseTactics returns the calls of layer i: "blocked" first, then every
// NCHW tactic a plan can pick for it (cpu.ConvAlgos, the transformed
// Winograd filter, direct, direct-cl, gemm-t, wino4-*), on random data.
func denseTactics(i int, l denseLayer) ([]string, map[string]func(), float64) {
	p := l.p
	r := rand.New(rand.NewPCG(9, uint64(i)))
	oh, ow := p.OutH(), p.OutW()
	x := randF32(r, p.N*p.C*p.H*p.W)
	w := randF32(r, p.M*p.C*p.KH*p.KW)
	bias := randF32(r, p.M)
	y := make([]float32, p.N*p.M*oh*ow)
	xb := x
	if !l.inNCHW {
		xb = make([]float32, cpu.BlockedLen(p.N, p.C, p.H*p.W))
		cpu.ToBlocked(p.N, p.C, p.H*p.W, x, xb)
	}
	yb := make([]float32, cpu.BlockedLen(p.N, p.M, oh*ow))
	f := cpu.PackBlockedFilter(p, l.inNCHW, w)
	names := []string{"blocked"}
	run := map[string]func(){"blocked": func() { cpu.BlockedConv2D(f, xb, bias, nil, yb) }}
	add := func(name string, fn func(x, bias, y []float32)) {
		if fn != nil {
			names = append(names, name)
			run[name] = func() { fn(x, bias, y) }
		}
	}
	for _, a := range cpu.ConvAlgos(p) {
		if a == cpu.ConvWinograd2 || a == cpu.ConvWinograd4 {
			if wf, err := cpu.NewWinogradFilter(a, p, w); err == nil {
				add(string(a), func(x, bias, y []float32) { cpu.Conv2DWinograd(p, x, wf, bias, y) })
			}
			continue
		}
		add(string(a), func(x, bias, y []float32) { cpu.Conv2DWith(a, p, x, w, bias, y) })
	}
	add("direct", kernels.DirectConv(p, w))
	add("direct-cl", kernels.CLConv(p, w))
	if kernels.GemmTOffered(p) {
		add("gemm-t", kernels.GemmTConv(p, w))
	}
	add("wino4-direct", kernels.WinoConv(p, w, false))
	add("wino4-cl", kernels.WinoConv(p, w, true))
	flops := 2 * float64(p.N*p.M*oh*ow) * float64(p.C*p.KH*p.KW)
	return names, run, flops
}

// BenchmarkBlockedDenseVsTactic times cpu.BlockedConv2D (issue 15's blocked
// layout: blocked input and output, the stems' input NCHW) and every NCHW
// tactic of denseTactics on denseLayers, CPU time per call:
//
//	go test ./device/cpu/kernels -run '^$' -bench BlockedDenseVsTactic -cpu 1,2 -benchtime 30x
func BenchmarkBlockedDenseVsTactic(b *testing.B) {
	for i, l := range denseLayers() {
		names, run, flops := denseTactics(i, l)
		for _, name := range names {
			fn := run[name]
			b.Run(fmt.Sprintf("%s/%s", l.name, name), func(b *testing.B) {
				fixThreads(b)
				fn()
				c0 := cpuTime()
				for b.Loop() {
					fn()
				}
				cpuT := cpuTime() - c0
				b.ReportMetric(float64(cpuT.Microseconds())/float64(b.N), "cpu-us/op")
				b.ReportMetric(flops*float64(b.N)/cpuT.Seconds()/1e9, "cpu-GFLOP/s")
			})
		}
	}
}

// BenchmarkBlockedDenseAB answers, per layer of denseLayers and thread
// count (-cpu), whether the blocked kernel beats the NCHW tactic a plan
// would pick: it picks that tactic (the lowest median CPU time of 5 runs
// of 4 calls each), then runs 16 rounds of 8 calls of each in turns (the
// order swapped every round) and reports the medians of the rounds' CPU
// time per call and how many rounds the blocked kernel won. The tactic is
// in the benchmark's name; b.N is ignored (run with -benchtime 1x):
//
//	go test ./device/cpu/kernels -run '^$' -bench BlockedDenseAB -cpu 1,2 -benchtime 1x
func BenchmarkBlockedDenseAB(b *testing.B) {
	if err := cpu.SetThreads(runtime.GOMAXPROCS(0)); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cpu.SetThreads(0) }()
	timeIt := func(fn func(), calls int) float64 {
		c0 := cpuTime()
		for range calls {
			fn()
		}
		return float64((cpuTime() - c0).Nanoseconds()) / 1e3 / float64(calls)
	}
	median := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	for i, l := range denseLayers() {
		names, run, flops := denseTactics(i, l)
		best, bestT := "", 0.0
		for _, name := range names[1:] {
			run[name]()
			var ts []float64
			for range 5 {
				ts = append(ts, timeIt(run[name], 4))
			}
			if t := median(ts); best == "" || t < bestT {
				best, bestT = name, t
			}
		}
		b.Run(fmt.Sprintf("%s/vs_%s", l.name, best), func(b *testing.B) {
			fixThreads(b)
			blk, nchw := run["blocked"], run[best]
			blk()
			var tb, tn []float64
			won := 0
			for round := range 16 {
				var a, c float64
				if round%2 == 0 {
					a = timeIt(blk, 8)
					c = timeIt(nchw, 8)
				} else {
					c = timeIt(nchw, 8)
					a = timeIt(blk, 8)
				}
				tb, tn = append(tb, a), append(tn, c)
				if a < c {
					won++
				}
			}
			mb, mn := median(tb), median(tn)
			b.ReportMetric(mb, "blocked-us")
			b.ReportMetric(mn, "nchw-us")
			b.ReportMetric(mb/mn, "ratio")
			b.ReportMetric(float64(won), "won/16")
			b.ReportMetric(flops/mb/1e3, "blocked-GFLOP/cpu-s")
		})
	}
}
