package grpcapi

import (
	"bytes"
	"context"
	"net"
	"slices"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// rawCodec sends []byte messages as they are and receives into *[]byte.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// TestUndecodableMessages (issue 9, item 9, over gRPC): a request message
// that cannot be decoded (cut short, a string that is not UTF-8) is
// INVALID_ARGUMENT, for unary and streaming RPCs, and a valid request
// after it still works.
func TestUndecodableMessages(t *testing.T) {
	s := serve.New(serve.Options{})
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(DecodeErrorOptions()...)
	Register(g, s, false)
	go g.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); g.Stop(); s.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	valid, err := proto.Marshal(&inference.ModelMetadataRequest{Name: "tinycnn"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		msg  []byte
		want codes.Code
	}{
		{"cut short", valid[:len(valid)-2], codes.InvalidArgument},
		{"not UTF-8", []byte{0x0a, 0x02, 0xff, 0xfe}, codes.InvalidArgument},
		{"bad wire type", []byte{0x0f}, codes.InvalidArgument},
		{"valid", valid, codes.OK},
	} {
		var out []byte
		err := cc.Invoke(ctx, "/inference.GRPCInferenceService/ModelMetadata", tt.msg, &out, grpc.ForceCodecV2(rawCodec{}))
		if got := status.Code(err); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}

	// a stream: a bad message is answered on the stream
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
		"/inference.GRPCInferenceService/ModelStreamInfer", grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg([]byte{0x0a, 0x02, 0xff, 0xfe}); err != nil {
		t.Fatal(err)
	}
	var out []byte
	err = st.RecvMsg(&out)
	if status.Code(err) == codes.OK {
		// the service may answer in-band (error_message) and go on
		var r inference.ModelStreamInferResponse
		if perr := proto.Unmarshal(out, &r); perr != nil || r.ErrorMessage == "" {
			t.Errorf("stream: answered %v (%q) to an undecodable message", perr, r.ErrorMessage)
		}
	} else if status.Code(err) != codes.InvalidArgument {
		t.Errorf("stream: %v, want INVALID_ARGUMENT", err)
	}
	if n := mapLen(); n != 0 {
		t.Errorf("%d undecodable messages left in the map", n)
	}
}

func mapLen() int {
	n := 0
	badMessages.Range(func(any, any) bool { n++; return true })
	return n
}

// TestInputsInPlace: raw inputs become tensors without a copy when they are
// aligned and need no check beyond their size, and otherwise decode (or
// fail, with the same error) as api.RequestTensors has them; through a
// real server, tinycnn's answer is the same either way.
func TestInputsInPlace(t *testing.T) {
	img := examples.TinyCNNInput(1)
	aligned := tensor.AlignedBytes(len(img.Data))
	copy(aligned, img.Data)
	shifted := tensor.AlignedBytes(len(img.Data) + 4)[4:]
	copy(shifted, img.Data)
	in := func(dt string, shape ...int64) *inference.ModelInferRequest_InferInputTensor {
		return &inference.ModelInferRequest_InferInputTensor{Name: "image", Datatype: dt, Shape: shape}
	}
	for _, tt := range []struct {
		name    string
		req     *inference.ModelInferRequest
		inPlace bool
	}{
		{"aligned FP32", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("FP32", 1, 3, 32, 32)},
			RawInputContents: [][]byte{aligned[:len(img.Data)]}}, true},
		{"misaligned FP32", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("FP32", 1, 3, 32, 32)},
			RawInputContents: [][]byte{shifted}}, false},
		{"BOOL is checked", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("BOOL", 4)},
			RawInputContents: [][]byte{append(tensor.AlignedBytes(4)[:0], 0, 1, 2, 1)}}, false},
		{"size mismatch", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("FP32", 1, 3, 32, 31)},
			RawInputContents: [][]byte{aligned[:len(img.Data)]}}, false},
		{"bad datatype", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("FP33", 1, 3, 32, 32)},
			RawInputContents: [][]byte{aligned[:len(img.Data)]}}, false},
		{"twice", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("FP32", 3072), in("FP32", 3072)},
			RawInputContents: [][]byte{aligned[:len(img.Data)], aligned[:len(img.Data)]}}, false},
		{"no raw", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("FP32", 1)}}, false},
	} {
		got, err := inputsInPlace(tt.req)
		want, werr := api.RequestTensors(tt.req)
		if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
			t.Errorf("%s: error %v, api.RequestTensors's %v", tt.name, err, werr)
			continue
		}
		if err != nil {
			continue
		}
		for name, w := range want {
			g := got[name]
			if g == nil || g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
				t.Errorf("%s: input %q is %v, want %v", tt.name, name, g, w)
				continue
			}
			shared := unsafe.SliceData(g.Data) == unsafe.SliceData(tt.req.RawInputContents[0])
			if shared != tt.inPlace {
				t.Errorf("%s: data shared with the message: %v, want %v", tt.name, shared, tt.inPlace)
			}
		}
	}

	// through a server: the result is the model's own
	s := serve.New(serve.Options{})
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(DecodeErrorOptions()...)
	Register(g, s, false)
	go g.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); g.Stop(); s.Shutdown(context.Background()) })
	m, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	direct, err := m.Run(ctx, map[string]*tensor.Tensor{"image": img})
	if err != nil {
		t.Fatal(err)
	}
	req, err := api.NewInferRequest("tinycnn", map[string]*tensor.Tensor{"image": img})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		resp, err := inference.NewGRPCInferenceServiceClient(cc).ModelInfer(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		out, err := api.ResponseTensors(resp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out["probabilities"].Data, direct["probabilities"].Data) {
			t.Fatalf("served %v, direct run %v", out["probabilities"].Float32s(), direct["probabilities"].Float32s())
		}
	}
}

// TestInferResponseOneOutput: a response of one output, built without
// api.NewInferResponse's map, is the message (or the error) it builds.
func TestInferResponseOneOutput(t *testing.T) {
	probs := tensor.New(tensor.Float32, 1, 10)
	probs.Float32s()[3] = 0.5
	words := &tensor.Tensor{DType: tensor.String, Shape: []int{2}, Strings: []string{"a", "bc"}}
	short := &tensor.Tensor{DType: tensor.Float32, Shape: []int{1, 10}, Data: make([]byte, 8)}
	for _, tt := range []struct {
		name string
		out  *tensor.Tensor
	}{
		{"FP32", probs},
		{"BYTES", words},
		{"data short of its shape", short},
		{"nil tensor", nil},
	} {
		resp := &serve.InferResponse{Model: "m", Version: "2", ID: "x", Outputs: []serve.NamedTensor{{Name: "out", Tensor: tt.out}}}
		got, err := inferResponse(resp)
		want, werr := api.NewInferResponse("m", "2", "x", map[string]*tensor.Tensor{"out": tt.out})
		if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
			t.Errorf("%s: error %v, api.NewInferResponse's %v", tt.name, err, werr)
			continue
		}
		if err == nil && !proto.Equal(got, want) {
			t.Errorf("%s: %v, api.NewInferResponse's %v", tt.name, got, want)
		}
	}
}
