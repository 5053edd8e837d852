package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/device/cpu/kernels"
)

// BenchmarkDirectOrder times the direct convolution of every 2-D
// convolution of the shared CNNs that it computes with its items visited
// tile by tile and weight block by weight block (see directBlockOuter), in
// the same binary, for NOTES.md section 18:
//
//	go test ./device/cpu/kernels -run '^$' -bench 'DirectOrder/squeezenet1_1/^00_' -cpu 1
func BenchmarkDirectOrder(b *testing.B) {
	for _, m := range []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "yolo_tiny"} {
		b.Run(m, func(b *testing.B) {
			for i, l := range sharedConvs(b, m) {
				p := l.p
				r := rand.New(rand.NewPCG(1, uint64(i)))
				x := randF32(r, p.N*p.C*p.H*p.W)
				w := randF32(r, p.M*(p.C/p.Group)*p.KH*p.KW)
				bias := randF32(r, p.M)
				y := make([]float32, p.N*p.M*p.OutH()*p.OutW())
				d := kernels.DirectConv(p, w)
				if d == nil {
					continue
				}
				flops := 2 * float64(p.N*p.M*p.OutH()*p.OutW()) * float64(p.C/p.Group*p.KH*p.KW)
				for _, order := range []string{"tile", "block"} {
					name := fmt.Sprintf("%02d_c%d_m%d_%dx%d_k%d_s%d/%s", i, p.C, p.M, p.H, p.W, p.KH, p.StrideH, order)
					b.Run(name, func(b *testing.B) {
						kernels.SetDirectOrder(order)
						defer kernels.SetDirectOrder("")
						fixThreads(b)
						b.ReportAllocs()
						for b.Loop() {
							d(x, bias, y)
						}
						b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					})
				}
			}
		})
	}
}

// BenchmarkDirectResidual times the direct convolution with a residual
// input and ReLU (a FusedConv with input 3) on the layers of the shared
// CNNs that have one after the optimizer (1x1 projections of mobilenet_v2,
// resnet_mini's 3x3 blocks), the residual added in the kernel ("tile") and
// in a pass after it ("pass"), for NOTES.md section 18:
//
//	go test ./device/cpu/kernels -run '^$' -bench 'DirectResidual' -cpu 1
func BenchmarkDirectResidual(b *testing.B) {
	for _, s := range []struct {
		name           string
		c, m, h, k, pd int
	}{
		{"resnet_mini_c16_56_k3", 16, 16, 56, 3, 1},
		{"resnet_mini_c32_28_k3", 32, 32, 28, 3, 1},
		{"mobilenet_v2_c144_m24_56_k1", 144, 24, 56, 1, 0},
		{"mobilenet_v2_c192_m32_28_k1", 192, 32, 28, 1, 0},
		{"mobilenet_v2_c384_m64_14_k1", 384, 64, 14, 1, 0},
	} {
		p := cpu.Conv2DParams{N: 1, C: s.c, H: s.h, W: s.h, M: s.m, KH: s.k, KW: s.k, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1,
			Group: 1, PadTop: s.pd, PadLeft: s.pd, PadBottom: s.pd, PadRight: s.pd}
		r := rand.New(rand.NewPCG(2, uint64(s.c)))
		x := randF32(r, p.C*p.H*p.W)
		w := randF32(r, p.M*p.C*p.KH*p.KW)
		bias := randF32(r, p.M)
		z := randF32(r, p.M*p.OutH()*p.OutW())
		y := make([]float32, len(z))
		for _, mode := range []string{"pass", "tile"} {
			d := kernels.DirectConvResidual(p, w, mode == "pass")
			if d == nil {
				b.Skip("the direct convolution needs AVX-512")
			}
			b.Run(s.name+"/"+mode, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					d(x, bias, z, y)
				}
			})
		}
	}
}
