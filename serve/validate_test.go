package serve

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// sharedModel returns the path of a reference model of ../shared/models,
// skipping the test when they are absent.
func sharedModel(t *testing.T, name string) string {
	t.Helper()
	p, _ := filepath.Abs(filepath.Join("..", "..", "shared", "models", name, "model.onnx"))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("needs the reference models in ../shared/models: %v", err)
	}
	return p
}

// sharedRepo writes a repository holding the reference model src as name
// (version 1, linked) with the given config.pbtxt.
func sharedRepo(t *testing.T, src, name, cfg string) string {
	t.Helper()
	dir := t.TempDir()
	v := filepath.Join(dir, name, "1")
	os.MkdirAll(v, 0o755)
	if err := os.Symlink(src, filepath.Join(v, "model.onnx")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, name, "config.pbtxt"), []byte(cfg), 0o644)
	return dir
}

// planLoader builds engines through a plan cache in a temporary folder, as
// kiln serve does (tactic timing off, to keep tests fast).
func planLoader(t *testing.T) repository.ModelLoader {
	cache := &kiln.PlanCache{Dir: filepath.Join(t.TempDir(), "plans")}
	return func(path string, cfg *repository.Config) (*kiln.Model, error) {
		o, err := repository.BuildOptions(filepath.Dir(filepath.Dir(path)), cfg)
		if err != nil {
			return nil, err
		}
		o.NoTiming = true
		m, _, err := cache.Load(context.Background(), path, o)
		return m, err
	}
}

// countRuns wraps every runner to count the model runs.
func countRuns(n *atomic.Int64) func(string, scheduler.Runner) scheduler.Runner {
	return func(_ string, r scheduler.Runner) scheduler.Runner {
		return runnerFunc(func(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
			n.Add(1)
			return r.Run(ctx, in)
		})
	}
}

func tokens(ids ...int64) map[string]*tensor.Tensor {
	mask := make([]int64, len(ids))
	for i := range mask {
		mask[i] = 1
	}
	return map[string]*tensor.Tensor{
		"input_ids":      tensor.FromInt64(ids, 1, len(ids)),
		"attention_mask": tensor.FromInt64(mask, 1, len(ids)),
	}
}

// TestBadTokenAmongValid: with dynamic batching, one client's
// out-of-vocabulary token fails only that client's requests, with an
// invalid-argument error naming only its own value, while the valid
// requests sent at the same time all succeed.
func TestBadTokenAmongValid(t *testing.T) {
	src := sharedModel(t, "bert_mini")
	const cfg = "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 2000 }\ninstance_group [ { count: 2 } ]\n"
	for _, tt := range []struct {
		name   string
		loader func(*testing.T) repository.ModelLoader
		// noPrecheck drops the token-range check made before queueing:
		// the bad request then fails its batch, whose requests are retried
		// one by one.
		noPrecheck bool
	}{
		{"graph", func(*testing.T) repository.ModelLoader { return nil }, false},
		{"plan", planLoader, false},
		{"graph, found by running", func(*testing.T) repository.ModelLoader { return nil }, true},
		{"plan, found by running", planLoader, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{Repository: sharedRepo(t, src, "bert", cfg), Loader: tt.loader(t)})
			defer s.Shutdown(context.Background())
			if err := s.LoadAll(context.Background()); err != nil {
				t.Fatal(err)
			}
			if tt.noPrecheck {
				s.mu.Lock()
				for _, v := range s.models["bert"].versions {
					v.rules.indices = nil
				}
				s.mu.Unlock()
			}
			const clients, each, bad = 8, 6, 3
			var wg sync.WaitGroup
			var okN atomic.Int64
			for c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						// client c's token ids: 1000+c and 1100+i, all in the vocabulary
						ids := []int64{101, 1000 + int64(c), 1100 + int64(i), 102}
						if c == bad {
							ids[1] = 987654 // out of the vocabulary
						}
						_, err := s.Infer(context.Background(), &InferRequest{Model: "bert", Inputs: tokens(ids...)})
						if c != bad {
							if err != nil {
								t.Errorf("client %d request %d: %v", c, i, err)
							} else {
								okN.Add(1)
							}
							continue
						}
						if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "987654") {
							t.Errorf("bad client: err = %v, want ErrInvalid naming 987654", err)
							continue
						}
						for o := range clients {
							if o != bad && strings.Contains(err.Error(), fmt.Sprint(1000+o)) {
								t.Errorf("bad client's error %q quotes client %d's token %d", err, o, 1000+o)
							}
						}
					}
				}()
			}
			wg.Wait()
			if n := okN.Load(); n != (clients-1)*each {
				t.Errorf("%d valid requests succeeded, want %d", n, (clients-1)*each)
			}
		})
	}
}

// TestRefusedBeforeRunning: a request the model cannot take is refused with
// ErrInvalid before it is queued (the model never runs it): shapes outside
// the engine's profile, above the dims parameter's range or the default
// bound of a model without a profile, and token ids outside the
// vocabulary. Shapes the graph cannot take, found only by running, are
// ErrInvalid too.
func TestRefusedBeforeRunning(t *testing.T) {
	bert, yolo := sharedModel(t, "bert_mini"), sharedModel(t, "yolo_tiny")
	image := func(h, w int) map[string]*tensor.Tensor {
		return map[string]*tensor.Tensor{"images": tensor.New(tensor.Float32, 1, 3, h, w)}
	}
	seq := func(n int) map[string]*tensor.Tensor {
		ids := make([]int64, n)
		for i := range ids {
			ids[i] = 7
		}
		return tokens(ids...)
	}
	yoloDims := "max_batch_size: 0\nparameters { key: \"dims\" value: { string_value: \"h=32,64,320;w=32,64,320\" } }\n"
	tests := []struct {
		name, src, cfg string
		plan           bool
		in             map[string]*tensor.Tensor
		ran            bool   // the model runs the request
		want           string // "" for success, else text of the ErrInvalid error
	}{
		{"yolo fits", yolo, "max_batch_size: 0\n", true, image(64, 64), true, ""},
		{"yolo above the default bound", yolo, "max_batch_size: 0\n", true, image(4097, 32), false, "outside [0, 4096]"},
		{"yolo above the default bound, graph", yolo, "max_batch_size: 0\n", false, image(32, 5000), false, "outside [0, 4096]"},
		{"yolo above dims", yolo, yoloDims, true, image(352, 32), false, "outside [32, 320]"},
		{"yolo below dims", yolo, yoloDims, false, image(16, 32), false, "outside [32, 320]"},
		{"yolo stride mismatch", yolo, "max_batch_size: 0\n", true, image(33, 33), false, "cannot take inputs of shapes images [1 3 33 33]"},
		{"yolo stride mismatch, graph", yolo, "max_batch_size: 0\n", false, image(96, 100), false, "cannot take inputs of shapes images [1 3 96 100]"},
		{"yolo another size, graph", yolo, "max_batch_size: 0\n", false, image(96, 128), true, ""},
		{"bert outside the profile", bert, "max_batch_size: 4\nparameters { key: \"dims\" value: { string_value: \"seq=1,8,16\" } }\n", true, seq(17), false, "outside the range"},
		{"bert in the profile", bert, "max_batch_size: 4\nparameters { key: \"dims\" value: { string_value: \"seq=1,8,16\" } }\n", true, seq(16), true, ""},
		{"bert token outside the vocabulary", bert, "max_batch_size: 4\n", true, tokens(101, 2048, 102), false, "element 1 is 2048, outside [-2048, 2048)"},
		{"bert negative token outside", bert, "max_batch_size: 4\n", false, tokens(101, -2049), false, "is -2049"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var runs atomic.Int64
			opts := Options{Repository: sharedRepo(t, tt.src, "m", tt.cfg), WrapRunner: countRuns(&runs)}
			if tt.plan {
				opts.Loader = planLoader(t)
			}
			s := New(opts)
			defer s.Shutdown(context.Background())
			if err := s.LoadAll(context.Background()); err != nil {
				t.Fatal(err)
			}
			_, err := s.Infer(context.Background(), &InferRequest{Model: "m", Inputs: tt.in})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("err = %v, want success", err)
			case tt.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want ErrInvalid with %q", err, tt.want)
			}
			if ran := runs.Load() > 0; ran != tt.ran {
				t.Errorf("model ran: %v, want %v", ran, tt.ran)
			}
		})
	}
}

// TestCheckData: a tensor whose data does not fill its shape is refused
// before it can join (and shift) a batch.
func TestCheckData(t *testing.T) {
	s := tinyServer(t, "max_batch_size: 4\ndynamic_batching { }\n")
	short := tensor.New(tensor.Float32, 1, 3, 32, 32)
	short.Data = short.Data[:len(short.Data)-4]
	neg := &tensor.Tensor{DType: tensor.Float32, Shape: []int{1, 3, -32, -32}}
	for name, in := range map[string]*tensor.Tensor{"short data": short, "negative dims": neg} {
		t.Run(name, func(t *testing.T) {
			_, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: map[string]*tensor.Tensor{"image": in}})
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

// TestCheckShape: a front end can check a declared shape before reading the
// data, with the bounds Infer applies.
func TestCheckShape(t *testing.T) {
	bert, yolo := sharedModel(t, "bert_mini"), sharedModel(t, "yolo_tiny")
	repo := t.TempDir()
	for name, m := range map[string]struct{ src, cfg string }{
		"yolo":         {yolo, "max_batch_size: 0\nparameters { key: \"dims\" value: { string_value: \"h=32,64,320;w=32,64,320\" } }\n"},
		"yolo_default": {yolo, "max_batch_size: 0\n"},
		"bert":         {bert, "max_batch_size: 4\nparameters { key: \"dims\" value: { string_value: \"seq=1,8,16\" } }\n"},
	} {
		os.MkdirAll(filepath.Join(repo, name, "1"), 0o755)
		if err := os.Symlink(m.src, filepath.Join(repo, name, "1", "model.onnx")); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(repo, name, "config.pbtxt"), []byte(m.cfg), 0o644)
	}
	s := New(Options{Repository: repo, Loader: planLoader(t)})
	defer s.Shutdown(context.Background())
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		model, input string
		shape        []int
		want         string // "" for nil
	}{
		{"yolo", "images", []int{1, 3, 320, 32}, ""},
		{"yolo", "images", []int{1, 3, 16000, 16000}, "outside [32, 320]"},
		{"yolo_default", "images", []int{1, 3, 4096, 640}, ""},
		{"yolo_default", "images", []int{1, 3, 16000, 16000}, "outside [0, 4096]"},
		{"bert", "input_ids", []int{4, 16}, ""},
		{"bert", "input_ids", []int{2, 30000000}, "outside the range [1, 16]"},
		{"bert", "attention_mask", []int{5, 8}, "outside the range [1, 4]"},
		{"bert", "input_ids", []int{30000000}, "rank 1"},
		{"bert", "nope", []int{1 << 40}, ""},
		{"unknown", "x", []int{1 << 40}, ""},
	}
	for _, tt := range tests {
		err := s.CheckShape(tt.model, "", tt.input, tt.shape)
		if tt.want == "" && err != nil || tt.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckShape(%s, %s, %v) = %v, want %q", tt.model, tt.input, tt.shape, err, tt.want)
		}
	}
}
