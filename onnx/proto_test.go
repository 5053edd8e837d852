package onnx

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kilnai/kiln/tensor"
)

// richModel returns a model that sets every field the package knows, with
// nesting through attributes, functions and training info.
func richModel() *ModelProto {
	shape := &TensorShapeProto{Dim: []*TensorShapeDimension{
		{DimParam: "batch", Denotation: "DATA_BATCH"},
		{DimValue: 3, HasValue: true},
		{DimValue: 0, HasValue: true},
		{}, // unknown
	}}
	floatType := &TypeProto{TensorType: &TypeProtoTensor{ElemType: tensor.Float32, Shape: shape}, Denotation: "IMAGE"}
	w := &TensorProto{
		Dims: []int64{2, 2}, DataType: tensor.Float32, Name: "w", DocString: "weights",
		RawData:       []byte{0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64},
		MetadataProps: []*StringStringEntryProto{{Key: "k", Value: "v"}},
	}
	sub := &GraphProto{
		Name:   "body",
		Node:   []*NodeProto{{OpType: "Identity", Input: []string{"x"}, Output: []string{"y"}}},
		Input:  []*ValueInfoProto{{Name: "x", Type: &TypeProto{TensorType: &TypeProtoTensor{ElemType: tensor.Int64, Shape: &TensorShapeProto{}}}}},
		Output: []*ValueInfoProto{{Name: "y", Type: &TypeProto{}}},
	}
	attrs := []*AttributeProto{
		{Name: "alpha", Type: AttributeFloat, F: 0.5, DocString: "a float"},
		{Name: "neg0", Type: AttributeFloat, F: float32(math.Copysign(0, -1))},
		{Name: "axis", Type: AttributeInt, I: -1},
		{Name: "mode", Type: AttributeString, S: []byte("constant")},
		{Name: "value", Type: AttributeTensor, T: &TensorProto{DataType: tensor.Int64, Int64Data: []int64{-7}}},
		{Name: "body", Type: AttributeGraph, G: sub},
		{Name: "scales", Type: AttributeFloats, Floats: []float32{1, 2.5, -3}},
		{Name: "pads", Type: AttributeInts, Ints: []int64{0, 1, -2, math.MaxInt64, math.MinInt64}},
		{Name: "names", Type: AttributeStrings, Strings: [][]byte{[]byte("a"), {}, []byte("ccc")}},
		{Name: "ts", Type: AttributeTensors, Tensors: []*TensorProto{w, {DataType: tensor.String, StringData: [][]byte{[]byte("s")}}}},
		{Name: "gs", Type: AttributeGraphs, Graphs: []*GraphProto{sub, {}}},
		{Name: "sp", Type: AttributeSparseTensor, SparseTensor: &SparseTensorProto{
			Values:  &TensorProto{Dims: []int64{2}, DataType: tensor.Float32, FloatData: []float32{1, 2}},
			Indices: &TensorProto{Dims: []int64{2}, DataType: tensor.Int64, Int64Data: []int64{0, 3}},
			Dims:    []int64{4},
		}},
		{Name: "sps", Type: AttributeSparseTensors, SparseTensors: []*SparseTensorProto{{Dims: []int64{1}}}},
		{Name: "tp", Type: AttributeTypeProto, TP: floatType},
		{Name: "tps", Type: AttributeTypeProtos, TypeProtos: []*TypeProto{
			{SequenceType: &TypeProtoSequence{ElemType: floatType}},
			{MapType: &TypeProtoMap{KeyType: tensor.String, ValueType: floatType}},
			{OptionalType: &TypeProtoOptional{ElemType: &TypeProto{SparseTensorType: &TypeProtoSparseTensor{ElemType: tensor.Float16, Shape: shape}}}},
			{OpaqueType: &TypeProtoOpaque{Domain: "com.example", Name: "blob"}},
		}},
		{Name: "ref", RefAttrName: "outer", Type: AttributeInt},
	}
	return &ModelProto{
		IRVersion:       10,
		OpsetImport:     []*OperatorSetIdProto{{Version: 21}, {Domain: "com.microsoft", Version: 1}},
		ProducerName:    "kiln-test",
		ProducerVersion: "0.1",
		Domain:          "ai.kiln",
		ModelVersion:    3,
		DocString:       "a model that uses everything",
		MetadataProps:   []*StringStringEntryProto{{Key: "author", Value: "kiln"}, {Key: "", Value: ""}},
		Graph: &GraphProto{
			Name:      "main",
			DocString: "main graph",
			Node: []*NodeProto{
				{Name: "n0", OpType: "Everything", Domain: "ai.kiln", Overload: "v2", Input: []string{"x", "", "w"},
					Output: []string{"y"}, Attribute: attrs, DocString: "node doc",
					MetadataProps: []*StringStringEntryProto{{Key: "layer", Value: "0"}}},
			},
			Initializer: []*TensorProto{w, {
				Name: "ext", DataType: tensor.Float32, Dims: []int64{4}, DataLocation: DataLocationExternal,
				ExternalData: []*StringStringEntryProto{{Key: "location", Value: "w.bin"}, {Key: "offset", Value: "64"}, {Key: "length", Value: "16"}},
				Segment:      &TensorSegment{Begin: 1, End: 5},
			}},
			SparseInitializer: []*SparseTensorProto{{Dims: []int64{10, 10}}},
			Input:             []*ValueInfoProto{{Name: "x", Type: floatType, DocString: "input", MetadataProps: []*StringStringEntryProto{{Key: "a", Value: "b"}}}},
			Output:            []*ValueInfoProto{{Name: "y", Type: floatType}},
			ValueInfo:         []*ValueInfoProto{{Name: "z"}},
			QuantizationAnnotation: []*TensorAnnotation{{TensorName: "y",
				QuantParameterTensorNames: []*StringStringEntryProto{{Key: "SCALE_TENSOR", Value: "s"}}}},
			MetadataProps: []*StringStringEntryProto{{Key: "g", Value: "h"}},
		},
		TrainingInfo: []*TrainingInfoProto{{
			Initialization: &GraphProto{Name: "init"}, Algorithm: &GraphProto{Name: "step"},
			InitializationBinding: []*StringStringEntryProto{{Key: "w", Value: "w0"}},
			UpdateBinding:         []*StringStringEntryProto{{Key: "w", Value: "w1"}},
		}},
		Functions: []*FunctionProto{{
			Name: "MyFn", Domain: "ai.kiln", Overload: "o", Input: []string{"a"}, Output: []string{"b"},
			Attribute: []string{"k"}, AttributeProto: []*AttributeProto{{Name: "d", Type: AttributeInt, I: 2}},
			Node:      []*NodeProto{{OpType: "Neg", Input: []string{"a"}, Output: []string{"b"}}},
			DocString: "fn", OpsetImport: []*OperatorSetIdProto{{Version: 18}},
			ValueInfo: []*ValueInfoProto{{Name: "a"}}, MetadataProps: []*StringStringEntryProto{{Key: "x", Value: "y"}},
		}},
	}
}

func TestModelRoundTrip(t *testing.T) {
	m := richModel()
	b := m.Marshal()
	if len(b) != m.size() {
		t.Fatalf("Marshal wrote %d bytes, size says %d", len(b), m.size())
	}
	got, err := DecodeModel(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got.Graph.Node[0], m.Graph.Node[0])
	}
	if b2 := got.Marshal(); !bytes.Equal(b, b2) {
		t.Fatal("re-encoding the decoded model gives different bytes")
	}
	if v, ok := got.OpsetVersion("ai.onnx"); !ok || v != 21 {
		t.Errorf("OpsetVersion(ai.onnx) = %d, %v", v, ok)
	}
	if v, ok := got.OpsetVersion("com.microsoft"); !ok || v != 1 {
		t.Errorf("OpsetVersion(com.microsoft) = %d, %v", v, ok)
	}
	if a := got.Graph.Node[0].Attr("pads"); a == nil || a.Type != AttributeInts {
		t.Errorf("Attr(pads) = %v", a)
	}
	if got.Graph.Node[0].Attr("missing") != nil {
		t.Error("Attr(missing) != nil")
	}
}

func TestDataRoundTrip(t *testing.T) {
	tens := &TensorProto{Dims: []int64{1}, DataType: tensor.Int32, Int32Data: []int32{-5}}
	seq := &SequenceProto{Name: "s", ElemType: ElemTensor, TensorValues: []*TensorProto{tens, tens}}
	mp := &MapProto{Name: "m", KeyType: tensor.Int64, Keys: []int64{1, -2}, Values: seq}
	smp := &MapProto{KeyType: tensor.String, StringKeys: [][]byte{[]byte("a"), []byte("b")}, Values: seq}
	opt := &OptionalProto{Name: "o", ElemType: ElemOptional, OptionalValue: &OptionalProto{ElemType: ElemTensor, TensorValue: tens}}
	nested := &SequenceProto{ElemType: ElemSequence, SequenceValues: []*SequenceProto{seq},
		MapValues: []*MapProto{mp}, OptionalValues: []*OptionalProto{opt},
		SparseTensorValues: []*SparseTensorProto{{Values: tens, Dims: []int64{3}}}}
	for _, s := range []*SequenceProto{seq, nested} {
		got, err := DecodeSequence(s.Marshal())
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Errorf("sequence round trip: %v\n got %+v\nwant %+v", err, got, s)
		}
	}
	for _, m := range []*MapProto{mp, smp} {
		got, err := DecodeMap(m.Marshal())
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("map round trip: %v\n got %+v\nwant %+v", err, got, m)
		}
	}
	o2 := &OptionalProto{ElemType: ElemSequence, SequenceValue: seq, MapValue: mp,
		SparseTensorValue: &SparseTensorProto{Dims: []int64{1}}}
	for _, o := range []*OptionalProto{opt, o2, {}} {
		got, err := DecodeOptional(o.Marshal())
		if err != nil || !reflect.DeepEqual(got, o) {
			t.Errorf("optional round trip: %v\n got %+v\nwant %+v", err, got, o)
		}
	}
	g := richModel().Graph
	got, err := DecodeGraph(g.Marshal())
	if err != nil || !reflect.DeepEqual(got, g) {
		t.Errorf("graph round trip: %v", err)
	}
}

// TestTensorProtoRoundTrip checks every typed data field, both as written
// by Marshal (packed) and written unpacked, and that both decode the same.
func TestTensorProtoRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		tp   *TensorProto
	}{
		{"float", &TensorProto{Dims: []int64{3}, DataType: tensor.Float32, FloatData: []float32{1, -2.5, float32(math.Inf(1))}}},
		{"int32", &TensorProto{Dims: []int64{4}, DataType: tensor.Int32, Int32Data: []int32{0, -1, math.MaxInt32, math.MinInt32}}},
		{"int64", &TensorProto{Dims: []int64{3}, DataType: tensor.Int64, Int64Data: []int64{0, -1, math.MinInt64}}},
		{"double", &TensorProto{Dims: []int64{2}, DataType: tensor.Float64, DoubleData: []float64{math.Pi, -0.5}}},
		{"uint64", &TensorProto{Dims: []int64{2}, DataType: tensor.Uint64, Uint64Data: []uint64{math.MaxUint64, 7}}},
		{"string", &TensorProto{Dims: []int64{3}, DataType: tensor.String, StringData: [][]byte{[]byte("x"), {}, []byte("\xff\x00")}}},
		{"raw", &TensorProto{Dims: []int64{2, 1}, DataType: tensor.Uint8, RawData: []byte{1, 2}, Name: "r"}},
		{"scalar", &TensorProto{DataType: tensor.Int64, Int64Data: []int64{42}}},
		{"empty dims", &TensorProto{Dims: []int64{0, 5}, DataType: tensor.Float32}},
		{"negative dims", &TensorProto{Dims: []int64{-1}, DataType: tensor.Float32}},
		{"external", &TensorProto{DataType: tensor.Float32, DataLocation: DataLocationExternal,
			ExternalData: []*StringStringEntryProto{{Key: "location", Value: "a.bin"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			packed := tt.tp.Marshal()
			unpacked := marshalUnpacked(tt.tp)
			if len(tt.tp.Dims)+len(tt.tp.FloatData)+len(tt.tp.Int32Data)+len(tt.tp.Int64Data)+len(tt.tp.DoubleData)+len(tt.tp.Uint64Data) > 1 &&
				bytes.Equal(packed, unpacked) {
				t.Fatal("packed and unpacked encodings are the same: the test checks nothing")
			}
			for enc, b := range map[string][]byte{"packed": packed, "unpacked": unpacked} {
				got, err := DecodeTensor(b)
				if err != nil {
					t.Fatalf("%s: %v", enc, err)
				}
				if !reflect.DeepEqual(got, tt.tp) {
					t.Errorf("%s: got %+v, want %+v", enc, got, tt.tp)
				}
			}
		})
	}
}

// marshalUnpacked encodes tp's repeated numeric fields one value per field,
// as proto2 writers do for fields without [packed = true], and the rest in
// a different field order than Marshal, to check the decoder does not
// depend on either.
func marshalUnpacked(tp *TensorProto) []byte {
	var b []byte
	b = appendString(b, 8, tp.Name)
	for _, v := range tp.Dims {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v))
	}
	for _, v := range tp.FloatData {
		b = protowire.AppendTag(b, 4, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(v))
	}
	for _, v := range tp.Int32Data {
		b = protowire.AppendTag(b, 5, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v))
	}
	for _, v := range tp.Int64Data {
		b = protowire.AppendTag(b, 7, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v))
	}
	for _, v := range tp.DoubleData {
		b = protowire.AppendTag(b, 10, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v))
	}
	for _, v := range tp.Uint64Data {
		b = protowire.AppendTag(b, 11, protowire.VarintType)
		b = protowire.AppendVarint(b, v)
	}
	b = appendBytesList(b, 6, tp.StringData)
	b = appendBytes(b, 9, tp.RawData)
	b = appendMsgs(b, 13, tp.ExternalData)
	b = appendInt(b, 14, int64(tp.DataLocation))
	b = appendInt(b, 2, int64(tp.DataType))
	return b
}

func TestAttributeUnpacked(t *testing.T) {
	var b []byte
	b = appendString(b, 1, "a")
	for _, v := range []float32{1, 2} {
		b = protowire.AppendTag(b, 7, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(v))
	}
	b = appendPackedFloat32s(b, 7, []float32{3}) // packed and unpacked may mix
	for _, v := range []int64{-1, 5} {
		b = protowire.AppendTag(b, 8, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v))
	}
	b = appendPackedVarints(b, 8, []int64{6, 7})
	node := protowire.AppendTag(nil, 5, protowire.BytesType)
	node = protowire.AppendBytes(node, b)
	n, err := decodeTop(node, "NodeProto", decodeNode)
	if err != nil {
		t.Fatal(err)
	}
	a := n.Attribute[0]
	if !reflect.DeepEqual(a.Floats, []float32{1, 2, 3}) || !reflect.DeepEqual(a.Ints, []int64{-1, 5, 6, 7}) {
		t.Fatalf("floats %v ints %v", a.Floats, a.Ints)
	}
}

func TestUnknownFieldsSkipped(t *testing.T) {
	m := &ModelProto{IRVersion: 8, Graph: &GraphProto{Name: "g"}}
	var b []byte
	// Unknown fields of every wire type, before and between known ones.
	b = protowire.AppendTag(b, 99, protowire.VarintType)
	b = protowire.AppendVarint(b, 12345)
	b = protowire.AppendTag(b, 100, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, 1)
	b = append(b, m.Marshal()...)
	b = protowire.AppendTag(b, 101, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 1)
	b = protowire.AppendTag(b, 102, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("junk"))
	b = protowire.AppendTag(b, 103, protowire.StartGroupType)
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 103, protowire.EndGroupType)
	b = protowire.AppendTag(b, 20, protowire.BytesType) // training_info ...
	b = protowire.AppendBytes(b, protowire.AppendVarint(protowire.AppendTag(nil, 77, protowire.VarintType), 1))
	got, err := DecodeModel(b)
	if err != nil {
		t.Fatal(err)
	}
	m.TrainingInfo = []*TrainingInfoProto{{}}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("got %+v, want %+v", got, m)
	}
}

func TestOneofLastWins(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, "N")
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 0)
	d, err := decodeTop(b, "Dimension", decodeDim)
	if err != nil {
		t.Fatal(err)
	}
	if want := (&TensorShapeDimension{HasValue: true}); !reflect.DeepEqual(d, want) {
		t.Errorf("dim = %+v, want %+v", d, want)
	}
	tp := &TypeProto{TensorType: &TypeProtoTensor{ElemType: tensor.Float32}}
	b = append(marshal(tp), marshal(&TypeProto{SequenceType: &TypeProtoSequence{}, Denotation: "d"})...)
	got, err := decodeTop(b, "TypeProto", decodeType)
	if err != nil {
		t.Fatal(err)
	}
	if got.TensorType != nil || got.SequenceType == nil || got.Denotation != "d" {
		t.Errorf("type = %+v", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	valid := (&TensorProto{Dims: []int64{2}, DataType: tensor.Float32, Name: "t"}).Marshal()
	deep := []byte{}
	for i := 0; i <= MaxDepth; i++ { // MaxDepth+1 nested graphs via attribute g
		attr := protowire.AppendTag(nil, 6, protowire.BytesType)
		attr = protowire.AppendBytes(attr, deep)
		node := protowire.AppendTag(nil, 5, protowire.BytesType)
		node = protowire.AppendBytes(node, attr)
		deep = protowire.AppendTag(nil, 1, protowire.BytesType)
		deep = protowire.AppendBytes(deep, node)
	}
	model := protowire.AppendTag(nil, 7, protowire.BytesType)
	model = protowire.AppendBytes(model, deep)

	tests := []struct {
		name     string
		in       []byte
		path     string // want a DecodeError whose Path contains this
		inReason string
	}{
		{"truncated varint", []byte{0x08, 0x80}, "ModelProto.ir_version", ""},
		{"bad tag", []byte{0x00}, "ModelProto", "invalid field number"},
		{"wrong wire type", []byte{0x0d, 1, 2, 3, 4}, "ModelProto.ir_version", "wire type 5, want 0"},
		{"length past end", []byte{0x3a, 0x10, 0x00}, "ModelProto.graph", ""},
		{"nested error", []byte{0x3a, 0x04, 0x2a, 0x02, 0x08, 0x80}, "ModelProto.graph.initializer[0].dims", ""},
		{"packed floats length", append(protowire.AppendTag(nil, 7, protowire.BytesType), 5, 0x2a, 3, 0x22, 1, 0),
			"ModelProto.graph.initializer[0].float_data", "not a multiple of 4"},
		{"end group", []byte{0x0c}, "ModelProto", ""},
		{"too deep", model, "ModelProto.graph.node[0].attribute[0].g", "nested deeper than 64"},
		{"trailing garbage", append(append([]byte{}, valid...), 0x80), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeModel(tt.in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err %T is not a *DecodeError", err)
			}
			if !strings.HasPrefix(de.Path, tt.path) || !strings.Contains(de.Reason, tt.inReason) {
				t.Errorf("err = %v; want path %q and reason containing %q", err, tt.path, tt.inReason)
			}
			if de.Offset < 0 || de.Offset > len(tt.in) {
				t.Errorf("offset %d outside input of %d bytes", de.Offset, len(tt.in))
			}
		})
	}
}

// TestTruncated cuts a valid model at every byte offset: each prefix must
// either decode (a cut between fields is a valid, shorter message) or fail
// with ErrMalformed, and never panic. Most cuts fall inside a field and
// must fail.
func TestTruncated(t *testing.T) {
	b := richModel().Marshal()
	failed := 0
	for i := 0; i < len(b); i++ {
		_, err := DecodeModel(b[:i])
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("cut at %d: %v does not wrap ErrMalformed", i, err)
			}
			failed++
		}
	}
	// The model is one top-level graph field after a few small ones: every
	// cut inside the graph (nearly all of them) is a truncated message.
	if failed < len(b)*9/10 {
		t.Errorf("only %d of %d truncations failed", failed, len(b))
	}
	for i := 0; i < len(b); i++ {
		c := append([]byte{}, b...)
		c[i] ^= 0xff
		DecodeModel(c) // must not panic
	}
}

func TestZeroCopy(t *testing.T) {
	tp := &TensorProto{Dims: []int64{4}, DataType: tensor.Uint8, RawData: []byte{1, 2, 3, 4},
		StringData: [][]byte{[]byte("abc")}}
	b := tp.Marshal()
	got, err := DecodeTensor(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range [][]byte{got.RawData, got.StringData[0]} {
		i := bytes.Index(b, s)
		if &b[i] != &s[0] {
			t.Errorf("%q was copied, not sliced from the input", s)
		}
		if cap(s) != len(s) {
			t.Errorf("%q has capacity %d past its end: appending would overwrite the input", s, cap(s))
		}
	}
}

func TestAttributeTypeString(t *testing.T) {
	for typ, want := range map[AttributeType]string{AttributeFloat: "FLOAT", AttributeTypeProtos: "TYPE_PROTOS",
		AttributeSparseTensor: "SPARSE_TENSOR", 99: "AttributeType(99)", -1: "AttributeType(-1)"} {
		if got := typ.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int32(typ), got, want)
		}
	}
}
