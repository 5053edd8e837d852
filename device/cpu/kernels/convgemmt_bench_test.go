package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/device/cpu/kernels"
)

// resnet50Small are the convolutions of resnet50 at batch 1 with outputs
// of 28x28 and less: the 1x1 ones (the stride-2 ones are the downsamples)
// and the 3x3 ones; and its stem.
var resnet50Small = []cpu.Conv2DParams{
	{N: 1, C: 256, H: 56, W: 56, M: 512, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2},   // layer2.0 downsample
	{N: 1, C: 512, H: 28, W: 28, M: 128, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},   // layer2 conv1
	{N: 1, C: 128, H: 28, W: 28, M: 512, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},   // layer2 conv3
	{N: 1, C: 512, H: 28, W: 28, M: 1024, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2},  // layer3.0 downsample
	{N: 1, C: 1024, H: 14, W: 14, M: 256, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},  // layer3 conv1
	{N: 1, C: 256, H: 14, W: 14, M: 1024, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},  // layer3 conv3
	{N: 1, C: 1024, H: 14, W: 14, M: 2048, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2}, // layer4.0 downsample
	{N: 1, C: 2048, H: 7, W: 7, M: 512, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},    // layer4 conv1
	{N: 1, C: 512, H: 7, W: 7, M: 2048, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},    // layer4 conv3
	// layer1 and layer2.0's first, at 56x56
	{N: 1, C: 256, H: 56, W: 56, M: 64, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},  // layer1 conv1
	{N: 1, C: 64, H: 56, W: 56, M: 256, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},  // layer1 conv3, downsample
	{N: 1, C: 256, H: 56, W: 56, M: 128, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1}, // layer2.0 conv1
	// the stem, 7x7/2 pad 3
	{N: 1, C: 3, H: 224, W: 224, M: 64, KH: 7, KW: 7, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 3, PadLeft: 3, PadBottom: 3, PadRight: 3},
	// the 3x3 ones, pad 1
	{N: 1, C: 128, H: 56, W: 56, M: 128, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, // layer2.0 conv2
	{N: 1, C: 128, H: 28, W: 28, M: 128, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, // layer2 conv2
	{N: 1, C: 256, H: 28, W: 28, M: 256, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, // layer3.0 conv2
	{N: 1, C: 256, H: 14, W: 14, M: 256, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, // layer3 conv2
	{N: 1, C: 512, H: 14, W: 14, M: 512, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, // layer4.0 conv2
	{N: 1, C: 512, H: 7, W: 7, M: 512, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},   // layer4 conv2
}

// BenchmarkSmallPlaneCold times resnet50's small-plane convolutions with
// each tactic that applies (im2col, direct, direct-cl, the Winograd ones,
// gemm-t), the weights cold as in a model (copies cycled, 32 MiB or more)
// and warm (one copy, as the tactic timer runs a layer), on cpu.SetThreads
// fixed to GOMAXPROCS, reporting GFLOP/s and the process's CPU time per
// call (ops/nn/NOTES.md section 22):
//
//	go test ./device/cpu/kernels -run '^$' -bench SmallPlaneCold -cpu 2 -benchtime 100x
func BenchmarkSmallPlaneCold(b *testing.B) {
	for i, p := range resnet50Small {
		r := rand.New(rand.NewPCG(3, uint64(i)))
		x := randF32(r, p.N*p.C*p.H*p.W)
		w := randF32(r, p.M*p.C*p.KH*p.KW)
		bias := randF32(r, p.M)
		y := make([]float32, p.N*p.M*p.OutH()*p.OutW())
		flops := 2 * float64(p.N*p.M*p.OutH()*p.OutW()) * float64(p.C*p.KH*p.KW)
		copies := max(2, (32<<20)/(4*len(w)))
		ws := make([][]float32, copies)
		for j := range ws {
			ws[j] = append([]float32(nil), w...)
		}
		p := p
		p.Act = cpu.ActRelu
		makers := []struct {
			name string
			mk   func(w []float32) func(x, bias, y []float32)
		}{
			{"im2col", func(w []float32) func(x, bias, y []float32) {
				return func(x, bias, y []float32) { cpu.Conv2DWith(cpu.ConvIm2col, p, x, w, bias, y) }
			}},
			{"direct", func(w []float32) func(x, bias, y []float32) { return kernels.DirectConv(p, w) }},
			{"direct-nopf", func(w []float32) func(x, bias, y []float32) {
				d := kernels.DirectConv(p, w)
				if d == nil || p.KH != 1 || p.StrideH != 1 {
					return nil
				}
				return func(x, bias, y []float32) {
					kernels.SetDirectPrefetch(false)
					d(x, bias, y)
					kernels.SetDirectPrefetch(true)
				}
			}},
			{"direct-cl", func(w []float32) func(x, bias, y []float32) { return kernels.CLConv(p, w) }},
			{"wino4-direct", func(w []float32) func(x, bias, y []float32) { return kernels.WinoConv(p, w, false) }},
			{"wino4-cl", func(w []float32) func(x, bias, y []float32) { return kernels.WinoConv(p, w, true) }},
			{"gemm-t", func(w []float32) func(x, bias, y []float32) { return kernels.GemmTConv(p, w) }},
		}
		for _, mk := range makers {
			if mk.mk(w) == nil {
				continue
			}
			for _, temp := range []string{"cold", "warm"} {
				name := fmt.Sprintf("c%d_m%d_%dx%d_k%d_s%d/%s/%s", p.C, p.M, p.H, p.W, p.KH, p.StrideH, mk.name, temp)
				b.Run(name, func(b *testing.B) {
					ws := ws
					if temp == "warm" {
						ws = ws[:1] // one copy: its weights stay in the caches, as the tactic timer runs them
					}
					var fs []func(x, bias, y []float32)
					for _, w := range ws {
						fs = append(fs, mk.mk(w))
					}
					fixThreads(b)
					c0 := cpuTime()
					j := 0
					for b.Loop() {
						fs[j](x, bias, y)
						j = (j + 1) % len(fs)
					}
					b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-us/op")
					b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}
