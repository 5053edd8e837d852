package cpu

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"
)

// bdLayer is a convolution of the shared models that loses to ONNX
// Runtime (ops/nn/NOTES.md section 35).
type bdLayer struct {
	name   string
	p      Conv2DParams
	inNCHW bool
	z      bool // with a residual (a separate buffer)
}

func bdLayers() []bdLayer {
	c := func(ch, h, m, k, s, pad int) Conv2DParams {
		return Conv2DParams{N: 1, C: ch, H: h, W: h, M: m, KH: k, KW: k, Group: 1, StrideH: s, StrideW: s, DilH: 1, DilW: 1,
			PadTop: pad, PadLeft: pad, PadBottom: pad, PadRight: pad, Act: ActRelu}
	}
	return []bdLayer{
		{"resnet_stem_3-16_7x7s2_224", c(3, 224, 16, 7, 2, 3), true, false},
		{"resnet_16-32_3x3s2_56", c(16, 56, 32, 3, 2, 1), false, false},
		{"resnet_64-64_3x3_14", c(64, 14, 64, 3, 1, 1), false, false},
		{"resnet_128-128_3x3_7", c(128, 7, 128, 3, 1, 1), false, false},
		{"squeeze_stem_3-64_3x3s2_224", c(3, 224, 64, 3, 2, 0), true, false},
		{"squeeze_expand3x3_16-64_55", c(16, 55, 64, 3, 1, 1), false, false},
		{"squeeze_expand3x3_64-256_13", c(64, 13, 256, 3, 1, 1), false, false},
		{"squeeze_squeeze1x1_128-16_55", c(128, 55, 16, 1, 1, 0), false, false},
		{"squeeze_squeeze1x1_512-64_13", c(512, 13, 64, 1, 1, 0), false, false},
		{"squeeze_classifier_512-1000_13", c(512, 13, 1000, 1, 1, 0), false, false},
		{"yolo_16-32_3x3s2_160", c(16, 160, 32, 3, 2, 1), false, false},
		{"yolo_stem_3-16_3x3s2_320", c(3, 320, 16, 3, 2, 1), true, false},
		// small planes (in L1/L2): the kernels' own ceiling
		{"small_stem_3-16_7x7s2_40", c(3, 40, 16, 7, 2, 3), true, false},
		{"small_1x1_128-16_12", c(128, 12, 16, 1, 1, 0), false, false},
		{"small_3x3_64-64_12", c(64, 12, 64, 3, 1, 1), false, false},
		// resnet50 (issue 15: the layer kinds behind ONNX Runtime)
		{"r50_expand_64-256_56", c(64, 56, 256, 1, 1, 0), false, true},
		{"r50_expand_128-512_28", c(128, 28, 512, 1, 1, 0), false, true},
		{"r50_expand_256-1024_14", c(256, 14, 1024, 1, 1, 0), false, true},
		{"r50_expand_512-2048_7", c(512, 7, 2048, 1, 1, 0), false, true},
		{"r50_reduce_256-64_56", c(256, 56, 64, 1, 1, 0), false, false},
		{"r50_reduce_2048-512_7", c(2048, 7, 512, 1, 1, 0), false, false},
		{"r50_down_256-512_s2_56", c(256, 56, 512, 1, 2, 0), false, false},
		{"r50_down_512-1024_s2_28", c(512, 28, 1024, 1, 2, 0), false, false},
		{"r50_down_1024-2048_s2_14", c(1024, 14, 2048, 1, 2, 0), false, false},
		{"r50_3x3_512-512_7", c(512, 7, 512, 3, 1, 1), false, false},
		{"r50_3x3_512-512_s2_14", c(512, 14, 512, 3, 2, 1), false, false},
		{"r50_3x3_256-256_14", c(256, 14, 256, 3, 1, 1), false, false},
	}
}

// bdCPUTime is the process's user and system CPU time so far.
func bdCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBlockedConv times BlockedConv2D (blocked input and output; the
// stems NCHW input) against Conv2D's own choice on the same layer (NCHW),
// GFLOP/s and CPU time per call. Run with -cpu 1,2; in alternating rounds:
//
//	for i in 1 2 3 4 5 6; do go test ./device/cpu -run '^$' -bench BlockedConv -cpu 1,2 -benchtime 30x; done
//
// ops/nn's BenchmarkBlockedDenseVsTactic compares against the plan's NCHW
// tactics (direct, direct-cl, Winograd ...), which live in ops/nn.
func BenchmarkBlockedConv(b *testing.B) {
	for i, l := range bdLayers() {
		p := l.p
		r := rand.New(rand.NewPCG(7, uint64(i)))
		oh, ow := p.OutH(), p.OutW()
		x := randSlice(r, p.N*p.C*p.H*p.W)
		w := randSlice(r, p.M*p.C*p.KH*p.KW)
		bias := randSlice(r, p.M)
		y := make([]float32, p.N*p.M*oh*ow)
		xb := x
		if !l.inNCHW {
			xb = make([]float32, BlockedLen(p.N, p.C, p.H*p.W))
			ToBlocked(p.N, p.C, p.H*p.W, x, xb)
		}
		yb := make([]float32, BlockedLen(p.N, p.M, oh*ow))
		var zb []float32
		if l.z {
			zb = make([]float32, len(yb))
			for i := range zb {
				zb[i] = r.Float32() - 0.5
			}
		}
		f := PackBlockedFilter(p, l.inNCHW, w)
		// Cold weights: copies of the filter taken in turn, ~96 MiB in all,
		// so that each call reads its weights from memory as in a whole
		// model (resnet50's 100 MB of weights do not stay in any cache).
		fs := []*BlockedFilter{f}
		for len(fs)*len(f.W)*4 < 96<<20 && len(fs) < 64 {
			fs = append(fs, PackBlockedFilter(p, l.inNCHW, w))
		}
		fi := 0
		flops := 2 * float64(p.N*p.M*oh*ow) * float64(p.C*p.KH*p.KW)
		for _, v := range []struct {
			name string
			run  func()
		}{
			{"blocked", func() { BlockedConv2D(f, xb, bias, zb, yb) }},
			{"blocked-coldw", func() {
				fi = (fi + 1) % len(fs)
				BlockedConv2D(fs[fi], xb, bias, zb, yb)
			}},
			{"blocked-nochunk", func() {
				// the input blocks in one pass, whatever the weights' size
				c := bdChunkBytes
				bdChunkBytes = 0
				BlockedConv2D(f, xb, bias, zb, yb)
				bdChunkBytes = c
			}},
			{"blocked-chunk128k", func() {
				c := bdChunkBytes
				bdChunkBytes = 128 << 10
				BlockedConv2D(f, xb, bias, zb, yb)
				bdChunkBytes = c
			}},
			{"blocked-noz", func() { BlockedConv2D(f, xb, bias, nil, yb) }},
			{"blocked-rowborders", func() {
				// the border pixels one at a time, not down the column
				bdCols = false
				BlockedConv2D(f, xb, bias, nil, yb)
				bdCols = true
			}},
			{"blocked-nostem", func() {
				// NCHW input: without bdStem's broadcast-once kernel
				bdStems = false
				BlockedConv2D(f, xb, bias, nil, yb)
				bdStems = true
			}},
			{"conv2d", func() { Conv2D(p, x, w, bias, y) }},
		} {
			b.Run(fmt.Sprintf("%s/%s", l.name, v.name), func(b *testing.B) {
				if err := SetThreads(0); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				v.run()
				c0 := bdCPUTime()
				for b.Loop() {
					v.run()
				}
				cpu := bdCPUTime() - c0
				reportFlops(b, flops)
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
				// per CPU second: on a loaded machine, steadier than per wall second
				b.ReportMetric(flops*float64(b.N)/cpu.Seconds()/1e9, "cpu-GFLOP/s")
			})
		}
	}
}

// bdToggles are the switches of blockedDense's newer paths, for
// BenchmarkBlockedConvAB: set(false) selects the path before it.
var bdToggles = []struct {
	name string
	set  func(on bool)
}{
	{"chunk", func(on bool) {
		bdChunkBytes = 0
		if on {
			bdChunkBytes = 256 << 10
		}
	}},
	{"chunk32k", func(on bool) {
		// (A: chunks of 32 KiB of weights, B: 256 KiB)
		bdChunkBytes = 256 << 10
		if on {
			bdChunkBytes = 32 << 10
		}
	}},
	{"bal", func(on bool) { bdBalanced = on }},
	// A: every path above on, B: all off (the kernel's own changes stay)
	{"all", func(on bool) {
		bdChunkBytes, bdBalanced = 0, on
		if on {
			bdChunkBytes = 256 << 10
		}
	}},
	// A: cold weights, B: the same weights every call (the cost of
	// reading them from memory)
	{"cold", func(on bool) { bdABWarm = !on }},
	// (layers with a residual) A: z added in place (z is y, as the
	// memory planner could give y z's buffer where z dies at the
	// convolution), B: z and y separate; both from buffers taken in turn,
	// 64 MiB or more in all, so that they come from memory as in a model
	{"inplace", func(on bool) { bdABInPlace = on }},
	// (y, and z where there is one, separate and from memory as for
	// inplace's B) A: prefetch of the next segment's y and z lines, B: none
	{"pfyz", func(on bool) { bdPrefetchYZ = on }},
}

// bdABInPlace: BenchmarkBlockedConvAB's calls add the residual in place.
var bdABInPlace bool

// bdABWarm: BenchmarkBlockedConvAB's calls use one filter (warm in the
// caches), not the copies in turn.
var bdABWarm bool

// BenchmarkBlockedConvAB compares each toggle's new path (A) with the one
// before it (B) call by call, in turns (the order swapped every pair), on
// the resnet50 layers with cold weights: the median CPU time per call of
// each, and the share of pairs A won. On a loaded machine the pairs see
// the same load, where separate benchmarks do not:
//
//	go test ./device/cpu -run '^$' -bench 'BlockedConvAB/r50' -cpu 1,2 -benchtime 200x
func BenchmarkBlockedConvAB(b *testing.B) {
	for i, l := range bdLayers() {
		if len(l.name) < 4 || l.name[:4] != "r50_" {
			continue
		}
		p := l.p
		var xb, bias, yb, zb []float32
		var fs []*BlockedFilter
		var ys, zs, yzs [][]float32 // (inplace) separate y and z; y holding z
		setup := func() {           // once, in the first sub-benchmark that runs
			r := rand.New(rand.NewPCG(7, uint64(i)))
			x := randSlice(r, p.N*p.C*p.H*p.W)
			w := randSlice(r, p.M*p.C*p.KH*p.KW)
			bias = randSlice(r, p.M)
			xb = make([]float32, BlockedLen(p.N, p.C, p.H*p.W))
			ToBlocked(p.N, p.C, p.H*p.W, x, xb)
			yb = make([]float32, BlockedLen(p.N, p.M, p.OutH()*p.OutW()))
			if l.z {
				zb = randSlice(r, len(yb))
			}
			for len(fs) == 0 || len(fs)*p.M*p.C*p.KH*p.KW*4 < 96<<20 && len(fs) < 64 {
				fs = append(fs, PackBlockedFilter(p, false, w))
			}
			for len(ys)*len(yb)*4*3 < 64<<20 {
				ys = append(ys, make([]float32, len(yb)))
				if l.z {
					zs = append(zs, append([]float32(nil), zb...))
					yzs = append(yzs, append([]float32(nil), zb...))
				}
			}
		}
		fi := 0
		for _, tg := range bdToggles {
			b.Run(fmt.Sprintf("%s/%s", l.name, tg.name), func(b *testing.B) {
				if err := SetThreads(0); err != nil {
					b.Fatal(err)
				}
				if fs == nil {
					setup()
				}
				if tg.name == "inplace" && !l.z {
					b.Skip("no residual")
				}
				bj := 0
				defer func(c int, bal bool) {
					bdChunkBytes, bdBalanced, bdABWarm, bdABInPlace, bdPrefetchYZ = c, bal, false, false, true
				}(bdChunkBytes, bdBalanced)
				var ta, tb []float64
				call := func(on bool) float64 {
					tg.set(on)
					fi = (fi + 1) % len(fs)
					if bdABWarm {
						fi = 0
					}
					y, z := yb, zb
					if tg.name == "inplace" || tg.name == "pfyz" {
						bj = (bj + 1) % len(ys)
						y, z = ys[bj], nil
						if l.z {
							z = zs[bj]
						}
						if bdABInPlace {
							y, z = yzs[bj], yzs[bj]
						}
					}
					c0 := bdCPUTime()
					BlockedConv2D(fs[fi], xb, bias, z, y)
					return float64((bdCPUTime() - c0).Microseconds())
				}
				call(true)
				call(false)
				won := 0
				for k := 0; b.Loop(); k++ {
					var a, o float64
					if k%2 == 0 {
						a = call(true)
						o = call(false)
					} else {
						o = call(false)
						a = call(true)
					}
					ta, tb = append(ta, a), append(tb, o)
					if a < o {
						won++
					}
				}
				slices.Sort(ta)
				slices.Sort(tb)
				b.ReportMetric(ta[len(ta)/2], "A-cpu-us")
				b.ReportMetric(tb[len(tb)/2], "B-cpu-us")
				b.ReportMetric(ta[len(ta)/2]/tb[len(tb)/2], "A/B")
				b.ReportMetric(100*float64(won)/float64(len(ta)), "%A-won")
			})
		}
	}
}
