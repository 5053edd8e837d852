package api

import (
	"testing"

	"github.com/kilnai/kiln/api/inference"
	"google.golang.org/protobuf/proto"
)

func TestInferOptions(t *testing.T) {
	r := &inference.ModelInferRequest{}
	for _, o := range []InferOption{
		WithVersion("3"), WithID("x"), WithOutputs("a", "b"),
		WithParameter("b", true), WithParameter("i", int64(-4)), WithParameter("s", "v"),
		WithParameter("d", 0.5), WithParameter("u", uint64(9)), WithParameter("ignored", 1),
	} {
		o(r)
	}
	want := &inference.ModelInferRequest{
		ModelVersion: "3", Id: "x",
		Outputs: []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "a"}, {Name: "b"}},
		Parameters: map[string]*inference.InferParameter{
			"b": {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: true}},
			"i": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: -4}},
			"s": {ParameterChoice: &inference.InferParameter_StringParam{StringParam: "v"}},
			"d": {ParameterChoice: &inference.InferParameter_DoubleParam{DoubleParam: 0.5}},
			"u": {ParameterChoice: &inference.InferParameter_Uint64Param{Uint64Param: 9}},
		},
	}
	if !proto.Equal(r, want) {
		t.Errorf("request = %v, want %v", r, want)
	}
}
