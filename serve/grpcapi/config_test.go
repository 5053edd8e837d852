package grpcapi

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
)

const fullConfig = `name: "tiny"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ { name: "image" data_type: TYPE_FP32 dims: [ 3, 32, 32 ] } ]
output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 10 ] } ]
instance_group [ { name: "cpu" count: 2 kind: KIND_CPU } ]
version_policy { specific { versions: [ 1 ] } }
dynamic_batching {
  preferred_batch_size: [ 2, 4 ]
  max_queue_delay_microseconds: 300
  priority_levels: 2
  default_priority_level: 2
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000 allow_timeout_override: true max_queue_size: 8 }
  priority_queue_policy { key: 1 value { max_queue_size: 2 } }
}
parameters { key: "k" value { string_value: "v" } }
model_warmup [
  { name: "zeros" batch_size: 2 count: 3
    inputs { key: "image" value { data_type: TYPE_FP32 dims: [ 3, 32, 32 ] zero_data: true } } },
  { name: "random"
    inputs { key: "image" value { data_type: TYPE_FP32 dims: [ 3, 32, 32 ] random_data: true } } }
]
`

// wantConfig is fullConfig in the protobuf text format of Triton's
// ModelConfig, which the server must answer with.
const wantConfig = `name: "tiny" platform: "onnxruntime_onnx" max_batch_size: 4
version_policy { specific { versions: 1 } }
input { name: "image" data_type: TYPE_FP32 dims: [3, 32, 32] }
output { name: "probabilities" data_type: TYPE_FP32 dims: 10 }
instance_group { name: "cpu" count: 2 kind: KIND_CPU }
dynamic_batching {
  preferred_batch_size: [2, 4] max_queue_delay_microseconds: 300 priority_levels: 2 default_priority_level: 2
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000 allow_timeout_override: true max_queue_size: 8 }
  priority_queue_policy { key: 1 value { max_queue_size: 2 } }
}
parameters { key: "k" value { string_value: "v" } }
model_warmup { name: "zeros" batch_size: 2 count: 3 inputs { key: "image" value { data_type: TYPE_FP32 dims: [3, 32, 32] zero_data: true } } }
model_warmup { name: "random" batch_size: 1 count: 1 inputs { key: "image" value { data_type: TYPE_FP32 dims: [3, 32, 32] random_data: true } } }
`

func TestModelConfigRPC(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tiny", "1"), 0o755)
	os.WriteFile(filepath.Join(dir, "tiny", "1", "model.onnx"), examples.TinyCNNModel, 0o644)
	os.WriteFile(filepath.Join(dir, "tiny", "config.pbtxt"), []byte(fullConfig), 0o644)
	s := serve.New(serve.Options{Repository: dir})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	Register(gs, s, false)
	go gs.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cc.Close(); gs.Stop(); s.Shutdown(context.Background()) }()
	c := inference.NewGRPCInferenceServiceClient(cc)

	resp, err := c.ModelConfig(context.Background(), &inference.ModelConfigRequest{Name: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	want := &inference.ModelConfig{}
	if err := prototext.Unmarshal([]byte(wantConfig), want); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(resp.GetConfig(), want) {
		t.Errorf("config\n%v\nwant\n%v", prototext.Format(resp.GetConfig()), prototext.Format(want))
	}
	if _, err := c.ModelConfig(context.Background(), &inference.ModelConfigRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown model: %v", err)
	}
}
