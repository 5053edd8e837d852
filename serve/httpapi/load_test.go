package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/examples"
)

// loadBody is a load request body with the given parameters.
func loadBody(params map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"parameters": params})
	return b
}

// TestLoadOverride (issue 14, item 5): load_model with a "config"
// parameter (a JSON model config, as Triton's clients send it) and
// "file:<path>" parameters (base64) is used for the load; a bad override
// is a 400 naming the field and leaves the model served as it was; a file
// cannot leave the model folder; an unknown parameter is refused, never
// ignored.
func TestLoadOverride(t *testing.T) {
	ts, _, dir := startServer(t, 0)
	model := base64.StdEncoding.EncodeToString(examples.TinyCNNModel)
	outside := filepath.Join(filepath.Dir(dir), "escaped")
	steps := []struct {
		name     string
		path     string
		body     []byte
		code     int
		contains string
	}{
		{"config override", "/v2/repository/models/tinycnn/load",
			loadBody(map[string]any{"config": `{"max_batch_size": 4, "dynamic_batching": {"preserve_ordering": true}}`}), 200, ""},
		{"override in use", "/v2/models/tinycnn/config", nil, 200, `"max_batch_size":4`},
		{"override shown", "/v2/models/tinycnn/config", nil, 200, `"preserve_ordering":true`},
		{"config as an object", "/v2/repository/models/tinycnn/load",
			loadBody(map[string]any{"config": map[string]any{"max_batch_size": 2}}), 200, ""},
		{"object override in use", "/v2/models/tinycnn/config", nil, 200, `"max_batch_size":2`},
		{"wrong type", "/v2/repository/models/tinycnn/load",
			loadBody(map[string]any{"config": `{"max_batch_size": "many"}`}), 400, "max_batch_size"},
		{"unknown field", "/v2/repository/models/tinycnn/load",
			loadBody(map[string]any{"config": `{"max_batch_size": 4, "optimisation": {}}`}), 400, "optimisation"},
		{"invalid value", "/v2/repository/models/tinycnn/load",
			loadBody(map[string]any{"config": `{"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [9]}}`}), 400, "preferred_batch_size"},
		{"other name", "/v2/repository/models/tinycnn/load",
			loadBody(map[string]any{"config": `{"name": "other"}`}), 400, `names the model`},
		{"bad override left the model as it was", "/v2/models/tinycnn/config", nil, 200, `"max_batch_size":2`},
		{"unknown parameter", "/v2/repository/models/tinycnn/load",
			loadBody(map[string]any{"poll": true}), 400, `poll`},
		{"files without config", "/v2/repository/models/fresh/load",
			loadBody(map[string]any{"file:1/model.onnx": model}), 400, "config"},
		{"file outside the model folder", "/v2/repository/models/fresh/load",
			loadBody(map[string]any{"config": `{}`, "file:../../escaped/model.onnx": model}), 400, "inside the model folder"},
		{"absolute file", "/v2/repository/models/fresh/load",
			loadBody(map[string]any{"config": `{}`, "file:" + outside: model}), 400, "inside the model folder"},
		{"file not base64", "/v2/repository/models/fresh/load",
			loadBody(map[string]any{"config": `{}`, "file:1/model.onnx": "%%%"}), 400, "file:1/model.onnx"},
		{"model from files", "/v2/repository/models/fresh/load",
			loadBody(map[string]any{"config": `{"max_batch_size": 8}`, "file:1/model.onnx": model,
				"file:labels.txt": base64.StdEncoding.EncodeToString([]byte("a\nb\n"))}), 200, ""},
		{"model from files served", "/v2/models/fresh/infer", jsonRequest(examples.TinyCNNInput(1), false), 200, `"probabilities"`},
		{"model from files in the index", "/v2/repository/index", nil, 200, `"name":"fresh","state":"READY","version":"1"`},
		{"model from files unloads", "/v2/repository/models/fresh/unload", nil, 200, ""},
	}
	for _, st := range steps {
		method := "POST"
		if strings.HasSuffix(st.path, "/config") {
			method = "GET"
		}
		resp, b := do(t, method, ts.URL+st.path, nil, st.body)
		if resp.StatusCode != st.code || !strings.Contains(string(b), st.contains) {
			t.Fatalf("%s: %s: %d %s, want %d containing %s", st.name, st.path, resp.StatusCode, b, st.code, st.contains)
		}
	}
	if _, err := os.Stat(outside); err == nil {
		t.Errorf("a load request wrote %s", outside)
	}
	if _, err := os.Stat(filepath.Join(dir, "fresh")); err == nil {
		t.Error("a load from files wrote into the repository")
	}
}
