package kiln_test

// Like cudaplan_test.go, this file imports no device package.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
)

// TestContextCUDAFake: a kiln.Context of a CUDA plan holds device state of
// its own (issue 10, item 3): it takes no device memory before its first
// run, then reports the activations and workspaces it holds; contexts run
// concurrently; a closed context refuses to run; closing the model with a
// context still open releases it, and the context's Close after that has
// nothing left to do. On the fake CUDA libraries (outputs not computed:
// shapes are checked).
func TestContextCUDAFake(t *testing.T) {
	t.Setenv(envCUDALibPath, fakeCUDA(t))
	res, err := build.BuildBytes(context.Background(), "tinycnn", examples.TinyCNNModel, build.Options{Device: "cuda", NoTiming: true})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tinycnn.plan")
	err = res.WriteFile(path)
	res.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := kiln.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	in, want, err := examples.TinyCNNTestData()
	if err != nil {
		t.Fatal(err)
	}
	ctxs := []*kiln.Context{m.NewContext(), m.NewContext()}
	for i, c := range ctxs {
		if n := c.ArenaBytes(); n != 0 {
			t.Errorf("context %d holds %d bytes before its first run", i, n)
		}
	}
	errs := make(chan error, len(ctxs))
	for _, c := range ctxs {
		go func() {
			for range 3 {
				out, err := c.Run(context.Background(), map[string]*tensor.Tensor{"image": in})
				if err == nil && (out["probabilities"] == nil || tensor.ShapeString(out["probabilities"].Shape) != tensor.ShapeString(want.Shape)) {
					err = errors.New("outputs " + tensor.ShapeString(out["probabilities"].Shape))
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range ctxs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range ctxs {
		if n := c.ArenaBytes(); n <= 0 {
			t.Errorf("context %d holds %d device bytes after runs", i, n)
		}
	}
	if err := ctxs[0].Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ctxs[0].Run(context.Background(), map[string]*tensor.Tensor{"image": in}); !errors.Is(err, kiln.ErrContextClosed) {
		t.Errorf("run after Close: %v, want ErrContextClosed", err)
	}
	// The model still runs, and so does the other context.
	if _, err := m.Run(context.Background(), map[string]*tensor.Tensor{"image": in}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctxs[1].Run(context.Background(), map[string]*tensor.Tensor{"image": in}); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("model Close with a context open: %v", err)
	}
	if err := ctxs[1].Close(); err != nil {
		t.Errorf("context Close after the model's: %v", err)
	}
}

// TestContextOnGPU is TestContextCUDAFake on a real GPU: two contexts of
// the example network's CUDA plan, each on its own goroutine (its own
// stream and memory), 20 runs each, every output matching the CPU's
// reference. It skips without a usable GPU (or with the fake libraries
// selected).
func TestContextOnGPU(t *testing.T) {
	if os.Getenv(envCUDALibPath) != "" {
		t.Skipf("%s is set (the fake CUDA libraries): this test needs a real GPU", envCUDALibPath)
	}
	res, err := build.BuildBytes(context.Background(), "tinycnn", examples.TinyCNNModel, build.Options{Device: "cuda"})
	if errors.Is(err, device.ErrUnavailable) {
		t.Skipf("needs a CUDA GPU: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tinycnn.plan")
	err = res.WriteFile(path)
	res.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := kiln.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	in, want, err := examples.TinyCNNTestData()
	if err != nil {
		t.Fatal(err)
	}
	ctxs := []*kiln.Context{m.NewContext(), m.NewContext()}
	errs := make(chan error, len(ctxs))
	for _, c := range ctxs {
		go func() {
			for range 20 {
				out, err := c.Run(context.Background(), map[string]*tensor.Tensor{"image": in})
				if err != nil {
					errs <- err
					return
				}
				got := out["probabilities"]
				for i, w := range want.Float32s() {
					if d := math.Abs(float64(got.Float32s()[i] - w)); d > 1e-4+1e-3*math.Abs(float64(w)) {
						errs <- fmt.Errorf("probabilities[%d] = %v in a context, want %v", i, got.Float32s()[i], w)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range ctxs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range ctxs {
		t.Logf("context %d holds %d device bytes", i, c.ArenaBytes())
		if c.ArenaBytes() <= 0 {
			t.Errorf("context %d holds no device memory after its runs", i)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
