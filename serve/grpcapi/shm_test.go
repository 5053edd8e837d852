package grpcapi

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve/shm"
	"github.com/kilnai/kiln/tensor"
)

func strParam(s string) *inference.InferParameter {
	return &inference.InferParameter{ParameterChoice: &inference.InferParameter_StringParam{StringParam: s}}
}

func intParam(n int64) *inference.InferParameter {
	return &inference.InferParameter{ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: n}}
}

func TestSystemSharedMemoryGRPC(t *testing.T) {
	if st, err := os.Stat(shm.DefaultDir); err != nil || !st.IsDir() {
		t.Skipf("no %s (POSIX shared memory) on this system", shm.DefaultDir)
	}
	c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in := examples.TinyCNNInput(1)
	m, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	direct, err := m.Run(ctx, map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	want := direct["probabilities"].Float32s()

	// the client's side, as Triton's shared memory helpers do it
	key := fmt.Sprintf("/kiln-grpc-test-%d", os.Getpid())
	path, err := shm.Create("", key, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(in.Data, 0); err != nil {
		t.Fatal(err)
	}
	const inBytes = 3 * 32 * 32 * 4
	for _, r := range []*inference.SystemSharedMemoryRegisterRequest{
		{Name: "in", Key: key, Offset: 0, ByteSize: inBytes},
		{Name: "out", Key: key, Offset: 32768, ByteSize: 1024},
	} {
		if _, err := c.SystemSharedMemoryRegister(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct {
		req  *inference.SystemSharedMemoryRegisterRequest
		code codes.Code
		has  string
	}{
		{&inference.SystemSharedMemoryRegisterRequest{Name: "in", Key: key, ByteSize: 4}, codes.InvalidArgument, "already registered"},
		{&inference.SystemSharedMemoryRegisterRequest{Name: "big", Key: key, Offset: 1 << 16, ByteSize: 1}, codes.InvalidArgument, "past the end"},
		{&inference.SystemSharedMemoryRegisterRequest{Name: "wrap", Key: key, Offset: math.MaxUint64, ByteSize: 2}, codes.InvalidArgument, "past the end"},
		{&inference.SystemSharedMemoryRegisterRequest{Name: "none", Key: "/kiln-no-such-object", ByteSize: 4}, codes.InvalidArgument, "cannot open"},
		{&inference.SystemSharedMemoryRegisterRequest{Name: "", Key: key, ByteSize: 4}, codes.InvalidArgument, "needs a name"},
	} {
		_, err := c.SystemSharedMemoryRegister(ctx, r.req)
		if status.Code(err) != r.code || !strings.Contains(fmt.Sprint(err), r.has) {
			t.Errorf("register %v: %v, want %v with %q", r.req, err, r.code, r.has)
		}
	}
	st, err := c.SystemSharedMemoryStatus(ctx, &inference.SystemSharedMemoryStatusRequest{})
	if err != nil || len(st.GetRegions()) != 2 || st.GetRegions()["out"].GetOffset() != 32768 || st.GetRegions()["in"].GetKey() != key {
		t.Fatalf("status: %v %v", st, err)
	}
	if _, err := c.SystemSharedMemoryStatus(ctx, &inference.SystemSharedMemoryStatusRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("status of an unknown region: %v", err)
	}
	if _, err := c.CudaSharedMemoryRegister(ctx, &inference.CudaSharedMemoryRegisterRequest{Name: "c", ByteSize: 4}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("CUDA register: %v", err)
	}
	if cs, err := c.CudaSharedMemoryStatus(ctx, &inference.CudaSharedMemoryStatusRequest{}); err != nil || len(cs.GetRegions()) != 0 {
		t.Fatalf("CUDA status: %v %v", cs, err)
	}
	if md, err := c.ServerMetadata(ctx, &inference.ServerMetadataRequest{}); err != nil || !strings.Contains(fmt.Sprint(md.GetExtensions()), "system_shared_memory") || !strings.Contains(fmt.Sprint(md.GetExtensions()), "cuda_shared_memory") {
		t.Fatalf("server metadata: %v %v", md, err)
	}

	request := func(inParams, outParams map[string]*inference.InferParameter) *inference.ModelInferRequest {
		r := &inference.ModelInferRequest{ModelName: "tinycnn", Inputs: []*inference.ModelInferRequest_InferInputTensor{
			{Name: "image", Datatype: "FP32", Shape: []int64{1, 3, 32, 32}, Parameters: inParams}}}
		if outParams != nil {
			r.Outputs = []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "probabilities", Parameters: outParams}}
		}
		return r
	}
	inShm := map[string]*inference.InferParameter{"shared_memory_region": strParam("in"), "shared_memory_byte_size": intParam(inBytes)}
	resp, err := c.ModelInfer(ctx, request(inShm, map[string]*inference.InferParameter{
		"shared_memory_region": strParam("out"), "shared_memory_offset": intParam(16), "shared_memory_byte_size": intParam(1000)}))
	if err != nil {
		t.Fatal(err)
	}
	o := resp.GetOutputs()
	if len(o) != 1 || len(resp.GetRawOutputContents()) != 1 || len(resp.GetRawOutputContents()[0]) != 0 ||
		o[0].GetParameters()["shared_memory_byte_size"].GetInt64Param() != 40 || fmt.Sprint(o[0].GetShape()) != "[1 10]" {
		t.Fatalf("response: %v", resp)
	}
	raw := make([]byte, 40)
	if _, err := f.ReadAt(raw, 32768+16); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if g := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); math.Abs(float64(g-w)) > 1e-5 {
			t.Fatalf("output %d = %v, want %v", i, g, w)
		}
	}

	for _, b := range []struct {
		name string
		req  *inference.ModelInferRequest
		has  string
	}{
		{"size not the tensor's", request(map[string]*inference.InferParameter{"shared_memory_region": strParam("in"), "shared_memory_byte_size": intParam(8)}, nil), "needs 12288 bytes"},
		{"past the region", request(map[string]*inference.InferParameter{"shared_memory_region": strParam("in"), "shared_memory_offset": intParam(4), "shared_memory_byte_size": intParam(inBytes)}, nil), "past the end of region"},
		{"negative offset", request(map[string]*inference.InferParameter{"shared_memory_region": strParam("in"), "shared_memory_offset": intParam(-4), "shared_memory_byte_size": intParam(inBytes)}, nil), "negative"},
		{"no size", request(map[string]*inference.InferParameter{"shared_memory_region": strParam("in")}, nil), "needs shared_memory_byte_size"},
		{"region not a string", request(map[string]*inference.InferParameter{"shared_memory_region": intParam(1), "shared_memory_byte_size": intParam(inBytes)}, nil), "string_param"},
		{"unknown region", request(map[string]*inference.InferParameter{"shared_memory_region": strParam("x"), "shared_memory_byte_size": intParam(inBytes)}, nil), "register it first"},
		{"output too small", request(inShm, map[string]*inference.InferParameter{"shared_memory_region": strParam("out"), "shared_memory_byte_size": intParam(16)}), "too small"},
		{"output past the region", request(inShm, map[string]*inference.InferParameter{"shared_memory_region": strParam("out"), "shared_memory_offset": intParam(1020), "shared_memory_byte_size": intParam(40)}), "past the end of region"},
	} {
		if _, err := c.ModelInfer(ctx, b.req); status.Code(err) != codes.InvalidArgument || !strings.Contains(fmt.Sprint(err), b.has) {
			t.Errorf("%s: %v, want INVALID_ARGUMENT with %q", b.name, err, b.has)
		}
	}
	// raw contents for the other inputs only, as Triton's clients send them:
	// tinycnn has one input, so an empty list; one entry per input works too
	r := request(inShm, nil)
	r.RawInputContents = [][]byte{nil}
	if _, err := c.ModelInfer(ctx, r); err != nil {
		t.Fatalf("raw contents with an empty entry for the input in shared memory: %v", err)
	}
	r.RawInputContents = [][]byte{{1, 2, 3, 4}}
	if _, err := c.ModelInfer(ctx, r); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("raw contents and shared memory for one input: %v", err)
	}

	if _, err := c.SystemSharedMemoryUnregister(ctx, &inference.SystemSharedMemoryUnregisterRequest{Name: "in"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.SystemSharedMemoryStatus(ctx, &inference.SystemSharedMemoryStatusRequest{}); len(st.GetRegions()) != 1 {
		t.Fatalf("status after unregistering in: %v", st)
	}
	if _, err := c.SystemSharedMemoryUnregister(ctx, &inference.SystemSharedMemoryUnregisterRequest{}); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.SystemSharedMemoryStatus(ctx, &inference.SystemSharedMemoryStatusRequest{}); len(st.GetRegions()) != 0 {
		t.Fatalf("status after unregistering all: %v", st)
	}
}
