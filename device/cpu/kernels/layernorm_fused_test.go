package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/internal/fastmath"
)

// TestSkipLayerNormAddSum checks that skipLayerNorm's one-pass x + skip and
// sum (lnAddSum) gives bit for bit what x + skip (fastmath.ScaleAdd)
// followed by normRow gives, for row widths around the vector loops'
// multiples of 8 and 16, with and without the sum output and beta.
func TestSkipLayerNormAddSum(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, d := range []int{1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 128, 200, 768} {
		for _, withSum := range []bool{false, true} {
			for _, withBeta := range []bool{false, true} {
				rows := 3
				x, skip := make([]float32, rows*d), make([]float32, rows*d)
				gamma := make([]float32, d)
				var beta []float32
				if withBeta {
					beta = make([]float32, d)
				}
				for i := range x {
					x[i], skip[i] = float32(r.NormFloat64()*3+1), float32(r.NormFloat64())
				}
				for i := range gamma {
					gamma[i] = float32(r.Float64() + 0.5)
					if beta != nil {
						beta[i] = float32(r.NormFloat64())
					}
				}
				y := make([]float32, rows*d)
				var sum []float32
				if withSum {
					sum = make([]float32, rows*d)
				}
				skipLayerNorm(y, sum, x, skip, gamma, beta, d, 1e-5)
				for row := range rows {
					s := make([]float32, d)
					fastmath.ScaleAdd(s, x[row*d:(row+1)*d], 1, skip[row*d:(row+1)*d])
					want := make([]float32, d)
					normRow(want, s, gamma, beta, 1e-5)
					for i := range d {
						got := y[row*d+i]
						if math.Float32bits(got) != math.Float32bits(want[i]) {
							t.Fatalf("d=%d sum=%v beta=%v row %d [%d]: %v, want %v", d, withSum, withBeta, row, i, got, want[i])
						}
						if withSum && math.Float32bits(sum[row*d+i]) != math.Float32bits(s[i]) {
							t.Fatalf("d=%d beta=%v row %d: sum[%d] = %v, want %v", d, withBeta, row, i, sum[row*d+i], s[i])
						}
					}
				}
			}
		}
	}
}
