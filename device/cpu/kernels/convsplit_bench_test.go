package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/device/cpu/kernels"
)

// fixThreads has every call split over GOMAXPROCS threads for the rest of
// the benchmark (cpu.SetThreads), as ONNX Runtime's intra-op threads do,
// instead of running inline while the pool finds a core busy.
func fixThreads(b *testing.B) {
	if err := cpu.SetThreads(runtime.GOMAXPROCS(0)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cpu.SetThreads(0) })
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCLOrder times the channels-as-lanes convolution (direct-cl) of
// the shared CNNs' layers with at least two blocks of 64 output channels,
// its items visited group by group ("tile": both threads read every block's
// weights) and block by block ("block": with two threads each computes its
// own output channels), with the weights cold as in a model: the filter
// packed in enough copies (8 MiB or more) that each call reads its weights
// from L3, as a model's layer does after the other layers ran. It reports
// the process's CPU time per call beside the wall time; "warm" runs one
// copy of the filter (its weights in L2 from the second call on), for NOTES.md
// section 20:
//
//	go test ./device/cpu/kernels -run '^$' -bench 'CLOrder/resnet_mini' -cpu 1,2
func BenchmarkCLOrder(b *testing.B) {
	for _, m := range []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "yolo_tiny"} {
		b.Run(m, func(b *testing.B) {
			for i, l := range sharedConvs(b, m) {
				p := l.p
				if p.M <= 64 {
					continue
				}
				r := rand.New(rand.NewPCG(1, uint64(i)))
				x := randF32(r, p.N*p.C*p.H*p.W)
				w := randF32(r, p.M*(p.C/p.Group)*p.KH*p.KW)
				bias := randF32(r, p.M)
				y := make([]float32, p.N*p.M*p.OutH()*p.OutW())
				d := kernels.CLConv(p, w)
				if d == nil {
					continue
				}
				copies := max(1, (8<<20)/(4*len(w)))
				ds := []func(x, bias, y []float32){d}
				for range copies - 1 {
					ds = append(ds, kernels.CLConv(p, w))
				}
				for _, run := range []struct{ order, weights string }{{"tile", "warm"}, {"tile", "cold"}, {"block", "warm"}, {"block", "cold"}} {
					order := run.order
					name := fmt.Sprintf("%02d_c%d_m%d_%dx%d_k%d_s%d/%s/%s", i, p.C, p.M, p.H, p.W, p.KH, p.StrideH, order, run.weights)
					ds := ds
					if run.weights == "warm" {
						ds = ds[:1]
					}
					b.Run(name, func(b *testing.B) {
						kernels.SetCLOrder(order)
						defer kernels.SetCLOrder("")
						fixThreads(b)
						b.ReportAllocs()
						c0 := cpuTime()
						j := 0
						for b.Loop() {
							ds[j](x, bias, y)
							j = (j + 1) % len(ds)
						}
						b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-us/op")
					})
				}
			}
		})
	}
}

// BenchmarkCLSequence runs every direct-cl layer of a shared CNN with more
// than 64 output channels one after the other, each with its own weights,
// as an inference runs them (the weights of the sequence together, over
// 2 MiB in resnet_mini, do not fit one core's L2; each thread's half of
// them does when the threads split the output channels), in the item
// orders of BenchmarkCLOrder, reporting the CPU time per sequence:
//
//	go test ./device/cpu/kernels -run '^$' -bench 'CLSequence/resnet_mini' -cpu 2
func BenchmarkCLSequence(b *testing.B) {
	for _, m := range []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "yolo_tiny"} {
		b.Run(m, func(b *testing.B) {
			type layer struct {
				d          func(x, bias, y []float32)
				x, bias, y []float32
			}
			var seq []layer
			for i, l := range sharedConvs(b, m) {
				p := l.p
				if p.M <= 64 {
					continue
				}
				r := rand.New(rand.NewPCG(1, uint64(i)))
				w := randF32(r, p.M*(p.C/p.Group)*p.KH*p.KW)
				d := kernels.CLConv(p, w)
				if d == nil {
					continue
				}
				seq = append(seq, layer{d, randF32(r, p.N*p.C*p.H*p.W), randF32(r, p.M), make([]float32, p.N*p.M*p.OutH()*p.OutW())})
			}
			for _, order := range []string{"tile", "block"} {
				b.Run(fmt.Sprintf("%d_layers/%s", len(seq), order), func(b *testing.B) {
					kernels.SetCLOrder(order)
					defer kernels.SetCLOrder("")
					fixThreads(b)
					c0 := cpuTime()
					for b.Loop() {
						for _, l := range seq {
							l.d(l.x, l.bias, l.y)
						}
					}
					b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-us/op")
				})
			}
		})
	}
}
