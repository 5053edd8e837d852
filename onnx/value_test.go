package onnx

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

var (
	seqType    = ir.SequenceOf(ir.Type{DType: tensor.Float32})
	optTensor  = ir.OptionalOf(ir.Type{DType: tensor.Float32})
	optSeqType = ir.OptionalOf(seqType)
)

// sameValue reports whether a and b are the same value: kind, and for
// tensors type, shape and bytes.
func sameValue(a, b *tensor.Tensor) bool {
	switch {
	case a.IsSequence() || b.IsSequence():
		if !a.IsSequence() || !b.IsSequence() || len(a.Elems) != len(b.Elems) {
			return false
		}
		for i := range a.Elems {
			if !sameValue(a.Elems[i], b.Elems[i]) {
				return false
			}
		}
		return true
	case a.IsNone() || b.IsNone():
		return a.IsNone() && b.IsNone()
	}
	return a.DType == b.DType && tensor.ShapeString(a.Shape) == tensor.ShapeString(b.Shape) && string(a.Data) == string(b.Data) && strings.Join(a.Strings, "\x00") == strings.Join(b.Strings, "\x00")
}

func TestValueRoundTrip(t *testing.T) {
	x := tensor.FromFloat32([]float32{1, 2, 3}, 3)
	y := tensor.FromFloat32([]float32{4}, 1, 1)
	tests := []struct {
		name string
		v    *tensor.Tensor
		typ  ir.Type
	}{
		{"tensor", x, ir.Type{DType: tensor.Float32}},
		{"sequence", tensor.NewSequence([]*tensor.Tensor{x, y}), seqType},
		{"empty sequence", tensor.NewSequence(nil), seqType},
		{"optional tensor", x, optTensor},
		{"empty optional", tensor.NoneOptional(), optTensor},
		{"optional sequence", tensor.NewSequence([]*tensor.Tensor{y}), optSeqType},
		{"empty optional sequence", tensor.NoneOptional(), optSeqType},
		{"string sequence", tensor.NewSequence([]*tensor.Tensor{{DType: tensor.String, Shape: []int{2}, Strings: []string{"a", "bc"}}}), ir.SequenceOf(ir.Type{DType: tensor.String})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "v.pb")
			if err := SaveValue(p, "v", tt.v, tt.typ); err != nil {
				t.Fatal(err)
			}
			got, name, err := ReadValueFile(p, tt.typ)
			if err != nil {
				t.Fatal(err)
			}
			if name != "v" || !sameValue(got, tt.v) {
				t.Fatalf("read %q %v, want %q %v", name, got, "v", tt.v)
			}
		})
	}
}

// TestOptionalSequenceAsSequence: ONNX's test data holds some optional
// sequences as a bare SequenceProto; the type tells them apart.
func TestOptionalSequenceAsSequence(t *testing.T) {
	s := tensor.NewSequence([]*tensor.Tensor{tensor.FromFloat32([]float32{1}, 1), tensor.FromFloat32([]float32{2, 3}, 2)})
	m, err := ValueToProto("s", s, false)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := DecodeValue(m.Marshal(), optSeqType)
	if err != nil || !sameValue(got, s) {
		t.Fatalf("got %v, %v; want %v", got, err, s)
	}
}

func TestDecodeValueErrors(t *testing.T) {
	f := &TensorProto{DataType: tensor.Float32, Dims: []int64{1}, FloatData: []float32{1}}
	i := &TensorProto{DataType: tensor.Int64, Dims: []int64{1}, Int64Data: []int64{1}}
	tests := []struct {
		name string
		b    []byte
		typ  ir.Type
		want string
		is   error
	}{
		{"mixed element types", (&SequenceProto{ElemType: ElemTensor, TensorValues: []*TensorProto{f, i}}).Marshal(), seqType, "element 1 is int64, element 0 is float32", ErrMalformed},
		{"sequence of sequences", (&SequenceProto{ElemType: ElemSequence, SequenceValues: []*SequenceProto{{}}}).Marshal(), seqType, "only sequences of tensors", ErrUnsupported},
		{"sequence of maps kind", (&SequenceProto{ElemType: ElemMap}).Marshal(), seqType, "element kind 4", ErrUnsupported},
		{"optional of a map", (&OptionalProto{ElemType: ElemMap, MapValue: &MapProto{}}).Marshal(), optTensor, "neither a tensor nor a sequence", ErrUnsupported},
		{"bad element", (&SequenceProto{ElemType: ElemTensor, TensorValues: []*TensorProto{{Dims: []int64{2}}}}).Marshal(), seqType, "element 0", ErrMalformed},
		{"truncated", (&SequenceProto{Name: "abc"}).Marshal()[:3], seqType, "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := DecodeValue(tt.b, tt.typ)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, tt.is) {
				t.Fatalf("error %v, want a %v saying %q", err, tt.is, tt.want)
			}
		})
	}
}

func valueSeeds() [][]byte {
	x := tensor.FromFloat32([]float32{1, 2}, 2)
	var out [][]byte
	for _, c := range []struct {
		v   *tensor.Tensor
		opt bool
	}{
		{tensor.NewSequence([]*tensor.Tensor{x, x}), false},
		{tensor.NewSequence(nil), false},
		{x, true},
		{tensor.NoneOptional(), true},
		{tensor.NewSequence([]*tensor.Tensor{x}), true},
	} {
		m, _ := ValueToProto("v", c.v, c.opt)
		out = append(out, m.Marshal())
	}
	return out
}

// FuzzDecodeValue: any bytes read as a sequence or an optional give a value
// or an error wrapping ErrMalformed or ErrUnsupported, never a panic; a
// value read encodes back to bytes that read as the same value.
func FuzzDecodeValue(f *testing.F) {
	for _, s := range valueSeeds() {
		f.Add(s)
	}
	types := []ir.Type{seqType, optTensor, optSeqType}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, typ := range types {
			v, _, err := DecodeValue(b, typ)
			if err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
					t.Fatalf("%v: error without a sentinel: %v", typ, err)
				}
				continue
			}
			m, err := ValueToProto("v", v, typ.DType == tensor.Optional)
			if err != nil {
				t.Fatalf("%v: re-encoding %v: %v", typ, v, err)
			}
			w, _, err := DecodeValue(m.Marshal(), typ)
			if err != nil || !sameValue(v, w) {
				t.Fatalf("%v: %v re-read as %v, %v", typ, v, w, err)
			}
		}
	})
}

// TestSequenceTypesRoundTrip: sequence and optional value types and
// TYPE_PROTO attributes survive FromGraph and ToGraph (a plan holds its
// graph so).
func TestSequenceTypesRoundTrip(t *testing.T) {
	b := ir.NewBuilder("types", 18)
	s := b.Input("s", tensor.Float32)
	s.Type = ir.SequenceOf(ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("n"), ir.D(3)}})
	none := b.Op("Optional", nil, &ir.Attr{Name: "type", Type: ir.AttrType1, Types: []ir.Type{optSeqType.ElemType()}})
	none.Type = optSeqType
	b.Output(s, "")
	b.Output(none, "none")
	mp, err := FromGraph(b.Graph(), "test")
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeModel(mp.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	g, err := ToGraph(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := g.Inputs[0].Type.String(); got != "sequence(float32[n,3])" {
		t.Errorf("input type %s, want sequence(float32[n,3])", got)
	}
	if got := g.Outputs[1].Type.String(); got != optSeqType.String() {
		t.Errorf("output type %s, want %s", got, optSeqType)
	}
	a := g.Nodes[0].Attrs["type"]
	if a == nil || a.Type != ir.AttrType1 || len(a.Types) != 1 || a.Types[0].String() != seqType.String() {
		t.Errorf("type attribute %+v, want %v", a, seqType)
	}
}
