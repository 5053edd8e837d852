package gpuexec

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/tensor"
)

// TestTwoContextsThroughputOnGPU measures what a second execution context
// on one GPU adds (issue 11: two concurrent streams of batch-8 ResNet-50 at
// least 1.3x one): a tuned FP16 engine, batch 8, Context.Run end to end
// (host inputs in, host outputs out, as a server instance runs), first one
// context alone, then two contexts, each on its own goroutine and stream.
// It logs the images per second of both and their ratio; it asserts only
// that both ran (times are reported, never asserted). The model is
// ResNet-50 from $KILN_GPU_BENCH (bench/gpu.sh's export) when set, else
// resnet_mini. KILN_CONTEXT_ITERS sets the runs per context (default 200).
func TestTwoContextsThroughputOnGPU(t *testing.T) {
	needGPU(t)
	name := "resnet_mini"
	path := ""
	if dir := os.Getenv("KILN_GPU_BENCH"); dir != "" {
		name, path = "resnet50", filepath.Join(dir, "resnet50", "model.onnx")
	} else {
		path = modelPath(t, name)
	}
	iters := 200
	if v := os.Getenv("KILN_CONTEXT_ITERS"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("KILN_CONTEXT_ITERS=%q", v)
		} else {
			iters = n
		}
	}
	const batch = 8
	in := map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, batch, 3, 224, 224)}
	for i := range in["input"].Float32s() {
		in["input"].Float32s()[i] = float32(i%255)/255 - 0.5
	}
	e, err := NewEngine(optimizedGraph(t, path, in), Options{FP16: true, Tune: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctxs := make([]*Context, 2)
	for i := range ctxs {
		if ctxs[i], err = e.NewContext(); err != nil {
			t.Fatal(err)
		}
		defer ctxs[i].Close()
		for range 5 { // warm up: graphs captured, pinned buffers made
			if _, err := ctxs[i].Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := func(n int) (float64, error) {
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := time.Now()
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range iters {
					if _, err := ctxs[i].Run(context.Background(), in); err != nil {
						errs[i] = err
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return 0, err
			}
		}
		return float64(n*iters*batch) / time.Since(start).Seconds(), nil
	}
	one, err := run(1)
	if err != nil {
		t.Fatal(err)
	}
	two, err := run(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s FP16 batch %d, Context.Run end to end, %d runs per context: one context %.0f img/s, two contexts %.0f img/s: %.2fx",
		name, batch, iters, one, two, two/one)
}
