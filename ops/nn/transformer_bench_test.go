package nn

import (
	"fmt"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/internal/fastmath"
)

// BenchmarkFusedMatMulEpilogue compares, on bert_mini's projections (128
// tokens) and BERT-base's feed-forward ones, FusedMatMul's bias and activation as a pass after the GEMM
// ("after": the path before this change) and inside the GEMM's blocks
// ("inside": cpu.SgemmEpilogue), in the same process.
func BenchmarkFusedMatMulEpilogue(b *testing.B) {
	for _, s := range []struct {
		name    string
		m, k, n int
		act     string
	}{
		{"qkv", 128, 128, 384, ActNone},
		{"proj", 128, 128, 128, ActNone},
		{"ff1-gelu", 128, 128, 512, ActGelu},
		{"ff2", 128, 512, 128, ActNone},
		{"base-ff1-gelu", 128, 768, 3072, ActGelu},
		{"base-ff2", 128, 3072, 768, ActNone},
	} {
		a, w, bias, c := make([]float32, s.m*s.k), make([]float32, s.k*s.n), make([]float32, s.n), make([]float32, s.m*s.n)
		for i := range a {
			a[i] = float32(i%13)/7 - 1
		}
		for i := range w {
			w[i] = float32(i%11)/50 - 0.1
		}
		ep := epilogue{act: s.act}
		p := &MatMulPlan{M: s.m, N: s.n, K: s.k, AOff: []int{0}, BOff: []int{0}, Fold: true}
		for _, mode := range []string{"after", "inside"} {
			b.Run(fmt.Sprintf("%s/%s", s.name, mode), func(b *testing.B) {
				b.SetBytes(int64(2 * s.m * s.n * s.k)) // FLOP, shown as MB/s = MFLOP/s
				for b.Loop() {
					if mode == "after" {
						RunMatMul(p, a, w, c)
						ep.applyBias(c, bias, s.n)
						continue
					}
					cpu.SgemmEpilogue(cpu.Blocking{}, s.m, s.n, s.k, a, s.k, w, s.n, c, s.n, func(i0, i1, j0, j1 int) {
						for r := i0; r < i1; r++ { // the registry's epilogue over a block
							row := c[r*s.n+j0 : r*s.n+j1]
							fastmath.ScaleAdd(row, row, 1, bias[j0:j1])
							ep.applySerial(row)
						}
					})
				}
			})
		}
	}
}
