package nn

import (
	"fmt"
	"testing"
)

// BenchmarkSkipLayerNorm times skipLayerNorm over rows x d floats (x +
// skip, normalized with gamma and beta), bert_mini's and BERT-base's
// shapes at sequence 128; MB/s counts the floats read and written.
//
//	go test ./ops/nn -run '^$' -bench SkipLayerNorm -cpu 1
func BenchmarkSkipLayerNorm(b *testing.B) {
	for _, s := range []struct{ rows, d int }{{128, 128}, {128, 768}} {
		n := s.rows * s.d
		x, skip, y := make([]float32, n), make([]float32, n), make([]float32, n)
		gamma, beta := make([]float32, s.d), make([]float32, s.d)
		for i := range x {
			x[i], skip[i] = float32(i%17)/8-1, float32(i%5)/4
		}
		for i := range gamma {
			gamma[i], beta[i] = 1+float32(i%3)/10, float32(i%7)/10
		}
		b.Run(fmt.Sprintf("%dx%d", s.rows, s.d), func(b *testing.B) {
			b.SetBytes(int64(3 * 4 * n))
			for b.Loop() {
				skipLayerNorm(y, nil, x, skip, gamma, beta, s.d, 1e-5)
			}
		})
	}
}
