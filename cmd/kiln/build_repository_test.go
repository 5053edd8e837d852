package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve/repository"
)

// TestBuildRepository runs kiln build --model-repository --plan-cache (what
// the Helm chart's initContainer runs) and checks that the plans it leaves
// are the ones kiln serve looks for: the same plan cache, with each
// model's config options, hits for every model it built. A model that does
// not build is reported by name, exit status 1, and the others are built.
func TestBuildRepository(t *testing.T) {
	repo := t.TempDir()
	write := func(rel string, data []byte) {
		p := filepath.Join(repo, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("plain/1/model.onnx", examples.TinyCNNModel)
	write("batched/config.pbtxt", []byte("max_batch_size: 4\n"))
	write("batched/2/model.onnx", examples.TinyCNNModel)

	cases := []struct {
		name    string
		broken  bool
		code    int
		built   []string
		errWant string
	}{
		{"all build", false, exitOK, []string{"batched", "plain"}, ""},
		{"one broken", true, exitError, []string{"batched", "plain"}, "build broken:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.broken {
				write("broken/1/model.onnx", []byte("not a model"))
				defer os.RemoveAll(filepath.Join(repo, "broken"))
			}
			cache := t.TempDir()
			var code int
			errs := captureErr(t, func() {
				code = buildCmd([]string{"--model-repository", repo, "--plan-cache", cache})
			})
			if code != tc.code {
				t.Fatalf("exit status %d, want %d; stderr:\n%s", code, tc.code, errs)
			}
			if tc.errWant != "" && !strings.Contains(errs, tc.errWant) {
				t.Errorf("stderr lacks %q:\n%s", tc.errWant, errs)
			}
			// kiln serve's loader, on the same cache, finds every plan
			c := &kiln.PlanCache{Dir: cache}
			for _, name := range tc.built {
				rm, err := repository.LoadContext(context.Background(), repo, name, func(path string, cfg *repository.Config) (*kiln.Model, error) {
					o, err := repository.BuildOptions(filepath.Dir(filepath.Dir(path)), cfg)
					if err != nil {
						return nil, err
					}
					m, res, err := c.Load(context.Background(), path, o)
					if err == nil && !res.Hit {
						t.Errorf("%s: the server would build %s again (%s)", name, path, res.Rebuilt)
					}
					return m, err
				})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				rm.Close()
			}
		})
	}

	if code := buildCmd([]string{"--model-repository", filepath.Join(repo, "missing")}); code != exitError {
		t.Errorf("a missing repository: exit status %d, want %d", code, exitError)
	}
	if errs := captureErr(t, func() {
		if code := buildCmd([]string{"--model-repository", repo, "--fp16"}); code != exitError {
			t.Errorf("a repository and --fp16: exit status %d, want %d", code, exitError)
		}
	}); !strings.Contains(errs, "--fp16 does not apply") {
		t.Errorf("a repository and --fp16: %s", errs)
	}
	if code := buildCmd([]string{"--model-repository", repo, "model.onnx"}); code != exitError {
		t.Errorf("a repository and a model: exit status %d, want %d", code, exitError)
	}
}
