package grpcapi

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
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
