package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/device/cpu/kernels"
)

// tinyShapes are small convolutions of batch 1 whose fixed costs per call
// (input copy, scheduling) weigh against their few FLOPs: the two of
// examples/tinycnn (3 -> 8 at 32x32, 8 -> 16 at 16x16, 3x3 pad 1) and
// neighbours of other channel counts and planes.
var tinyShapes = []cpu.Conv2DParams{
	{N: 1, C: 3, H: 32, W: 32, M: 8, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 8, H: 16, W: 16, M: 16, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 3, H: 32, W: 32, M: 16, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 16, H: 8, W: 8, M: 32, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 3, H: 28, W: 28, M: 8, KH: 5, KW: 5, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 2, PadLeft: 2, PadBottom: 2, PadRight: 2},
	// larger layers whose planes take the vector tiles: resnet_mini's 64
	// -> 64 at 14x14, squeezenet1_1's 64 -> 256 expand at 13x13
	{N: 1, C: 64, H: 14, W: 14, M: 64, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 64, H: 13, W: 13, M: 256, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
}

// BenchmarkTinyConv times the small convolutions with ReLU (as tinycnn's
// FusedConv runs them) with each tactic that applies, CPU time per call:
//
//	go test ./device/cpu/kernels -run '^$' -bench TinyConv -cpu 1 -benchtime 20000x
func BenchmarkTinyConv(b *testing.B) {
	for i, p := range tinyShapes {
		r := rand.New(rand.NewPCG(7, uint64(i)))
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
			{"direct-rows", directLayout(p, "rows")},
			{"direct-wide", directLayout(p, "wide")},
			{"direct-vecs", directLayout(p, "vecs")},
			{"direct-cl", func(w []float32) func(x, bias, y []float32) { return kernels.CLConv(p, w) }},
			{"gemm-t", func(w []float32) func(x, bias, y []float32) { return kernels.GemmTConv(p, w) }},
			{"wino4-direct", func(w []float32) func(x, bias, y []float32) { return kernels.WinoConv(p, w, false) }},
		}
		for _, mk := range makers {
			f := mk.mk(w)
			if f == nil {
				continue
			}
			name := fmt.Sprintf("c%d_m%d_%dx%d_k%d/%s", p.C, p.M, p.H, p.W, p.KH, mk.name)
			b.Run(name, func(b *testing.B) {
				fixThreads(b)
				c0 := cpuTime()
				for b.Loop() {
					f(x, bias, y)
				}
				us := float64((cpuTime() - c0).Nanoseconds()) / 1e3 / float64(b.N)
				b.ReportMetric(us, "cpu-us/op")
				b.ReportMetric(flops/us/1e3, "GFLOP/cpu-s")
			})
		}
	}
}

// directLayout makes the direct convolution of p with its tiles laid out
// as layout says (kernels.SetDirectLayout).
func directLayout(p cpu.Conv2DParams, layout string) func(w []float32) func(x, bias, y []float32) {
	return func(w []float32) func(x, bias, y []float32) {
		d := kernels.DirectConv(p, w)
		if d == nil {
			return nil
		}
		return func(x, bias, y []float32) {
			kernels.SetDirectLayout(layout)
			d(x, bias, y)
			kernels.SetDirectLayout("")
		}
	}
}
