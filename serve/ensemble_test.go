package serve_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// preprocessConfig is a kiln_image model making tinycnn's input from a
// 32x32 image as it is (scaled to [0,1]).
const preprocessConfig = `name: "preprocess"
platform: "kiln_image"
max_batch_size: 8
input [ { name: "bytes" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "image" data_type: TYPE_FP32 dims: [ 3, 32, 32 ] } ]
`

// tinycnnConfig is tinycnn under name.
func tinycnnConfig(name string) string {
	return `name: "` + name + `"
max_batch_size: 8
input [ { name: "image" data_type: TYPE_FP32 dims: [ 3, 32, 32 ] } ]
output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 10 ] } ]
dynamic_batching { }
`
}

// diamondConfig is an ensemble whose two classifier steps read the one
// preprocessed image (and may run at once).
const diamondConfig = `name: "diamond"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "P1" data_type: TYPE_FP32 dims: [ 10 ] }, { name: "P2" data_type: TYPE_FP32 dims: [ 10 ] } ]
ensemble_scheduling { step [
  { model_name: "preprocess" model_version: -1 input_map { key: "bytes" value: "IMAGE" } output_map { key: "image" value: "img" } },
  { model_name: "tinycnn" model_version: 1 input_map { key: "image" value: "img" } output_map { key: "probabilities" value: "P1" } },
  { model_name: "tinycnn2" input_map { key: "image" value: "img" } output_map { key: "probabilities" value: "P2" } }
] }
`

// writeModels writes a repository of configs (name -> config.pbtxt); the
// models named tinycnn* get version 1 with tinycnn's model.onnx, the
// others an empty version folder 1.
func writeModels(t *testing.T, configs map[string]string) string {
	t.Helper()
	repo := t.TempDir()
	for name, cfg := range configs {
		v := filepath.Join(repo, name, "1")
		if err := os.MkdirAll(v, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(repo, name, "config.pbtxt"), []byte(cfg), 0o644)
		if strings.HasPrefix(name, "tinycnn") {
			os.WriteFile(filepath.Join(v, "model.onnx"), examples.TinyCNNModel, 0o644)
		}
	}
	return repo
}

// pngImage encodes a 32x32 image of one color.
func pngImage(t *testing.T, c color.NRGBA) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 32, 32))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// binaryBody is an HTTP infer request of one BYTES input as binary data.
func binaryBody(input string, items ...[]byte) ([]byte, int) {
	var raw bytes.Buffer
	for _, b := range items {
		binary.Write(&raw, binary.LittleEndian, uint32(len(b)))
		raw.Write(b)
	}
	hdr, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{"name": input, "datatype": "BYTES",
		"shape": []int{len(items), 1}, "parameters": map[string]any{"binary_data_size": raw.Len()}}}})
	return append(hdr, raw.Bytes()...), len(hdr)
}

func postInfer(t *testing.T, url, model string, body []byte, hdrLen int) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v2/models/"+model+"/infer", bytes.NewReader(body))
	req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(hdrLen))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// near reports whether a and b agree within 1e-5 (the preprocessor
// scales by a product of reciprocals).
func near(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if d := a[i] - b[i]; d > 1e-5 || d < -1e-5 {
			return false
		}
	}
	return true
}

// TestEnsembleLoadErrors (issue 14, item 2): an ensemble that cannot run
// does not load, and the error names the field at fault.
func TestEnsembleLoadErrors(t *testing.T) {
	step := func(model, in, out string) string {
		return fmt.Sprintf(`{ model_name: %q input_map { key: %q value: %q } output_map { key: %q value: %q } }`,
			model, strings.Split(in, "=")[0], strings.Split(in, "=")[1], strings.Split(out, "=")[0], strings.Split(out, "=")[1])
	}
	ens := func(inputs, outputs string, steps ...string) string {
		return `name: "ens"
platform: "ensemble"
max_batch_size: 8
input [ ` + inputs + ` ]
output [ ` + outputs + ` ]
ensemble_scheduling { step [ ` + strings.Join(steps, ", ") + ` ] }
`
	}
	const (
		imageIn = `{ name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] }`
		probOut = `{ name: "PROB" data_type: TYPE_FP32 dims: [ 10 ] }`
	)
	pre := step("preprocess", "bytes=IMAGE", "image=img")
	cnn := step("tinycnn", "image=img", "probabilities=PROB")
	inner := strings.Replace(ens(imageIn, probOut, pre, cnn), `name: "ens"`, `name: "inner"`, 1)
	loop := strings.Replace(ens(imageIn, probOut, step("ens", "IMAGE=IMAGE", "PROB=PROB")), `name: "ens"`, `name: "loop"`, 1)
	tests := []struct {
		name, config string
		want         string
		extra        map[string]string
	}{
		{"runs", ens(imageIn, probOut, pre, cnn), "", nil},
		{"an ensemble of an ensemble", ens(imageIn, probOut, step("inner", "IMAGE=IMAGE", "PROB=PROB")), "", map[string]string{"inner": inner}},
		{"a cycle of ensembles", ens(imageIn, probOut, step("loop", "IMAGE=IMAGE", "PROB=PROB")),
			`ensemble_scheduling.step[0].model_name "ens": a cycle of ensembles [ens loop ens]`, map[string]string{"loop": loop}},
		{"steps in any order", ens(imageIn, probOut, cnn, pre), "", nil},
		{"no steps", "name: \"ens\"\nplatform: \"ensemble\"\ninput [ " + imageIn + " ]\noutput [ " + probOut + " ]\n", "ensemble_scheduling: an ensemble has at least one step", nil},
		{"no inputs declared", "name: \"ens\"\nplatform: \"ensemble\"\noutput [ " + probOut + " ]\nensemble_scheduling { step [ " + cnn + " ] }\n", "input: ensemble models declare their inputs", nil},
		{"step model missing", ens(imageIn, probOut, pre, step("nope", "image=img", "probabilities=PROB")),
			`ensemble_scheduling.step[1].model_name "nope" does not load`, nil},
		{"step model does not load", ens(imageIn, probOut, pre, step("tinycnn_broken", "image=img", "probabilities=PROB")),
			`ensemble_scheduling.step[1].model_name "tinycnn_broken" does not load`, nil},
		{"step is the ensemble", ens(imageIn, probOut, pre, step("ens", "image=img", "probabilities=PROB")),
			`ensemble_scheduling.step[1].model_name "ens" is the ensemble itself`, nil},
		{"tensor nothing produces", ens(imageIn, probOut, pre, step("tinycnn", "image=other", "probabilities=PROB")),
			`ensemble_scheduling.step[1].input_map: tensor "other" (input "image" of model "tinycnn") is not an input of the ensemble nor an output of any step`, nil},
		{"tensor produced twice", ens(imageIn, probOut, pre, step("preprocess", "bytes=IMAGE", "image=img"), cnn),
			`ensemble_scheduling.step[1].output_map: tensor "img" is also an output of step[0]`, nil},
		{"cycle", ens(imageIn, probOut, pre, step("tinycnn", "image=a", "probabilities=b"), step("tinycnn2", "image=b", "probabilities=a"), cnn),
			`ensemble_scheduling: the steps form a cycle: [step[1] (tinycnn) step[2] (tinycnn2)]`, nil},
		{"ensemble input not mapped", ens(imageIn+`, { name: "EXTRA" data_type: TYPE_FP32 dims: [ 1 ] }`, probOut, pre, cnn),
			`input "EXTRA" of the ensemble is in no step's input_map`, nil},
		{"ensemble output not mapped", ens(imageIn, probOut+`, { name: "MORE" data_type: TYPE_FP32 dims: [ 10 ] }`, pre, cnn),
			`output "MORE" of the ensemble is in no step's output_map`, nil},
		{"unknown step input", ens(imageIn, probOut, pre, step("tinycnn", "pixels=img", "probabilities=PROB")),
			`ensemble_scheduling.step[1].input_map: model "tinycnn" has no input "pixels"`, nil},
		{"unknown step output", ens(imageIn, probOut, pre, step("tinycnn", "image=img", "logits=PROB")),
			`ensemble_scheduling.step[1].output_map: model "tinycnn" has no output "logits"`, nil},
		{"type mismatch", ens(imageIn, probOut, step("tinycnn", "image=IMAGE", "probabilities=PROB")),
			`ensemble_scheduling.step[0].input_map: tensor "IMAGE" is TYPE_STRING, input "image" of model "tinycnn" is TYPE_FP32`, nil},
		{"output type mismatch", ens(imageIn, `{ name: "PROB" data_type: TYPE_INT64 dims: [ 10 ] }`, pre, cnn),
			`output "PROB" of the ensemble is TYPE_INT64, but step[1] makes it TYPE_FP32`, nil},
		{"batch above a step's", strings.Replace(ens(imageIn, probOut, pre, cnn), "max_batch_size: 8", "max_batch_size: 16", 1),
			`ensemble_scheduling.step[0].model_name "preprocess": its max_batch_size 8 is below the ensemble's 16`, nil},
		{"bad model_version", ens(imageIn, probOut, pre, strings.Replace(cnn, `model_name: "tinycnn"`, `model_name: "tinycnn" model_version: -5`, 1)),
			`ensemble_scheduling.step[1].model_version -5`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			models := map[string]string{"ens": tc.config, "preprocess": preprocessConfig,
				"tinycnn": tinycnnConfig("tinycnn"), "tinycnn2": tinycnnConfig("tinycnn2"), "tinycnn_broken": tinycnnConfig("tinycnn_broken")}
			maps.Copy(models, tc.extra)
			repo := writeModels(t, models)
			os.WriteFile(filepath.Join(repo, "tinycnn_broken", "1", "model.onnx"), []byte("not onnx"), 0o644)
			s := serve.New(serve.Options{Repository: repo})
			defer s.Shutdown(context.Background())
			err := s.Load("ens")
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if ok, err := s.ModelReady("ens", ""); !ok {
					t.Fatalf("the ensemble is not ready: %v", err)
				}
				img := &tensor.Tensor{DType: tensor.String, Shape: []int{1, 1}, Strings: []string{string(pngImage(t, color.NRGBA{1, 2, 3, 255}))}}
				resp, err := s.Infer(context.Background(), &serve.InferRequest{Model: "ens", Inputs: map[string]*tensor.Tensor{"IMAGE": img}})
				if err != nil || len(resp.Outputs) != 1 || fmt.Sprint(resp.Outputs[0].Tensor.Shape) != "[1 10]" {
					t.Fatalf("infer: %v %v", resp, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			for _, e := range s.RepositoryIndex() {
				if e.Name == "ens" && (e.State != "UNAVAILABLE" || !strings.Contains(e.Reason, tc.want)) {
					t.Errorf("index: %+v", e)
				}
			}
		})
	}
}

// gate holds the runs of the classifier steps until both have started,
// so that a test sees them run at once.
type gate struct {
	mu      sync.Mutex
	on      bool
	started int
	both    chan struct{}
}

type gatedRunner struct {
	scheduler.Runner
	g *gate
}

func (r gatedRunner) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	r.g.mu.Lock()
	on := r.g.on
	if on {
		if r.g.started++; r.g.started == 2 {
			close(r.g.both)
		}
	}
	r.g.mu.Unlock()
	if on {
		select {
		case <-r.g.both:
		case <-time.After(20 * time.Second):
			return nil, errors.New("the other classifier step did not start: steps ran one after the other")
		}
	}
	return r.Runner.Run(ctx, in)
}

// failingRunner fails every run: a model's internal error.
type failingRunner struct{ scheduler.Runner }

func (failingRunner) Run(context.Context, map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return nil, errors.New("injected fault")
}

// TestEnsembleServe (issue 14, item 2) serves an ensemble whose two
// classifier steps read one preprocessed image, over HTTP on loopback:
// it has metadata and config like any model; both outputs equal tinycnn's
// on the image; the two classifier steps run at once; statistics count the
// ensemble and each step; a step's error fails the request with the step
// named and the step's status; unloading a step's model makes the
// ensemble not ready until it is loaded again.
func TestEnsembleServe(t *testing.T) {
	repo := writeModels(t, map[string]string{"diamond": diamondConfig, "preprocess": preprocessConfig,
		"tinycnn": tinycnnConfig("tinycnn"), "tinycnn2": tinycnnConfig("tinycnn2"), "tinycnn_faulty": tinycnnConfig("tinycnn_faulty"),
		"faulty": strings.NewReplacer(`"diamond"`, `"faulty"`, `"tinycnn2"`, `"tinycnn_faulty"`).Replace(diamondConfig)})
	g := &gate{both: make(chan struct{})}
	s := serve.New(serve.Options{Repository: repo, WrapRunner: func(model string, r scheduler.Runner) scheduler.Runner {
		switch model {
		case "tinycnn", "tinycnn2":
			return gatedRunner{r, g}
		case "tinycnn_faulty":
			return failingRunner{r}
		}
		return r
	}})
	defer s.Shutdown(context.Background())
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	defer ts.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// the reference: tinycnn on the image scaled to [0,1]
	px := color.NRGBA{200, 100, 50, 255}
	in := tensor.New(tensor.Float32, 1, 3, 32, 32)
	for c, v := range []uint8{px.R, px.G, px.B} {
		for i := range 32 * 32 {
			in.Float32s()[c*1024+i] = float32(v) / 255
		}
	}
	ref, err := s.Infer(context.Background(), &serve.InferRequest{Model: "tinycnn2", Inputs: map[string]*tensor.Tensor{"image": in}})
	if err != nil {
		t.Fatal(err)
	}
	want := ref.Outputs[0].Tensor.Float32s()

	for _, c := range []struct{ path, want string }{
		{"/v2/models/diamond", `"platform":"ensemble"`},
		{"/v2/models/diamond/config", `"ensemble_scheduling":{"max_inflight_responses":0,"step":[{"input_map":{"bytes":"IMAGE"},"model_name":"preprocess"`},
		{"/v2/models/diamond/ready", ``},
	} {
		if code, b := get(c.path); code != 200 || !strings.Contains(b, c.want) {
			t.Errorf("GET %s: %d %s, want 200 with %s", c.path, code, b, c.want)
		}
	}

	g.mu.Lock()
	g.on = true
	g.mu.Unlock()
	body, hl := binaryBody("IMAGE", pngImage(t, px))
	code, b := postInfer(t, ts.URL, "diamond", body, hl)
	g.mu.Lock()
	g.on = false
	g.mu.Unlock()
	var out struct {
		Outputs []struct {
			Name  string    `json:"name"`
			Shape []int     `json:"shape"`
			Data  []float32 `json:"data"`
		} `json:"outputs"`
	}
	if code != 200 || json.Unmarshal(b, &out) != nil || len(out.Outputs) != 2 {
		t.Fatalf("infer: %d %s", code, b)
	}
	for i, o := range out.Outputs {
		if o.Name != []string{"P1", "P2"}[i] || fmt.Sprint(o.Shape) != "[1 10]" || !near(o.Data, want) {
			t.Errorf("output %d: %s %v %v, want %v", i, o.Name, o.Shape, o.Data, want)
		}
	}

	stats, err := s.ModelStats("", "")
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]uint64{}
	for _, st := range stats {
		count[st.Model] = st.SuccessCount
	}
	if count["diamond"] != 1 || count["preprocess"] != 1 || count["tinycnn"] != 1 || count["tinycnn2"] != 2 {
		t.Errorf("successes %v, want diamond 1, preprocess 1, tinycnn 1, tinycnn2 2 (one direct)", count)
	}

	t.Run("WebSocket stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws, err := api.DialWebSocket(ctx, ts.URL, "diamond", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		img := &tensor.Tensor{DType: tensor.String, Shape: []int{1, 1}, Strings: []string{string(pngImage(t, px))}}
		for i := range 2 {
			if err := ws.Send(ctx, strconv.Itoa(i), map[string]*tensor.Tensor{"IMAGE": img}); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			id, outs, err := ws.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if p1, p2 := outs["P1"], outs["P2"]; p1 == nil || p2 == nil || !near(p1.Float32s(), want) || !near(p2.Float32s(), want) {
				t.Errorf("frame %s: %v", id, outs)
			}
		}
	})

	t.Run("step errors", func(t *testing.T) {
		for _, c := range []struct {
			name, model string
			image       []byte
			status      int
			want        string
		}{
			{"bad image", "diamond", []byte("GIF89a"), 400, `ensemble diamond: step[0] (model \"preprocess\"): serve: invalid request: input \"bytes\": image 0: not a JPEG or PNG image`},
			{"truncated PNG", "diamond", pngImage(t, px)[:60], 400, `step[0] (model \"preprocess\")`},
			{"internal error", "faulty", pngImage(t, px), 500, `ensemble faulty: step[2] (model \"tinycnn_faulty\"): injected fault`},
		} {
			t.Run(c.name, func(t *testing.T) {
				body, hl := binaryBody("IMAGE", c.image)
				code, b := postInfer(t, ts.URL, c.model, body, hl)
				if code != c.status || !strings.Contains(string(b), c.want) {
					t.Errorf("got %d %s, want %d with %s", code, b, c.status, c.want)
				}
			})
		}
	})

	t.Run("unload a step's model", func(t *testing.T) {
		if err := s.Unload(context.Background(), "tinycnn2"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.ModelReady("diamond", ""); ok {
			t.Error("the ensemble is ready without its step model")
		}
		for _, e := range s.RepositoryIndex() {
			if e.Name == "diamond" && e.Reason != `not ready: its step model "tinycnn2" is not loaded` {
				t.Errorf("index: %+v", e)
			}
		}
		if code, b := get("/v2/models/diamond/ready"); code == 200 {
			t.Errorf("ready: %d %s", code, b)
		}
		body, hl := binaryBody("IMAGE", pngImage(t, px))
		if code, b := postInfer(t, ts.URL, "diamond", body, hl); code != 503 && code != 400 || !strings.Contains(string(b), `step model \"tinycnn2\" is not loaded`) {
			t.Errorf("infer: %d %s", code, b)
		}
		if err := s.Load("tinycnn2"); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.ModelReady("diamond", ""); !ok {
			t.Errorf("the ensemble is not ready with its step model loaded again: %v", err)
		}
		if code, b := postInfer(t, ts.URL, "diamond", body, hl); code != 200 {
			t.Errorf("infer: %d %s", code, b)
		}
	})
}

// TestEnsembleLoadsSteps: loading an ensemble alone loads its steps'
// models (in every model control mode), and LoadAll loads each model once.
func TestEnsembleLoadsSteps(t *testing.T) {
	repo := writeModels(t, map[string]string{"diamond": diamondConfig, "preprocess": preprocessConfig,
		"tinycnn": tinycnnConfig("tinycnn"), "tinycnn2": tinycnnConfig("tinycnn2")})
	var mu sync.Mutex
	loads := map[string]int{}
	s := serve.New(serve.Options{Repository: repo, WrapRunner: func(model string, r scheduler.Runner) scheduler.Runner {
		mu.Lock()
		loads[model]++
		mu.Unlock()
		return r
	}})
	defer s.Shutdown(context.Background())
	if err := s.Load("diamond"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"diamond", "preprocess", "tinycnn", "tinycnn2"} {
		if ok, err := s.ModelReady(m, ""); !ok {
			t.Errorf("%s not ready: %v", m, err)
		}
	}
	s2 := serve.New(serve.Options{Repository: repo, WrapRunner: func(model string, r scheduler.Runner) scheduler.Runner {
		mu.Lock()
		loads["all:"+model]++
		mu.Unlock()
		return r
	}})
	defer s2.Shutdown(context.Background())
	if err := s2.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"diamond", "preprocess", "tinycnn", "tinycnn2"} {
		if loads["all:"+m] != 1 {
			t.Errorf("LoadAll loaded %s %d times, want once", m, loads["all:"+m])
		}
	}
	if !s2.Ready() {
		t.Error("server not ready")
	}
}
