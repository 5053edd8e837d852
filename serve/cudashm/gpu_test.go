package cudashm_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve/cudashm"
)

// The client's allocations in the scenario: the input at inOffset of an
// allocation of inAlloc bytes, the outputs at 0 (HTTP) and 64 (gRPC) of
// one of outAlloc bytes.
const (
	inOffset = 256
	inAlloc  = inOffset + inBytes
	outAlloc = 4096
)

// client is the process that owns the device memory of a scenario.
type client struct {
	in, out []byte        // the IPC handles of the input and output allocations
	output  func() []byte // the output allocation's bytes, read by the owner
	what    string        // what the allocations are, for the log
}

// scenario serves tinycnn with a CUDA shared memory registry, registers
// the client's allocations over HTTP and then gRPC, runs inference with
// the input and the output in them, and checks each output against the
// same request sent without shared memory and against the model run
// directly. It logs what it checked.
func scenario(t *testing.T, reg *cudashm.Registry, c *client) {
	v := start(t, reg)
	in := examples.TinyCNNInput(1)
	want := direct(t, in)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// HTTP: the request without shared memory, then with both
	data, _ := json.Marshal(in.Float32s())
	code, body := v.do(t, "POST", "/v2/models/tinycnn/infer", fmt.Sprintf(`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","data":%s}]}`, data))
	var plain struct{ Outputs []struct{ Data []float32 } }
	if err := json.Unmarshal([]byte(body), &plain); code != 200 || err != nil || len(plain.Outputs) != 1 {
		t.Fatalf("HTTP inference without shared memory: %d %s", code, body)
	}
	wantHTTP := plain.Outputs[0].Data
	if err := same(wantHTTP, want); err != nil {
		t.Fatalf("HTTP without shared memory against the model: %v", err)
	}
	for _, r := range []struct{ name, body string }{{"in", register(c.in, 0, inAlloc)}, {"out", register(c.out, 0, outAlloc)}} {
		if code, body := v.do(t, "POST", "/v2/cudasharedmemory/region/"+r.name+"/register", r.body); code != 200 {
			t.Fatalf("HTTP register %s: %d %s", r.name, code, body)
		}
	}
	if code, body := v.do(t, "GET", "/v2/cudasharedmemory/status", ""); code != 200 ||
		body != fmt.Sprintf(`[{"name":"in","device_id":0,"byte_size":%d},{"name":"out","device_id":0,"byte_size":%d}]`, inAlloc, outAlloc) {
		t.Fatalf("HTTP status: %d %s", code, body)
	}
	inParams := fmt.Sprintf(`"shared_memory_region":"in","shared_memory_offset":%d,"shared_memory_byte_size":%d`, inOffset, inBytes)
	// the input from device memory, the output in the response
	code, body = v.do(t, "POST", "/v2/models/tinycnn/infer", fmt.Sprintf(`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{%s}}]}`, inParams))
	plain.Outputs = nil
	if err := json.Unmarshal([]byte(body), &plain); code != 200 || err != nil || len(plain.Outputs) != 1 {
		t.Fatalf("HTTP inference from a CUDA region: %d %s", code, body)
	}
	if err := same(plain.Outputs[0].Data, wantHTTP); err != nil {
		t.Fatalf("HTTP, input from a CUDA region: %v", err)
	}
	// both in device memory
	code, body = v.do(t, "POST", "/v2/models/tinycnn/infer", fmt.Sprintf(`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{%s}}],`+
		`"outputs":[{"name":"probabilities","parameters":{"shared_memory_region":"out","shared_memory_offset":0,"shared_memory_byte_size":64}}]}`, inParams))
	if code != 200 || !strings.Contains(body, `"shared_memory_byte_size":40`) || strings.Contains(body, `"data"`) {
		t.Fatalf("HTTP inference into a CUDA region: %d %s", code, body)
	}
	for _, p := range []string{"/v2/cudasharedmemory/region/in/unregister", "/v2/cudasharedmemory/region/out/unregister"} {
		if code, body := v.do(t, "POST", p, ""); code != 200 {
			t.Fatalf("HTTP %s: %d %s", p, code, body)
		}
	}

	// gRPC: the request without shared memory, then with both
	g := v.grpc
	resp, err := g.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "tinycnn",
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "image", Datatype: "FP32", Shape: []int64{1, 3, 32, 32}}},
		RawInputContents: [][]byte{in.Data}})
	if err != nil {
		t.Fatal(err)
	}
	wantGRPC := float32s(resp.GetRawOutputContents()[0])
	if err := same(wantGRPC, want); err != nil {
		t.Fatalf("gRPC without shared memory against the model: %v", err)
	}
	for _, r := range []*inference.CudaSharedMemoryRegisterRequest{
		{Name: "gin", RawHandle: c.in, DeviceId: 0, ByteSize: inAlloc},
		{Name: "gout", RawHandle: c.out, DeviceId: 0, ByteSize: outAlloc},
	} {
		if _, err := g.CudaSharedMemoryRegister(ctx, r); err != nil {
			t.Fatalf("gRPC register %s: %v", r.Name, err)
		}
	}
	if st, err := g.CudaSharedMemoryStatus(ctx, &inference.CudaSharedMemoryStatusRequest{}); err != nil || len(st.GetRegions()) != 2 || st.GetRegions()["gin"].GetByteSize() != inAlloc {
		t.Fatalf("gRPC status: %v %v", st, err)
	}
	resp, err = g.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "tinycnn",
		Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "image", Datatype: "FP32", Shape: []int64{1, 3, 32, 32},
			Parameters: map[string]*inference.InferParameter{"shared_memory_region": strParam("gin"), "shared_memory_offset": intParam(inOffset), "shared_memory_byte_size": intParam(inBytes)}}},
		Outputs: []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "probabilities",
			Parameters: map[string]*inference.InferParameter{"shared_memory_region": strParam("gout"), "shared_memory_offset": intParam(64), "shared_memory_byte_size": intParam(64)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if o := resp.GetOutputs(); len(o) != 1 || o[0].GetParameters()["shared_memory_byte_size"].GetInt64Param() != outBytes {
		t.Fatalf("gRPC response: %v", resp)
	}
	if _, err := g.CudaSharedMemoryUnregister(ctx, &inference.CudaSharedMemoryUnregisterRequest{}); err != nil {
		t.Fatal(err)
	}
	if st, err := g.CudaSharedMemoryStatus(ctx, &inference.CudaSharedMemoryStatusRequest{}); err != nil || len(st.GetRegions()) != 0 {
		t.Fatalf("gRPC status after unregistering all: %v %v", st, err)
	}

	// what the owner of the memory sees
	out := c.output()
	if len(out) < 64+outBytes {
		t.Fatalf("the client read %d bytes of its output allocation", len(out))
	}
	gotHTTP, gotGRPC := float32s(out[:outBytes]), float32s(out[64:64+outBytes])
	if err := same(gotHTTP, wantHTTP); err != nil {
		t.Fatalf("HTTP output in the client's %s against the response without shared memory: %v", c.what, err)
	}
	if err := same(gotGRPC, wantGRPC); err != nil {
		t.Fatalf("gRPC output in the client's %s against the response without shared memory: %v", c.what, err)
	}
	t.Logf("checked: tinycnn over HTTP and gRPC with its input read from and its output written into the client's %s "+
		"(CUDA shared memory registered from IPC handles, status, unregister one and all); outputs equal to the requests without shared memory "+
		"(HTTP max |diff| %g, gRPC %g) and to the model run directly", c.what, maxDiff(gotHTTP, wantHTTP), maxDiff(gotGRPC, wantGRPC))
}

func maxDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// TestScenarioFake runs the GPU test's scenario with the fake libcuda,
// whose "device allocations" are shared memory objects the test owns.
func TestScenarioFake(t *testing.T) {
	hIn, pathIn := fakeHandle(t, "scn-in", inAlloc)
	hOut, pathOut := fakeHandle(t, "scn-out", outAlloc)
	if err := os.WriteFile(pathIn, append(make([]byte, inOffset), examples.TinyCNNInput(1).Data...), 0o600); err != nil {
		t.Fatal(err)
	}
	scenario(t, cudashm.New(cuda.Options{LibDir: fakeLib(t)}), &client{in: hIn, out: hOut, what: "fake allocations (shared memory objects)",
		output: func() []byte { b, _ := os.ReadFile(pathOut); return b }})
}

// envChild makes the test binary the GPU test's client process.
const envChild = "KILN_CUDASHM_TEST_CLIENT"

// TestCudaSharedMemoryOnGPU (issue 14): a client process (this test
// binary, re-executed) allocates device memory, writes tinycnn's input
// into it and prints the IPC handles of its input and output allocations;
// this process serves tinycnn with kiln serve's handlers, registers the
// allocations over HTTP and gRPC, runs inference with the input and the
// output in them, and the client reads its output allocation back. (An
// IPC handle cannot be opened in the process that exported it.)
func TestCudaSharedMemoryOnGPU(t *testing.T) {
	if os.Getenv(envChild) != "" {
		gpuClient()
		return
	}
	fp, err := cuda.Probe(cuda.Options{})
	if fp.GPUName == "" {
		t.Skipf("needs a CUDA GPU: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCudaSharedMemoryOnGPU$")
	cmd.Env = append(os.Environ(), envChild+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	// line reads the client's next line that starts with prefix
	line := func(prefix string) []string {
		for lines.Scan() {
			if f := strings.Fields(lines.Text()); len(f) > 0 && f[0] == prefix {
				return f[1:]
			}
			if strings.HasPrefix(lines.Text(), "CLIENT ERROR") {
				t.Fatalf("the client process: %s", lines.Text())
			}
		}
		t.Fatalf("the client process ended before printing %s: %v", prefix, lines.Err())
		return nil
	}
	f := line("HANDLES")
	if len(f) != 2 {
		t.Fatalf("the client printed HANDLES %v", f)
	}
	hIn, err1 := base64.StdEncoding.DecodeString(f[0])
	hOut, err2 := base64.StdEncoding.DecodeString(f[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("handles: %v %v", err1, err2)
	}
	scenario(t, cudashm.New(cuda.Options{}), &client{in: hIn, out: hOut, what: fmt.Sprintf("device memory on %s (another process)", fp.GPUName),
		output: func() []byte {
			io.WriteString(stdin, "READ\n")
			b, err := base64.StdEncoding.DecodeString(strings.Join(line("OUTPUT"), ""))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}})
}

// gpuClient is the client process of TestCudaSharedMemoryOnGPU: it
// allocates the input and output on GPU 0, prints their IPC handles
// ("HANDLES <input> <output>", base64), and on the line READ prints the
// output allocation ("OUTPUT <base64>") and exits. It prints CLIENT ERROR
// and exits on a failure.
func gpuClient() {
	fail := func(err error) {
		fmt.Printf("CLIENT ERROR %v\n", err)
		os.Exit(1)
	}
	runtime.LockOSThread()
	d, err := cuda.OpenDriver(cuda.Options{})
	if err != nil {
		fail(err)
	}
	dev, err := d.Device(0)
	if err != nil {
		fail(err)
	}
	ctx, err := d.RetainPrimaryContext(dev)
	if err != nil {
		fail(err)
	}
	if err := d.SetCurrent(ctx); err != nil {
		fail(err)
	}
	in, err := d.MemAlloc(inAlloc)
	if err != nil {
		fail(err)
	}
	out, err := d.MemAlloc(outAlloc)
	if err != nil {
		fail(err)
	}
	junk := make([]byte, max(inAlloc, outAlloc))
	for i := range junk {
		junk[i] = 0xff // NaNs, where nothing is written
	}
	if err := d.MemcpyHtoD(in, append(junk[:inOffset:inOffset], examples.TinyCNNInput(1).Data...)); err != nil {
		fail(err)
	}
	if err := d.MemcpyHtoD(out, junk[:outAlloc]); err != nil {
		fail(err)
	}
	hIn, err := d.IpcGetMemHandle(in)
	if err != nil {
		fail(err)
	}
	hOut, err := d.IpcGetMemHandle(out)
	if err != nil {
		fail(err)
	}
	fmt.Printf("HANDLES %s %s\n", base64.StdEncoding.EncodeToString(hIn[:]), base64.StdEncoding.EncodeToString(hOut[:]))
	r := bufio.NewScanner(os.Stdin)
	for r.Scan() {
		if r.Text() != "READ" {
			continue
		}
		b := make([]byte, outAlloc)
		if err := d.MemcpyDtoH(b, out); err != nil {
			fail(err)
		}
		fmt.Printf("OUTPUT %s\n", base64.StdEncoding.EncodeToString(b))
		break
	}
	d.MemFree(in)
	d.MemFree(out)
	os.Exit(0)
}

// TestClientProcessFake runs TestCudaSharedMemoryOnGPU, client process
// included, with the fake libcuda, whose cuMemAlloc_v2 (with
// KILN_FAKE_IPC_ALLOC set) makes allocations that another process opens
// from their handles.
func TestClientProcessFake(t *testing.T) {
	if os.Getenv(envChild) != "" {
		return
	}
	dir := fakeLib(t)
	fakeHandle(t, "probe", 1) // skips without /dev/shm
	cmd := exec.Command(os.Args[0], "-test.run=^TestCudaSharedMemoryOnGPU$", "-test.v")
	cmd.Env = append(os.Environ(), cuda.EnvLibPath+"="+dir, "KILN_FAKE_IPC_ALLOC=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestCudaSharedMemoryOnGPU") || !strings.Contains(string(out), "checked: ") {
		t.Fatalf("TestCudaSharedMemoryOnGPU with the fake libcuda: %v\n%s", err, out)
	}
}
