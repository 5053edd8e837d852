package serve_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/httpapi"
)

// TestClientErrorsAre400 serves reference models through the real HTTP
// handler on loopback: requests the model cannot take (a shape outside the
// dims range, a shape the graph cannot take, an out-of-vocabulary token)
// are 400 with a message naming the problem, not 500.
func TestClientErrorsAre400(t *testing.T) {
	models, _ := filepath.Abs(filepath.Join("..", "..", "shared", "models"))
	if _, err := os.Stat(filepath.Join(models, "yolo_tiny", "model.onnx")); err != nil {
		t.Skipf("needs the reference models in ../shared/models: %v", err)
	}
	repo := t.TempDir()
	for name, cfg := range map[string]string{
		"yolo_tiny": "max_batch_size: 0\nparameters { key: \"dims\" value: { string_value: \"h=32,64,320;w=32,64,320\" } }\n",
		"bert_mini": "max_batch_size: 4\ndynamic_batching { }\n",
	} {
		v := filepath.Join(repo, name, "1")
		os.MkdirAll(v, 0o755)
		if err := os.Symlink(filepath.Join(models, name, "model.onnx"), filepath.Join(v, "model.onnx")); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(repo, name, "config.pbtxt"), []byte(cfg), 0o644)
	}
	s := serve.New(serve.Options{Repository: repo})
	defer s.Shutdown(context.Background())
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	defer srv.Close()

	image := func(h, w int) string {
		zeros := strings.TrimSuffix(strings.Repeat("0,", 3*h*w), ",")
		return fmt.Sprintf(`{"inputs":[{"name":"images","shape":[1,3,%d,%d],"datatype":"FP32","data":[%s]}]}`, h, w, zeros)
	}
	tokens := func(ids string, n int) string {
		mask := strings.TrimSuffix(strings.Repeat("1,", n), ",")
		return fmt.Sprintf(`{"inputs":[{"name":"input_ids","shape":[1,%d],"datatype":"INT64","data":[%s]},`+
			`{"name":"attention_mask","shape":[1,%d],"datatype":"INT64","data":[%s]}]}`, n, ids, n, mask)
	}
	tests := []struct {
		name, model, body string
		status            int
		want              string // in the error message
	}{
		{"image fits", "yolo_tiny", image(64, 64), 200, ""},
		{"image above the dims range", "yolo_tiny", image(352, 32), 400, "outside [32, 320]"},
		{"huge image declared", "yolo_tiny", `{"inputs":[{"name":"images","shape":[1,3,16000,16000],"datatype":"FP32","data":[0,0,0]}]}`, 400, ""},
		// the engine's bounds are checked before the data is decoded: the
		// shape is named, not the data's garbage
		{"shape outside the dims range, data never decoded", "yolo_tiny", `{"inputs":[{"name":"images","shape":[1,3,352,32],"datatype":"FP32","data":[garbage]}]}`, 400, "outside [32, 320]"},
		{"image off the stride", "yolo_tiny", image(33, 33), 400, "cannot take inputs of shapes"},
		{"tokens", "bert_mini", tokens("101,7,102", 3), 200, ""},
		{"token outside the vocabulary", "bert_mini", tokens("101,99999,102", 3), 400, "99999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/v2/models/"+tt.model+"/infer", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, b, tt.status)
			}
			if tt.want == "" {
				return
			}
			var e struct{ Error string }
			if err := json.Unmarshal(b, &e); err != nil || !strings.Contains(e.Error, tt.want) {
				t.Errorf("error %s, want it to name %q", b, tt.want)
			}
		})
	}
}
