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

// TestBatchStatsHTTP (issue 14, item 5): the HTTP statistics have
// batch_stats, the runs by batch size, as the gRPC ones.
func TestBatchStatsHTTP(t *testing.T) {
	ts, _, _ := startServer(t, 0)
	type dur struct{ Count, Ns uint64 }
	type stats struct {
		ModelStats []struct {
			ExecutionCount uint64 `json:"execution_count"`
			BatchStats     []struct {
				BatchSize     int `json:"batch_size"`
				ComputeInput  dur `json:"compute_input"`
				ComputeInfer  dur `json:"compute_infer"`
				ComputeOutput dur `json:"compute_output"`
			} `json:"batch_stats"`
		} `json:"model_stats"`
	}
	get := func() (map[int]uint64, uint64) {
		resp, b := do(t, "GET", ts.URL+"/v2/models/tinycnn/stats", nil, nil)
		var st stats
		if resp.StatusCode != 200 || json.Unmarshal(b, &st) != nil || len(st.ModelStats) != 1 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		m := map[int]uint64{}
		var runs uint64
		for _, bs := range st.ModelStats[0].BatchStats {
			if bs.ComputeInput.Count != bs.ComputeInfer.Count || bs.ComputeOutput.Count != bs.ComputeInfer.Count || bs.ComputeInfer.Ns == 0 {
				t.Errorf("batch_stats %s", b)
			}
			m[bs.BatchSize] = bs.ComputeInfer.Count
			runs += bs.ComputeInfer.Count
		}
		if runs != st.ModelStats[0].ExecutionCount {
			t.Errorf("%d runs in batch_stats, execution_count %d", runs, st.ModelStats[0].ExecutionCount)
		}
		return m, runs
	}
	before, _ := get() // the warmup's runs
	for _, n := range []int{1, 3, 1} {
		if resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", nil, jsonRequest(examples.TinyCNNInput(n), false)); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	}
	after, _ := get()
	if after[1]-before[1] != 2 || after[3]-before[3] != 1 {
		t.Errorf("batch_stats counts before %v, after %v: want 2 more runs of 1 and 1 of 3", before, after)
	}
}
