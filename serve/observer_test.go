package serve

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

type recorder struct {
	mu                   sync.Mutex
	execs, switches, oks int
}

func (r *recorder) RequestDone(_, _ string, _ int, reason string, _ Times) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reason == "" {
		r.oks++
	}
}

func (r *recorder) Executed(_, _ string, _, _ int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execs++
}

func (r *recorder) ContextSwitched(model, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if model == "tiny" && version == "2" {
		r.switches++
	}
}

type gatedRunner struct {
	r       scheduler.Runner
	started chan struct{}
	gate    chan struct{}
}

func (g gatedRunner) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	g.started <- struct{}{}
	<-g.gate
	return g.r.Run(ctx, in)
}

// TestContextSwitchObserved: two requests that run at once on a model with
// two instances run on different instances: the second is a context switch.
func TestContextSwitchObserved(t *testing.T) {
	rec := &recorder{}
	started, gate := make(chan struct{}, 4), make(chan struct{})
	s := New(Options{Repository: tinyRepo(t, "instance_group [ { count: 2 } ]\n"), Observer: rec,
		WrapRunner: func(_ string, r scheduler.Runner) scheduler.Runner { return gatedRunner{r, started, gate} }})
	defer s.Shutdown(context.Background())
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1)})
			errc <- err
		}()
		<-started
	}
	close(gate)
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.execs != 2 || rec.oks != 2 || rec.switches != 1 {
		t.Errorf("%d executions, %d successes, %d context switches; want 2, 2, 1", rec.execs, rec.oks, rec.switches)
	}
}
