package onnx

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kilnai/kiln/tensor"
)

// DecodeModel decodes a serialized ModelProto (the contents of a .onnx
// file). Bytes fields of the result share b's memory; b must stay unchanged
// while they are in use.
func DecodeModel(b []byte) (*ModelProto, error) {
	return decodeTop(b, "ModelProto", decodeModel)
}

// DecodeGraph decodes a serialized GraphProto. Bytes fields of the result
// share b's memory.
func DecodeGraph(b []byte) (*GraphProto, error) {
	return decodeTop(b, "GraphProto", decodeGraph)
}

// DecodeTensor decodes a serialized TensorProto, such as the input_0.pb
// files of ONNX test data sets. Bytes fields of the result (RawData,
// StringData) share b's memory.
func DecodeTensor(b []byte) (*TensorProto, error) {
	return decodeTop(b, "TensorProto", decodeTensor)
}

// DecodeSequence decodes a serialized SequenceProto (onnx-data.proto).
func DecodeSequence(b []byte) (*SequenceProto, error) {
	return decodeTop(b, "SequenceProto", decodeSequence)
}

// DecodeMap decodes a serialized MapProto (onnx-data.proto).
func DecodeMap(b []byte) (*MapProto, error) {
	return decodeTop(b, "MapProto", decodeMap)
}

// DecodeOptional decodes a serialized OptionalProto (onnx-data.proto).
func DecodeOptional(b []byte) (*OptionalProto, error) {
	return decodeTop(b, "OptionalProto", decodeOptional)
}

func decodeTop[T any](b []byte, name string, dec func(*reader) (*T, error)) (*T, error) {
	r := reader{b: b}
	m, err := dec(&r)
	if err != nil {
		return nil, prefixPath(err, name, -1)
	}
	return m, nil
}

// reader walks the fields of one message. After next, num and typ describe
// the current field and pos is at its value; the value methods consume it.
type reader struct {
	b     []byte // the message's bytes
	pos   int    // read position in b
	base  int    // offset of b[0] in the whole input, for errors
	depth int    // nesting depth of this message (top level 0)
	num   protowire.Number
	typ   protowire.Type
}

func (r *reader) more() bool { return r.pos < len(r.b) }

func (r *reader) errorf(name string, format string, args ...any) error {
	return &DecodeError{Path: name, Offset: r.base + r.pos, Reason: fmt.Sprintf(format, args...)}
}

func (r *reader) parseError(name string, code int) error {
	return r.errorf(name, "%v", protowire.ParseError(code))
}

// next reads the tag of the next field.
func (r *reader) next() error {
	num, typ, n := protowire.ConsumeTag(r.b[r.pos:])
	if n < 0 {
		return r.parseError("", n)
	}
	r.pos += n
	r.num, r.typ = num, typ
	return nil
}

// skip consumes the value of a field the decoder does not know.
func (r *reader) skip() error {
	n := protowire.ConsumeFieldValue(r.num, r.typ, r.b[r.pos:])
	if n < 0 {
		return r.parseError(fmt.Sprintf("field %d", r.num), n)
	}
	r.pos += n
	return nil
}

func (r *reader) wantType(name string, t protowire.Type) error {
	if r.typ != t {
		return r.errorf(name, "wire type %d, want %d", r.typ, t)
	}
	return nil
}

func (r *reader) varint(name string) (uint64, error) {
	if err := r.wantType(name, protowire.VarintType); err != nil {
		return 0, err
	}
	v, n := protowire.ConsumeVarint(r.b[r.pos:])
	if n < 0 {
		return 0, r.parseError(name, n)
	}
	r.pos += n
	return v, nil
}

func (r *reader) int64(name string) (int64, error) {
	v, err := r.varint(name)
	return int64(v), err
}

func (r *reader) int32(name string) (int32, error) {
	v, err := r.varint(name)
	return int32(v), err
}

func (r *reader) dtype(name string) (tensor.DType, error) {
	v, err := r.varint(name)
	return tensor.DType(int32(v)), err
}

func (r *reader) float32(name string) (float32, error) {
	if err := r.wantType(name, protowire.Fixed32Type); err != nil {
		return 0, err
	}
	v, n := protowire.ConsumeFixed32(r.b[r.pos:])
	if n < 0 {
		return 0, r.parseError(name, n)
	}
	r.pos += n
	return math.Float32frombits(v), nil
}

// bytes consumes a length-delimited value and returns it as a sub-slice of
// the input (capacity clipped, so appending to it cannot overwrite the
// input) together with its offset in the whole input.
func (r *reader) bytes(name string) ([]byte, int, error) {
	if err := r.wantType(name, protowire.BytesType); err != nil {
		return nil, 0, err
	}
	v, n := protowire.ConsumeBytes(r.b[r.pos:])
	if n < 0 {
		return nil, 0, r.parseError(name, n)
	}
	off := r.base + r.pos + n - len(v)
	r.pos += n
	return v[:len(v):len(v)], off, nil
}

// optBytes is bytes for a singular bytes field: empty reads as nil.
func (r *reader) optBytes(name string) ([]byte, error) {
	v, _, err := r.bytes(name)
	if len(v) == 0 {
		v = nil
	}
	return v, err
}

func (r *reader) string(name string) (string, error) {
	v, _, err := r.bytes(name)
	return string(v), err
}

func (r *reader) appendString(name string, dst *[]string) error {
	v, _, err := r.bytes(name)
	if err == nil {
		*dst = append(*dst, string(v))
	}
	return err
}

func (r *reader) appendBytes(name string, dst *[][]byte) error {
	v, _, err := r.bytes(name)
	if err == nil {
		*dst = append(*dst, v)
	}
	return err
}

// appendVarints decodes a repeated varint field, packed or not, converting
// each value with conv.
func appendVarints[T any](r *reader, name string, dst *[]T, conv func(uint64) T) error {
	if r.typ == protowire.VarintType {
		v, err := r.varint(name)
		if err == nil {
			*dst = append(*dst, conv(v))
		}
		return err
	}
	b, off, err := r.bytes(name)
	if err != nil {
		return err
	}
	// Every varint ends in exactly one byte below 0x80: counting those
	// bounds the number of values by the bytes actually present.
	n := 0
	for _, c := range b {
		if c < 0x80 {
			n++
		}
	}
	out := growSlice(*dst, n)
	for i := 0; i < len(b); {
		v, m := protowire.ConsumeVarint(b[i:])
		if m < 0 {
			return &DecodeError{Path: name, Offset: off + i, Reason: fmt.Sprintf("packed: %v", protowire.ParseError(m))}
		}
		out = append(out, conv(v))
		i += m
	}
	*dst = out
	return nil
}

// appendFixed decodes a repeated fixed-width field (size 4 or 8), packed or
// not.
func appendFixed[T any](r *reader, name string, dst *[]T, size int, conv func([]byte) T) error {
	want := protowire.Fixed32Type
	if size == 8 {
		want = protowire.Fixed64Type
	}
	if r.typ == want {
		if r.pos+size > len(r.b) {
			return r.errorf(name, "%v", protowire.ParseError(-1))
		}
		*dst = append(*dst, conv(r.b[r.pos:r.pos+size]))
		r.pos += size
		return nil
	}
	b, off, err := r.bytes(name)
	if err != nil {
		return err
	}
	if len(b)%size != 0 {
		return &DecodeError{Path: name, Offset: off, Reason: fmt.Sprintf("packed length %d is not a multiple of %d", len(b), size)}
	}
	out := growSlice(*dst, len(b)/size)
	for i := 0; i < len(b); i += size {
		out = append(out, conv(b[i:i+size]))
	}
	*dst = out
	return nil
}

func growSlice[T any](s []T, n int) []T {
	if cap(s)-len(s) >= n {
		return s
	}
	out := make([]T, len(s), len(s)+n)
	copy(out, s)
	return out
}

func convInt64(v uint64) int64   { return int64(v) }
func convInt32(v uint64) int32   { return int32(v) }
func convUint64(v uint64) uint64 { return v }
func convFloat32(b []byte) float32 {
	return math.Float32frombits(binary.LittleEndian.Uint32(b))
}
func convFloat64(b []byte) float64 {
	return math.Float64frombits(binary.LittleEndian.Uint64(b))
}

// sub decodes the current field as an embedded message with dec.
func sub[T any](r *reader, name string, idx int, dec func(*reader) (*T, error)) (*T, error) {
	b, off, err := r.bytes(name)
	if err != nil {
		return nil, err
	}
	if r.depth+1 > MaxDepth {
		return nil, &DecodeError{Path: name, Offset: off, Reason: fmt.Sprintf("messages nested deeper than %d", MaxDepth)}
	}
	c := reader{b: b, base: off, depth: r.depth + 1}
	m, err := dec(&c)
	if err != nil {
		return nil, prefixPath(err, name, idx)
	}
	return m, nil
}

// appendSub decodes the current field as one more element of a repeated
// message field.
func appendSub[T any](r *reader, name string, dst *[]*T, dec func(*reader) (*T, error)) error {
	m, err := sub(r, name, len(*dst), dec)
	if err == nil {
		*dst = append(*dst, m)
	}
	return err
}

// fields runs f for every field of the message; f returns handled=false for
// fields it does not know, which are skipped.
func (r *reader) fields(f func() (handled bool, err error)) error {
	for r.more() {
		if err := r.next(); err != nil {
			return err
		}
		ok, err := f()
		if err != nil {
			return err
		}
		if !ok {
			if err := r.skip(); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeModel(r *reader) (*ModelProto, error) {
	m := &ModelProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.IRVersion, err = r.int64("ir_version")
		case 8:
			err = appendSub(r, "opset_import", &m.OpsetImport, decodeOpsetID)
		case 2:
			m.ProducerName, err = r.string("producer_name")
		case 3:
			m.ProducerVersion, err = r.string("producer_version")
		case 4:
			m.Domain, err = r.string("domain")
		case 5:
			m.ModelVersion, err = r.int64("model_version")
		case 6:
			m.DocString, err = r.string("doc_string")
		case 7:
			m.Graph, err = sub(r, "graph", -1, decodeGraph)
		case 14:
			err = appendSub(r, "metadata_props", &m.MetadataProps, decodeStringEntry)
		case 20:
			err = appendSub(r, "training_info", &m.TrainingInfo, decodeTrainingInfo)
		case 25:
			err = appendSub(r, "functions", &m.Functions, decodeFunction)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeOpsetID(r *reader) (*OperatorSetIdProto, error) {
	m := &OperatorSetIdProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.Domain, err = r.string("domain")
		case 2:
			m.Version, err = r.int64("version")
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeStringEntry(r *reader) (*StringStringEntryProto, error) {
	m := &StringStringEntryProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.Key, err = r.string("key")
		case 2:
			m.Value, err = r.string("value")
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeTrainingInfo(r *reader) (*TrainingInfoProto, error) {
	m := &TrainingInfoProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.Initialization, err = sub(r, "initialization", -1, decodeGraph)
		case 2:
			m.Algorithm, err = sub(r, "algorithm", -1, decodeGraph)
		case 3:
			err = appendSub(r, "initialization_binding", &m.InitializationBinding, decodeStringEntry)
		case 4:
			err = appendSub(r, "update_binding", &m.UpdateBinding, decodeStringEntry)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeGraph(r *reader) (*GraphProto, error) {
	m := &GraphProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			err = appendSub(r, "node", &m.Node, decodeNode)
		case 2:
			m.Name, err = r.string("name")
		case 5:
			err = appendSub(r, "initializer", &m.Initializer, decodeTensor)
		case 15:
			err = appendSub(r, "sparse_initializer", &m.SparseInitializer, decodeSparseTensor)
		case 10:
			m.DocString, err = r.string("doc_string")
		case 11:
			err = appendSub(r, "input", &m.Input, decodeValueInfo)
		case 12:
			err = appendSub(r, "output", &m.Output, decodeValueInfo)
		case 13:
			err = appendSub(r, "value_info", &m.ValueInfo, decodeValueInfo)
		case 14:
			err = appendSub(r, "quantization_annotation", &m.QuantizationAnnotation, decodeTensorAnnotation)
		case 16:
			err = appendSub(r, "metadata_props", &m.MetadataProps, decodeStringEntry)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeTensorAnnotation(r *reader) (*TensorAnnotation, error) {
	m := &TensorAnnotation{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.TensorName, err = r.string("tensor_name")
		case 2:
			err = appendSub(r, "quant_parameter_tensor_names", &m.QuantParameterTensorNames, decodeStringEntry)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeNode(r *reader) (*NodeProto, error) {
	m := &NodeProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			err = r.appendString("input", &m.Input)
		case 2:
			err = r.appendString("output", &m.Output)
		case 3:
			m.Name, err = r.string("name")
		case 4:
			m.OpType, err = r.string("op_type")
		case 7:
			m.Domain, err = r.string("domain")
		case 8:
			m.Overload, err = r.string("overload")
		case 5:
			err = appendSub(r, "attribute", &m.Attribute, decodeAttribute)
		case 6:
			m.DocString, err = r.string("doc_string")
		case 9:
			err = appendSub(r, "metadata_props", &m.MetadataProps, decodeStringEntry)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeAttribute(r *reader) (*AttributeProto, error) {
	m := &AttributeProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.Name, err = r.string("name")
		case 21:
			m.RefAttrName, err = r.string("ref_attr_name")
		case 13:
			m.DocString, err = r.string("doc_string")
		case 20:
			var v int32
			v, err = r.int32("type")
			m.Type = AttributeType(v)
		case 2:
			m.F, err = r.float32("f")
		case 3:
			m.I, err = r.int64("i")
		case 4:
			m.S, err = r.optBytes("s")
		case 5:
			m.T, err = sub(r, "t", -1, decodeTensor)
		case 6:
			m.G, err = sub(r, "g", -1, decodeGraph)
		case 22:
			m.SparseTensor, err = sub(r, "sparse_tensor", -1, decodeSparseTensor)
		case 14:
			m.TP, err = sub(r, "tp", -1, decodeType)
		case 7:
			err = appendFixed(r, "floats", &m.Floats, 4, convFloat32)
		case 8:
			err = appendVarints(r, "ints", &m.Ints, convInt64)
		case 9:
			err = r.appendBytes("strings", &m.Strings)
		case 10:
			err = appendSub(r, "tensors", &m.Tensors, decodeTensor)
		case 11:
			err = appendSub(r, "graphs", &m.Graphs, decodeGraph)
		case 23:
			err = appendSub(r, "sparse_tensors", &m.SparseTensors, decodeSparseTensor)
		case 15:
			err = appendSub(r, "type_protos", &m.TypeProtos, decodeType)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeValueInfo(r *reader) (*ValueInfoProto, error) {
	m := &ValueInfoProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.Name, err = r.string("name")
		case 2:
			m.Type, err = sub(r, "type", -1, decodeType)
		case 3:
			m.DocString, err = r.string("doc_string")
		case 4:
			err = appendSub(r, "metadata_props", &m.MetadataProps, decodeStringEntry)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

// decodeType decodes a TypeProto. The value kinds form a oneof: a later one
// replaces an earlier one, as protobuf specifies.
func decodeType(r *reader) (*TypeProto, error) {
	m := &TypeProto{}
	reset := func() { *m = TypeProto{Denotation: m.Denotation} }
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			var v *TypeProtoTensor
			v, err = sub(r, "tensor_type", -1, decodeTypeTensor)
			reset()
			m.TensorType = v
		case 4:
			var v *TypeProtoSequence
			v, err = sub(r, "sequence_type", -1, decodeTypeSequence)
			reset()
			m.SequenceType = v
		case 5:
			var v *TypeProtoMap
			v, err = sub(r, "map_type", -1, decodeTypeMap)
			reset()
			m.MapType = v
		case 9:
			var v *TypeProtoOptional
			v, err = sub(r, "optional_type", -1, decodeTypeOptional)
			reset()
			m.OptionalType = v
		case 8:
			var v *TypeProtoSparseTensor
			v, err = sub(r, "sparse_tensor_type", -1, decodeTypeSparseTensor)
			reset()
			m.SparseTensorType = v
		case 7:
			var v *TypeProtoOpaque
			v, err = sub(r, "opaque_type", -1, decodeTypeOpaque)
			reset()
			m.OpaqueType = v
		case 6:
			m.Denotation, err = r.string("denotation")
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeTypeTensor(r *reader) (*TypeProtoTensor, error) {
	m := &TypeProtoTensor{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.ElemType, err = r.dtype("elem_type")
		case 2:
			m.Shape, err = sub(r, "shape", -1, decodeShape)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeTypeSparseTensor(r *reader) (*TypeProtoSparseTensor, error) {
	t, err := decodeTypeTensor(r)
	if err != nil {
		return nil, err
	}
	return &TypeProtoSparseTensor{ElemType: t.ElemType, Shape: t.Shape}, nil
}

func decodeTypeSequence(r *reader) (*TypeProtoSequence, error) {
	m := &TypeProtoSequence{}
	err := r.fields(func() (bool, error) {
		if r.num != 1 {
			return false, nil
		}
		var err error
		m.ElemType, err = sub(r, "elem_type", -1, decodeType)
		return true, err
	})
	return m, err
}

func decodeTypeOptional(r *reader) (*TypeProtoOptional, error) {
	s, err := decodeTypeSequence(r)
	if err != nil {
		return nil, err
	}
	return &TypeProtoOptional{ElemType: s.ElemType}, nil
}

func decodeTypeMap(r *reader) (*TypeProtoMap, error) {
	m := &TypeProtoMap{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.KeyType, err = r.dtype("key_type")
		case 2:
			m.ValueType, err = sub(r, "value_type", -1, decodeType)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeTypeOpaque(r *reader) (*TypeProtoOpaque, error) {
	m := &TypeProtoOpaque{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.Domain, err = r.string("domain")
		case 2:
			m.Name, err = r.string("name")
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeShape(r *reader) (*TensorShapeProto, error) {
	m := &TensorShapeProto{}
	err := r.fields(func() (bool, error) {
		if r.num != 1 {
			return false, nil
		}
		return true, appendSub(r, "dim", &m.Dim, decodeDim)
	})
	return m, err
}

func decodeDim(r *reader) (*TensorShapeDimension, error) {
	m := &TensorShapeDimension{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1: // oneof with dim_param
			m.DimValue, err = r.int64("dim_value")
			m.HasValue, m.DimParam = true, ""
		case 2:
			m.DimParam, err = r.string("dim_param")
			m.HasValue, m.DimValue = false, 0
		case 3:
			m.Denotation, err = r.string("denotation")
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeTensor(r *reader) (*TensorProto, error) {
	m := &TensorProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			err = appendVarints(r, "dims", &m.Dims, convInt64)
		case 2:
			m.DataType, err = r.dtype("data_type")
		case 3:
			m.Segment, err = sub(r, "segment", -1, decodeSegment)
		case 4:
			err = appendFixed(r, "float_data", &m.FloatData, 4, convFloat32)
		case 5:
			err = appendVarints(r, "int32_data", &m.Int32Data, convInt32)
		case 6:
			err = r.appendBytes("string_data", &m.StringData)
		case 7:
			err = appendVarints(r, "int64_data", &m.Int64Data, convInt64)
		case 8:
			m.Name, err = r.string("name")
		case 12:
			m.DocString, err = r.string("doc_string")
		case 9:
			m.RawData, err = r.optBytes("raw_data")
		case 13:
			err = appendSub(r, "external_data", &m.ExternalData, decodeStringEntry)
		case 14:
			var v int32
			v, err = r.int32("data_location")
			m.DataLocation = DataLocation(v)
		case 10:
			err = appendFixed(r, "double_data", &m.DoubleData, 8, convFloat64)
		case 11:
			err = appendVarints(r, "uint64_data", &m.Uint64Data, convUint64)
		case 16:
			err = appendSub(r, "metadata_props", &m.MetadataProps, decodeStringEntry)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeSegment(r *reader) (*TensorSegment, error) {
	m := &TensorSegment{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.Begin, err = r.int64("begin")
		case 2:
			m.End, err = r.int64("end")
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeSparseTensor(r *reader) (*SparseTensorProto, error) {
	m := &SparseTensorProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.Values, err = sub(r, "values", -1, decodeTensor)
		case 2:
			m.Indices, err = sub(r, "indices", -1, decodeTensor)
		case 3:
			err = appendVarints(r, "dims", &m.Dims, convInt64)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeFunction(r *reader) (*FunctionProto, error) {
	m := &FunctionProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.Name, err = r.string("name")
		case 4:
			err = r.appendString("input", &m.Input)
		case 5:
			err = r.appendString("output", &m.Output)
		case 6:
			err = r.appendString("attribute", &m.Attribute)
		case 11:
			err = appendSub(r, "attribute_proto", &m.AttributeProto, decodeAttribute)
		case 7:
			err = appendSub(r, "node", &m.Node, decodeNode)
		case 8:
			m.DocString, err = r.string("doc_string")
		case 9:
			err = appendSub(r, "opset_import", &m.OpsetImport, decodeOpsetID)
		case 10:
			m.Domain, err = r.string("domain")
		case 13:
			m.Overload, err = r.string("overload")
		case 12:
			err = appendSub(r, "value_info", &m.ValueInfo, decodeValueInfo)
		case 14:
			err = appendSub(r, "metadata_props", &m.MetadataProps, decodeStringEntry)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeSequence(r *reader) (*SequenceProto, error) {
	m := &SequenceProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.Name, err = r.string("name")
		case 2:
			var v int32
			v, err = r.int32("elem_type")
			m.ElemType = ElemType(v)
		case 3:
			err = appendSub(r, "tensor_values", &m.TensorValues, decodeTensor)
		case 4:
			err = appendSub(r, "sparse_tensor_values", &m.SparseTensorValues, decodeSparseTensor)
		case 5:
			err = appendSub(r, "sequence_values", &m.SequenceValues, decodeSequence)
		case 6:
			err = appendSub(r, "map_values", &m.MapValues, decodeMap)
		case 7:
			err = appendSub(r, "optional_values", &m.OptionalValues, decodeOptional)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeMap(r *reader) (*MapProto, error) {
	m := &MapProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.Name, err = r.string("name")
		case 2:
			m.KeyType, err = r.dtype("key_type")
		case 3:
			err = appendVarints(r, "keys", &m.Keys, convInt64)
		case 4:
			err = r.appendBytes("string_keys", &m.StringKeys)
		case 5:
			m.Values, err = sub(r, "values", -1, decodeSequence)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

func decodeOptional(r *reader) (*OptionalProto, error) {
	m := &OptionalProto{}
	err := r.fields(func() (bool, error) {
		var err error
		switch r.num {
		case 1:
			m.Name, err = r.string("name")
		case 2:
			var v int32
			v, err = r.int32("elem_type")
			m.ElemType = ElemType(v)
		case 3:
			m.TensorValue, err = sub(r, "tensor_value", -1, decodeTensor)
		case 4:
			m.SparseTensorValue, err = sub(r, "sparse_tensor_value", -1, decodeSparseTensor)
		case 5:
			m.SequenceValue, err = sub(r, "sequence_value", -1, decodeSequence)
		case 6:
			m.MapValue, err = sub(r, "map_value", -1, decodeMap)
		case 7:
			m.OptionalValue, err = sub(r, "optional_value", -1, decodeOptional)
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}
