package kernels

import (
	"fmt"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

// BenchmarkMHA times kiln::MultiHeadAttention at bert_mini's and
// BERT-base's sizes (sequence 128, a key mask); cpu-ns/op is the process's
// CPU time per call (run it at -cpu 1).
func BenchmarkMHA(b *testing.B) {
	for _, s := range []struct{ heads, hd int }{{4, 128}, {12, 768}} {
		const seq = 128
		x := tensor.New(tensor.Float32, 1, seq, 3*s.hd)
		for i, xv := 0, x.Float32s(); i < len(xv); i++ {
			xv[i] = float32(i%23)/11 - 1
		}
		mask := tensor.New(tensor.Float32, 1, 1, 1, seq)
		k := mhaKernelOf(b, s.heads)
		in := []*tensor.Tensor{x, mask}
		b.Run(fmt.Sprintf("h%d-d%d", s.heads, s.hd/s.heads), func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				if _, err := k.Run(nil, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
		})
	}
}
