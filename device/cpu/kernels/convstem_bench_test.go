package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/device/cpu/kernels"
)

// stemShapes are the first convolutions of the CNNs (few input channels,
// large planes) and variants that isolate what costs (stride, kernel).
var stemShapes = []cpu.Conv2DParams{
	{N: 1, C: 3, H: 224, W: 224, M: 64, KH: 7, KW: 7, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 3, PadLeft: 3, PadBottom: 3, PadRight: 3},
	{N: 1, C: 3, H: 112, W: 112, M: 64, KH: 7, KW: 7, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 3, PadLeft: 3, PadBottom: 3, PadRight: 3},
	{N: 1, C: 3, H: 224, W: 224, M: 64, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2},
	{N: 1, C: 3, H: 224, W: 224, M: 32, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	// resnet_mini's stem (16 output channels: two weight blocks) and yolo_tiny's
	{N: 1, C: 3, H: 224, W: 224, M: 16, KH: 7, KW: 7, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 3, PadLeft: 3, PadBottom: 3, PadRight: 3},
	{N: 1, C: 3, H: 320, W: 320, M: 16, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
}

// BenchmarkStem times the stem convolutions (and a stride-1 7x7 of the
// same work) with the tactics that apply, one copy of the weights, CPU
// time per call (ops/nn/NOTES.md section 26):
//
//	go test ./device/cpu/kernels -run '^$' -bench Stem -cpu 1 -benchtime 50x
func BenchmarkStem(b *testing.B) {
	for i, p := range stemShapes {
		r := rand.New(rand.NewPCG(5, uint64(i)))
		x := randF32(r, p.N*p.C*p.H*p.W)
		w := randF32(r, p.M*p.C*p.KH*p.KW)
		bias := randF32(r, p.M)
		y := make([]float32, p.N*p.M*p.OutH()*p.OutW())
		flops := 2 * float64(p.N*p.M*p.OutH()*p.OutW()) * float64(p.C*p.KH*p.KW)
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
			{"direct-norowvec", func(w []float32) func(x, bias, y []float32) {
				// the rows' last <= 16 columns as a 16-column tile per row
				f := kernels.DirectConv(p, w)
				if f == nil {
					return nil
				}
				return func(x, bias, y []float32) {
					kernels.SetDirectRowVecs(false)
					f(x, bias, y)
					kernels.SetDirectRowVecs(true)
				}
			}},
			{"direct-cl", func(w []float32) func(x, bias, y []float32) { return kernels.CLConv(p, w) }},
			{"gemm-t", func(w []float32) func(x, bias, y []float32) { return kernels.GemmTConv(p, w) }},
		}
		for _, mk := range makers {
			f := mk.mk(w)
			if f == nil {
				continue
			}
			name := fmt.Sprintf("c%d_m%d_%dx%d_k%d_s%d/%s", p.C, p.M, p.H, p.W, p.KH, p.StrideH, mk.name)
			b.Run(name, func(b *testing.B) {
				fixThreads(b)
				c0 := cpuTime()
				for b.Loop() {
					f(x, bias, y)
				}
				us := float64((cpuTime() - c0).Microseconds()) / float64(b.N)
				b.ReportMetric(us, "cpu-us/op")
				b.ReportMetric(flops/us/1e3, "GFLOP/cpu-s")
			})
		}
	}
}
