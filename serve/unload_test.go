package serve

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// closeRunner is a WrapRunner whose runs block on gate (once started is
// signalled) and which records being closed: the server closes it with the
// model's files, which must happen only when no run is left.
type closeRunner struct {
	r       scheduler.Runner
	gate    chan struct{}
	started chan struct{}
	running atomic.Int32
	closed  atomic.Int32
	// closedWhileRunning counts Close calls made while a run was going on.
	closedWhileRunning atomic.Int32
}

func (c *closeRunner) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	c.running.Add(1)
	defer c.running.Add(-1)
	select {
	case c.started <- struct{}{}:
	default:
	}
	<-c.gate
	return c.r.Run(ctx, in)
}

func (c *closeRunner) Close() error {
	if c.running.Load() > 0 {
		c.closedWhileRunning.Add(1)
	}
	c.closed.Add(1)
	return nil
}

// TestDrainGivenUpKeepsModelOpen: an unload (or a shutdown) whose caller
// gives up at once stops serving the model at once, but closes it (unmaps
// its weights) only when the batch still running has finished.
func TestDrainGivenUpKeepsModelOpen(t *testing.T) {
	tests := []struct {
		name string
		stop func(s *Server, ctx context.Context) error
		// after is the error a new request gets once stop returned.
		after error
	}{
		{"unload", func(s *Server, ctx context.Context) error { return s.Unload(ctx, "tiny") }, ErrNotFound},
		{"shutdown", func(s *Server, ctx context.Context) error { return s.Shutdown(ctx) }, ErrNotReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cr := &closeRunner{gate: make(chan struct{}), started: make(chan struct{}, 1)}
			s := New(Options{Repository: tinyRepo(t, "max_batch_size: 4\ninstance_group [ { count: 2 } ]\n"),
				WrapRunner: func(_ string, r scheduler.Runner) scheduler.Runner { cr.r = r; return cr }})
			if err := s.LoadAll(context.Background()); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(2)})
				done <- err
			}()
			<-cr.started
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // the client of the unload is already gone
			if err := tt.stop(s, ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("stop with an ended context: err = %v, want context.Canceled", err)
			}
			if _, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1)}); !errors.Is(err, tt.after) {
				t.Errorf("request after stop: err = %v, want %v", err, tt.after)
			}
			if n := cr.closed.Load(); n != 0 {
				t.Fatalf("model closed %d times while a batch runs", n)
			}
			close(cr.gate)
			if err := <-done; err != nil {
				t.Errorf("the running request: %v", err)
			}
			for deadline := time.Now().Add(10 * time.Second); cr.closed.Load() == 0 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if n := cr.closed.Load(); n != 1 {
				t.Errorf("model closed %d times after its last run, want 1", n)
			}
			if n := cr.closedWhileRunning.Load(); n != 0 {
				t.Errorf("closed %d times while running", n)
			}
		})
	}
}

// TestUnloadUnderLoadRealModel unloads and reloads the tinycnn model served
// from memory-mapped plans (kiln serve's plan cache) under concurrent load,
// each unload given up at once, then shuts it down with an exit timeout
// already spent: no crash, and every request either succeeds or is refused
// as not found / not ready.
func TestUnloadUnderLoadRealModel(t *testing.T) {
	cache := &kiln.PlanCache{Dir: filepath.Join(t.TempDir(), "plans")}
	loader := func(path string, cfg *repository.Config) (*kiln.Model, error) {
		o, err := repository.BuildOptions(filepath.Dir(filepath.Dir(path)), cfg)
		if err != nil {
			return nil, err
		}
		o.NoTiming = true
		m, _, err := cache.Load(context.Background(), path, o)
		return m, err
	}
	s := New(Options{Repository: tinyRepo(t, "max_batch_size: 4\ndynamic_batching { }\ninstance_group [ { count: 2 } ]\n"), Loader: loader})
	defer s.Shutdown(context.Background())
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1 + i%3)})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrNotFound), errors.Is(err, ErrNotReady):
					refused.Add(1)
					time.Sleep(100 * time.Microsecond)
				default:
					t.Errorf("request failed: %v", err)
					return
				}
			}
		}()
	}
	for range 20 {
		for ok.Load() == 0 {
			time.Sleep(100 * time.Microsecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		s.Unload(ctx, "tiny") // usually gives up with batches still running
		cancel()
		if err := s.Load("tiny"); err != nil {
			t.Fatal(err)
		}
		ok.Store(0)
	}
	// then SIGTERM with an exit timeout already spent, under the same load
	for ok.Load() == 0 {
		time.Sleep(100 * time.Microsecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Shutdown(ctx)
	for before := refused.Load(); refused.Load() < before+10; {
		time.Sleep(100 * time.Microsecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d refused", refused.Load())
}
