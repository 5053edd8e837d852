package onnx

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

func TestExternalLocations(t *testing.T) {
	ext := func(loc string) *TensorProto { return externalTensor("t", loc, 0, 4, 1) }
	bad := externalTensor("bad", "bad.bin", 0, 4, 1)
	bad.ExternalData = append(bad.ExternalData, &StringStringEntryProto{Key: "offset", Value: "-1"})
	sub := &GraphProto{Initializer: []*TensorProto{ext("sub/branch.bin")}}
	tests := []struct {
		name string
		m    *ModelProto
		want []string
	}{
		{"nil", nil, nil},
		{"inline only", &ModelProto{Graph: &GraphProto{Initializer: []*TensorProto{TensorToProto("x", tensor.FromFloat32([]float32{1}, 1))}}}, []string{}},
		{"initializers, cleaned and once", &ModelProto{Graph: &GraphProto{Initializer: []*TensorProto{ext("w.bin"), ext("./w.bin"), ext("a/../b.bin")}}}, []string{"b.bin", "w.bin"}},
		{"sparse initializer", &ModelProto{Graph: &GraphProto{SparseInitializer: []*SparseTensorProto{{Values: ext("v.bin"), Indices: ext("i.bin")}}}}, []string{"i.bin", "v.bin"}},
		{"Constant attribute and If branch", &ModelProto{Graph: &GraphProto{Node: []*NodeProto{
			{OpType: "Constant", Attribute: []*AttributeProto{{Name: "value", T: ext("const.bin")}}},
			{OpType: "If", Attribute: []*AttributeProto{{Name: "then_branch", G: sub}, {Name: "else_branch", Graphs: []*GraphProto{{Node: []*NodeProto{{OpType: "Constant", Attribute: []*AttributeProto{{Tensors: []*TensorProto{ext("deep.bin")}}}}}}}}}},
		}}}, []string{"const.bin", "deep.bin", filepath.FromSlash("sub/branch.bin")}},
		{"function body", &ModelProto{Functions: []*FunctionProto{{Node: []*NodeProto{{OpType: "Constant", Attribute: []*AttributeProto{{T: ext("fn.bin")}}}}}}}, []string{"fn.bin"}},
		{"malformed entries left out", &ModelProto{Graph: &GraphProto{Initializer: []*TensorProto{bad, ext("ok.bin")}}}, []string{"ok.bin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ExternalLocations(tt.m)
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ExternalLocations = %q, want %q", got, tt.want)
			}
		})
	}
}
