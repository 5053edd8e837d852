package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/device/cpu/kernels"
)

// layoutShapes are direct-tactic layers of the shared CNNs whose output
// rows are narrower than their wide rows (pads or stride 2), where
// convDirect chooses between tiles of wide rows copied out afterwards,
// tiles within each output row and tiles of vectors (directByRow,
// directVecLayout).
var layoutShapes = []cpu.Conv2DParams{
	{N: 1, C: 16, H: 56, W: 56, M: 32, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 32, H: 28, W: 28, M: 32, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 32, H: 27, W: 27, M: 128, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 32, H: 40, W: 40, M: 32, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 64, H: 20, W: 20, M: 64, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
}

// BenchmarkDirectLayouts times the direct convolution of layoutShapes in
// each layout (auto: the cost model's choice), CPU time per call, one
// copy of the weights (NOTES.md section 35):
//
//	go test ./device/cpu/kernels -run '^$' -bench DirectLayouts -cpu 1 -benchtime 500x
func BenchmarkDirectLayouts(b *testing.B) {
	for i, p := range layoutShapes {
		r := rand.New(rand.NewPCG(7, uint64(i)))
		x := randF32(r, p.N*p.C*p.H*p.W)
		w := randF32(r, p.M*p.C*p.KH*p.KW)
		bias := randF32(r, p.M)
		y := make([]float32, p.N*p.M*p.OutH()*p.OutW())
		p := p
		p.Act = cpu.ActRelu
		f := kernels.DirectConv(p, w)
		for _, layout := range []string{"auto", "rows", "wide", "vecs"} {
			name := fmt.Sprintf("c%d_m%d_%dx%d_k%d_s%d/%s", p.C, p.M, p.H, p.W, p.KH, p.StrideH, layout)
			b.Run(name, func(b *testing.B) {
				fixThreads(b)
				kernels.SetDirectLayout(layout)
				defer kernels.SetDirectLayout("")
				c0 := cpuTime()
				for b.Loop() {
					f(x, bias, y)
				}
				b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-us/op")
			})
		}
	}
}
