package serve

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// threeModelRepo writes models a, b and c (the example model, one version
// each) with the given config.pbtxt.
func threeModelRepo(t *testing.T, cfg string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"a", "b", "c"} {
		p := filepath.Join(dir, name, "1")
		os.MkdirAll(p, 0o755)
		if err := os.WriteFile(filepath.Join(p, "model.onnx"), examples.TinyCNNModel, 0o644); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name, "config.pbtxt"), []byte(cfg), 0o644)
	}
	return dir
}

func indexStates(s *Server) map[string]string {
	out := map[string]string{}
	for _, e := range s.RepositoryIndex() {
		out[e.Name] = e.State
	}
	return out
}

// TestLoadAllCancel: while LoadAll runs the server is live, not ready, and
// the models not yet loaded show as LOADING; canceling it stops before the
// next model, which is left out (UNAVAILABLE "unloaded").
func TestLoadAllCancel(t *testing.T) {
	started, gate := make(chan string, 3), make(chan struct{})
	loader := func(path string, _ *repository.Config) (*kiln.Model, error) {
		started <- filepath.Base(filepath.Dir(filepath.Dir(path)))
		<-gate
		return kiln.Load(path)
	}
	s := New(Options{Repository: threeModelRepo(t, "max_batch_size: 2\n"), Loader: loader})
	defer s.Shutdown(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.LoadAll(ctx) }()
	if got := <-started; got != "a" {
		t.Fatalf("first model loaded: %s", got)
	}
	if !s.Live() || s.Ready() {
		t.Errorf("during LoadAll: live %v, ready %v; want live, not ready", s.Live(), s.Ready())
	}
	if st := indexStates(s); st["a"] != "LOADING" || st["b"] != "LOADING" || st["c"] != "LOADING" {
		t.Errorf("index during LoadAll: %v, want every model LOADING", st)
	}
	if _, err := s.Infer(context.Background(), &InferRequest{Model: "b", Inputs: image(1)}); !errors.Is(err, ErrNotReady) {
		t.Errorf("request to a model waiting to load: %v, want ErrNotReady", err)
	}
	cancel()
	close(gate)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("LoadAll canceled: err = %v, want context.Canceled", err)
	}
	if len(started) != 0 {
		t.Errorf("LoadAll went on loading %s after its context ended", <-started)
	}
	if st := indexStates(s); st["a"] != "READY" || st["b"] != "UNAVAILABLE" || st["c"] != "UNAVAILABLE" {
		t.Errorf("index after the canceled LoadAll: %v", st)
	}
	if _, err := s.Infer(context.Background(), &InferRequest{Model: "a", Inputs: image(1)}); err != nil {
		t.Errorf("the model loaded before the cancel: %v", err)
	}
	// loading again finishes the job
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !s.Ready() {
		t.Error("not ready after a full LoadAll")
	}
}

// TestLoadAllCancelDuringWarmup: a long model_warmup stops soon after
// LoadAll's context ends; the model is UNAVAILABLE, not served half warm.
func TestLoadAllCancelDuringWarmup(t *testing.T) {
	const cfg = `max_batch_size: 2
model_warmup [ { name: "long" count: 1000000
  inputs { key: "image" value { data_type: TYPE_FP32 dims: [3, 32, 32] zero_data: true } } } ]
`
	ctx, cancel := context.WithCancel(context.Background())
	var runs atomic.Int64
	s := New(Options{Repository: threeModelRepo(t, cfg), WrapRunner: func(_ string, r scheduler.Runner) scheduler.Runner {
		return runnerFunc(func(c context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
			if runs.Add(1) == 5 {
				cancel() // SIGTERM arrives during the warmup
			}
			return r.Run(c, in)
		})
	}})
	defer s.Shutdown(context.Background())
	err := s.LoadAll(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("LoadAll: err = %v, want context.Canceled", err)
	}
	if n := runs.Load(); n > 100 {
		t.Errorf("%d warmup runs after the cancel", n)
	}
	if st := indexStates(s); st["a"] != "UNAVAILABLE" || st["b"] != "UNAVAILABLE" {
		t.Errorf("index: %v", st)
	}
	if s.Ready() {
		t.Error("ready after a canceled LoadAll")
	}
}

type runnerFunc func(context.Context, map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error)

func (f runnerFunc) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return f(ctx, in)
}

// TestContextLoaderCanceled: a ContextLoader is given LoadAll's context, so
// that a long build stops when it ends.
func TestContextLoaderCanceled(t *testing.T) {
	started := make(chan struct{}, 3)
	s := New(Options{Repository: threeModelRepo(t, "max_batch_size: 2\n"),
		ContextLoader: func(ctx context.Context, path string, _ *repository.Config) (*kiln.Model, error) {
			started <- struct{}{}
			<-ctx.Done() // a build that takes forever
			return nil, ctx.Err()
		}})
	defer s.Shutdown(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.LoadAll(ctx) }()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("LoadAll: err = %v, want context.Canceled", err)
	}
	if len(started) != 0 {
		t.Error("LoadAll started another model after its context ended")
	}
}

// TestLoadFinishingAfterShutdown: a model whose load ends after Shutdown
// began is not served, and is closed.
func TestLoadFinishingAfterShutdown(t *testing.T) {
	started, gate := make(chan struct{}, 1), make(chan struct{})
	cr := &closeRunner{gate: make(chan struct{}), started: make(chan struct{}, 1)}
	close(cr.gate)
	s := New(Options{Repository: threeModelRepo(t, "max_batch_size: 2\n"),
		Loader: func(path string, _ *repository.Config) (*kiln.Model, error) {
			started <- struct{}{}
			<-gate
			return kiln.Load(path)
		},
		WrapRunner: func(_ string, r scheduler.Runner) scheduler.Runner { cr.r = r; return cr }})
	done := make(chan error, 1)
	go func() { done <- s.Load("a") }()
	<-started
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(gate)
	if err := <-done; !errors.Is(err, ErrNotReady) {
		t.Errorf("Load finishing after Shutdown: err = %v, want ErrNotReady", err)
	}
	if _, err := s.Infer(context.Background(), &InferRequest{Model: "a", Inputs: image(1)}); !errors.Is(err, ErrNotReady) {
		t.Errorf("request after Shutdown: %v", err)
	}
	for range 10000 {
		if cr.closed.Load() == 1 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Error("the model loaded after Shutdown was never closed")
}

// TestStartLoadAll: the server is not ready from the moment StartLoadAll
// returns until the models are loaded.
func TestStartLoadAll(t *testing.T) {
	gate := make(chan struct{})
	s := New(Options{Repository: threeModelRepo(t, "max_batch_size: 2\n"),
		Loader: func(path string, _ *repository.Config) (*kiln.Model, error) {
			<-gate
			return kiln.Load(path)
		}})
	defer s.Shutdown(context.Background())
	done := s.StartLoadAll(context.Background())
	if s.Ready() || !s.Live() {
		t.Errorf("right after StartLoadAll: ready %v, live %v", s.Ready(), s.Live())
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !s.Ready() {
		t.Error("not ready after the load")
	}
}
