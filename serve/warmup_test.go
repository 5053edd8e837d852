package serve

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// tinyRepo writes a repository holding the example model as "tiny"
// (versions 1 and 2) with the given config.pbtxt.
func tinyRepo(t *testing.T, cfg string) string {
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
	return dir
}

// hookRunner counts runs by batch size and calls hook (when set) before each.
type hookRunner struct {
	r     scheduler.Runner
	runs  *atomic.Int64
	batch *sync.Map // batch size -> *atomic.Int64
	hook  func(in map[string]*tensor.Tensor) error
}

func (h hookRunner) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	h.runs.Add(1)
	n, _ := h.batch.LoadOrStore(in["image"].Shape[0], new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	if h.hook != nil {
		if err := h.hook(in); err != nil {
			return nil, err
		}
	}
	return h.r.Run(ctx, in)
}

const warmupCfg = `max_batch_size: 4
instance_group [ { count: 3 kind: KIND_CPU } ]
model_warmup [
  { name: "zeros" batch_size: 3 count: 2
    inputs { key: "image" value { data_type: TYPE_FP32 dims: [3, 32, 32] zero_data: true } } },
  { name: "random"
    inputs { key: "image" value { data_type: TYPE_FP32 dims: [3, 32, 32] random_data: true } } }
]
`

func TestWarmupOnEveryInstance(t *testing.T) {
	var runs atomic.Int64
	var batch sync.Map
	s := New(Options{Repository: tinyRepo(t, warmupCfg), WrapRunner: func(_ string, r scheduler.Runner) scheduler.Runner {
		return hookRunner{r: r, runs: &runs, batch: &batch}
	}})
	defer s.Shutdown(context.Background())
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	// 3 instances x (2 runs of "zeros" + 1 of "random")
	if n := runs.Load(); n != 9 {
		t.Errorf("%d warmup runs, want 9", n)
	}
	for size, want := range map[int]int64{3: 6, 1: 3} {
		if n, ok := batch.Load(size); !ok || n.(*atomic.Int64).Load() != want {
			t.Errorf("warmup runs of batch %d: want %d", size, want)
		}
	}
	if !s.Ready() {
		t.Error("not ready after a successful warmup")
	}
	st, _ := s.ModelStats("tiny", "")
	if len(st) != 1 || st[0].ExecutionCount != 0 || st[0].InferenceCount != 0 {
		t.Errorf("warmup counted in the statistics: %+v", st)
	}
	if _, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1)}); err != nil {
		t.Error(err)
	}
}

// TestNotReadyWhileWarmingUp: while a model warms up, the model and the
// server are not ready and the index says LOADING; on a reload, the loaded
// version keeps serving (and the server stays ready) until the new one is
// warm.
func TestNotReadyWhileWarmingUp(t *testing.T) {
	var runs atomic.Int64
	var batch sync.Map
	var gated atomic.Bool
	gate := make(chan struct{})
	started := make(chan struct{}, 100)
	s := New(Options{Repository: tinyRepo(t, warmupCfg), WrapRunner: func(_ string, r scheduler.Runner) scheduler.Runner {
		return hookRunner{r: r, runs: &runs, batch: &batch, hook: func(in map[string]*tensor.Tensor) error {
			if gated.Load() && in["image"].Shape[0] == 3 { // a warmup run
				started <- struct{}{}
				<-gate
			}
			return nil
		}}
	}})
	defer s.Shutdown(context.Background())

	for _, reload := range []bool{false, true} {
		gate = make(chan struct{})
		gated.Store(true)
		loaded := make(chan error, 1)
		go func() { loaded <- s.Load("tiny") }()
		<-started
		ready, err := s.ModelReady("tiny", "")
		if reload {
			if !ready || err != nil || !s.Ready() {
				t.Errorf("reload: the loaded version stopped serving during the warmup (%v, %v, server %v)", ready, err, s.Ready())
			}
			if _, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1)}); err != nil {
				t.Errorf("reload: request during the warmup: %v", err)
			}
		} else {
			if ready || err != nil || s.Ready() {
				t.Errorf("first load: ready during the warmup (model %v, %v, server %v)", ready, err, s.Ready())
			}
			if idx := s.RepositoryIndex(); len(idx) != 1 || idx[0].State != "LOADING" {
				t.Errorf("index during the warmup: %+v", idx)
			}
			if _, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1)}); !errors.Is(err, ErrNotReady) {
				t.Errorf("request during the first warmup: %v, want ErrNotReady", err)
			}
		}
		close(gate)
		if err := <-loaded; err != nil {
			t.Fatal(err)
		}
		gated.Store(false)
		for len(started) > 0 {
			<-started
		}
		if ready, err := s.ModelReady("tiny", ""); !ready || err != nil || !s.Ready() {
			t.Errorf("not ready after the warmup: %v, %v", ready, err)
		}
	}
}

func TestWarmupFailure(t *testing.T) {
	tests := []struct {
		name, cfg string
		fail      bool // the runner fails warmup runs
		want      string
	}{
		{"unknown input", `model_warmup { name: "w" inputs { key: "x" value { data_type: TYPE_FP32 dims: 1 zero_data: true } } }`, false, `no input "x"`},
		{"wrong type", `max_batch_size: 2 model_warmup { name: "w" inputs { key: "image" value { data_type: TYPE_INT64 dims: [3, 32, 32] zero_data: true } } }`, false, "int64"},
		{"missing file", `max_batch_size: 2 model_warmup { name: "w" inputs { key: "image" value { data_type: TYPE_FP32 dims: [3, 32, 32] input_data_file: "none" } } }`, false, "none"},
		{"run fails", `max_batch_size: 2 model_warmup { name: "w" inputs { key: "image" value { data_type: TYPE_FP32 dims: [3, 32, 32] zero_data: true } } }`, true, `warmup sample "w": broken`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var runs atomic.Int64
			var batch sync.Map
			var fail atomic.Bool
			fail.Store(tt.fail)
			s := New(Options{Repository: tinyRepo(t, tt.cfg), WrapRunner: func(_ string, r scheduler.Runner) scheduler.Runner {
				return hookRunner{r: r, runs: &runs, batch: &batch, hook: func(map[string]*tensor.Tensor) error {
					if fail.Load() {
						return errors.New("broken")
					}
					return nil
				}}
			}})
			defer s.Shutdown(context.Background())
			err := s.Load("tiny")
			if !errors.Is(err, ErrWarmup) {
				t.Fatalf("Load: %v, want ErrWarmup", err)
			}
			idx := s.RepositoryIndex()
			if len(idx) != 1 || idx[0].State != "UNAVAILABLE" || !strings.Contains(idx[0].Reason, tt.want) {
				t.Errorf("index %+v, want UNAVAILABLE with %q", idx, tt.want)
			}
			if s.Ready() {
				t.Error("server ready with a model that failed its warmup")
			}
			if _, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1)}); !errors.Is(err, ErrNotReady) {
				t.Errorf("request to the failed model: %v", err)
			}
			if !tt.fail {
				return
			}
			// a working load, then a reload whose warmup fails: the loaded
			// version keeps serving and the index shows the error
			fail.Store(false)
			if err := s.Load("tiny"); err != nil {
				t.Fatal(err)
			}
			fail.Store(true)
			if err := s.Load("tiny"); !errors.Is(err, ErrWarmup) {
				t.Fatalf("reload: %v", err)
			}
			fail.Store(false)
			if _, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1)}); err != nil {
				t.Errorf("after a failed reload: %v", err)
			}
			idx = s.RepositoryIndex()
			if len(idx) != 1 || idx[0].State != "READY" || !strings.Contains(idx[0].Reason, "reload failed") {
				t.Errorf("index after a failed reload: %+v", idx)
			}
		})
	}
}

// TestReloadWithWarmupUnderLoad: reloading a model with a slow warmup under
// load fails no request.
func TestReloadWithWarmupUnderLoad(t *testing.T) {
	var runs atomic.Int64
	var batch sync.Map
	s := New(Options{Repository: tinyRepo(t, warmupCfg), WrapRunner: func(_ string, r scheduler.Runner) scheduler.Runner {
		return hookRunner{r: r, runs: &runs, batch: &batch, hook: func(in map[string]*tensor.Tensor) error {
			if in["image"].Shape[0] == 3 {
				time.Sleep(5 * time.Millisecond) // a slow warmup
			}
			return nil
		}}
	}})
	defer s.Shutdown(context.Background())
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int64
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
				served.Add(1)
			}
		}()
	}
	for range 3 {
		if err := s.Load("tiny"); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if served.Load() == 0 {
		t.Error("no request served during the reloads")
	}
}
