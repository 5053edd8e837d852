package metrics

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
)

var _ IndexSource = (*serve.Server)(nil)

// TestModelReady serves a repository of three models: one loaded, one
// whose file is not a model (its load fails) and one never loaded; the
// scrape says which are ready.
func TestModelReady(t *testing.T) {
	repo := t.TempDir()
	for name, data := range map[string][]byte{"good": examples.TinyCNNModel, "broken": []byte("not a model"), "idle": examples.TinyCNNModel} {
		dir := filepath.Join(repo, name, "1")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := New(nil)
	s := serve.New(serve.Options{Repository: repo, Observer: m})
	m.SetPending(s)
	defer s.Shutdown(context.Background())
	if err := s.Load("good"); err != nil {
		t.Fatal(err)
	}
	if err := s.Load("broken"); err == nil {
		t.Fatal("loading a file that is not a model succeeded")
	}
	out := scrape(t, m.Handler())
	for _, tc := range []struct{ series, want string }{
		{`kiln_model_ready{model="good",version="1"}`, "1"},
		{`kiln_model_ready{model="broken",version=""}`, "0"},
		{`kiln_model_ready{model="idle",version=""}`, "0"},
	} {
		if !strings.Contains(out, tc.series+" "+tc.want+"\n") {
			t.Errorf("want %s %s in\n%s", tc.series, tc.want, grepLines(out, "kiln_model_ready"))
		}
	}

	// without an index source (a fixed pending source) there is no series
	if out := scrape(t, New(fixedPending{}).Handler()); strings.Contains(out, "kiln_model_ready{") {
		t.Errorf("kiln_model_ready without a server:\n%s", grepLines(out, "kiln_model_ready"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
