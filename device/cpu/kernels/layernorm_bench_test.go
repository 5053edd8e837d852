package kernels

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSkipLayerNorm times skipLayerNorm over rows x d floats (x +
// skip, normalized with gamma and beta), bert_mini's and BERT-base's
// shapes at sequence 128; MB/s counts the floats read and written, cpu-ns/op
// the process's CPU time per call (steadier than wall time on a loaded
// machine; run it at -cpu 1).
//
//	go test ./device/cpu/kernels -run '^$' -bench SkipLayerNorm -cpu 1
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
			c0 := cpuTime()
			for b.Loop() {
				skipLayerNorm(y, nil, x, skip, gamma, beta, s.d, 1e-5)
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
		})
	}
}
