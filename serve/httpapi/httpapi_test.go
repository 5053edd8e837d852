package httpapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/tensor"
)

const tinyConfig = `
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 2000 }
instance_group [ { count: 2 kind: KIND_CPU } ]
model_warmup { name: "w" batch_size: 2 inputs { key: "image" value { data_type: TYPE_FP32 dims: [3, 32, 32] random_data: true } } }
`

// startServer serves a repository with tinycnn (and resnet_mini when
// ../shared/models has it) on a loopback listener.
func startServer(t testing.TB, maxBytes int64) (*httptest.Server, *serve.Server, string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, version string, model []byte, cfg string) {
		p := filepath.Join(dir, name, version)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "model.onnx"), model, 0o644); err != nil {
			t.Fatal(err)
		}
		if cfg != "" {
			os.WriteFile(filepath.Join(dir, name, "config.pbtxt"), []byte(cfg), 0o644)
		}
	}
	write("tinycnn", "1", examples.TinyCNNModel, tinyConfig)
	if b, err := os.ReadFile("../../../shared/models/resnet_mini/model.onnx"); err == nil {
		write("resnet_mini", "1", b, "")
	}
	s := serve.New(serve.Options{Repository: dir})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(s, Options{MaxRequestBytes: maxBytes}))
	t.Cleanup(func() { ts.Close(); s.Shutdown(context.Background()) })
	return ts, s, dir
}

func do(t *testing.T, method, url string, hdr map[string]string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func direct(t *testing.T, in *tensor.Tensor) []float32 {
	t.Helper()
	m, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out, err := m.Run(context.Background(), map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	return out["probabilities"].Float32s()
}

func close32(t *testing.T, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > tol*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("value %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestHealthAndMetadata(t *testing.T) {
	ts, _, _ := startServer(t, 0)
	tests := []struct {
		method, path string
		code         int
		contains     string
	}{
		{"GET", "/v2/health/live", 200, ""},
		{"GET", "/v2/health/ready", 200, ""},
		{"GET", "/v2", 200, `"binary_tensor_data"`},
		{"GET", "/v2/models/tinycnn", 200, `"shape":[-1,3,32,32]`},
		{"GET", "/v2/models/tinycnn/versions/1", 200, `"datatype":"FP32"`},
		{"GET", "/v2/models/tinycnn/versions/7", 404, `"error"`},
		{"GET", "/v2/models/tinycnn/ready", 200, ""},
		{"GET", "/v2/models/nope/ready", 404, `"error"`},
		{"GET", "/v2/models/nope", 404, `"error":`},
		{"GET", "/v2/models/tinycnn/config", 200, `"max_queue_delay_microseconds":2000`},
		{"GET", "/v2/models/tinycnn/config", 200, `"model_warmup":[{"batch_size":2,"count":1,"inputs":{"image":{"data_type":"TYPE_FP32","dims":[3,32,32],"random_data":true}},"name":"w"}]`},
		{"GET", "/v2/models/tinycnn/stats", 200, `"model_stats"`},
		{"POST", "/v2/repository/index", 200, `"name":"tinycnn","state":"READY"`},
		{"GET", "/v3", 404, `"error"`},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			resp, b := do(t, tt.method, ts.URL+tt.path, nil, nil)
			if resp.StatusCode != tt.code || !strings.Contains(string(b), tt.contains) {
				t.Errorf("%d %s, want %d containing %s", resp.StatusCode, b, tt.code, tt.contains)
			}
		})
	}
}

func jsonRequest(in *tensor.Tensor, binaryOut bool) []byte {
	body := map[string]any{
		"id":     "r1",
		"inputs": []any{map[string]any{"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}},
	}
	if binaryOut {
		body["outputs"] = []any{map[string]any{"name": "probabilities", "parameters": map[string]any{"binary_data": true}}}
	}
	b, _ := json.Marshal(body)
	return b
}

func TestInferJSON(t *testing.T) {
	ts, _, _ := startServer(t, 0)
	in := examples.TinyCNNInput(2)
	resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", nil, jsonRequest(in, false))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	var out struct {
		ModelName string `json:"model_name"`
		ID        string `json:"id"`
		Outputs   []struct {
			Name     string    `json:"name"`
			Datatype string    `json:"datatype"`
			Shape    []int     `json:"shape"`
			Data     []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.ModelName != "tinycnn" || out.ID != "r1" || len(out.Outputs) != 1 || out.Outputs[0].Datatype != "FP32" ||
		fmt.Sprint(out.Outputs[0].Shape) != "[2 10]" {
		t.Fatalf("response %s", b)
	}
	close32(t, out.Outputs[0].Data, direct(t, in), 1e-6)
}

// binaryRequest builds a request with the input as binary data.
func binaryRequest(in *tensor.Tensor, binaryOut bool) ([]byte, int) {
	hdr := map[string]any{
		"inputs": []any{map[string]any{"name": "image", "shape": in.Shape, "datatype": "FP32",
			"parameters": map[string]any{"binary_data_size": len(in.Data)}}},
		"parameters": map[string]any{"binary_data_output": binaryOut},
	}
	h, _ := json.Marshal(hdr)
	return append(h, in.Data...), len(h)
}

func TestInferBinary(t *testing.T) {
	ts, _, _ := startServer(t, 0)
	in := examples.TinyCNNInput(3)
	want := direct(t, in)
	for _, binOut := range []bool{false, true} {
		t.Run(fmt.Sprint("binary output ", binOut), func(t *testing.T) {
			body, n := binaryRequest(in, binOut)
			resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/versions/1/infer", map[string]string{HeaderLength: strconv.Itoa(n)}, body)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			var got []float32
			if binOut {
				hl, err := strconv.Atoi(resp.Header.Get(HeaderLength))
				if err != nil {
					t.Fatalf("no %s header", HeaderLength)
				}
				var hdr struct {
					Outputs []struct {
						Parameters map[string]int `json:"parameters"`
					} `json:"outputs"`
				}
				if err := json.Unmarshal(b[:hl], &hdr); err != nil {
					t.Fatal(err)
				}
				raw := b[hl:]
				if hdr.Outputs[0].Parameters["binary_data_size"] != len(raw) {
					t.Fatalf("binary_data_size %v, %d bytes", hdr.Outputs[0].Parameters, len(raw))
				}
				for i := 0; i+4 <= len(raw); i += 4 {
					got = append(got, math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
				}
			} else {
				var out struct {
					Outputs []struct {
						Data []float32 `json:"data"`
					} `json:"outputs"`
				}
				if err := json.Unmarshal(b, &out); err != nil {
					t.Fatal(err)
				}
				got = out.Outputs[0].Data
			}
			close32(t, got, want, 1e-6)
		})
	}
}

func TestInferErrors(t *testing.T) {
	ts, _, _ := startServer(t, 1<<20)
	good := jsonRequest(examples.TinyCNNInput(1), false)
	bad := func(s string) []byte { return []byte(s) }
	tests := []struct {
		name, path string
		hdr        map[string]string
		body       []byte
		code       int
	}{
		{"unknown model", "/v2/models/nope/infer", nil, good, 404},
		{"unknown version", "/v2/models/tinycnn/versions/2/infer", nil, good, 404},
		{"malformed json", "/v2/models/tinycnn/infer", nil, bad(`{"inputs": [`), 400},
		{"no inputs", "/v2/models/tinycnn/infer", nil, bad(`{"inputs": []}`), 400},
		{"wrong dtype", "/v2/models/tinycnn/infer", nil, bad(`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"INT64","data":[` + strings.Repeat("0,", 3071) + `0]}]}`), 400},
		{"wrong shape", "/v2/models/tinycnn/infer", nil, bad(`{"inputs":[{"name":"image","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`), 400},
		{"batch too big", "/v2/models/tinycnn/infer", nil, bad(`{"inputs":[{"name":"image","shape":[9,3,32,32,0],"datatype":"FP32","data":[]}]}`), 400},
		{"unknown input", "/v2/models/tinycnn/infer", nil, bad(`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`), 400},
		{"unknown output", "/v2/models/tinycnn/infer", nil, bad(strings.Replace(string(good), `"inputs"`, `"outputs":[{"name":"zz"}],"inputs"`, 1)), 400},
		{"too few elements", "/v2/models/tinycnn/infer", nil, bad(`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","data":[1]}]}`), 400},
		{"bad header length", "/v2/models/tinycnn/infer", map[string]string{HeaderLength: "x"}, good, 400},
		{"header length too big", "/v2/models/tinycnn/infer", map[string]string{HeaderLength: "99999999"}, good, 400},
		{"too big", "/v2/models/tinycnn/infer", nil, make([]byte, 2<<20), 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := do(t, "POST", ts.URL+tt.path, tt.hdr, tt.body)
			var e map[string]string
			if resp.StatusCode != tt.code || json.Unmarshal(b, &e) != nil || e["error"] == "" {
				t.Errorf("%d %s, want %d with an error", resp.StatusCode, b, tt.code)
			}
		})
	}
	// the server keeps serving
	if resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", nil, good); resp.StatusCode != 200 {
		t.Errorf("after errors: %d %s", resp.StatusCode, b)
	}
}

func TestRepositoryLoadUnload(t *testing.T) {
	ts, s, dir := startServer(t, 0)
	os.MkdirAll(filepath.Join(dir, "broken", "1"), 0o755)
	os.WriteFile(filepath.Join(dir, "broken", "1", "model.onnx"), []byte("junk"), 0o644)
	steps := []struct {
		path     string
		code     int
		contains string
	}{
		{"/v2/repository/models/tinycnn/unload", 200, ""},
		{"/v2/repository/index", 200, `"reason":"unloaded"`},
		{"/v2/repository/models/nope/unload", 404, "error"},
		{"/v2/repository/models/tinycnn/load", 200, ""},
		{"/v2/repository/models/broken/load", 400, "error"},
		{"/v2/repository/index", 200, `"name":"broken","reason":"repository: bad model`},
		{"/v2/repository/models/nope/load", 404, "error"},
	}
	for _, st := range steps {
		resp, b := do(t, "POST", ts.URL+st.path, nil, nil)
		if resp.StatusCode != st.code || !strings.Contains(string(b), st.contains) {
			t.Fatalf("%s: %d %s, want %d containing %s", st.path, resp.StatusCode, b, st.code, st.contains)
		}
	}
	if s.Ready() {
		t.Error("ready with a broken model")
	}
	if resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", nil, jsonRequest(examples.TinyCNNInput(1), false)); resp.StatusCode != 200 {
		t.Errorf("reloaded model: %d %s", resp.StatusCode, b)
	}
	if resp, _ := do(t, "GET", ts.URL+"/v2/models/broken/ready", nil, nil); resp.StatusCode != 503 {
		t.Errorf("broken model ready: %d", resp.StatusCode)
	}
}

func TestResnetMini(t *testing.T) {
	data := "../../../shared/models/resnet_mini/test_data_set_0"
	in, _, err := kiln.ReadTensorFile(filepath.Join(data, "input_0.pb"))
	if err != nil {
		t.Skipf("needs ../shared/models/resnet_mini: %v", err)
	}
	want, _, err := kiln.ReadTensorFile(filepath.Join(data, "output_0.pb"))
	if err != nil {
		t.Fatal(err)
	}
	ts, s, _ := startServer(t, 0)
	cfg, _, err := s.ModelConfig("resnet_mini", "")
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := json.Marshal(map[string]any{
		"inputs":     []any{map[string]any{"name": cfg.Inputs[0].Name, "shape": in.Shape, "datatype": DataTypeName(in.DType), "parameters": map[string]any{"binary_data_size": len(in.Data)}}},
		"parameters": map[string]any{"binary_data_output": true},
	})
	resp, b := do(t, "POST", ts.URL+"/v2/models/resnet_mini/infer", map[string]string{HeaderLength: strconv.Itoa(len(hdr))}, append(hdr, in.Data...))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	hl, _ := strconv.Atoi(resp.Header.Get(HeaderLength))
	got, err := tensor.FromBytes(tensor.Float32, want.Shape, b[hl:])
	if err != nil {
		t.Fatal(err)
	}
	close32(t, got.Float32s(), want.Float32s(), 1e-3)
}

func TestDecodeDatatypes(t *testing.T) {
	bytesBin := binary.LittleEndian.AppendUint32(nil, 2)
	bytesBin = append(bytesBin, "hi"...)
	bytesBin = binary.LittleEndian.AppendUint32(bytesBin, 0)
	tests := []struct {
		name  string
		input string
		bin   []byte
		check func(*tensor.Tensor) bool
	}{
		{"FP16", `{"name":"x","shape":[2],"datatype":"FP16","data":[1.5,-2]}`, nil,
			func(t *tensor.Tensor) bool { return t.Float(0) == 1.5 && t.Float(1) == -2 }},
		{"BF16", `{"name":"x","shape":[1],"datatype":"BF16","data":[2]}`, nil, func(t *tensor.Tensor) bool { return t.Float(0) == 2 }},
		{"BYTES json", `{"name":"x","shape":[2],"datatype":"BYTES","data":["a","bc"]}`, nil,
			func(t *tensor.Tensor) bool { return t.Strings[1] == "bc" }},
		{"BYTES binary", `{"name":"x","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":10}}`, bytesBin,
			func(t *tensor.Tensor) bool { return t.Strings[0] == "hi" && t.Strings[1] == "" }},
		{"nested", `{"name":"x","shape":[2,2],"datatype":"INT32","data":[[1,2],[3,4]]}`, nil,
			func(t *tensor.Tensor) bool { return t.Int32s()[3] == 4 }},
		{"INT64 big", `{"name":"x","shape":[1],"datatype":"INT64","data":[9007199254740993]}`, nil,
			func(t *tensor.Tensor) bool { return t.Int64s()[0] == 9007199254740993 }},
		{"UINT64", `{"name":"x","shape":[1],"datatype":"UINT64","data":[18446744073709551615]}`, nil,
			func(t *tensor.Tensor) bool { return t.Uint64s()[0] == math.MaxUint64 }},
		{"BOOL", `{"name":"x","shape":[2],"datatype":"BOOL","data":[true,false]}`, nil,
			func(t *tensor.Tensor) bool { return t.Bools()[0] && !t.Bools()[1] }},
		{"UINT8 binary", `{"name":"x","shape":[3],"datatype":"UINT8","parameters":{"binary_data_size":3}}`, []byte{1, 2, 255},
			func(t *tensor.Tensor) bool { return t.Uint8s()[2] == 255 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := []byte(`{"inputs":[` + tt.input + `]}`)
			n := -1
			if tt.bin != nil {
				n = len(h)
			}
			d, err := DecodeRequest(append(h, tt.bin...), n)
			if err != nil {
				t.Fatal(err)
			}
			if x := d.Inputs["x"]; !tt.check(x) {
				t.Errorf("decoded %v", x)
			}
			// and back: JSON output encodes every type
			if _, err := json.Marshal(jsonData(d.Inputs["x"])); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct{ name, body string }{
		{"int out of range", `{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[300]}]}`},
		{"not a number", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}]}`},
		{"unknown type", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP8","data":[1]}]}`},
		{"negative dim", `{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}`},
		{"duplicate", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]},{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`},
		{"no name", `{"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]}`},
		{"binary missing", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}`},
		{"bad priority", `{"parameters":{"priority":-1},"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`},
		{"huge shape", `{"inputs":[{"name":"x","shape":[1099511627776,1099511627776],"datatype":"FP32","data":[]}]}`},
		{"no data", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeRequest([]byte(tt.body), -1); !errors.Is(err, ErrDecode) {
				t.Errorf("err = %v, want ErrDecode", err)
			}
		})
	}
}

func TestModelControlDisabled(t *testing.T) {
	s := serve.New(serve.Options{})
	ts := httptest.NewServer(New(s, Options{DisableModelControl: true}))
	defer ts.Close()
	for _, p := range []string{"/v2/repository/models/m/load", "/v2/repository/models/m/unload"} {
		if resp, b := do(t, "POST", ts.URL+p, nil, nil); resp.StatusCode != http.StatusNotImplemented {
			t.Errorf("%s: %d %s, want 501", p, resp.StatusCode, b)
		}
	}
}

func TestBearerTokens(t *testing.T) {
	s := serve.New(serve.Options{})
	ts := httptest.NewServer(New(s, Options{InferToken: "inf", AdminToken: "adm"}))
	defer ts.Close()
	tests := []struct {
		method, path, token string
		code                int
	}{
		{"GET", "/v2/health/ready", "", 200},
		{"GET", "/v2", "", 401},
		{"GET", "/v2", "adm", 401},
		{"GET", "/v2", "inf", 200},
		{"POST", "/v2/repository/index", "inf", 401},
		{"POST", "/v2/repository/index", "adm", 200},
		{"GET", "/v2/models/m", "inf", 404},
	}
	for _, tt := range tests {
		hdr := map[string]string{}
		if tt.token != "" {
			hdr["Authorization"] = "Bearer " + tt.token
		}
		if resp, b := do(t, tt.method, ts.URL+tt.path, hdr, nil); resp.StatusCode != tt.code {
			t.Errorf("%s %s with %q: %d %s, want %d", tt.method, tt.path, tt.token, resp.StatusCode, b, tt.code)
		}
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{serve.ErrQueueFull, 429},
		{fmt.Errorf("x: %w", serve.ErrNotReady), 503},
		{serve.ErrNotFound, 404},
		{serve.ErrInvalid, 400},
		{ErrDecode, 400},
		{&http.MaxBytesError{Limit: 1}, 413},
		{fmt.Errorf("%w: reading: %w", ErrBodyTimeout, os.ErrDeadlineExceeded), 408},
		{fmt.Errorf("%w: bad model version", ErrVersion), 400},
		{fmt.Errorf("model m: %w", serve.ErrQueueFull), 429},
		{fmt.Errorf("%w: model m: %w", serve.ErrWarmup, errors.New("backend")), 400},
		{errors.New("boom"), 500},
	}
	for _, tt := range tests {
		if got := Status(tt.err); got != tt.code {
			t.Errorf("Status(%v) = %d, want %d", tt.err, got, tt.code)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	in := examples.TinyCNNInput(1)
	f.Add(jsonRequest(in, true), -1)
	b, n := binaryRequest(in, false)
	f.Add(b, n)
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":5}}]}`+"\x01\x00\x00\x00a"), 88)
	f.Add([]byte(`{"inputs":[{"data":[[1,2],[3]],"name":"image","datatype":"FP32","shape":[1,3]}],"id":"\u00e9"}`), -1)
	f.Add(lyingRequest(4096, 1<<20), -1)
	f.Fuzz(func(t *testing.T, body []byte, n int) {
		d, err := DecodeRequest(body, n)
		// with tinycnn's schema: what it accepts, the plain decoder
		// accepts alike; its refusals are ErrDecode or serve.ErrInvalid
		ds, errSchema := DecodeRequestFor(body, n, tinySchema)
		if errSchema != nil && !errors.Is(errSchema, ErrDecode) && !errors.Is(errSchema, serve.ErrInvalid) {
			t.Fatalf("error %v with a schema is neither ErrDecode nor serve.ErrInvalid", errSchema)
		}
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v is not ErrDecode", err)
			}
			if errSchema == nil {
				t.Fatalf("refused without a schema (%v), accepted with one", err)
			}
			return
		}
		for name, x := range d.Inputs {
			if x.DType == tensor.String && len(x.Strings) != x.Len() || x.DType != tensor.String && len(x.Data) != x.Len()*x.DType.Size() {
				t.Fatalf("input %s: inconsistent tensor %v", name, x.Shape)
			}
			if errSchema != nil {
				continue
			}
			if y := ds.Inputs[name]; y == nil || !bytes.Equal(x.Data, y.Data) || !slices.Equal(x.Strings, y.Strings) {
				t.Fatalf("input %s decodes differently with a schema", name)
			}
		}
	})
}
