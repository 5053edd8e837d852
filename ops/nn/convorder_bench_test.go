package nn_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ops/nn"
)

// BenchmarkDirectOrder times the direct convolution of every 2-D
// convolution of the shared CNNs that it computes with its items visited
// tile by tile and weight block by weight block (see directBlockOuter), in
// the same binary, for NOTES.md section 18:
//
//	go test ./ops/nn -run '^$' -bench 'DirectOrder/squeezenet1_1/^00_' -cpu 1
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
				d := nn.DirectConv(p, w)
				if d == nil {
					continue
				}
				flops := 2 * float64(p.N*p.M*p.OutH()*p.OutW()) * float64(p.C/p.Group*p.KH*p.KW)
				for _, order := range []string{"tile", "block"} {
					name := fmt.Sprintf("%02d_c%d_m%d_%dx%d_k%d_s%d/%s", i, p.C, p.M, p.H, p.W, p.KH, p.StrideH, order)
					b.Run(name, func(b *testing.B) {
						nn.SetDirectOrder(order)
						defer nn.SetDirectOrder("")
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
