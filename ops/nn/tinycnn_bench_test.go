package nn_test

import (
	"context"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
)

// BenchmarkTinyCNN runs the bundled examples/tinycnn plan at batch 1, as
// kiln serve runs it per request (built as kiln build does, tactics
// timed), and reports the process's CPU time per run and the median wall
// time of a run. With -cpu 1 every layer runs on the caller, as while a
// server has a request per core:
//
//	go test ./ops/nn -run '^$' -bench TinyCNN -cpu 1,2 -benchtime 20000x
func BenchmarkTinyCNN(b *testing.B) {
	m, err := kiln.BuildBytes(context.Background(), "tinycnn", examples.TinyCNNModel, kiln.BuildOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	x := tensor.New(tensor.Float32, 1, 3, 32, 32)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(i%17)/8 - 1
	}
	in := map[string]*tensor.Tensor{"image": x}
	fixThreads(b)
	for range 200 { // warm up
		if _, err := m.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	times := make([]float64, 0, b.N)
	b.ReportAllocs()
	c0 := cpuTime()
	for b.Loop() {
		t0 := time.Now()
		if _, err := m.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
		times = append(times, float64(time.Since(t0).Nanoseconds())/1e3)
	}
	b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/1e3/float64(b.N), "cpu-us/op")
	slices.Sort(times)
	b.ReportMetric(times[len(times)/2], "p50-us")
}

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
