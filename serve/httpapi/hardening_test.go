package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/coder/websocket"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// tinyServer serves the bundled tinycnn model as "tinycnn" (max_batch_size
// 8, its inputs [-1,3,32,32] FP32); edit changes its config before it is
// served, wrap (when set) wraps its runner.
func tinyServer(t testing.TB, opts Options, edit func(*repository.Config), wrap func(string, scheduler.Runner) scheduler.Runner) (*httptest.Server, *serve.Server) {
	t.Helper()
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	rm.Config.MaxBatchSize = 8
	// one instance (kiln's default for an ONNX model is Triton's, 2 on the
	// CPU): the tests hold it to queue requests behind it
	rm.Config.InstanceGroups = []repository.InstanceGroup{{Count: 1, Kind: "KIND_CPU"}}
	if edit != nil {
		edit(rm.Config)
	}
	s := serve.New(serve.Options{WrapRunner: wrap})
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(s, opts))
	t.Cleanup(func() { ts.Close(); s.Shutdown(context.Background()) })
	return ts, s
}

// allocated returns the bytes allocated while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

var tinySchema = &Schema{Model: "tinycnn", MaxBatchSize: 8,
	Inputs:  []repository.IO{{Name: "image", DataType: tensor.Float32, Dims: []int64{3, 32, 32}}},
	Outputs: []repository.IO{{Name: "probabilities", DataType: tensor.Float32, Dims: []int64{10}}}}

// TestDecodeMemoryBound (issue 9, item 3): decoding allocates the tensors
// and a constant, never a multiple of the body in boxed values; a request
// whose declared shape the model refuses, or that declares more elements
// than its body can hold, is refused before its data is decoded.
func TestDecodeMemoryBound(t *testing.T) {
	const slack = 64 << 10
	in8 := examples.TinyCNNInput(8)
	tensorBytes := uint64(len(in8.Data))
	jsonBody := jsonRequest(in8, false)
	binBody, binHdr := binaryRequest(in8, false)
	lying := lyingRequest(8<<20, 30_000_000)
	lyingTiny := []byte(`{"inputs":[{"name":"image","shape":[30000000],"datatype":"FP32","data":[` + strings.Repeat("0.5,", 1<<20) + `1]}]}`)
	tests := []struct {
		name      string
		body      []byte
		headerLen int
		schema    *Schema
		ok        bool
		max       uint64
	}{
		{"json valid", jsonBody, -1, nil, true, 2*tensorBytes + slack},
		{"json valid with schema", jsonBody, -1, tinySchema, true, 2*tensorBytes + slack},
		{"binary valid", binBody, binHdr, tinySchema, true, 2*tensorBytes + slack},
		// 30M elements do not fit in 8 MB of JSON: refused before allocating
		{"lying count", lying, -1, nil, false, slack},
		// the model's shape is [-1,3,32,32]: refused at the shape
		{"lying shape with schema", lyingTiny, -1, tinySchema, false, slack},
		// without a schema, 30M elements do not fit in 4 MB either
		{"lying tiny without schema", lyingTiny, -1, nil, false, slack},
		// 1M declared elements fit 4 MB of JSON but fewer come: the tensor
		// (4 bytes per element, at least 2 bytes of JSON each) is the cost
		{"lying plausible count", lyingRequest(4<<20, 1<<20), -1, nil, false, 2*(4<<20) + slack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			got := allocated(func() { _, err = DecodeRequestFor(tt.body, tt.headerLen, tt.schema) })
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrDecode) && !errors.Is(err, serve.ErrInvalid) {
				t.Fatalf("err = %v, want ErrDecode or serve.ErrInvalid", err)
			}
			t.Logf("body %d bytes, allocated %d bytes (bound %d)", len(tt.body), got, tt.max)
			if got > tt.max {
				t.Errorf("allocated %d bytes decoding a %d-byte body, bound %d", got, len(tt.body), tt.max)
			}
		})
	}
}

// TestHTTPMemoryBound (item 3) sends the requests through the
// handler: a lying 8 MB body is refused at its shape, allocating what
// reading the body costs (a buffer that doubles as the bytes come, so that
// a client that declares much and sends little holds little: at most twice
// the body), and a binary request reads its data straight into the tensor.
func TestHTTPMemoryBound(t *testing.T) {
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	rm.Config.MaxBatchSize = 8
	s := serve.New(serve.Options{})
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	h := New(s, Options{})
	lying := lyingRequest(8<<20, 30_000_000)
	in := examples.TinyCNNInput(8)
	bin, hl := binaryRequest(in, true)
	tests := []struct {
		name string
		body []byte
		hdr  map[string]string
		code int
		max  uint64
	}{
		{"lying shape", lying, nil, 400, 2*uint64(len(lying)) + 256<<10},
		// the run of a batch of 8 is part of the request
		{"binary", bin, map[string]string{HeaderLength: strconv.Itoa(hl)}, 200, 2*uint64(len(in.Data)) + 2<<20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec *httptest.ResponseRecorder
			got := allocated(func() {
				req := httptest.NewRequest("POST", "/v2/models/tinycnn/infer", bytes.NewReader(tt.body))
				for k, v := range tt.hdr {
					req.Header.Set(k, v)
				}
				rec = httptest.NewRecorder()
				h.ServeHTTP(rec, req)
			})
			if rec.Code != tt.code {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body.Bytes(), tt.code)
			}
			t.Logf("body %d bytes, allocated %d bytes (bound %d)", len(tt.body), got, tt.max)
			if got > tt.max {
				t.Errorf("allocated %d bytes for a %d-byte body, bound %d", got, len(tt.body), tt.max)
			}
		})
	}
}

// TestStreamLyingMessages (item 3): three lying WebSocket messages on one
// stream are answered 400 each, and the stream goes on.
func TestStreamLyingMessages(t *testing.T) {
	ts, _ := tinyServer(t, Options{}, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/v2/models/tinycnn/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	lying := lyingRequest(4<<20, 30_000_000)
	lying = bytes.Replace(lying, []byte(`{"inputs"`), []byte(`{"id":"liar","inputs"`), 1)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	for range 3 {
		if err := c.Write(ctx, websocket.MessageText, lying); err != nil {
			t.Fatal(err)
		}
	}
	good := jsonRequest(examples.TinyCNNInput(1), false)
	if err := c.Write(ctx, websocket.MessageText, good); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			ID    string `json:"id"`
			Error string `json:"error"`
			Code  int    `json:"code"`
		}
		if err := json.Unmarshal(msg, &r); err != nil {
			t.Fatal(err)
		}
		switch {
		case i < 3 && (r.Code != 400 || r.ID != "liar" || !strings.Contains(r.Error, "shape")):
			t.Errorf("lying message %d: %+v, want 400 with its id and the shape", i, r)
		case i == 3 && (r.Code != 0 || r.ID != "r1"):
			t.Errorf("good message after lying ones: %s", msg)
		}
	}
	runtime.ReadMemStats(&ms)
	// each message is read into memory once by the WebSocket library
	// (which grows its buffer: about 2.5 times the message, more under the
	// race detector), never decoded into boxed values (which cost about 37
	// times the message before the fix)
	if got, bound := ms.TotalAlloc-before, uint64(3*8*len(lying)+(4<<20)); got > bound {
		t.Errorf("three %d-byte lying messages allocated %d bytes, bound %d", len(lying), got, bound)
	} else {
		t.Logf("three %d-byte lying messages allocated %d bytes", len(lying), got)
	}
}

// TestDecodeSchema: declared inputs are checked against the model before
// their data: the data of a refused input is never looked at.
func TestDecodeSchema(t *testing.T) {
	garbage := `"data":[not json at all`
	tests := []struct {
		name, input string
		want        string // in the error; "" for success
	}{
		{"unknown input", `{"name":"x","shape":[1,3,32,32],"datatype":"FP32",` + garbage, `no input "x"`},
		{"wrong datatype", `{"name":"image","shape":[1,3,32,32],"datatype":"INT64",` + garbage, "wants FP32"},
		{"wrong rank", `{"name":"image","shape":[1,30000000],"datatype":"FP32",` + garbage, "does not match"},
		{"no batch", `{"name":"image","shape":[30000000],"datatype":"FP32",` + garbage, "batch size must be 1..8"},
		{"wrong dim", `{"name":"image","shape":[1,3,32,31],"datatype":"FP32",` + garbage, "does not match"},
		{"batch 0", `{"name":"image","shape":[0,3,32,32],"datatype":"FP32",` + garbage, "batch size must be 1..8"},
		{"batch 9", `{"name":"image","shape":[9,3,32,32],"datatype":"FP32",` + garbage, "batch size must be 1..8"},
		{"binary size", `{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"binary_data_size":12}}`, "binary_data_size 12"},
		{"data before shape", `{"data":[` + strings.Repeat("1,", 3071) + `2],"name":"image","datatype":"FP32","shape":[1,3,32,32]}`, ""},
		{"data before shape, refused", `{"data":[1,2],"name":"image","datatype":"FP32","shape":[1,3,32,32,1]}`, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := DecodeRequestFor([]byte(`{"inputs":[`+tt.input+`]}`), -1, tinySchema)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if x := d.Inputs["image"]; x.Float32s()[3071] != 2 {
					t.Errorf("last value %v", x.Float32s()[3071])
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if !errors.Is(err, serve.ErrInvalid) && !errors.Is(err, ErrDecode) {
				t.Errorf("err = %v, want serve.ErrInvalid or ErrDecode", err)
			}
		})
	}
	// outputs are checked as they come, before the inputs that follow
	_, err := DecodeRequestFor([]byte(`{"outputs":[{"name":"zz"}],"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32",`+garbage+`}]}`), -1, tinySchema)
	if !errors.Is(err, serve.ErrInvalid) || !strings.Contains(err.Error(), `no output "zz"`) {
		t.Errorf("unknown output: err = %v", err)
	}
}

// TestDecodeStrict: what encoding/json let through and a KServe request
// may not have.
func TestDecodeStrict(t *testing.T) {
	valid := `{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2]}]}`
	tests := []struct {
		name, body string
		ok         bool
	}{
		{"valid", valid, true},
		{"trailing white space", valid + " \n\t", true},
		{"trailing garbage", valid + "x", false},
		{"two objects", valid + valid, false},
		{"trailing comma", valid + ",", false},
		{"number +1", strings.Replace(valid, "[1,2]", "[+1,2]", 1), false},
		{"number 01", strings.Replace(valid, "[1,2]", "[01,2]", 1), false},
		{"number 1.", strings.Replace(valid, "[1,2]", "[1.,2]", 1), false},
		{"number .5", strings.Replace(valid, "[1,2]", "[.5,2]", 1), false},
		{"NaN", strings.Replace(valid, "[1,2]", "[NaN,2]", 1), false},
		{"Infinity", strings.Replace(valid, "[1,2]", "[Infinity,2]", 1), false},
		{"hex", strings.Replace(valid, "[1,2]", "[0x1,2]", 1), false},
		{"FP32 overflow", strings.Replace(valid, "[1,2]", "[1e39,2]", 1), false},
		{"exponent", strings.Replace(valid, "[1,2]", "[1e-3,2E+2]", 1), true},
		{"negative zero", strings.Replace(valid, "[1,2]", "[-0,-0.0]", 1), true},
		{"shape 2.0", strings.Replace(valid, "[2]", "[2.0]", 1), false},
		{"shape 2e0", strings.Replace(valid, "[2]", "[2e0]", 1), false},
		{"duplicate key", strings.Replace(valid, `"datatype":"FP32"`, `"datatype":"FP32","datatype":"FP32"`, 1), false},
		{"duplicate inputs", `{"inputs":[],` + valid[1:], false},
		{"unknown keys skipped", `{"x":{"y":[1,{"z":null}]},` + valid[1:], true},
		{"null outputs", `{"outputs":null,` + valid[1:], true},
		{"output without name", `{"outputs":[{}],` + valid[1:], false},
		{"output twice", `{"outputs":[{"name":"y"},{"name":"y"}],` + valid[1:], false},
		{"id not a string", `{"id":1,` + valid[1:], false},
		{"control character", `{"id":"a` + "\x01" + `",` + valid[1:], false},
		{"empty", ``, false},
		{"array", `[]`, false},
		{"parameters too big", `{"parameters":{"x":"` + strings.Repeat("a", maxParamsBytes) + `"},` + valid[1:], false},
		{"data nested too deep", strings.Replace(valid, "[1,2]", strings.Repeat("[", 40)+"1,2"+strings.Repeat("]", 40), 1), false},
		{"data nested", strings.Replace(valid, "[1,2]", "[[1],[[2]]]", 1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRequest([]byte(tt.body), -1)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrDecode) {
				t.Errorf("err = %v, want ErrDecode", err)
			}
		})
	}
}

// TestDecodeValues: every value encoding/json writes comes back exactly.
func TestDecodeValues(t *testing.T) {
	f32 := []float32{0, -0.5, 1.0 / 3, 3.4028235e38, 1.4e-45, -1e-7, 123456.79}
	f64 := []float64{0, 1.0 / 3, 1.7976931348623157e308, 5e-324, -2.5}
	i64 := []int64{-9223372036854775808, 9223372036854775807, 0, -1}
	strs := []string{"", "a\"b\\c", "é\u2028\U0001F600", "\x7f/\t"}
	body, _ := json.Marshal(map[string]any{"id": "q\"\\é", "inputs": []any{
		map[string]any{"name": "f32", "shape": []int{len(f32)}, "datatype": "FP32", "data": f32},
		map[string]any{"name": "f64", "shape": []int{len(f64)}, "datatype": "FP64", "data": f64},
		map[string]any{"name": "i64", "shape": []int{2, 2}, "datatype": "INT64", "data": [][]int64{i64[:2], i64[2:]}},
		map[string]any{"name": "s", "shape": []int{len(strs)}, "datatype": "BYTES", "data": strs},
	}})
	d, err := DecodeRequest(body, -1)
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != "q\"\\é" {
		t.Errorf("id %q", d.ID)
	}
	for i, v := range d.Inputs["f32"].Float32s() {
		if v != f32[i] {
			t.Errorf("f32[%d] = %v, want %v", i, v, f32[i])
		}
	}
	for i, v := range d.Inputs["f64"].Float64s() {
		if v != f64[i] {
			t.Errorf("f64[%d] = %v, want %v", i, v, f64[i])
		}
	}
	for i, v := range d.Inputs["i64"].Int64s() {
		if v != i64[i] {
			t.Errorf("i64[%d] = %v, want %v", i, v, i64[i])
		}
	}
	for i, v := range d.Inputs["s"].Strings {
		if v != strs[i] {
			t.Errorf("s[%d] = %q, want %q", i, v, strs[i])
		}
	}
	// escapes encoding/json does not write
	d, err = DecodeRequest([]byte(`{"id":"\ud83d\ude00\u00e9\/\b\f\n\r\t\ud800","inputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":[true]}]}`), -1)
	if err != nil {
		t.Fatal(err)
	}
	if want := "\U0001F600é/\b\f\n\r\t\uFFFD"; d.ID != want {
		t.Errorf("id %q, want %q", d.ID, want)
	}
}

// TestReadRequest: the body read from a stream, with the length known or
// not (chunked), binary data straight into the tensors.
func TestReadRequest(t *testing.T) {
	in := examples.TinyCNNInput(2)
	bin, hl := binaryRequest(in, false)
	js := jsonRequest(in, false)
	tests := []struct {
		name      string
		body      []byte
		length    int64
		headerLen int
		limit     int64
		want      error // nil: success
	}{
		{"binary", bin, int64(len(bin)), hl, 1 << 20, nil},
		{"binary chunked", bin, -1, hl, 1 << 20, nil},
		{"json", js, int64(len(js)), -1, 1 << 20, nil},
		{"json chunked", js, -1, -1, 1 << 20, nil},
		{"binary short", bin[:len(bin)-1], -1, hl, 1 << 20, ErrDecode},
		{"binary long", append(bin[:len(bin):len(bin)], 0), -1, hl, 1 << 20, ErrDecode},
		{"binary length mismatch", bin, int64(len(bin) + 1), hl, 1 << 20, ErrDecode},
		{"header beyond the body", bin, int64(len(bin)), len(bin) + 1, 1 << 20, ErrDecode},
		{"binary above the limit", bin, -1, hl, int64(hl) + 100, ErrDecode},
		{"body above the limit", js, int64(len(js)), -1, 100, &http.MaxBytesError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ReadRequest(bytes.NewReader(tt.body), tt.length, tt.headerLen, tt.limit, tinySchema)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				x := d.Inputs["image"]
				if !bytes.Equal(x.Data, in.Data) {
					t.Error("data differs")
				}
				if len(x.Data) > 0 && uintptr(unsafe.Pointer(&x.Data[0]))%tensor.Alignment != 0 {
					t.Error("tensor data not aligned")
				}
				return
			}
			var mb *http.MaxBytesError
			if _, wantMax := tt.want.(*http.MaxBytesError); wantMax && !errors.As(err, &mb) || !wantMax && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if Status(err) != 400 && Status(err) != 413 {
				t.Errorf("status %d", Status(err))
			}
		})
	}
}

// TestMethodNotAllowed (item 10): a known route with another method is
// 405 with an Allow header and a JSON error; an unknown path is 404.
func TestMethodNotAllowed(t *testing.T) {
	ts, _ := tinyServer(t, Options{}, nil, nil)
	tests := []struct {
		method, path string
		code         int
		allow        string
	}{
		{"POST", "/v2/health/live", 405, "GET, HEAD"},
		{"PUT", "/v2", 405, "GET, HEAD"},
		{"GET", "/v2/models/tinycnn/infer", 405, "POST"},
		{"DELETE", "/v2/models/tinycnn", 405, "GET, HEAD"},
		{"GET", "/v2/repository/index", 405, "POST"},
		{"GET", "/v2/repository/models/tinycnn/load", 405, "POST"},
		{"POST", "/v2/models/tinycnn/versions/1/stream", 405, "GET, HEAD"},
		{"GET", "/v2/nope", 404, ""},
		{"POST", "/nope", 404, ""},
		{"GET", "/v2/models/tinycnn/infer/x", 404, ""},
		{"HEAD", "/v2/health/ready", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, b := do(t, tt.method, ts.URL+tt.path, nil, nil)
			if resp.StatusCode != tt.code {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, tt.code)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			var e map[string]string
			if tt.code >= 400 && tt.method != "HEAD" && (json.Unmarshal(b, &e) != nil || e["error"] == "") {
				t.Errorf("body %s, want a JSON error", b)
			}
		})
	}
}

// TestBearerScheme (item 10): the scheme is case-insensitive; the token is
// not.
func TestBearerScheme(t *testing.T) {
	ts, _ := tinyServer(t, Options{InferToken: "Sec", AdminToken: "adm"}, nil, nil)
	tests := []struct {
		auth string
		code int
	}{
		{"Bearer Sec", 200},
		{"bearer Sec", 200},
		{"BEARER Sec", 200},
		{"bEaReR  Sec ", 200},
		{"Bearer sec", 401},
		{"Bearer", 401},
		{"Bearer ", 401},
		{"BearerSec", 401},
		{"Basic Sec", 401},
		{"Sec", 401},
		{"", 401},
	}
	for _, tt := range tests {
		resp, b := do(t, "GET", ts.URL+"/v2/models/tinycnn", map[string]string{"Authorization": tt.auth}, nil)
		if resp.StatusCode != tt.code {
			t.Errorf("Authorization %q: %d %s, want %d", tt.auth, resp.StatusCode, b, tt.code)
		}
	}
	if resp, b := do(t, "POST", ts.URL+"/v2/repository/index", map[string]string{"Authorization": "bearer adm"}, nil); resp.StatusCode != 200 {
		t.Errorf("admin with a lowercase scheme: %d %s", resp.StatusCode, b)
	}
}

// TestVersionCanonical (item 10): a version is a decimal number without
// sign, spaces or leading zeros on every route that takes one.
func TestVersionCanonical(t *testing.T) {
	ts, _ := tinyServer(t, Options{}, nil, nil)
	good := jsonRequest(examples.TinyCNNInput(1), false)
	versions := []struct {
		v    string // path segment, escaped
		code int
	}{
		{"1", 200},
		{"2", 404},
		{"%2B1", 400}, // +1
		{"01", 400},
		{"1%20", 400}, // "1 "
		{"%201", 400},
		{"-1", 400},
		{"1.0", 400},
		{"0x1", 400},
		{"1e0", 400},
		{"99999999999999999999", 400},
		{"%EF%BC%91", 400}, // a full-width digit one
	}
	for _, v := range versions {
		base := ts.URL + "/v2/models/tinycnn/versions/" + v.v
		for _, r := range []struct{ method, suffix string }{{"POST", "/infer"}, {"GET", ""}, {"GET", "/ready"}, {"GET", "/config"}, {"GET", "/stats"}} {
			resp, b := do(t, r.method, base+r.suffix, nil, good)
			if resp.StatusCode != v.code {
				t.Errorf("%s %s: %d %s, want %d", r.method, base+r.suffix, resp.StatusCode, b, v.code)
			}
			if v.code == 400 && !strings.Contains(string(b), "model version") {
				t.Errorf("%s %s: %s, want an error naming the version", r.method, base+r.suffix, b)
			}
		}
	}
	// the stream refuses it before upgrading
	_, resp, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(ts.URL, "http")+"/v2/models/tinycnn/versions/01/stream", nil)
	if err == nil || resp == nil || resp.StatusCode != 400 {
		t.Errorf("stream with version 01: %v, %v", resp, err)
	}
}

// TestTrailingGarbageHTTP (item 10): bytes after the JSON body are a 400.
func TestTrailingGarbageHTTP(t *testing.T) {
	ts, _ := tinyServer(t, Options{}, nil, nil)
	good := jsonRequest(examples.TinyCNNInput(1), false)
	for _, tail := range []string{"x", "{}", `{"inputs":[]}`, "\x00"} {
		resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", nil, append(good[:len(good):len(good)], tail...))
		if resp.StatusCode != 400 || !strings.Contains(string(b), "after the end of the JSON") {
			t.Errorf("body + %q: %d %s, want 400", tail, resp.StatusCode, b)
		}
	}
	if resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", nil, append(good[:len(good):len(good)], " \r\n"...)); resp.StatusCode != 200 {
		t.Errorf("trailing white space: %d %s", resp.StatusCode, b)
	}
}

// tripwire is a request body that records whether it was read.
type tripwire struct {
	mu    sync.Mutex
	reads int
}

func (w *tripwire) Read(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reads++
	return 0, io.EOF
}

// TestOverloadRefusedBeforeBody (item 10): when the model's queue is full,
// a request is answered 429 without its body being read; on a stream, a
// message is answered 429 with its id without being decoded. Unknown
// models and bad versions are refused before the body too.
func TestOverloadRefusedBeforeBody(t *testing.T) {
	g := &gated{gate: make(chan struct{}), started: make(chan struct{}, 10)}
	ts, s := tinyServer(t, Options{}, func(c *repository.Config) {
		c.MaxBatchSize = 1
		c.DynamicBatching = &repository.DynamicBatching{DefaultQueuePolicy: repository.QueuePolicy{MaxQueueSize: 1}}
	}, func(_ string, r scheduler.Runner) scheduler.Runner { g.r = r; return g })
	var once sync.Once
	open := func() { once.Do(func() { close(g.gate) }) }
	defer open()
	body := jsonRequest(examples.TinyCNNInput(1), false)
	codes := make(chan int, 2)
	post := func() {
		resp, err := http.Post(ts.URL+"/v2/models/tinycnn/infer", "application/json", bytes.NewReader(body))
		if err != nil {
			codes <- 0
			return
		}
		resp.Body.Close()
		codes <- resp.StatusCode
	}
	go post() // runs
	<-g.started
	go post() // waits in the queue
	for s.Pending()[[2]string{"tinycnn", "1"}] != 1 {
		time.Sleep(time.Millisecond)
	}

	h := New(s, Options{})
	for _, tt := range []struct {
		path string
		code int
	}{
		{"/v2/models/tinycnn/infer", 429},
		{"/v2/models/tinycnn/versions/1/infer", 429},
		{"/v2/models/nope/infer", 404},
		{"/v2/models/tinycnn/versions/3/infer", 404},
		{"/v2/models/tinycnn/versions/01/infer", 400},
	} {
		w := &tripwire{}
		req := httptest.NewRequest("POST", tt.path, w)
		req.ContentLength = 60 << 20
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.code || w.reads != 0 {
			t.Errorf("%s: %d %s after %d reads of the body, want %d without reading it", tt.path, rec.Code, rec.Body.Bytes(), w.reads, tt.code)
		}
	}
	st, err := s.ModelStats("tinycnn", "")
	if err != nil || len(st) != 1 || st[0].FailCount != 2 {
		t.Errorf("stats %+v, %v: want the 2 early refusals counted as failures", st, err)
	}

	// a real client on loopback whose body never comes still gets its 429
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", ts.URL+"/v2/models/tinycnn/infer", pr)
	req.ContentLength = 1 << 20
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Errorf("client with a stalled body: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != 429 {
			t.Errorf("client with a stalled body: %d, want 429", resp.StatusCode)
		}
	}

	// a stream message: 429 with its id
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/v2/models/tinycnn/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	hdr := []byte(`{"id":"over","inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"binary_data_size":12288}}]}`)
	msg := binary.LittleEndian.AppendUint32(nil, uint32(len(hdr)))
	msg = append(append(msg, hdr...), make([]byte, 12288)...)
	if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
		t.Fatal(err)
	}
	_, reply, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		ID   string `json:"id"`
		Code int    `json:"code"`
	}
	if json.Unmarshal(reply, &r) != nil || r.ID != "over" || r.Code != 429 {
		t.Errorf("stream message with a full queue: %s, want 429 with id \"over\"", reply)
	}

	open()
	for range 2 {
		if c := <-codes; c != 200 {
			t.Errorf("admitted request: %d", c)
		}
	}
	// with room in the queue, requests are served again
	if resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", nil, body); resp.StatusCode != 200 {
		t.Errorf("after the overload: %d %s", resp.StatusCode, b)
	}
}

// TestStreamOutlivesServerTimeouts: a stream served by an http.Server with
// read and write timeouts keeps working after they pass.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	s := serve.New(serve.Options{})
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	ts := httptest.NewUnstartedServer(New(s, Options{}))
	ts.Config.ReadTimeout = 100 * time.Millisecond
	ts.Config.WriteTimeout = 100 * time.Millisecond
	ts.Start()
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/v2/models/tinycnn/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	time.Sleep(300 * time.Millisecond) // past both timeouts
	for i := range 2 {
		if err := c.Write(ctx, websocket.MessageText, jsonRequest(examples.TinyCNNInput(1), false)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if !bytes.Contains(msg, []byte(`"outputs"`)) {
			t.Fatalf("reply %d: %s", i, msg)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

func TestRequestID(t *testing.T) {
	for hdr, want := range map[string]string{
		`{"id":"a"}`:                           "a",
		`{"inputs":[{"x":[1,2]}],"id":"b\"c"}`: "b\"c",
		`{"inputs":[`:                          "",
		`{"id":1}`:                             "",
		`[]`:                                   "",
		``:                                     "",
	} {
		if got := requestID([]byte(hdr)); got != want {
			t.Errorf("requestID(%s) = %q, want %q", hdr, got, want)
		}
	}
}

// TestAdmit: Server.Admit refuses early only what no priority level could
// take: a level without a bound, or with room, admits.
func TestAdmit(t *testing.T) {
	bounded := repository.QueuePolicy{MaxQueueSize: 1}
	tests := []struct {
		name   string
		db     *repository.DynamicBatching
		queued []int // priorities of the requests queued behind the running one
		want   error
	}{
		{"no dynamic batching", nil, nil, nil},
		{"unbounded queue", &repository.DynamicBatching{}, []int{0, 0}, nil},
		{"one level with room", &repository.DynamicBatching{DefaultQueuePolicy: repository.QueuePolicy{MaxQueueSize: 2}}, []int{0}, nil},
		{"one level full", &repository.DynamicBatching{DefaultQueuePolicy: bounded}, []int{0}, serve.ErrQueueFull},
		{"low level full, high level unbounded", &repository.DynamicBatching{PriorityLevels: 2,
			PriorityQueuePolicy: map[uint64]repository.QueuePolicy{2: bounded}}, []int{2}, nil},
		{"low level full, high level has room", &repository.DynamicBatching{PriorityLevels: 2, DefaultQueuePolicy: bounded}, []int{2}, nil},
		{"every level full", &repository.DynamicBatching{PriorityLevels: 2, DefaultQueuePolicy: bounded}, []int{1, 2}, serve.ErrQueueFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &gated{gate: make(chan struct{}), started: make(chan struct{}, 10)}
			_, s := tinyServer(t, Options{}, func(c *repository.Config) {
				c.MaxBatchSize = 1
				c.DynamicBatching = tt.db
			}, func(_ string, r scheduler.Runner) scheduler.Runner { g.r = r; return g })
			infer := func(prio int) {
				s.Infer(context.Background(), &serve.InferRequest{Model: "tinycnn", Priority: prio,
					Inputs: map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1)}})
			}
			var wg sync.WaitGroup
			defer wg.Wait()
			defer close(g.gate)
			wg.Go(func() { infer(0) })
			<-g.started
			for i, p := range tt.queued {
				wg.Go(func() { infer(p) })
				for s.Pending()[[2]string{"tinycnn", "1"}] != i+1 {
					time.Sleep(time.Millisecond)
				}
			}
			if err := s.Admit("tinycnn", ""); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Admit = %v, want %v", err, tt.want)
			}
			if err := s.Admit("tinycnn", "1"); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Admit of version 1 = %v, want %v", err, tt.want)
			}
		})
	}
	_, s := tinyServer(t, Options{}, nil, nil)
	for _, tt := range []struct {
		model, version string
		want           error
	}{
		{"nope", "", serve.ErrNotFound},
		{"tinycnn", "7", serve.ErrNotFound},
	} {
		if err := s.Admit(tt.model, tt.version); !errors.Is(err, tt.want) {
			t.Errorf("Admit(%q, %q) = %v, want %v", tt.model, tt.version, err, tt.want)
		}
	}
	s.Shutdown(context.Background())
	if err := s.Admit("tinycnn", ""); !errors.Is(err, serve.ErrNotReady) {
		t.Errorf("Admit after Shutdown = %v, want ErrNotReady", err)
	}
}

// TestReadRequestDeclaredNotSent: a body that declares much (a Content-Length,
// a header length, a binary size) and sends little holds memory for what it
// sent, not for what it declared.
func TestReadRequestDeclaredNotSent(t *testing.T) {
	const declared = 48 << 20
	in := examples.TinyCNNInput(1)
	bigBin := []byte(`{"inputs":[{"name":"x","shape":[12582912],"datatype":"FP32","parameters":{"binary_data_size":50331648}}]}`)
	tests := []struct {
		name      string
		sent      []byte
		length    int64
		headerLen int
	}{
		{"json body", jsonRequest(in, false)[:1000], declared, -1},
		{"json header", jsonRequest(in, false)[:1000], declared, declared - 10},
		{"binary data", append(bigBin[:len(bigBin):len(bigBin)], make([]byte, 1000)...), int64(len(bigBin)) + 50331648, len(bigBin)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			got := allocated(func() {
				_, err = ReadRequest(bytes.NewReader(tt.sent), tt.length, tt.headerLen, 64<<20, nil)
			})
			if !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "the body ended") {
				t.Errorf("err = %v, want ErrDecode saying the body ended", err)
			}
			if got > 4<<20 {
				t.Errorf("%d bytes sent of %d declared: allocated %d bytes", len(tt.sent), tt.length, got)
			}
		})
	}
	// a large binary input that does come is read whole and aligned
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i % 251)
	}
	hdr := []byte(`{"inputs":[{"name":"x","shape":[786432],"datatype":"FP32","parameters":{"binary_data_size":3145728}}]}`)
	body := append(hdr[:len(hdr):len(hdr)], data...)
	var d *Decoded
	var err error
	got := allocated(func() { d, err = ReadRequest(bytes.NewReader(body), -1, len(hdr), 64<<20, nil) })
	if err != nil {
		t.Fatal(err)
	}
	x := d.Inputs["x"]
	if !bytes.Equal(x.Data, data) || uintptr(unsafe.Pointer(&x.Data[0]))%tensor.Alignment != 0 {
		t.Error("large binary input differs or is not aligned")
	}
	if got > 3*uint64(len(data)) {
		t.Errorf("a %d-byte binary input allocated %d bytes", len(data), got)
	}
}

// TestHeaderLengthCanonical: the Inference-Header-Content-Length is a
// decimal number of bytes, as strict as versions.
func TestHeaderLengthCanonical(t *testing.T) {
	ts, _ := tinyServer(t, Options{}, nil, nil)
	body, n := binaryRequest(examples.TinyCNNInput(1), false)
	for _, tt := range []struct {
		v    string
		code int
	}{
		{strconv.Itoa(n), 200},
		{"+" + strconv.Itoa(n), 400},
		{"0" + strconv.Itoa(n), 400},
		{strconv.Itoa(n) + " x", 400},
		{"-1", 400},
		{"0x10", 400},
	} {
		if resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", map[string]string{HeaderLength: tt.v}, body); resp.StatusCode != tt.code {
			t.Errorf("%s %q: %d %s, want %d", HeaderLength, tt.v, resp.StatusCode, b, tt.code)
		}
	}
}

// TestStreamByteBudget: a stream holds at most StreamBudgetFactor times
// MaxRequestBytes of decoded inputs in flight, however many requests
// StreamInFlight allows; the others wait unread, then are all answered.
func TestStreamByteBudget(t *testing.T) {
	g := &gated{gate: make(chan struct{}), started: make(chan struct{}, 64)}
	const limit = 20 << 10 // a batch-1 tinycnn input is 12 KB: 3 fit in the budget of 40 KB
	ts, s := tinyServer(t, Options{MaxRequestBytes: limit, StreamInFlight: 16}, func(c *repository.Config) {
		c.MaxBatchSize = 1
		c.DynamicBatching = &repository.DynamicBatching{}
	}, func(_ string, r scheduler.Runner) scheduler.Runner { g.r = r; return g })
	var once sync.Once
	open := func() { once.Do(func() { close(g.gate) }) }
	defer open()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/v2/models/tinycnn/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.CloseNow()
	in := examples.TinyCNNInput(1)
	hdr := []byte(`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"binary_data_size":12288}}]}`)
	msg := binary.LittleEndian.AppendUint32(nil, uint32(len(hdr)))
	msg = append(append(msg, hdr...), in.Data...)
	const n = 10
	go func() {
		for range n {
			if err := st.Write(ctx, websocket.MessageBinary, msg); err != nil {
				return
			}
		}
	}()
	<-g.started // one runs, the others wait in the queue or unread
	held := func() int { return s.Pending()[[2]string{"tinycnn", "1"}] + 1 }
	for held() < 3 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // room for a budget that does not hold
	if got := held(); got > 4 {
		t.Errorf("%d requests of 12 KB in flight on one stream, want at most 4 (budget %d bytes)", got, StreamBudgetFactor*limit)
	}
	open()
	for i := range n {
		_, reply, err := st.Read(ctx)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if !bytes.Contains(reply, []byte(`"outputs"`)) && !bytes.Contains(reply, []byte(`"probabilities"`)) {
			t.Fatalf("reply %d: %.200s", i, reply)
		}
	}
}

// TestReadRequestBytes: BYTES inputs in binary, read from a stream.
func TestReadRequestBytes(t *testing.T) {
	hdr := []byte(`{"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}}]}`)
	good := binary.LittleEndian.AppendUint32(nil, 3)
	good = append(good, "abc"...)
	good = binary.LittleEndian.AppendUint32(good, 0)
	tests := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"valid", good, true},
		{"one element for two", append(binary.LittleEndian.AppendUint32(nil, 7), "abcdefg"...), false},
		{"length prefix overruns", append(binary.LittleEndian.AppendUint32(nil, 9), "abcdefg"...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := append(hdr[:len(hdr):len(hdr)], tt.data...)
			d, err := ReadRequest(bytes.NewReader(body), int64(len(body)), len(hdr), 1<<20, nil)
			if !tt.ok {
				if !errors.Is(err, ErrDecode) {
					t.Fatalf("err = %v, want ErrDecode", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := d.Inputs["s"].Strings; len(s) != 2 || s[0] != "abc" || s[1] != "" {
				t.Errorf("strings %q", s)
			}
		})
	}
}

// TestSlowBodyTimesOut: a body that does not arrive before the server's
// read timeout is answered 408, and its connection closed.
func TestSlowBodyTimesOut(t *testing.T) {
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	s := serve.New(serve.Options{})
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	ts := httptest.NewUnstartedServer(New(s, Options{}))
	ts.Config.ReadTimeout = 200 * time.Millisecond
	ts.Start()
	defer ts.Close()
	for _, hl := range []string{"", "\r\n" + HeaderLength + ": 900"} {
		conn, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v2/models/tinycnn/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000%s\r\n\r\n{\"inputs\":", hl)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "did not arrive in time") {
			t.Errorf("slow body (header length %q): %d %s, want 408", hl, resp.StatusCode, b)
		}
		conn.Close()
	}
}
