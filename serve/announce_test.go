package serve_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
)

// TestAnnounce: models announced before loading show as LOADING ("waiting
// to load"), never UNAVAILABLE, until LoadAll loads them; a name the
// repository lacks is not announced (its load fails at once).
func TestAnnounce(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a", "b"} {
		os.MkdirAll(filepath.Join(dir, name, "1"), 0o755)
		os.WriteFile(filepath.Join(dir, name, "1", "model.onnx"), examples.TinyCNNModel, 0o644)
	}
	state := func(s *serve.Server) map[string]string {
		out := map[string]string{}
		for _, e := range s.RepositoryIndex() {
			out[e.Name] = e.State
		}
		return out
	}
	for _, tt := range []struct {
		names []string
		want  map[string]string
	}{
		{nil, map[string]string{"a": "LOADING", "b": "LOADING"}},
		{[]string{"a", "missing"}, map[string]string{"a": "LOADING", "b": "UNAVAILABLE"}},
	} {
		s := serve.New(serve.Options{Repository: dir})
		if err := s.Announce(tt.names); err != nil {
			t.Fatal(err)
		}
		got := state(s)
		for name, want := range tt.want {
			if got[name] != want {
				t.Errorf("Announce(%q): %s is %s, want %s (%v)", tt.names, name, got[name], want, got)
			}
		}
		if _, ok := got["missing"]; ok {
			t.Errorf("Announce(%q): a name the repository lacks is listed: %v", tt.names, got)
		}
		if err := s.LoadAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := state(s); got["a"] != "READY" || got["b"] != "READY" {
			t.Errorf("after LoadAll: %v", got)
		}
		s.Shutdown(context.Background())
	}
	if err := serve.New(serve.Options{Repository: filepath.Join(dir, "nope")}).Announce(nil); err == nil {
		t.Error("Announce on a missing repository: no error")
	}
}
