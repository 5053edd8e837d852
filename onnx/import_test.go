package onnx

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func tensorType(dt tensor.DType, dims ...any) *TypeProto {
	sh := &TensorShapeProto{}
	for _, d := range dims {
		switch d := d.(type) {
		case int:
			sh.Dim = append(sh.Dim, &TensorShapeDimension{DimValue: int64(d), HasValue: true})
		case string:
			sh.Dim = append(sh.Dim, &TensorShapeDimension{DimParam: d})
		}
	}
	return &TypeProto{TensorType: &TypeProtoTensor{ElemType: dt, Shape: sh}}
}

func TestToGraph(t *testing.T) {
	w := TensorToProto("w", tensor.FromFloat32([]float32{1, 2}, 2))
	bias := TensorToProto("b", tensor.FromFloat32([]float32{0.5, 0.5}, 2))
	m := &ModelProto{
		IRVersion:   8,
		OpsetImport: []*OperatorSetIdProto{{Domain: "", Version: 17}},
		Graph: &GraphProto{
			Name: "g",
			// nodes stored out of topological order
			Node: []*NodeProto{
				{Name: "add", OpType: "Add", Input: []string{"h", "b"}, Output: []string{"y"}},
				{Name: "mul", OpType: "Mul", Input: []string{"x", "w"}, Output: []string{"h"},
					Attribute: []*AttributeProto{{Name: "note", Type: AttributeString, S: []byte("hi")}}},
			},
			Input: []*ValueInfoProto{
				{Name: "x", Type: tensorType(tensor.Float32, "batch", 2)},
				{Name: "b", Type: tensorType(tensor.Float32, 2)}, // input with a default
			},
			Initializer: []*TensorProto{w, bias},
			Output:      []*ValueInfoProto{{Name: "y", Type: tensorType(tensor.Float32, "batch", 2)}},
		},
	}
	g, err := ToGraph(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g.Opset() != 17 || len(g.Inputs) != 2 || len(g.Initializers) != 1 || len(g.Nodes) != 2 {
		t.Fatalf("graph: opset %d, %d inputs, %d initializers, %d nodes", g.Opset(), len(g.Inputs), len(g.Initializers), len(g.Nodes))
	}
	if g.Inputs[1].Const == nil {
		t.Fatal("input b should carry its initializer as a default")
	}
	if got := g.Inputs[0].Type.String(); got != "float32[batch,2]" {
		t.Fatalf("x type %s", got)
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	if g.Nodes[0].OpType != "Mul" {
		t.Fatalf("Validate should sort nodes; first is %s", g.Nodes[0].OpType)
	}
	if a := g.Nodes[0].Attrs["note"]; a == nil || a.S != "hi" {
		t.Fatalf("attribute lost: %+v", a)
	}
	// the writer round-trips it
	back, err := FromGraph(g, "test")
	if err != nil {
		t.Fatal(err)
	}
	m2, err := DecodeModel(back.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	g2, err := ToGraph(m2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(g2.Nodes) != 2 || g2.Inputs[1].Const == nil || g2.Outputs[0].Type.String() != "float32[batch,2]" {
		t.Fatal("round trip through the writer lost structure")
	}
}

func TestToGraphSubgraphCapture(t *testing.T) {
	then := &GraphProto{Name: "then", Node: []*NodeProto{{OpType: "Relu", Input: []string{"x"}, Output: []string{"t"}}}, Output: []*ValueInfoProto{{Name: "t"}}}
	els := &GraphProto{Name: "else", Node: []*NodeProto{{OpType: "Neg", Input: []string{"x"}, Output: []string{"e"}}}, Output: []*ValueInfoProto{{Name: "e"}}}
	m := &ModelProto{
		OpsetImport: []*OperatorSetIdProto{{Version: 13}},
		Graph: &GraphProto{
			Node: []*NodeProto{{OpType: "If", Input: []string{"c"}, Output: []string{"y"}, Attribute: []*AttributeProto{
				{Name: "then_branch", Type: AttributeGraph, G: then},
				{Name: "else_branch", Type: AttributeGraph, G: els},
			}}},
			Input:  []*ValueInfoProto{{Name: "c", Type: tensorType(tensor.Bool)}, {Name: "x", Type: tensorType(tensor.Float32, 3)}},
			Output: []*ValueInfoProto{{Name: "y"}},
		},
	}
	g, err := ToGraph(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	sg := g.Nodes[0].Attrs["then_branch"].G
	if len(sg.Captures) != 1 || sg.Captures[0].Outer != g.Inputs[1] {
		t.Fatalf("then branch should capture x: %+v", sg.Captures)
	}
	if sg.Parent != g || sg.Opset() != 13 {
		t.Fatal("subgraph parent/opset not set")
	}
	if got := g.Nodes[0].Subgraphs(); len(got) != 2 {
		t.Fatalf("%d subgraphs", len(got))
	}
}

func TestToGraphErrors(t *testing.T) {
	base := func() *ModelProto {
		return &ModelProto{
			OpsetImport: []*OperatorSetIdProto{{Version: 17}},
			Graph: &GraphProto{
				Node:   []*NodeProto{{Name: "r", OpType: "Relu", Input: []string{"x"}, Output: []string{"y"}}},
				Input:  []*ValueInfoProto{{Name: "x", Type: tensorType(tensor.Float32, 2)}},
				Output: []*ValueInfoProto{{Name: "y"}},
			},
		}
	}
	tests := []struct {
		name   string
		mutate func(m *ModelProto)
		want   string
		is     error
	}{
		{"no graph", func(m *ModelProto) { m.Graph = nil }, "no graph", ErrMalformed},
		{"missing initializer", func(m *ModelProto) { m.Graph.Node[0].Input[0] = "weights" }, `reads "weights"`, ir.ErrInvalidGraph},
		{"duplicate output", func(m *ModelProto) {
			m.Graph.Node = append(m.Graph.Node, &NodeProto{OpType: "Relu", Input: []string{"x"}, Output: []string{"y"}})
		}, "defines \"y\" twice", ir.ErrInvalidGraph},
		{"undefined graph output", func(m *ModelProto) { m.Graph.Output[0].Name = "nope" }, "never computed", ir.ErrInvalidGraph},
		{"sequence of maps input", func(m *ModelProto) {
			m.Graph.Input[0].Type = &TypeProto{SequenceType: &TypeProtoSequence{ElemType: &TypeProto{MapType: &TypeProtoMap{}}}}
		}, "sequence of non-tensors", ErrUnsupported},
		{"optional map input", func(m *ModelProto) {
			m.Graph.Input[0].Type = &TypeProto{OptionalType: &TypeProtoOptional{ElemType: &TypeProto{MapType: &TypeProtoMap{}}}}
		}, "optional of neither", ErrUnsupported},
		{"bad initializer", func(m *ModelProto) {
			m.Graph.Initializer = []*TensorProto{{Name: "w", DataType: tensor.Float32, Dims: []int64{4}, RawData: []byte{1, 2}}}
		}, "initializer \"w\"", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := base()
			tt.mutate(m)
			_, err := ToGraph(m, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("error %v, want one containing %q (is %v)", err, tt.want, tt.is)
			}
		})
	}
}
