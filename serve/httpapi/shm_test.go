package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/serve/shm"
)

// shmObject creates a POSIX shared memory object of size bytes under
// /dev/shm, as Triton's clients' shared memory helpers do (shm_open and
// ftruncate), removed when the test ends, and returns its key and file.
func shmObject(t *testing.T, size int64) (key, path string) {
	t.Helper()
	if st, err := os.Stat(shm.DefaultDir); err != nil || !st.IsDir() {
		t.Skipf("no %s (POSIX shared memory) on this system", shm.DefaultDir)
	}
	key = fmt.Sprintf("/kiln-test-%d-%s", os.Getpid(), strings.NewReplacer("/", "-").Replace(t.Name()))
	path, err := shm.Create("", key, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	return key, path
}

func float32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func bytesFloat32(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func TestSystemSharedMemory(t *testing.T) {
	ts, _, _ := startServer(t, 0)
	in := examples.TinyCNNInput(1)
	want := direct(t, in)
	const inBytes, outBytes = 3 * 32 * 32 * 4, 10 * 4
	// one object: the input at 8192 (the region starts off a page edge),
	// the output region at 65536
	key, path := shmObject(t, 1<<17)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(float32Bytes(in.Float32s()), 8192+100); err != nil {
		t.Fatal(err)
	}
	post := func(path, body string) (int, string) {
		resp, b := do(t, "POST", ts.URL+path, nil, []byte(body))
		return resp.StatusCode, string(b)
	}
	get := func(path string) (int, string) {
		resp, b := do(t, "GET", ts.URL+path, nil, nil)
		return resp.StatusCode, string(b)
	}
	reg := func(name string, off, size int) string {
		return fmt.Sprintf(`{"key":%q,"offset":%d,"byte_size":%d}`, key, off, size)
	}
	for _, c := range []struct {
		path, body string
		code       int
		has        string
	}{
		{"/v2/systemsharedmemory/region/in/register", reg("in", 8192, 16384), 200, "{}"},
		{"/v2/systemsharedmemory/region/out/register", reg("out", 65536, 4096), 200, "{}"},
		{"/v2/systemsharedmemory/region/in/register", reg("in", 0, 16), 400, "already registered"},
		{"/v2/systemsharedmemory/region/big/register", reg("big", 1<<16, 1<<17), 400, "past the end"},
		{"/v2/systemsharedmemory/region/none/register", `{"key":"/kiln-no-such-object","byte_size":16}`, 400, "cannot open"},
		{"/v2/systemsharedmemory/region/up/register", `{"key":"/../etc/passwd","byte_size":16}`, 400, "want the name of a shared memory object"},
		{"/v2/systemsharedmemory/region/zero/register", reg("zero", 0, 0), 400, "byte_size must be positive"},
		{"/v2/systemsharedmemory/region/nokey/register", `{"byte_size":16}`, 400, "needs key and byte_size"},
		{"/v2/systemsharedmemory/region/x/register", `{"key":"k","byte_size":16,"device_id":0}`, 400, "unknown field"},
		{"/v2/cudasharedmemory/region/c/register", `{"raw_handle":{"b64":""},"device_id":0,"byte_size":16}`, 501, "CUDA shared memory is not supported"},
	} {
		if code, body := post(c.path, c.body); code != c.code || !strings.Contains(body, c.has) {
			t.Errorf("POST %s %s: %d %s, want %d with %q", c.path, c.body, code, body, c.code, c.has)
		}
	}
	var st []map[string]any
	code, body := get("/v2/systemsharedmemory/status")
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || len(st) != 2 ||
		st[0]["name"] != "in" || st[0]["key"] != key || st[0]["offset"] != 8192.0 || st[0]["byte_size"] != 16384.0 || st[1]["name"] != "out" {
		t.Fatalf("status: %d %s", code, body)
	}
	if code, body := get("/v2/systemsharedmemory/region/out/status"); code != 200 || !strings.Contains(body, `"byte_size":4096`) {
		t.Fatalf("status of out: %d %s", code, body)
	}
	if code, body := get("/v2/systemsharedmemory/region/nope/status"); code != 404 {
		t.Fatalf("status of an unknown region: %d %s", code, body)
	}
	if code, body := get("/v2/cudasharedmemory/status"); code != 200 || body != "[]" {
		t.Fatalf("CUDA status: %d %s", code, body)
	}
	if code, body := get("/v2"); !strings.Contains(body, `"system_shared_memory"`) || !strings.Contains(body, `"cuda_shared_memory"`) {
		t.Fatalf("server metadata: %d %s", code, body)
	}

	input := func(params string) string {
		return fmt.Sprintf(`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{%s}}]`, params)
	}
	inParams := fmt.Sprintf(`"shared_memory_region":"in","shared_memory_offset":100,"shared_memory_byte_size":%d`, inBytes)
	outputs := func(params string) string {
		return fmt.Sprintf(`,"outputs":[{"name":"probabilities","parameters":{%s}}]}`, params)
	}
	// input in shared memory, output as JSON
	code, body = post("/v2/models/tinycnn/infer", input(inParams)+"}")
	var resp struct {
		Outputs []struct {
			Name       string
			Shape      []int
			Data       []float32
			Parameters map[string]any
		}
	}
	if err := json.Unmarshal([]byte(body), &resp); code != 200 || err != nil || len(resp.Outputs) != 1 {
		t.Fatalf("infer: %d %s", code, body)
	}
	close32(t, resp.Outputs[0].Data, want, 1e-5)

	// input and output in shared memory: the output's bytes are in the
	// object, the response says where and how many
	// (Triton's Python client sends "binary_data": false beside the region)
	for _, extra := range []string{"", `,"binary_data":false`} {
		code, body = post("/v2/models/tinycnn/infer", input(inParams)+outputs(`"shared_memory_region":"out","shared_memory_offset":8,"shared_memory_byte_size":64`+extra))
		resp.Outputs = nil
		if err := json.Unmarshal([]byte(body), &resp); code != 200 || err != nil || len(resp.Outputs) != 1 || resp.Outputs[0].Data != nil ||
			resp.Outputs[0].Parameters["shared_memory_region"] != "out" || resp.Outputs[0].Parameters["shared_memory_byte_size"] != float64(outBytes) ||
			fmt.Sprint(resp.Outputs[0].Shape) != "[1 10]" {
			t.Fatalf("infer into shared memory (%q): %d %s", extra, code, body)
		}
	}
	got := make([]byte, outBytes)
	if _, err := f.ReadAt(got, 65536+8); err != nil {
		t.Fatal(err)
	}
	close32(t, bytesFloat32(got), want, 1e-5)

	// bad requests are 400s, never a read outside a region
	for _, c := range []struct{ name, body, has string }{
		{"size not the tensor's", input(`"shared_memory_region":"in","shared_memory_byte_size":16`) + "}", "needs 12288 bytes"},
		{"past the region", input(fmt.Sprintf(`"shared_memory_region":"in","shared_memory_offset":8192,"shared_memory_byte_size":%d`, inBytes)) + "}", "past the end of region"},
		{"huge offset", input(fmt.Sprintf(`"shared_memory_region":"in","shared_memory_offset":9007199254740000,"shared_memory_byte_size":%d`, inBytes)) + "}", "past the end of region"},
		{"unknown region", input(fmt.Sprintf(`"shared_memory_region":"nope","shared_memory_byte_size":%d`, inBytes)) + "}", "register it first"},
		{"no byte size", input(`"shared_memory_region":"in"`) + "}", "shared_memory_region needs shared_memory_byte_size"},
		{"offset alone", input(`"shared_memory_offset":4`) + "}", "shared_memory_offset needs shared_memory_region"},
		{"region not a string", input(`"shared_memory_region":7,"shared_memory_byte_size":4`) + "}", "must be a region name"},
		{"negative size", input(`"shared_memory_region":"in","shared_memory_byte_size":-4`) + "}", "non-negative integer"},
		{"data too", `{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","data":[1],"parameters":{` + inParams + `}}]}`, ""},
		{"binary data too", input(inParams+`,"binary_data_size":12288`) + "}", "binary_data_size and shared_memory_region go separately"},
		{"output room too small", input(inParams) + outputs(`"shared_memory_region":"out","shared_memory_byte_size":39`), "too small for the output's 40 bytes"},
		{"output past the region", input(inParams) + outputs(`"shared_memory_region":"out","shared_memory_offset":4090,"shared_memory_byte_size":40`), "past the end of region"},
		{"output and binary_data", input(inParams) + outputs(`"shared_memory_region":"out","shared_memory_byte_size":40,"binary_data":true`), "go separately"},
		{"output classification", input(inParams) + outputs(`"shared_memory_region":"out","shared_memory_byte_size":40,"classification":2`), "go separately"},
		{"output unknown region", input(inParams) + outputs(`"shared_memory_region":"nope","shared_memory_byte_size":40`), "register it first"},
	} {
		if code, body := post("/v2/models/tinycnn/infer", c.body); code != 400 || !strings.Contains(body, c.has) {
			t.Errorf("%s: %d %s, want 400 with %q", c.name, code, body, c.has)
		}
	}

	// unregister one, then all
	if code, body := post("/v2/systemsharedmemory/region/in/unregister", ""); code != 200 {
		t.Fatalf("unregister: %d %s", code, body)
	}
	if code, body := post("/v2/systemsharedmemory/region/in/unregister", ""); code != 200 {
		t.Fatalf("unregister again (Triton: no error): %d %s", code, body)
	}
	if code, body := post("/v2/models/tinycnn/infer", input(inParams)+"}"); code != 400 || !strings.Contains(body, "register it first") {
		t.Fatalf("infer from an unregistered region: %d %s", code, body)
	}
	if code, body := get("/v2/systemsharedmemory/status"); code != 200 || !strings.Contains(body, `"out"`) || strings.Contains(body, `"in"`) {
		t.Fatalf("status after unregistering in: %d %s", code, body)
	}
	if code, body := post("/v2/systemsharedmemory/unregister", ""); code != 200 {
		t.Fatalf("unregister all: %d %s", code, body)
	}
	if code, body := get("/v2/systemsharedmemory/status"); code != 200 || body != "[]" {
		t.Fatalf("status after unregistering all: %d %s", code, body)
	}
}

// TestSharedMemoryShrunk: an object truncated under its registered region
// makes requests fail with 400, not crash the server.
func TestSharedMemoryShrunk(t *testing.T) {
	ts, _, _ := startServer(t, 0)
	key, path := shmObject(t, 1<<16)
	resp, body := do(t, "POST", ts.URL+"/v2/systemsharedmemory/region/r/register", nil, fmt.Appendf(nil, `{"key":%q,"byte_size":%d}`, key, 1<<16))
	if resp.StatusCode != 200 {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	req := fmt.Sprintf(`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"shared_memory_region":"r","shared_memory_byte_size":%d}}]}`, 3*32*32*4)
	resp, body = do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", nil, []byte(req))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "shrank") {
		t.Fatalf("infer from a shrunk object: %d %s", resp.StatusCode, body)
	}
}

// FuzzShmInfer: inference requests naming shared memory regions, with any
// offsets and sizes, are answered 200 or 400, never 500, a panic or a read
// outside a region.
func FuzzShmInfer(f *testing.F) {
	if st, err := os.Stat(shm.DefaultDir); err != nil || !st.IsDir() {
		f.Skipf("no %s (POSIX shared memory) on this system", shm.DefaultDir)
	}
	key := fmt.Sprintf("/kiln-fuzz-%d", os.Getpid())
	path, err := shm.Create("", key, 1<<15)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.Remove(path) })
	s := serve.New(serve.Options{})
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Add(rm); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Shutdown(context.Background()) })
	if err := s.RegisterSystemShm("r", key, 0, 1<<15); err != nil {
		f.Fatal(err)
	}
	h := New(s, Options{})
	for _, seed := range []string{
		`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"shared_memory_region":"r","shared_memory_byte_size":12288}}]}`,
		`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"shared_memory_region":"r","shared_memory_offset":20480,"shared_memory_byte_size":12288}}],"outputs":[{"name":"probabilities","parameters":{"shared_memory_region":"r","shared_memory_offset":32760,"shared_memory_byte_size":8}}]}`,
		`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"shared_memory_region":"r","shared_memory_offset":32767,"shared_memory_byte_size":12288}}]}`,
		`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"shared_memory_region":"r","shared_memory_byte_size":12288}}],"outputs":[{"name":"probabilities","parameters":{"shared_memory_region":"r","shared_memory_offset":32728,"shared_memory_byte_size":40}}]}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v2/models/tinycnn/infer", strings.NewReader(body)))
		if c := rec.Code; c != 200 && c != 400 {
			t.Fatalf("%q: %d %s", body, c, rec.Body)
		}
	})
}
