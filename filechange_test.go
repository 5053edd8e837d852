package kiln_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
)

// rewriteInPlace truncates the file at path and writes data into the same
// inode, as `cp other path` does (not a rename): a mapping of the old
// contents would now fault (SIGBUS) past the new end, or see data.
func rewriteInPlace(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestServedFileChangedInPlace is issue 9 item 6: a model or plan file
// rewritten or truncated in place while the model loaded from it is served
// must not crash the process (SIGBUS from a mapping of the file) nor change
// the outputs: the serving paths (kiln.Load of an ONNX file, as kiln serve
// --no-build does; a plan from the plan cache, as kiln serve does) read the
// file into memory. The test runs the model in the test process, so a
// SIGBUS would kill it.
func TestServedFileChangedInPlace(t *testing.T) {
	in := map[string]*kiln.Tensor{"image": examples.TinyCNNInput(2)}
	ref, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	want, err := ref.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model := tinyRepo(t, dir, "tiny", examples.TinyCNNModel)
	cache := &kiln.PlanCache{Dir: filepath.Join(dir, "cache")}
	// the plan is built and written, then loaded again from the cache: a
	// restart, the plan file as it is served
	built, res, err := cache.Load(context.Background(), model, kiln.BuildOptions{MaxBatch: 4, NoTiming: true})
	if err != nil {
		t.Fatal(err)
	}
	built.Close()
	planBytes, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		load func() (*kiln.Model, string, error) // the model and the file it came from
		// what the file becomes: truncated to a few bytes, or
		// another file of the same size
		rewrite []byte
	}{
		{"onnx truncated", func() (*kiln.Model, string, error) { m, err := kiln.Load(model); return m, model, err }, examples.TinyCNNModel[:16]},
		{"onnx rewritten", func() (*kiln.Model, string, error) { m, err := kiln.Load(model); return m, model, err }, bytes.Repeat([]byte{0xff}, len(examples.TinyCNNModel))},
		{"cached plan truncated", func() (*kiln.Model, string, error) {
			m, res, err := cache.Load(context.Background(), model, kiln.BuildOptions{MaxBatch: 4, NoTiming: true})
			if err == nil && !res.Hit {
				t.Errorf("plan cache missed: %+v", res)
			}
			return m, res.Path, err
		}, planBytes[:100]},
		{"plan rewritten", func() (*kiln.Model, string, error) { m, err := kiln.Load(res.Path); return m, res.Path, err }, bytes.Repeat([]byte{0}, len(planBytes))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// the files as they were before the previous case changed them
			if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(res.Path, planBytes, 0o644); err != nil {
				t.Fatal(err)
			}
			m, path, err := tt.load()
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			c := m.NewContext()
			if _, err := c.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			rewriteInPlace(t, path, tt.rewrite)
			for _, run := range []func() (map[string]*kiln.Tensor, error){
				func() (map[string]*kiln.Tensor, error) { return c.Run(context.Background(), in) },
				func() (map[string]*kiln.Tensor, error) { return m.Run(context.Background(), in) }, // a new context: a fresh arena, the weights again
				func() (map[string]*kiln.Tensor, error) { return m.NewContext().Run(context.Background(), in) },
			} {
				got, err := run()
				if err != nil {
					t.Fatal(err)
				}
				sameOutputs(t, tt.name, got, want, 1e-5)
			}
		})
	}
}

// TestLoadMappedOption: LoadOptions.Mmap maps the file instead (for tools
// such as kiln run) and gives the same outputs.
func TestLoadMappedOption(t *testing.T) {
	dir := t.TempDir()
	model := tinyRepo(t, dir, "tiny", examples.TinyCNNModel)
	built, res, err := (&kiln.PlanCache{Dir: filepath.Join(dir, "cache")}).Load(context.Background(), model, kiln.BuildOptions{MaxBatch: 4, NoTiming: true})
	if err != nil {
		t.Fatal(err)
	}
	built.Close()
	in := map[string]*kiln.Tensor{"image": examples.TinyCNNInput(3)}
	var outs []map[string]*kiln.Tensor
	for _, path := range []string{model, res.Path} {
		for _, mmap := range []bool{false, true} {
			m, err := kiln.LoadWith(path, kiln.LoadOptions{Mmap: mmap})
			if err != nil {
				t.Fatalf("%s (mmap %v): %v", filepath.Base(path), mmap, err)
			}
			out, err := m.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, out)
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 1; i < len(outs); i++ {
		sameOutputs(t, "load "+string(rune('0'+i)), outs[i], outs[0], 1e-5)
	}
}

// TestRunAfterClose: a closed model refuses to run (kiln.ErrClosed), from
// Model.Run and from a context made before Close, instead of touching
// memory Close released; Close is idempotent.
func TestRunAfterClose(t *testing.T) {
	dir := t.TempDir()
	model := tinyRepo(t, dir, "tiny", examples.TinyCNNModel)
	in := map[string]*kiln.Tensor{"image": examples.TinyCNNInput(1)}
	loads := map[string]func() (*kiln.Model, error){
		"onnx":        func() (*kiln.Model, error) { return kiln.Load(model) },
		"onnx mapped": func() (*kiln.Model, error) { return kiln.LoadWith(model, kiln.LoadOptions{Mmap: true}) },
		"plan": func() (*kiln.Model, error) {
			return kiln.Build(context.Background(), model, kiln.BuildOptions{MaxBatch: 2, NoTiming: true})
		},
		"cached plan mapped": func() (*kiln.Model, error) {
			c := &kiln.PlanCache{Dir: filepath.Join(dir, "cache")}
			m, res, err := c.Load(context.Background(), model, kiln.BuildOptions{MaxBatch: 2, NoTiming: true})
			if err != nil {
				return nil, err
			}
			m.Close()
			return kiln.LoadWith(res.Path, kiln.LoadOptions{Mmap: true})
		},
	}
	for name, load := range loads {
		t.Run(name, func(t *testing.T) {
			m, err := load()
			if err != nil {
				t.Fatal(err)
			}
			c := m.NewContext()
			if _, err := c.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				if err := m.Close(); err != nil {
					t.Fatalf("Close %d: %v", i, err)
				}
			}
			if _, err := m.Run(context.Background(), in); !errors.Is(err, kiln.ErrClosed) {
				t.Errorf("Model.Run after Close: %v, want ErrClosed", err)
			}
			if _, err := c.Run(context.Background(), in); !errors.Is(err, kiln.ErrClosed) {
				t.Errorf("Context.Run after Close: %v, want ErrClosed", err)
			}
		})
	}
}

// TestCloseWhileRunning closes a model (as an unload does) while
// goroutines run it, each through a context and through Model.Run: every
// run either completes with the right outputs or is refused with
// ErrClosed, and nothing faults (issue 9 item 2 at the model's level):
// Close releases the memory only when the last run in progress returns,
// which matters for a mapped plan (unmapped under a running batch, it
// faulted with SIGSEGV); a plan that was read stays valid anyway.
func TestCloseWhileRunning(t *testing.T) {
	dir := t.TempDir()
	model := tinyRepo(t, dir, "tiny", examples.TinyCNNModel)
	c := &kiln.PlanCache{Dir: filepath.Join(dir, "cache")}
	in := map[string]*kiln.Tensor{"image": examples.TinyCNNInput(2)}
	ref, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 6; round++ {
		m, res, err := c.Load(context.Background(), model, kiln.BuildOptions{MaxBatch: 4, NoTiming: true})
		if err != nil {
			t.Fatal(err)
		}
		if round%2 == 1 {
			m.Close()
			if m, err = kiln.LoadWith(res.Path, kiln.LoadOptions{Mmap: true}); err != nil {
				t.Fatal(err)
			}
		}
		started := make(chan struct{}, 8)
		errs := make(chan error, 8)
		for w := 0; w < 4; w++ {
			go func(w int) {
				ctx := m.NewContext()
				for i := 0; ; i++ {
					var got map[string]*kiln.Tensor
					var err error
					if w%2 == 0 {
						got, err = ctx.Run(context.Background(), in)
					} else {
						got, err = m.Run(context.Background(), in)
					}
					if errors.Is(err, kiln.ErrClosed) {
						errs <- nil
						return
					}
					if err != nil {
						errs <- err
						return
					}
					for j, v := range want["probabilities"].Float32s() {
						if d := got["probabilities"].Float32s()[j] - v; d > 1e-5 || d < -1e-5 {
							errs <- errors.New("wrong output while closing")
							return
						}
					}
					if i == 0 {
						started <- struct{}{}
					}
				}
			}(w)
		}
		for w := 0; w < 4; w++ {
			<-started
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		for w := 0; w < 4; w++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
}
