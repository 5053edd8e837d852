package onnx

import (
	"fmt"
	"os"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// ToGraph converts a decoded model into kiln's graph IR: values with their
// declared types, initializers as constants (an initializer that is also a
// graph input becomes that input's default), nodes with typed attributes,
// and subgraphs that capture values of their enclosing graphs. Tensors with
// external data are read through ext (may be nil when there is none).
func ToGraph(m *ModelProto, ext ExternalResolver) (*ir.Graph, error) {
	if m == nil || m.Graph == nil {
		return nil, fmt.Errorf("%w: the model has no graph", ErrMalformed)
	}
	opsets := map[string]int64{}
	for _, o := range m.OpsetImport {
		if o == nil {
			continue
		}
		d := o.Domain
		if d == "ai.onnx" {
			d = ""
		}
		opsets[d] = o.Version
	}
	if _, ok := opsets[""]; !ok {
		if m.IRVersion >= 3 || len(m.OpsetImport) > 0 {
			// IR >= 3 requires an explicit import; be lenient and assume the
			// oldest opset kiln supports rather than refuse the model.
			opsets[""] = 7
		} else {
			opsets[""] = 1
		}
	}
	for _, f := range m.Functions {
		if f != nil && hasNodeOfFunction(m.Graph, f) {
			return nil, fmt.Errorf("%w: model-local function %s.%s", ErrUnsupported, f.Domain, f.Name)
		}
	}
	c := &converter{ext: ext}
	g, err := c.graph(m.Graph, nil, nil)
	if err != nil {
		return nil, err
	}
	g.Opsets = opsets
	return g, nil
}

func hasNodeOfFunction(g *GraphProto, f *FunctionProto) bool {
	for _, n := range g.Node {
		if n != nil && n.OpType == f.Name && n.Domain == f.Domain {
			return true
		}
	}
	return false
}

type converter struct {
	ext ExternalResolver
}

// scope resolves value names in one graph, falling back to the enclosing
// graph's scope through captures.
type scope struct {
	g      *ir.Graph
	vals   map[string]*ir.Value
	parent *scope
}

func (s *scope) resolve(name string) *ir.Value {
	if v, ok := s.vals[name]; ok {
		return v
	}
	if s.parent == nil {
		return nil
	}
	outer := s.parent.resolve(name)
	if outer == nil {
		return nil
	}
	c := s.g.Capture(outer)
	s.vals[name] = c
	return c
}

func (c *converter) graph(gp *GraphProto, parent *scope, parentGraph *ir.Graph) (*ir.Graph, error) {
	g := &ir.Graph{Name: gp.Name, Parent: parentGraph}
	s := &scope{g: g, vals: map[string]*ir.Value{}, parent: parent}
	declared := map[string]ir.Type{}
	for _, vi := range gp.ValueInfo {
		if vi == nil {
			continue
		}
		t, err := convType(vi.Type, vi.Name)
		if err == nil {
			declared[vi.Name] = t
		}
	}
	define := func(name, what string) (*ir.Value, error) {
		if name == "" {
			return nil, fmt.Errorf("%w: graph %q has an %s with an empty name", ErrMalformed, gp.Name, what)
		}
		if _, dup := s.vals[name]; dup {
			return nil, fmt.Errorf("%w: graph %q defines %q twice (%s)", ir.ErrInvalidGraph, gp.Name, name, what)
		}
		v := &ir.Value{Name: name, Type: declared[name]}
		s.vals[name] = v
		return v, nil
	}
	for _, vi := range gp.Input {
		if vi == nil {
			continue
		}
		v, err := define(vi.Name, "input")
		if err != nil {
			return nil, err
		}
		if v.Type, err = convType(vi.Type, vi.Name); err != nil {
			return nil, err
		}
		g.Inputs = append(g.Inputs, v)
	}
	for _, tp := range gp.Initializer {
		if tp == nil {
			continue
		}
		t, err := TensorFromProto(tp, c.ext)
		if err != nil {
			return nil, fmt.Errorf("initializer %q: %w", tp.Name, err)
		}
		if v, ok := s.vals[tp.Name]; ok && isInput(g, v) {
			if v.Type.DType != tensor.Undefined && v.Type.DType != t.DType {
				return nil, fmt.Errorf("%w: initializer %q is %v but input %q is declared %v", ErrMalformed, tp.Name, t.DType, tp.Name, v.Type.DType)
			}
			v.Const = t
			continue
		}
		v, err := define(tp.Name, "initializer")
		if err != nil {
			return nil, err
		}
		v.Const = t
		v.Type = ir.Type{DType: t.DType, Shape: ir.KnownShape(t.Shape...)}
		g.Initializers = append(g.Initializers, v)
	}
	if len(gp.SparseInitializer) > 0 {
		return nil, fmt.Errorf("%w: sparse initializers", ErrUnsupported)
	}
	// Pass 1: every node output exists before any input is resolved, so
	// nodes stored out of topological order still import.
	nodes := make([]*ir.Node, 0, len(gp.Node))
	for i, np := range gp.Node {
		if np == nil {
			continue
		}
		n := &ir.Node{Name: np.Name, OpType: np.OpType, Domain: np.Domain, Attrs: map[string]*ir.Attr{}}
		if n.Name == "" {
			n.Name = fmt.Sprintf("%s_%d", np.OpType, i)
		}
		if n.Domain == "ai.onnx" {
			n.Domain = ""
		}
		for _, o := range np.Output {
			if o == "" {
				n.Outputs = append(n.Outputs, nil)
				continue
			}
			v, err := define(o, "output of node "+n.Name)
			if err != nil {
				return nil, err
			}
			v.Producer = n
			n.Outputs = append(n.Outputs, v)
		}
		nodes = append(nodes, n)
	}
	// Pass 2: inputs and attributes (subgraphs see all of this graph's values).
	k := 0
	for _, np := range gp.Node {
		if np == nil {
			continue
		}
		n := nodes[k]
		k++
		for _, in := range np.Input {
			if in == "" {
				n.Inputs = append(n.Inputs, nil)
				continue
			}
			v := s.resolve(in)
			if v == nil {
				return nil, fmt.Errorf("%w: node %q (%s) reads %q, which the graph does not define", ir.ErrInvalidGraph, n.Name, n.OpType, in)
			}
			n.Inputs = append(n.Inputs, v)
		}
		for _, ap := range np.Attribute {
			if ap == nil {
				continue
			}
			a, err := c.attr(ap, s, g)
			if err != nil {
				return nil, fmt.Errorf("node %q (%s) attribute %q: %w", n.Name, n.OpType, ap.Name, err)
			}
			n.Attrs[a.Name] = a
		}
		g.Nodes = append(g.Nodes, n)
	}
	for _, vi := range gp.Output {
		if vi == nil {
			continue
		}
		v := s.resolve(vi.Name)
		if v == nil {
			return nil, fmt.Errorf("%w: graph output %q is never computed", ir.ErrInvalidGraph, vi.Name)
		}
		if t, err := convType(vi.Type, vi.Name); err == nil && v.Type.DType == tensor.Undefined {
			v.Type = t
		} else if err == nil && v.Type.Shape == nil {
			v.Type.Shape = t.Shape
		}
		g.Outputs = append(g.Outputs, v)
	}
	return g, nil
}

func isInput(g *ir.Graph, v *ir.Value) bool {
	for _, in := range g.Inputs {
		if in == v {
			return true
		}
	}
	return false
}

// convType converts a declared ONNX type: tensors, and sequences and
// optionals of tensors (or an optional sequence of tensors).
func convType(tp *TypeProto, name string) (ir.Type, error) {
	if tp == nil {
		return ir.Type{}, nil
	}
	switch {
	case tp.TensorType != nil:
		tt := tp.TensorType
		t := ir.Type{DType: tt.ElemType}
		if tt.ElemType != tensor.Undefined && !tt.ElemType.Valid() {
			return ir.Type{}, fmt.Errorf("%w: value %q has element type %v", ErrUnsupported, name, tt.ElemType)
		}
		if tt.Shape != nil {
			t.Shape = make(ir.Shape, len(tt.Shape.Dim))
			for i, d := range tt.Shape.Dim {
				switch {
				case d == nil:
					t.Shape[i] = ir.U()
				case d.HasValue && d.DimValue >= 0:
					t.Shape[i] = ir.D(d.DimValue)
				case d.DimParam != "":
					t.Shape[i] = ir.S(d.DimParam)
				default:
					t.Shape[i] = ir.U()
				}
			}
		}
		return t, nil
	case tp.SequenceType != nil:
		et := tp.SequenceType.ElemType
		if et == nil {
			return ir.Type{DType: tensor.Sequence}, nil
		}
		if et.TensorType == nil {
			return ir.Type{}, fmt.Errorf("%w: value %q is a sequence of non-tensors (only sequences of tensors are supported)", ErrUnsupported, name)
		}
		e, err := convType(et, name)
		if err != nil {
			return ir.Type{}, err
		}
		return ir.SequenceOf(e), nil
	case tp.OptionalType != nil:
		et := tp.OptionalType.ElemType
		if et == nil {
			return ir.Type{DType: tensor.Optional}, nil
		}
		if et.TensorType == nil && et.SequenceType == nil {
			return ir.Type{}, fmt.Errorf("%w: value %q is an optional of neither a tensor nor a sequence", ErrUnsupported, name)
		}
		e, err := convType(et, name)
		if err != nil {
			return ir.Type{}, err
		}
		return ir.OptionalOf(e), nil
	case tp.MapType != nil:
		return ir.Type{}, fmt.Errorf("%w: value %q is a map (map types are not supported)", ErrUnsupported, name)
	case tp.SparseTensorType != nil:
		return ir.Type{}, fmt.Errorf("%w: value %q is a sparse tensor", ErrUnsupported, name)
	}
	return ir.Type{}, nil
}

func (c *converter) attr(ap *AttributeProto, s *scope, g *ir.Graph) (*ir.Attr, error) {
	a := &ir.Attr{Name: ap.Name, Type: ir.AttrType(ap.Type)}
	if ap.RefAttrName != "" {
		return nil, fmt.Errorf("%w: attribute reference %q outside a function", ErrUnsupported, ap.RefAttrName)
	}
	typ := ap.Type
	if typ == AttributeUndefined {
		typ = guessAttrType(ap)
		a.Type = ir.AttrType(typ)
	}
	switch typ {
	case AttributeFloat:
		a.F = ap.F
	case AttributeInt:
		a.I = ap.I
	case AttributeString:
		a.S = string(ap.S)
	case AttributeTensor:
		if ap.T == nil {
			return nil, fmt.Errorf("%w: tensor attribute without a tensor", ErrMalformed)
		}
		t, err := TensorFromProto(ap.T, c.ext)
		if err != nil {
			return nil, err
		}
		a.T = t
	case AttributeGraph:
		if ap.G == nil {
			return nil, fmt.Errorf("%w: graph attribute without a graph", ErrMalformed)
		}
		sg, err := c.graph(ap.G, s, g)
		if err != nil {
			return nil, fmt.Errorf("subgraph %q: %w", ap.G.Name, err)
		}
		a.G = sg
	case AttributeFloats:
		a.Floats = ap.Floats
	case AttributeInts:
		a.Ints = ap.Ints
	case AttributeStrings:
		a.Strings = make([]string, len(ap.Strings))
		for i, b := range ap.Strings {
			a.Strings[i] = string(b)
		}
	case AttributeTensors:
		for _, tp := range ap.Tensors {
			t, err := TensorFromProto(tp, c.ext)
			if err != nil {
				return nil, err
			}
			a.Tensors = append(a.Tensors, t)
		}
	case AttributeGraphs:
		for _, gp := range ap.Graphs {
			sg, err := c.graph(gp, s, g)
			if err != nil {
				return nil, err
			}
			a.Graphs = append(a.Graphs, sg)
		}
	case AttributeTypeProto, AttributeTypeProtos:
		tps := ap.TypeProtos
		if typ == AttributeTypeProto {
			if ap.TP == nil {
				return nil, fmt.Errorf("%w: type attribute %q without a type", ErrMalformed, ap.Name)
			}
			tps = []*TypeProto{ap.TP}
		}
		for _, tp := range tps {
			t, err := convType(tp, "of attribute "+ap.Name)
			if err != nil {
				return nil, err
			}
			a.Types = append(a.Types, t)
		}
	default:
		return nil, fmt.Errorf("%w: attribute type %v", ErrUnsupported, ap.Type)
	}
	return a, nil
}

// guessAttrType infers the type of an attribute written without one (IR
// version 1 files).
func guessAttrType(ap *AttributeProto) AttributeType {
	switch {
	case len(ap.Floats) > 0:
		return AttributeFloats
	case len(ap.Ints) > 0:
		return AttributeInts
	case len(ap.Strings) > 0:
		return AttributeStrings
	case ap.T != nil:
		return AttributeTensor
	case ap.G != nil:
		return AttributeGraph
	case len(ap.S) > 0:
		return AttributeString
	case ap.F != 0:
		return AttributeFloat
	}
	return AttributeInt
}

// DomainName returns the printable name of an operator domain ("" is ai.onnx).
func DomainName(d string) string {
	if d == "" {
		return "ai.onnx"
	}
	return strings.TrimSpace(d)
}

// ReadValueFile reads a file holding one serialized value of type t (such
// as test_data_set_0/input_0.pb): a TensorProto for a tensor type, a
// SequenceProto for a sequence and an OptionalProto for an optional (see
// ValueFromProto). It returns the value and its name.
func ReadValueFile(path string, t ir.Type) (*tensor.Tensor, string, error) {
	if t.IsTensor() {
		return ReadTensorFile(path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	v, name, err := DecodeValue(b, t)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return v, name, nil
}

// ReadTensorFile reads a file holding one serialized TensorProto (such as
// test_data_set_0/input_0.pb) and returns the tensor and its name.
func ReadTensorFile(path string) (*tensor.Tensor, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	tp, err := DecodeTensor(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	t, err := TensorFromProto(tp, nil)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return t, tp.Name, nil
}
