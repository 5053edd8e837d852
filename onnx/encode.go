package onnx

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// The encoder writes fields in field-number order, omits fields that hold
// their zero value (as proto3 and the ONNX tools do), always writes a
// non-nil embedded message (even an empty one, so that presence survives a
// round trip: an empty TensorShapeProto is a scalar shape, a nil one an
// unknown rank), and writes repeated numeric fields packed. A nil element of
// a repeated message field is written as an empty message.
//
// Every message type has size, the exact length of its encoding, and
// appendTo, which appends the encoding; lengths of embedded messages come
// from size, so the output is built in one buffer without copying.

// Marshal returns the protobuf encoding of the model (the contents of a
// .onnx file).
func (m *ModelProto) Marshal() []byte { return marshal(m) }

// Marshal returns the protobuf encoding of the graph.
func (m *GraphProto) Marshal() []byte { return marshal(m) }

// Marshal returns the protobuf encoding of the tensor (the format of the
// input_0.pb files of ONNX test data sets).
func (m *TensorProto) Marshal() []byte { return marshal(m) }

// Marshal returns the protobuf encoding of the sequence.
func (m *SequenceProto) Marshal() []byte { return marshal(m) }

// Marshal returns the protobuf encoding of the map.
func (m *MapProto) Marshal() []byte { return marshal(m) }

// Marshal returns the protobuf encoding of the optional value.
func (m *OptionalProto) Marshal() []byte { return marshal(m) }

type message interface {
	size() int
	appendTo(b []byte) []byte
}

func marshal(m message) []byte {
	return m.appendTo(make([]byte, 0, m.size()))
}

// Sizes of single fields; zero values take no space.

func sizeVarint(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func sizeInt(num protowire.Number, v int64) int { return sizeVarint(num, uint64(v)) }

func sizeLen(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func sizeString(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return sizeLen(num, len(s))
}

func sizeBytes(num protowire.Number, b []byte) int {
	if len(b) == 0 {
		return 0
	}
	return sizeLen(num, len(b))
}

func sizeStrings(num protowire.Number, ss []string) int {
	n := 0
	for _, s := range ss {
		n += sizeLen(num, len(s))
	}
	return n
}

func sizeBytesList(num protowire.Number, bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += sizeLen(num, len(b))
	}
	return n
}

func sizeMsg(num protowire.Number, m message, present bool) int {
	if !present {
		return 0
	}
	return sizeLen(num, m.size())
}

func sizeMsgs[T message](num protowire.Number, ms []T) int {
	n := 0
	for _, m := range ms {
		n += sizeLen(num, m.size())
	}
	return n
}

func packedVarintLen[T int64 | int32 | uint64](vs []T) int {
	n := 0
	for _, v := range vs {
		n += protowire.SizeVarint(uint64(v))
	}
	return n
}

func sizePackedVarints[T int64 | int32 | uint64](num protowire.Number, vs []T) int {
	if len(vs) == 0 {
		return 0
	}
	return sizeLen(num, packedVarintLen(vs))
}

func sizePackedFixed(num protowire.Number, n, width int) int {
	if n == 0 {
		return 0
	}
	return sizeLen(num, n*width)
}

// Appenders of single fields, mirroring the sizes above.

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendInt(b []byte, num protowire.Number, v int64) []byte {
	return appendVarint(b, num, uint64(v))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendStrings(b []byte, num protowire.Number, ss []string) []byte {
	for _, s := range ss {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	return b
}

func appendBytesList(b []byte, num protowire.Number, bs [][]byte) []byte {
	for _, v := range bs {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	return b
}

func appendMsg(b []byte, num protowire.Number, m message, present bool) []byte {
	if !present {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(m.size()))
	return m.appendTo(b)
}

func appendMsgs[T message](b []byte, num protowire.Number, ms []T) []byte {
	for _, m := range ms {
		b = appendMsg(b, num, m, true)
	}
	return b
}

func appendPackedVarints[T int64 | int32 | uint64](b []byte, num protowire.Number, vs []T) []byte {
	if len(vs) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(packedVarintLen(vs)))
	for _, v := range vs {
		b = protowire.AppendVarint(b, uint64(v))
	}
	return b
}

func appendPackedFloat32s(b []byte, num protowire.Number, vs []float32) []byte {
	if len(vs) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(4*len(vs)))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func appendPackedFloat64s(b []byte, num protowire.Number, vs []float64) []byte {
	if len(vs) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(8*len(vs)))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

// Messages. Every size and appendTo accepts a nil receiver (an empty
// message).

func (m *ModelProto) size() int {
	if m == nil {
		return 0
	}
	return sizeInt(1, m.IRVersion) + sizeString(2, m.ProducerName) + sizeString(3, m.ProducerVersion) +
		sizeString(4, m.Domain) + sizeInt(5, m.ModelVersion) + sizeString(6, m.DocString) +
		sizeMsg(7, m.Graph, m.Graph != nil) + sizeMsgs(8, m.OpsetImport) + sizeMsgs(14, m.MetadataProps) +
		sizeMsgs(20, m.TrainingInfo) + sizeMsgs(25, m.Functions)
}

func (m *ModelProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendInt(b, 1, m.IRVersion)
	b = appendString(b, 2, m.ProducerName)
	b = appendString(b, 3, m.ProducerVersion)
	b = appendString(b, 4, m.Domain)
	b = appendInt(b, 5, m.ModelVersion)
	b = appendString(b, 6, m.DocString)
	b = appendMsg(b, 7, m.Graph, m.Graph != nil)
	b = appendMsgs(b, 8, m.OpsetImport)
	b = appendMsgs(b, 14, m.MetadataProps)
	b = appendMsgs(b, 20, m.TrainingInfo)
	return appendMsgs(b, 25, m.Functions)
}

func (m *OperatorSetIdProto) size() int {
	if m == nil {
		return 0
	}
	return sizeString(1, m.Domain) + sizeInt(2, m.Version)
}

func (m *OperatorSetIdProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendString(b, 1, m.Domain)
	return appendInt(b, 2, m.Version)
}

func (m *StringStringEntryProto) size() int {
	if m == nil {
		return 0
	}
	return sizeString(1, m.Key) + sizeString(2, m.Value)
}

func (m *StringStringEntryProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendString(b, 1, m.Key)
	return appendString(b, 2, m.Value)
}

func (m *TrainingInfoProto) size() int {
	if m == nil {
		return 0
	}
	return sizeMsg(1, m.Initialization, m.Initialization != nil) + sizeMsg(2, m.Algorithm, m.Algorithm != nil) +
		sizeMsgs(3, m.InitializationBinding) + sizeMsgs(4, m.UpdateBinding)
}

func (m *TrainingInfoProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendMsg(b, 1, m.Initialization, m.Initialization != nil)
	b = appendMsg(b, 2, m.Algorithm, m.Algorithm != nil)
	b = appendMsgs(b, 3, m.InitializationBinding)
	return appendMsgs(b, 4, m.UpdateBinding)
}

func (m *GraphProto) size() int {
	if m == nil {
		return 0
	}
	return sizeMsgs(1, m.Node) + sizeString(2, m.Name) + sizeMsgs(5, m.Initializer) +
		sizeString(10, m.DocString) + sizeMsgs(11, m.Input) + sizeMsgs(12, m.Output) +
		sizeMsgs(13, m.ValueInfo) + sizeMsgs(14, m.QuantizationAnnotation) +
		sizeMsgs(15, m.SparseInitializer) + sizeMsgs(16, m.MetadataProps)
}

func (m *GraphProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendMsgs(b, 1, m.Node)
	b = appendString(b, 2, m.Name)
	b = appendMsgs(b, 5, m.Initializer)
	b = appendString(b, 10, m.DocString)
	b = appendMsgs(b, 11, m.Input)
	b = appendMsgs(b, 12, m.Output)
	b = appendMsgs(b, 13, m.ValueInfo)
	b = appendMsgs(b, 14, m.QuantizationAnnotation)
	b = appendMsgs(b, 15, m.SparseInitializer)
	return appendMsgs(b, 16, m.MetadataProps)
}

func (m *TensorAnnotation) size() int {
	if m == nil {
		return 0
	}
	return sizeString(1, m.TensorName) + sizeMsgs(2, m.QuantParameterTensorNames)
}

func (m *TensorAnnotation) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendString(b, 1, m.TensorName)
	return appendMsgs(b, 2, m.QuantParameterTensorNames)
}

func (m *NodeProto) size() int {
	if m == nil {
		return 0
	}
	return sizeStrings(1, m.Input) + sizeStrings(2, m.Output) + sizeString(3, m.Name) +
		sizeString(4, m.OpType) + sizeMsgs(5, m.Attribute) + sizeString(6, m.DocString) +
		sizeString(7, m.Domain) + sizeString(8, m.Overload) + sizeMsgs(9, m.MetadataProps)
}

func (m *NodeProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendStrings(b, 1, m.Input)
	b = appendStrings(b, 2, m.Output)
	b = appendString(b, 3, m.Name)
	b = appendString(b, 4, m.OpType)
	b = appendMsgs(b, 5, m.Attribute)
	b = appendString(b, 6, m.DocString)
	b = appendString(b, 7, m.Domain)
	b = appendString(b, 8, m.Overload)
	return appendMsgs(b, 9, m.MetadataProps)
}

func (m *AttributeProto) size() int {
	if m == nil {
		return 0
	}
	n := sizeString(1, m.Name)
	if m.F != 0 || math.Signbit(float64(m.F)) {
		n += protowire.SizeTag(2) + 4
	}
	return n + sizeInt(3, m.I) + sizeBytes(4, m.S) + sizeMsg(5, m.T, m.T != nil) +
		sizeMsg(6, m.G, m.G != nil) + sizePackedFixed(7, len(m.Floats), 4) +
		sizePackedVarints(8, m.Ints) + sizeBytesList(9, m.Strings) + sizeMsgs(10, m.Tensors) +
		sizeMsgs(11, m.Graphs) + sizeString(13, m.DocString) + sizeMsg(14, m.TP, m.TP != nil) +
		sizeMsgs(15, m.TypeProtos) + sizeInt(20, int64(m.Type)) + sizeString(21, m.RefAttrName) +
		sizeMsg(22, m.SparseTensor, m.SparseTensor != nil) + sizeMsgs(23, m.SparseTensors)
}

func (m *AttributeProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendString(b, 1, m.Name)
	if m.F != 0 || math.Signbit(float64(m.F)) {
		b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(m.F))
	}
	b = appendInt(b, 3, m.I)
	b = appendBytes(b, 4, m.S)
	b = appendMsg(b, 5, m.T, m.T != nil)
	b = appendMsg(b, 6, m.G, m.G != nil)
	b = appendPackedFloat32s(b, 7, m.Floats)
	b = appendPackedVarints(b, 8, m.Ints)
	b = appendBytesList(b, 9, m.Strings)
	b = appendMsgs(b, 10, m.Tensors)
	b = appendMsgs(b, 11, m.Graphs)
	b = appendString(b, 13, m.DocString)
	b = appendMsg(b, 14, m.TP, m.TP != nil)
	b = appendMsgs(b, 15, m.TypeProtos)
	b = appendInt(b, 20, int64(m.Type))
	b = appendString(b, 21, m.RefAttrName)
	b = appendMsg(b, 22, m.SparseTensor, m.SparseTensor != nil)
	return appendMsgs(b, 23, m.SparseTensors)
}

func (m *ValueInfoProto) size() int {
	if m == nil {
		return 0
	}
	return sizeString(1, m.Name) + sizeMsg(2, m.Type, m.Type != nil) + sizeString(3, m.DocString) +
		sizeMsgs(4, m.MetadataProps)
}

func (m *ValueInfoProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendString(b, 1, m.Name)
	b = appendMsg(b, 2, m.Type, m.Type != nil)
	b = appendString(b, 3, m.DocString)
	return appendMsgs(b, 4, m.MetadataProps)
}

func (m *TypeProto) size() int {
	if m == nil {
		return 0
	}
	return sizeMsg(1, m.TensorType, m.TensorType != nil) + sizeMsg(4, m.SequenceType, m.SequenceType != nil) +
		sizeMsg(5, m.MapType, m.MapType != nil) + sizeString(6, m.Denotation) +
		sizeMsg(7, m.OpaqueType, m.OpaqueType != nil) + sizeMsg(8, m.SparseTensorType, m.SparseTensorType != nil) +
		sizeMsg(9, m.OptionalType, m.OptionalType != nil)
}

func (m *TypeProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendMsg(b, 1, m.TensorType, m.TensorType != nil)
	b = appendMsg(b, 4, m.SequenceType, m.SequenceType != nil)
	b = appendMsg(b, 5, m.MapType, m.MapType != nil)
	b = appendString(b, 6, m.Denotation)
	b = appendMsg(b, 7, m.OpaqueType, m.OpaqueType != nil)
	b = appendMsg(b, 8, m.SparseTensorType, m.SparseTensorType != nil)
	return appendMsg(b, 9, m.OptionalType, m.OptionalType != nil)
}

func (m *TypeProtoTensor) size() int {
	if m == nil {
		return 0
	}
	return sizeInt(1, int64(m.ElemType)) + sizeMsg(2, m.Shape, m.Shape != nil)
}

func (m *TypeProtoTensor) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendInt(b, 1, int64(m.ElemType))
	return appendMsg(b, 2, m.Shape, m.Shape != nil)
}

func (m *TypeProtoSparseTensor) size() int {
	if m == nil {
		return 0
	}
	return sizeInt(1, int64(m.ElemType)) + sizeMsg(2, m.Shape, m.Shape != nil)
}

func (m *TypeProtoSparseTensor) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendInt(b, 1, int64(m.ElemType))
	return appendMsg(b, 2, m.Shape, m.Shape != nil)
}

func (m *TypeProtoSequence) size() int {
	if m == nil {
		return 0
	}
	return sizeMsg(1, m.ElemType, m.ElemType != nil)
}

func (m *TypeProtoSequence) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	return appendMsg(b, 1, m.ElemType, m.ElemType != nil)
}

func (m *TypeProtoOptional) size() int {
	if m == nil {
		return 0
	}
	return sizeMsg(1, m.ElemType, m.ElemType != nil)
}

func (m *TypeProtoOptional) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	return appendMsg(b, 1, m.ElemType, m.ElemType != nil)
}

func (m *TypeProtoMap) size() int {
	if m == nil {
		return 0
	}
	return sizeInt(1, int64(m.KeyType)) + sizeMsg(2, m.ValueType, m.ValueType != nil)
}

func (m *TypeProtoMap) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendInt(b, 1, int64(m.KeyType))
	return appendMsg(b, 2, m.ValueType, m.ValueType != nil)
}

func (m *TypeProtoOpaque) size() int {
	if m == nil {
		return 0
	}
	return sizeString(1, m.Domain) + sizeString(2, m.Name)
}

func (m *TypeProtoOpaque) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendString(b, 1, m.Domain)
	return appendString(b, 2, m.Name)
}

func (m *TensorShapeProto) size() int {
	if m == nil {
		return 0
	}
	return sizeMsgs(1, m.Dim)
}

func (m *TensorShapeProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	return appendMsgs(b, 1, m.Dim)
}

func (m *TensorShapeDimension) size() int {
	if m == nil {
		return 0
	}
	n := sizeString(3, m.Denotation)
	switch {
	case m.HasValue:
		n += protowire.SizeTag(1) + protowire.SizeVarint(uint64(m.DimValue))
	case m.DimParam != "":
		n += sizeString(2, m.DimParam)
	}
	return n
}

func (m *TensorShapeDimension) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	switch {
	case m.HasValue: // written even when 0: a zero-sized dimension is not an unknown one
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(m.DimValue))
	case m.DimParam != "":
		b = appendString(b, 2, m.DimParam)
	}
	return appendString(b, 3, m.Denotation)
}

func (m *TensorProto) size() int {
	if m == nil {
		return 0
	}
	return sizePackedVarints(1, m.Dims) + sizeInt(2, int64(m.DataType)) +
		sizeMsg(3, m.Segment, m.Segment != nil) + sizePackedFixed(4, len(m.FloatData), 4) +
		sizePackedVarints(5, m.Int32Data) + sizeBytesList(6, m.StringData) +
		sizePackedVarints(7, m.Int64Data) + sizeString(8, m.Name) + sizeBytes(9, m.RawData) +
		sizePackedFixed(10, len(m.DoubleData), 8) + sizePackedVarints(11, m.Uint64Data) +
		sizeString(12, m.DocString) + sizeMsgs(13, m.ExternalData) + sizeInt(14, int64(m.DataLocation)) +
		sizeMsgs(16, m.MetadataProps)
}

func (m *TensorProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendPackedVarints(b, 1, m.Dims)
	b = appendInt(b, 2, int64(m.DataType))
	b = appendMsg(b, 3, m.Segment, m.Segment != nil)
	b = appendPackedFloat32s(b, 4, m.FloatData)
	b = appendPackedVarints(b, 5, m.Int32Data)
	b = appendBytesList(b, 6, m.StringData)
	b = appendPackedVarints(b, 7, m.Int64Data)
	b = appendString(b, 8, m.Name)
	b = appendBytes(b, 9, m.RawData)
	b = appendPackedFloat64s(b, 10, m.DoubleData)
	b = appendPackedVarints(b, 11, m.Uint64Data)
	b = appendString(b, 12, m.DocString)
	b = appendMsgs(b, 13, m.ExternalData)
	b = appendInt(b, 14, int64(m.DataLocation))
	return appendMsgs(b, 16, m.MetadataProps)
}

func (m *TensorSegment) size() int {
	if m == nil {
		return 0
	}
	return sizeInt(1, m.Begin) + sizeInt(2, m.End)
}

func (m *TensorSegment) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendInt(b, 1, m.Begin)
	return appendInt(b, 2, m.End)
}

func (m *SparseTensorProto) size() int {
	if m == nil {
		return 0
	}
	return sizeMsg(1, m.Values, m.Values != nil) + sizeMsg(2, m.Indices, m.Indices != nil) +
		sizePackedVarints(3, m.Dims)
}

func (m *SparseTensorProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendMsg(b, 1, m.Values, m.Values != nil)
	b = appendMsg(b, 2, m.Indices, m.Indices != nil)
	return appendPackedVarints(b, 3, m.Dims)
}

func (m *FunctionProto) size() int {
	if m == nil {
		return 0
	}
	return sizeString(1, m.Name) + sizeStrings(4, m.Input) + sizeStrings(5, m.Output) +
		sizeStrings(6, m.Attribute) + sizeMsgs(7, m.Node) + sizeString(8, m.DocString) +
		sizeMsgs(9, m.OpsetImport) + sizeString(10, m.Domain) + sizeMsgs(11, m.AttributeProto) +
		sizeMsgs(12, m.ValueInfo) + sizeString(13, m.Overload) + sizeMsgs(14, m.MetadataProps)
}

func (m *FunctionProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendString(b, 1, m.Name)
	b = appendStrings(b, 4, m.Input)
	b = appendStrings(b, 5, m.Output)
	b = appendStrings(b, 6, m.Attribute)
	b = appendMsgs(b, 7, m.Node)
	b = appendString(b, 8, m.DocString)
	b = appendMsgs(b, 9, m.OpsetImport)
	b = appendString(b, 10, m.Domain)
	b = appendMsgs(b, 11, m.AttributeProto)
	b = appendMsgs(b, 12, m.ValueInfo)
	b = appendString(b, 13, m.Overload)
	return appendMsgs(b, 14, m.MetadataProps)
}

func (m *SequenceProto) size() int {
	if m == nil {
		return 0
	}
	return sizeString(1, m.Name) + sizeInt(2, int64(m.ElemType)) + sizeMsgs(3, m.TensorValues) +
		sizeMsgs(4, m.SparseTensorValues) + sizeMsgs(5, m.SequenceValues) + sizeMsgs(6, m.MapValues) +
		sizeMsgs(7, m.OptionalValues)
}

func (m *SequenceProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendString(b, 1, m.Name)
	b = appendInt(b, 2, int64(m.ElemType))
	b = appendMsgs(b, 3, m.TensorValues)
	b = appendMsgs(b, 4, m.SparseTensorValues)
	b = appendMsgs(b, 5, m.SequenceValues)
	b = appendMsgs(b, 6, m.MapValues)
	return appendMsgs(b, 7, m.OptionalValues)
}

func (m *MapProto) size() int {
	if m == nil {
		return 0
	}
	return sizeString(1, m.Name) + sizeInt(2, int64(m.KeyType)) + sizePackedVarints(3, m.Keys) +
		sizeBytesList(4, m.StringKeys) + sizeMsg(5, m.Values, m.Values != nil)
}

func (m *MapProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendString(b, 1, m.Name)
	b = appendInt(b, 2, int64(m.KeyType))
	b = appendPackedVarints(b, 3, m.Keys)
	b = appendBytesList(b, 4, m.StringKeys)
	return appendMsg(b, 5, m.Values, m.Values != nil)
}

func (m *OptionalProto) size() int {
	if m == nil {
		return 0
	}
	return sizeString(1, m.Name) + sizeInt(2, int64(m.ElemType)) +
		sizeMsg(3, m.TensorValue, m.TensorValue != nil) +
		sizeMsg(4, m.SparseTensorValue, m.SparseTensorValue != nil) +
		sizeMsg(5, m.SequenceValue, m.SequenceValue != nil) + sizeMsg(6, m.MapValue, m.MapValue != nil) +
		sizeMsg(7, m.OptionalValue, m.OptionalValue != nil)
}

func (m *OptionalProto) appendTo(b []byte) []byte {
	if m == nil {
		return b
	}
	b = appendString(b, 1, m.Name)
	b = appendInt(b, 2, int64(m.ElemType))
	b = appendMsg(b, 3, m.TensorValue, m.TensorValue != nil)
	b = appendMsg(b, 4, m.SparseTensorValue, m.SparseTensorValue != nil)
	b = appendMsg(b, 5, m.SequenceValue, m.SequenceValue != nil)
	b = appendMsg(b, 6, m.MapValue, m.MapValue != nil)
	return appendMsg(b, 7, m.OptionalValue, m.OptionalValue != nil)
}
