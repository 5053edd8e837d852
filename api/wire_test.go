package api

import (
	"strings"
	"testing"

	"github.com/kilnai/kiln/api/inference"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestWireCompatibility pins the names, numbers and types of the protocol's
// fields, as published by KServe and Triton, so that an edit of
// grpc_service.proto cannot silently break their clients.
func TestWireCompatibility(t *testing.T) {
	fd := inference.File_grpc_service_proto
	if fd.Package() != "inference" {
		t.Fatalf("package %q, want inference", fd.Package())
	}
	type field struct {
		name     string
		number   protoreflect.FieldNumber
		kind     protoreflect.Kind
		repeated bool
	}
	const (
		str = protoreflect.StringKind
		i64 = protoreflect.Int64Kind
		u64 = protoreflect.Uint64Kind
		bln = protoreflect.BoolKind
		msg = protoreflect.MessageKind
		byt = protoreflect.BytesKind
	)
	want := map[string][]field{
		"ServerLiveResponse":     {{"live", 1, bln, false}},
		"ServerReadyResponse":    {{"ready", 1, bln, false}},
		"ModelReadyRequest":      {{"name", 1, str, false}, {"version", 2, str, false}},
		"ModelReadyResponse":     {{"ready", 1, bln, false}},
		"ServerMetadataResponse": {{"name", 1, str, false}, {"version", 2, str, false}, {"extensions", 3, str, true}},
		"ModelMetadataRequest":   {{"name", 1, str, false}, {"version", 2, str, false}},
		"ModelMetadataResponse": {{"name", 1, str, false}, {"versions", 2, str, true}, {"platform", 3, str, false},
			{"inputs", 4, msg, true}, {"outputs", 5, msg, true}},
		"ModelMetadataResponse.TensorMetadata": {{"name", 1, str, false}, {"datatype", 2, str, false}, {"shape", 3, i64, true}},
		"InferParameter": {{"bool_param", 1, bln, false}, {"int64_param", 2, i64, false}, {"string_param", 3, str, false},
			{"double_param", 4, protoreflect.DoubleKind, false}, {"uint64_param", 5, u64, false}},
		"InferTensorContents": {{"bool_contents", 1, bln, true}, {"int_contents", 2, protoreflect.Int32Kind, true},
			{"int64_contents", 3, i64, true}, {"uint_contents", 4, protoreflect.Uint32Kind, true},
			{"uint64_contents", 5, u64, true}, {"fp32_contents", 6, protoreflect.FloatKind, true},
			{"fp64_contents", 7, protoreflect.DoubleKind, true}, {"bytes_contents", 8, byt, true}},
		"ModelInferRequest": {{"model_name", 1, str, false}, {"model_version", 2, str, false}, {"id", 3, str, false},
			{"parameters", 4, msg, true}, {"inputs", 5, msg, true}, {"outputs", 6, msg, true}, {"raw_input_contents", 7, byt, true}},
		"ModelInferRequest.InferInputTensor": {{"name", 1, str, false}, {"datatype", 2, str, false}, {"shape", 3, i64, true},
			{"parameters", 4, msg, true}, {"contents", 5, msg, false}},
		"ModelInferRequest.InferRequestedOutputTensor": {{"name", 1, str, false}, {"parameters", 2, msg, true}},
		"ModelInferResponse": {{"model_name", 1, str, false}, {"model_version", 2, str, false}, {"id", 3, str, false},
			{"parameters", 4, msg, true}, {"outputs", 5, msg, true}, {"raw_output_contents", 6, byt, true}},
		"ModelInferResponse.InferOutputTensor": {{"name", 1, str, false}, {"datatype", 2, str, false}, {"shape", 3, i64, true},
			{"parameters", 4, msg, true}, {"contents", 5, msg, false}},
		"ModelStreamInferResponse": {{"error_message", 1, str, false}, {"infer_response", 2, msg, false}},
		"ModelConfigRequest":       {{"name", 1, str, false}, {"version", 2, str, false}},
		"ModelConfigResponse":      {{"config", 1, msg, false}},
		"ModelStatisticsRequest":   {{"name", 1, str, false}, {"version", 2, str, false}},
		"ModelStatisticsResponse":  {{"model_stats", 1, msg, true}},
		"StatisticDuration":        {{"count", 1, u64, false}, {"ns", 2, u64, false}},
		"ModelStatistics": {{"name", 1, str, false}, {"version", 2, str, false}, {"last_inference", 3, u64, false},
			{"inference_count", 4, u64, false}, {"execution_count", 5, u64, false}, {"inference_stats", 6, msg, false},
			{"batch_stats", 7, msg, true}, {"memory_usage", 8, msg, true}},
		"RepositoryIndexRequest":             {{"repository_name", 1, str, false}, {"ready", 2, bln, false}},
		"RepositoryIndexResponse":            {{"models", 1, msg, true}},
		"RepositoryIndexResponse.ModelIndex": {{"name", 1, str, false}, {"version", 2, str, false}, {"state", 3, str, false}, {"reason", 4, str, false}},
		"RepositoryModelLoadRequest":         {{"repository_name", 1, str, false}, {"model_name", 2, str, false}, {"parameters", 3, msg, true}},
		"RepositoryModelUnloadRequest":       {{"repository_name", 1, str, false}, {"model_name", 2, str, false}, {"parameters", 3, msg, true}},
		"ModelConfig": {{"name", 1, str, false}, {"platform", 2, str, false}, {"version_policy", 3, msg, false},
			{"max_batch_size", 4, protoreflect.Int32Kind, false}, {"input", 5, msg, true}, {"output", 6, msg, true},
			{"instance_group", 7, msg, true}, {"default_model_filename", 8, str, false}, {"dynamic_batching", 11, msg, false},
			{"parameters", 14, msg, true}, {"model_warmup", 16, msg, true}, {"backend", 17, str, false}},
		"ModelWarmup": {{"name", 1, str, false}, {"batch_size", 2, protoreflect.Uint32Kind, false}, {"inputs", 3, msg, true},
			{"count", 4, protoreflect.Uint32Kind, false}},
		"ModelWarmup.Input": {{"data_type", 1, protoreflect.EnumKind, false}, {"dims", 2, i64, true}, {"zero_data", 3, bln, false},
			{"random_data", 4, bln, false}, {"input_data_file", 5, str, false}},
		"ModelInput": {{"name", 1, str, false}, {"data_type", 2, protoreflect.EnumKind, false}, {"format", 3, protoreflect.EnumKind, false},
			{"dims", 4, i64, true}, {"reshape", 5, msg, false}, {"is_shape_tensor", 6, bln, false},
			{"allow_ragged_batch", 7, bln, false}, {"optional", 8, bln, false}},
		"ModelOutput": {{"name", 1, str, false}, {"data_type", 2, protoreflect.EnumKind, false}, {"dims", 3, i64, true},
			{"label_filename", 4, str, false}, {"reshape", 5, msg, false}, {"is_shape_tensor", 6, bln, false}},
		"ModelInstanceGroup": {{"name", 1, str, false}, {"count", 2, protoreflect.Int32Kind, false}, {"gpus", 3, protoreflect.Int32Kind, true},
			{"kind", 4, protoreflect.EnumKind, false}},
		"ModelDynamicBatching": {{"preferred_batch_size", 1, protoreflect.Int32Kind, true}, {"max_queue_delay_microseconds", 2, u64, false},
			{"preserve_ordering", 3, bln, false}, {"priority_levels", 4, protoreflect.Uint32Kind, false},
			{"default_priority_level", 5, protoreflect.Uint32Kind, false}, {"default_queue_policy", 6, msg, false},
			{"priority_queue_policy", 7, msg, true}},
		"ModelQueuePolicy": {{"timeout_action", 1, protoreflect.EnumKind, false}, {"default_timeout_microseconds", 2, u64, false},
			{"allow_timeout_override", 3, bln, false}, {"max_queue_size", 4, protoreflect.Uint32Kind, false}},
	}
	for name, fields := range want {
		md := fd.Messages().ByName(protoreflect.Name(name))
		if parent, child, ok := strings.Cut(name, "."); ok {
			md = fd.Messages().ByName(protoreflect.Name(parent)).Messages().ByName(protoreflect.Name(child))
		}
		if md == nil {
			t.Errorf("message %s missing", name)
			continue
		}
		for _, f := range fields {
			got := md.Fields().ByName(protoreflect.Name(f.name))
			if got == nil {
				t.Errorf("%s.%s missing", name, f.name)
				continue
			}
			if got.Number() != f.number || got.Kind() != f.kind || (got.Cardinality() == protoreflect.Repeated) != f.repeated {
				t.Errorf("%s.%s = #%d %v repeated=%v, want #%d %v repeated=%v", name, f.name,
					got.Number(), got.Kind(), got.Cardinality() == protoreflect.Repeated, f.number, f.kind, f.repeated)
			}
		}
	}

	sd := fd.Services().ByName("GRPCInferenceService")
	if sd == nil {
		t.Fatal("service GRPCInferenceService missing")
	}
	rpcs := []struct {
		name, in, out string
		stream        bool
	}{
		{"ServerLive", "ServerLiveRequest", "ServerLiveResponse", false},
		{"ServerReady", "ServerReadyRequest", "ServerReadyResponse", false},
		{"ModelReady", "ModelReadyRequest", "ModelReadyResponse", false},
		{"ServerMetadata", "ServerMetadataRequest", "ServerMetadataResponse", false},
		{"ModelMetadata", "ModelMetadataRequest", "ModelMetadataResponse", false},
		{"ModelInfer", "ModelInferRequest", "ModelInferResponse", false},
		{"ModelStreamInfer", "ModelInferRequest", "ModelStreamInferResponse", true},
		{"ModelConfig", "ModelConfigRequest", "ModelConfigResponse", false},
		{"ModelStatistics", "ModelStatisticsRequest", "ModelStatisticsResponse", false},
		{"RepositoryIndex", "RepositoryIndexRequest", "RepositoryIndexResponse", false},
		{"RepositoryModelLoad", "RepositoryModelLoadRequest", "RepositoryModelLoadResponse", false},
		{"RepositoryModelUnload", "RepositoryModelUnloadRequest", "RepositoryModelUnloadResponse", false},
	}
	for _, r := range rpcs {
		m := sd.Methods().ByName(protoreflect.Name(r.name))
		if m == nil {
			t.Errorf("rpc %s missing", r.name)
			continue
		}
		if string(m.Input().Name()) != r.in || string(m.Output().Name()) != r.out ||
			m.IsStreamingClient() != r.stream || m.IsStreamingServer() != r.stream {
			t.Errorf("rpc %s(%s) %s, streaming %v/%v", r.name, m.Input().Name(), m.Output().Name(), m.IsStreamingClient(), m.IsStreamingServer())
		}
	}
	if got := inference.GRPCInferenceService_ModelInfer_FullMethodName; got != "/inference.GRPCInferenceService/ModelInfer" {
		t.Errorf("ModelInfer method path %q", got)
	}
}
