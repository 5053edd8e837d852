package onnx

import (
	"fmt"
	"sort"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// FromGraph converts an ir.Graph back into an ONNX model (IR version 8) that
// any ONNX tool can read: inputs and outputs with their types, initializers,
// nodes and subgraphs. It is kiln's ONNX writer.
func FromGraph(g *ir.Graph, producer string) (*ModelProto, error) {
	gp, err := graphProto(g)
	if err != nil {
		return nil, err
	}
	m := &ModelProto{IRVersion: 8, ProducerName: producer, Graph: gp}
	for d, v := range g.Opsets {
		m.OpsetImport = append(m.OpsetImport, &OperatorSetIdProto{Domain: d, Version: v})
	}
	return m, nil
}

func graphProto(g *ir.Graph) (*GraphProto, error) {
	gp := &GraphProto{Name: g.Name}
	for _, v := range g.Inputs {
		gp.Input = append(gp.Input, valueInfo(v))
		if v.Const != nil {
			gp.Initializer = append(gp.Initializer, TensorToProto(v.Name, v.Const))
		}
	}
	for _, v := range g.Initializers {
		if v.Const == nil {
			return nil, fmt.Errorf("%w: initializer %q has no value", ErrMalformed, v.Name)
		}
		gp.Initializer = append(gp.Initializer, TensorToProto(v.Name, v.Const))
	}
	for _, n := range g.Nodes {
		np := &NodeProto{Name: n.Name, OpType: n.OpType, Domain: n.Domain}
		for _, v := range n.Inputs {
			np.Input = append(np.Input, valueName(v))
		}
		for _, v := range n.Outputs {
			np.Output = append(np.Output, valueName(v))
		}
		for _, name := range sortedAttrNames(n) {
			ap, err := attrProto(n.Attrs[name])
			if err != nil {
				return nil, fmt.Errorf("node %q: %w", n.Name, err)
			}
			np.Attribute = append(np.Attribute, ap)
		}
		gp.Node = append(gp.Node, np)
	}
	for _, v := range g.Outputs {
		gp.Output = append(gp.Output, valueInfo(v))
	}
	return gp, nil
}

func valueName(v *ir.Value) string {
	if v == nil {
		return ""
	}
	return v.Name
}

func valueInfo(v *ir.Value) *ValueInfoProto {
	return &ValueInfoProto{Name: v.Name, Type: typeProto(v.Type)}
}

// typeProto returns the TypeProto of t, nil when nothing is known.
func typeProto(t ir.Type) *TypeProto {
	switch t.DType {
	case tensor.Undefined:
		return nil
	case tensor.Sequence:
		st := &TypeProtoSequence{}
		if t.Elem != nil {
			st.ElemType = typeProto(*t.Elem)
		}
		return &TypeProto{SequenceType: st}
	case tensor.Optional:
		ot := &TypeProtoOptional{}
		if t.Elem != nil {
			ot.ElemType = typeProto(*t.Elem)
		}
		return &TypeProto{OptionalType: ot}
	}
	tt := &TypeProtoTensor{ElemType: t.DType}
	if t.Shape != nil {
		tt.Shape = &TensorShapeProto{}
		for _, d := range t.Shape {
			dim := &TensorShapeDimension{}
			switch {
			case d.Known():
				dim.DimValue, dim.HasValue = d.Val, true
			case d.Sym != "":
				dim.DimParam = d.Sym
			}
			tt.Shape.Dim = append(tt.Shape.Dim, dim)
		}
	}
	return &TypeProto{TensorType: tt}
}

func sortedAttrNames(n *ir.Node) []string {
	names := make([]string, 0, len(n.Attrs))
	for k := range n.Attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func attrProto(a *ir.Attr) (*AttributeProto, error) {
	ap := &AttributeProto{Name: a.Name, Type: AttributeType(a.Type)}
	switch a.Type {
	case ir.AttrFloat:
		ap.F = a.F
	case ir.AttrInt:
		ap.I = a.I
	case ir.AttrString:
		ap.S = []byte(a.S)
	case ir.AttrTensor:
		ap.T = TensorToProto("", a.T)
	case ir.AttrGraph:
		g, err := graphProto(a.G)
		if err != nil {
			return nil, err
		}
		ap.G = g
	case ir.AttrFloats:
		ap.Floats = a.Floats
	case ir.AttrInts:
		ap.Ints = a.Ints
	case ir.AttrStrings:
		for _, s := range a.Strings {
			ap.Strings = append(ap.Strings, []byte(s))
		}
	case ir.AttrTensors:
		for _, t := range a.Tensors {
			ap.Tensors = append(ap.Tensors, TensorToProto("", t))
		}
	case ir.AttrGraphs:
		for _, sg := range a.Graphs {
			g, err := graphProto(sg)
			if err != nil {
				return nil, err
			}
			ap.Graphs = append(ap.Graphs, g)
		}
	case ir.AttrType1:
		if len(a.Types) != 1 {
			return nil, fmt.Errorf("%w: type attribute %q holds %d types", ErrUnsupported, a.Name, len(a.Types))
		}
		ap.TP = typeProto(a.Types[0])
	case ir.AttrTypes:
		for _, t := range a.Types {
			ap.TypeProtos = append(ap.TypeProtos, typeProto(t))
		}
	default:
		return nil, fmt.Errorf("%w: attribute %q of type %d", ErrUnsupported, a.Name, a.Type)
	}
	return ap, nil
}
