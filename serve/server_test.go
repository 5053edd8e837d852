package serve

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

func tinyServer(t *testing.T, cfg string) *Server {
	t.Helper()
	dir := t.TempDir()
	for _, v := range []string{"1", "2"} {
		p := filepath.Join(dir, "tiny", v)
		os.MkdirAll(p, 0o755)
		if err := os.WriteFile(filepath.Join(p, "model.onnx"), examples.TinyCNNModel, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "tiny", "config.pbtxt"), []byte(cfg), 0o644)
	s := New(Options{Repository: dir})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

func image(n int) map[string]*tensor.Tensor {
	return map[string]*tensor.Tensor{"image": examples.TinyCNNInput(n)}
}

func TestInferChecks(t *testing.T) {
	s := tinyServer(t, "max_batch_size: 4\nversion_policy { all {} }\n")
	tests := []struct {
		name string
		req  InferRequest
		want error
	}{
		{"ok", InferRequest{Model: "tiny", Inputs: image(2)}, nil},
		{"version 1", InferRequest{Model: "tiny", Version: "1", Inputs: image(1)}, nil},
		{"output asked", InferRequest{Model: "tiny", Inputs: image(1), Outputs: []string{"probabilities"}}, nil},
		{"unknown model", InferRequest{Model: "x", Inputs: image(1)}, ErrNotFound},
		{"unknown version", InferRequest{Model: "tiny", Version: "3", Inputs: image(1)}, ErrNotFound},
		{"bad version", InferRequest{Model: "tiny", Version: "a", Inputs: image(1)}, ErrInvalid}, // not a version number (issue 9, item 10)
		{"batch too big", InferRequest{Model: "tiny", Inputs: image(5)}, ErrInvalid},
		{"missing input", InferRequest{Model: "tiny", Inputs: map[string]*tensor.Tensor{}}, ErrInvalid},
		{"unknown input", InferRequest{Model: "tiny", Inputs: map[string]*tensor.Tensor{"x": examples.TinyCNNInput(1)}}, ErrInvalid},
		{"wrong type", InferRequest{Model: "tiny", Inputs: map[string]*tensor.Tensor{"image": tensor.New(tensor.Int64, 1, 3, 32, 32)}}, ErrInvalid},
		{"wrong dims", InferRequest{Model: "tiny", Inputs: map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 1, 3, 16, 32)}}, ErrInvalid},
		{"unknown output", InferRequest{Model: "tiny", Inputs: image(1), Outputs: []string{"x"}}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := s.Infer(context.Background(), &tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil {
				want := "2"
				if tt.req.Version != "" {
					want = tt.req.Version
				}
				if resp.Version != want || len(resp.Outputs) != 1 || resp.Outputs[0].Tensor.Shape[0] != tt.req.Inputs["image"].Shape[0] {
					t.Errorf("response %+v", resp)
				}
			}
		})
	}
}

// TestShutdownUnderLoad: requests accepted before shutdown all succeed, the
// server turns not ready at once, later ones are refused with ErrNotReady.
func TestShutdownUnderLoad(t *testing.T) {
	s := tinyServer(t, "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 1000 }\n")
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1 + i%2)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrNotReady):
				refused++
			default:
				t.Errorf("request lost: %v", err)
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	done := make(chan error)
	go func() { done <- s.Shutdown(context.Background()) }()
	for !s.closing.Load() {
		time.Sleep(time.Millisecond)
	}
	if s.Ready() {
		t.Error("ready during shutdown")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if ok+refused != 40 {
		t.Errorf("%d ok + %d refused != 40", ok, refused)
	}
	if _, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1)}); !errors.Is(err, ErrNotReady) {
		t.Errorf("after shutdown: %v", err)
	}
}

func TestReloadUnderLoad(t *testing.T) {
	s := tinyServer(t, "max_batch_size: 8\ndynamic_batching { }\n")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1)}); err != nil {
					t.Errorf("request failed during reload: %v", err)
					return
				}
			}
		}()
	}
	for range 3 {
		if err := s.Load("tiny"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	// a broken reload keeps the loaded model serving
	os.WriteFile(filepath.Join(s.opts.Repository, "tiny", "config.pbtxt"), []byte("max_batch_size: {"), 0o644)
	if err := s.Load("tiny"); !errors.Is(err, repository.ErrSyntax) {
		t.Fatalf("broken reload: %v", err)
	}
	if _, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1)}); err != nil {
		t.Errorf("after a failed reload: %v", err)
	}
}

func TestReadyAndIndex(t *testing.T) {
	s := New(Options{})
	if !s.Ready() || !s.Live() {
		t.Error("an empty server is live and ready")
	}
	if err := s.Load("x"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Load without repository: %v", err)
	}
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	idx := s.RepositoryIndex()
	if len(idx) != 1 || idx[0] != (IndexEntry{Name: "tinycnn", Version: "1", State: "READY"}) {
		t.Errorf("index %+v", idx)
	}
	if ready, err := s.ModelReady("tinycnn", ""); !ready || err != nil {
		t.Errorf("ModelReady = %v, %v", ready, err)
	}
	if err := s.Unload(context.Background(), "tinycnn"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ModelReady("tinycnn", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("after unload: %v", err)
	}
	if got := FailureReason(ErrQueueFull); got != "REJECTED" {
		t.Errorf("FailureReason(ErrQueueFull) = %s", got)
	}
}
