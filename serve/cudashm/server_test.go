package cudashm_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve/cudashm"
)

const inBytes, outBytes = 3 * 32 * 32 * 4, 10 * 4

func register(h []byte, device int64, size uint64) string {
	return fmt.Sprintf(`{"raw_handle":{"b64":%q},"device_id":%d,"byte_size":%d}`, base64.StdEncoding.EncodeToString(h), device, size)
}

// TestCudaSharedMemoryHTTP: Triton's cudasharedmemory extension over
// HTTP, with the fake libcuda: register, status, inference with inputs
// and outputs in CUDA regions (beside a system one), bounds, errors,
// unregister one and all.
func TestCudaSharedMemoryHTTP(t *testing.T) {
	v := start(t, cudashm.New(cuda.Options{LibDir: fakeLib(t)}))
	in := examples.TinyCNNInput(1)
	want := direct(t, in)
	hIn, pathIn := fakeHandle(t, "http-in", 16384)
	hOut, pathOut := fakeHandle(t, "http-out", 4096)
	if err := os.WriteFile(pathIn, append(make([]byte, 100), in.Data...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(pathIn, 16384); err != nil {
		t.Fatal(err)
	}
	// a system shared memory region too, of the output's object
	sysKey := "/" + filepath.Base(pathOut)
	if code, body := v.do(t, "POST", "/v2/systemsharedmemory/region/sys/register", fmt.Sprintf(`{"key":%q,"byte_size":4096}`, sysKey)); code != 200 {
		t.Fatalf("system register: %d %s", code, body)
	}
	for _, c := range []struct {
		describe, path, body string
		code                 int
		has                  string
	}{
		{"the input", "/v2/cudasharedmemory/region/in/register", register(hIn, 0, 16384), 200, "{}"},
		{"the output", "/v2/cudasharedmemory/region/out/register", register(hOut, 0, 1024), 200, "{}"},
		{"a name taken", "/v2/cudasharedmemory/region/in/register", register(hIn, 0, 16), 400, "already registered"},
		{"a system region's name", "/v2/cudasharedmemory/region/sys/register", register(hIn, 0, 16), 400, "is a system shared memory region"},
		{"a CUDA region's name for system memory", "/v2/systemsharedmemory/region/in/register", fmt.Sprintf(`{"key":%q,"byte_size":16}`, sysKey), 400, "is a CUDA shared memory region"},
		{"bad base64", "/v2/cudasharedmemory/region/x/register", `{"raw_handle":{"b64":"a?b"},"device_id":0,"byte_size":16}`, 400, "raw_handle: bad base64"},
		{"a short handle", "/v2/cudasharedmemory/region/x/register", register(hIn[:48], 0, 16), 400, "raw_handle is 48 bytes, a CUDA IPC handle (cudaIpcMemHandle_t) 64"},
		{"a device past the last", "/v2/cudasharedmemory/region/x/register", register(hIn, 1, 16), 400, "device_id 1 is out of range: the server has 1 CUDA device(s)"},
		{"larger than the allocation", "/v2/cudasharedmemory/region/x/register", register(hIn, 0, 16385), 400, "byte_size 16385 is larger than the allocation the handle names (16384 bytes)"},
		{"a handle that does not open", "/v2/cudasharedmemory/region/x/register", register(make([]byte, 64), 0, 16), 400, "raw_handle does not open on device 0"},
		{"no byte_size", "/v2/cudasharedmemory/region/x/register", `{"raw_handle":{"b64":""},"device_id":0}`, 400, "needs raw_handle"},
		{"no raw_handle", "/v2/cudasharedmemory/region/x/register", `{"device_id":0,"byte_size":16}`, 400, "needs raw_handle"},
		{"a system field", "/v2/cudasharedmemory/region/x/register", `{"key":"k","device_id":0,"byte_size":16}`, 400, "unknown field"},
		{"zero size", "/v2/cudasharedmemory/region/x/register", register(hIn, 0, 0), 400, "byte_size must be positive"},
	} {
		if code, body := v.do(t, "POST", c.path, c.body); code != c.code || !strings.Contains(body, c.has) {
			t.Errorf("%s: POST %s: %d %s, want %d with %q", c.describe, c.path, code, body, c.code, c.has)
		}
	}
	if code, body := v.do(t, "GET", "/v2/cudasharedmemory/status", ""); code != 200 ||
		body != `[{"name":"in","device_id":0,"byte_size":16384},{"name":"out","device_id":0,"byte_size":1024}]` {
		t.Fatalf("status: %d %s", code, body)
	}
	if code, body := v.do(t, "GET", "/v2/cudasharedmemory/region/out/status", ""); code != 200 || body != `[{"name":"out","device_id":0,"byte_size":1024}]` {
		t.Fatalf("status of out: %d %s", code, body)
	}
	if code, body := v.do(t, "GET", "/v2/cudasharedmemory/region/sys/status", ""); code != 404 {
		t.Fatalf("CUDA status of a system region: %d %s", code, body)
	}

	infer := func(inRegion string, inOffset int, output string) (int, string) {
		return v.do(t, "POST", "/v2/models/tinycnn/infer", fmt.Sprintf(
			`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"shared_memory_region":%q,"shared_memory_offset":%d,"shared_memory_byte_size":%d}}]%s}`,
			inRegion, inOffset, inBytes, output))
	}
	outIn := func(region string, offset, size int) string {
		return fmt.Sprintf(`,"outputs":[{"name":"probabilities","parameters":{"shared_memory_region":%q,"shared_memory_offset":%d,"shared_memory_byte_size":%d}}]`, region, offset, size)
	}
	type response struct {
		Outputs []struct {
			Name       string
			Shape      []int
			Data       []float32
			Parameters map[string]any
		}
	}
	// the input in CUDA shared memory, the output in the response
	code, body := infer("in", 100, "")
	var r response
	if err := json.Unmarshal([]byte(body), &r); code != 200 || err != nil || len(r.Outputs) != 1 {
		t.Fatalf("infer: %d %s", code, body)
	}
	if err := same(r.Outputs[0].Data, want); err != nil {
		t.Fatalf("output from a CUDA input: %v", err)
	}
	// input and output in CUDA shared memory; then the output in the system
	// region of the same object, past the CUDA one
	for _, c := range []struct {
		region string
		offset int
	}{{"out", 8}, {"sys", 2048}} {
		os.WriteFile(pathOut, make([]byte, 4096), 0o600)
		code, body := infer("in", 100, outIn(c.region, c.offset, 64))
		r = response{}
		if err := json.Unmarshal([]byte(body), &r); code != 200 || err != nil || len(r.Outputs) != 1 || r.Outputs[0].Data != nil ||
			r.Outputs[0].Parameters["shared_memory_region"] != c.region || r.Outputs[0].Parameters["shared_memory_byte_size"] != float64(outBytes) ||
			fmt.Sprint(r.Outputs[0].Shape) != "[1 10]" {
			t.Fatalf("infer into %s: %d %s", c.region, code, body)
		}
		b, _ := os.ReadFile(pathOut)
		if err := same(float32s(b[c.offset:c.offset+outBytes]), want); err != nil {
			t.Fatalf("output written into %s: %v", c.region, err)
		}
	}
	// bad requests are 400s, never a copy outside a region
	for _, c := range []struct {
		describe  string
		code      int
		body, has string
	}{
		{"input past the region", 0, "", "past the end of region"},
		{"output room too small", 1, outIn("out", 0, outBytes-1), "too small for the output's 40 bytes"},
		{"output past the region", 1, outIn("out", 1000, 40), "past the end of region"},
		{"unknown region", 2, "", "register it first"},
	} {
		var code int
		var body string
		switch c.code {
		case 0:
			code, body = infer("in", 16384-inBytes+1, "")
		case 1:
			code, body = infer("in", 100, c.body)
		case 2:
			code, body = infer("nope", 0, "")
		}
		if code != 400 || !strings.Contains(body, c.has) {
			t.Errorf("%s: %d %s, want 400 with %q", c.describe, code, body, c.has)
		}
	}

	// unregister one, then all: the system region stays
	if code, body := v.do(t, "POST", "/v2/cudasharedmemory/region/in/unregister", ""); code != 200 {
		t.Fatalf("unregister: %d %s", code, body)
	}
	if code, body := v.do(t, "POST", "/v2/cudasharedmemory/region/in/unregister", ""); code != 200 {
		t.Fatalf("unregister again (Triton: no error): %d %s", code, body)
	}
	if code, body := infer("in", 100, ""); code != 400 || !strings.Contains(body, "register it first") {
		t.Fatalf("infer from an unregistered region: %d %s", code, body)
	}
	if code, body := v.do(t, "POST", "/v2/cudasharedmemory/unregister", ""); code != 200 {
		t.Fatalf("unregister all: %d %s", code, body)
	}
	if code, body := v.do(t, "GET", "/v2/cudasharedmemory/status", ""); code != 200 || body != "[]" {
		t.Fatalf("status after unregistering all: %d %s", code, body)
	}
	if code, body := v.do(t, "GET", "/v2/systemsharedmemory/status", ""); code != 200 || !strings.Contains(body, `"sys"`) {
		t.Fatalf("system status after unregistering the CUDA regions: %d %s", code, body)
	}
}

// TestCudaSharedMemoryGRPC: the same over gRPC, with Triton's parameter
// types (int64 offsets and sizes).
func TestCudaSharedMemoryGRPC(t *testing.T) {
	v := start(t, cudashm.New(cuda.Options{LibDir: fakeLib(t)}))
	c := v.grpc
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in := examples.TinyCNNInput(1)
	want := direct(t, in)
	hIn, pathIn := fakeHandle(t, "grpc-in", inBytes)
	hOut, pathOut := fakeHandle(t, "grpc-out", 4096)
	if err := os.WriteFile(pathIn, in.Data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*inference.CudaSharedMemoryRegisterRequest{
		{Name: "in", RawHandle: hIn, DeviceId: 0, ByteSize: inBytes},
		{Name: "out", RawHandle: hOut, DeviceId: 0, ByteSize: 4096},
	} {
		if _, err := c.CudaSharedMemoryRegister(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct {
		req  *inference.CudaSharedMemoryRegisterRequest
		code codes.Code
		has  string
	}{
		{&inference.CudaSharedMemoryRegisterRequest{Name: "in", RawHandle: hIn, ByteSize: 4}, codes.InvalidArgument, "already registered"},
		{&inference.CudaSharedMemoryRegisterRequest{Name: "x", RawHandle: hIn[:10], ByteSize: 4}, codes.InvalidArgument, "raw_handle is 10 bytes"},
		{&inference.CudaSharedMemoryRegisterRequest{Name: "x", RawHandle: hIn, DeviceId: 3, ByteSize: 4}, codes.InvalidArgument, "device_id 3 is out of range"},
		{&inference.CudaSharedMemoryRegisterRequest{Name: "x", RawHandle: hOut, ByteSize: 4097}, codes.InvalidArgument, "larger than the allocation"},
		{&inference.CudaSharedMemoryRegisterRequest{Name: "", RawHandle: hIn, ByteSize: 4}, codes.InvalidArgument, "needs a name"},
	} {
		_, err := c.CudaSharedMemoryRegister(ctx, r.req)
		if status.Code(err) != r.code || !strings.Contains(fmt.Sprint(err), r.has) {
			t.Errorf("register %v: %v, want %v with %q", r.req, err, r.code, r.has)
		}
	}
	st, err := c.CudaSharedMemoryStatus(ctx, &inference.CudaSharedMemoryStatusRequest{})
	if err != nil || len(st.GetRegions()) != 2 || st.GetRegions()["out"].GetByteSize() != 4096 || st.GetRegions()["in"].GetDeviceId() != 0 {
		t.Fatalf("status: %v %v", st, err)
	}
	if _, err := c.CudaSharedMemoryStatus(ctx, &inference.CudaSharedMemoryStatusRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("status of an unknown region: %v", err)
	}
	resp, err := c.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "tinycnn",
		Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "image", Datatype: "FP32", Shape: []int64{1, 3, 32, 32},
			Parameters: map[string]*inference.InferParameter{"shared_memory_region": strParam("in"), "shared_memory_byte_size": intParam(inBytes)}}},
		Outputs: []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "probabilities",
			Parameters: map[string]*inference.InferParameter{"shared_memory_region": strParam("out"), "shared_memory_offset": intParam(16), "shared_memory_byte_size": intParam(1000)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if o := resp.GetOutputs(); len(o) != 1 || len(resp.GetRawOutputContents()) != 1 || len(resp.GetRawOutputContents()[0]) != 0 ||
		o[0].GetParameters()["shared_memory_region"].GetStringParam() != "out" || o[0].GetParameters()["shared_memory_byte_size"].GetInt64Param() != outBytes {
		t.Fatalf("response: %v", resp)
	}
	b, _ := os.ReadFile(pathOut)
	if err := same(float32s(b[16:16+outBytes]), want); err != nil {
		t.Fatalf("output written into the CUDA region: %v", err)
	}
	_, err = c.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "tinycnn",
		Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "image", Datatype: "FP32", Shape: []int64{1, 3, 32, 32},
			Parameters: map[string]*inference.InferParameter{"shared_memory_region": strParam("in"), "shared_memory_offset": intParam(4), "shared_memory_byte_size": intParam(inBytes)}}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(fmt.Sprint(err), "past the end of region") {
		t.Fatalf("an input past its region: %v", err)
	}
	if _, err := c.CudaSharedMemoryUnregister(ctx, &inference.CudaSharedMemoryUnregisterRequest{Name: "in"}); err != nil {
		t.Fatal(err)
	}
	if st, err := c.CudaSharedMemoryStatus(ctx, &inference.CudaSharedMemoryStatusRequest{}); err != nil || len(st.GetRegions()) != 1 {
		t.Fatalf("status after unregistering in: %v %v", st, err)
	}
	if _, err := c.CudaSharedMemoryUnregister(ctx, &inference.CudaSharedMemoryUnregisterRequest{}); err != nil {
		t.Fatal(err)
	}
	if st, err := c.CudaSharedMemoryStatus(ctx, &inference.CudaSharedMemoryStatusRequest{}); err != nil || len(st.GetRegions()) != 0 {
		t.Fatalf("status after unregistering all: %v %v", st, err)
	}
}

// TestCudaSharedMemoryNoDriver: a server whose machine has no libcuda
// answers a registration with why (HTTP 501, gRPC UNIMPLEMENTED), and its
// status lists no region.
func TestCudaSharedMemoryNoDriver(t *testing.T) {
	v := start(t, cudashm.New(cuda.Options{LibDir: t.TempDir()}))
	code, body := v.do(t, "POST", "/v2/cudasharedmemory/region/a/register", register(make([]byte, 64), 0, 16))
	if code != 501 || !strings.Contains(body, "CUDA shared memory needs a CUDA driver and device") || !strings.Contains(body, "cannot open libcuda") {
		t.Fatalf("register: %d %s", code, body)
	}
	if code, body := v.do(t, "GET", "/v2/cudasharedmemory/status", ""); code != 200 || body != "[]" {
		t.Fatalf("status: %d %s", code, body)
	}
	if code, body := v.do(t, "POST", "/v2/cudasharedmemory/unregister", ""); code != 200 {
		t.Fatalf("unregister all: %d %s", code, body)
	}
	_, err := v.grpc.CudaSharedMemoryRegister(context.Background(), &inference.CudaSharedMemoryRegisterRequest{Name: "a", RawHandle: make([]byte, 64), ByteSize: 16})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(fmt.Sprint(err), "cannot open libcuda") {
		t.Fatalf("gRPC register: %v", err)
	}
}

func strParam(s string) *inference.InferParameter {
	return &inference.InferParameter{ParameterChoice: &inference.InferParameter_StringParam{StringParam: s}}
}

func intParam(n int64) *inference.InferParameter {
	return &inference.InferParameter{ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: n}}
}
