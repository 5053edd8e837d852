package onnx

import (
	"fmt"

	"github.com/kilnai/kiln/tensor"
)

// The messages below mirror onnx.proto (IR version 10). Field comments give
// the protobuf field number. Fields of protobuf type bytes are []byte
// sub-slices of the decoded input (never copied: do not modify them, and do
// not use them after the memory behind a File is released); fields of type
// string are ordinary Go strings. Element types (TensorProto.data_type,
// TypeProto.Tensor.elem_type, ...) are tensor.DType, whose values are those
// of TensorProto.DataType, so types kiln cannot hold (complex, float8, int4,
// ...) still decode and print as "dtype(N)".

// MaxDepth is the deepest nesting of messages the decoder accepts (a graph
// in an attribute of a node of a graph counts three levels). Real models
// stay far below it; it keeps hostile input from exhausting the stack.
const MaxDepth = 64

// IRVersion is the newest ONNX IR version whose messages this package knows.
const IRVersion = 10

// ModelProto is an ONNX model: metadata, the opsets it imports, the main
// graph and model-local functions.
type ModelProto struct {
	IRVersion       int64                     // 1
	OpsetImport     []*OperatorSetIdProto     // 8
	ProducerName    string                    // 2
	ProducerVersion string                    // 3
	Domain          string                    // 4
	ModelVersion    int64                     // 5
	DocString       string                    // 6
	Graph           *GraphProto               // 7
	MetadataProps   []*StringStringEntryProto // 14
	TrainingInfo    []*TrainingInfoProto      // 20
	Functions       []*FunctionProto          // 25
}

// OpsetVersion returns the version of the operator set imported for domain
// ("" and "ai.onnx" both name the default domain) and whether the model
// imports it.
func (m *ModelProto) OpsetVersion(domain string) (int64, bool) {
	return opsetVersion(m.OpsetImport, domain)
}

func opsetVersion(imports []*OperatorSetIdProto, domain string) (int64, bool) {
	if domain == "ai.onnx" {
		domain = ""
	}
	for _, o := range imports {
		if o == nil {
			continue
		}
		d := o.Domain
		if d == "ai.onnx" {
			d = ""
		}
		if d == domain {
			return o.Version, true
		}
	}
	return 0, false
}

// OperatorSetIdProto names an operator set and its version.
type OperatorSetIdProto struct {
	Domain  string // 1
	Version int64  // 2
}

// StringStringEntryProto is a key-value pair (metadata, external data
// entries, bindings).
type StringStringEntryProto struct {
	Key   string // 1
	Value string // 2
}

// TrainingInfoProto holds the initialization and training-step graphs of a
// trainable model. kiln decodes and re-encodes it but does not run it.
type TrainingInfoProto struct {
	Initialization        *GraphProto               // 1
	Algorithm             *GraphProto               // 2
	InitializationBinding []*StringStringEntryProto // 3
	UpdateBinding         []*StringStringEntryProto // 4
}

// GraphProto is a computation graph: nodes in topological order, constant
// initializers, and the typed inputs, outputs and intermediate values.
type GraphProto struct {
	Node                   []*NodeProto              // 1
	Name                   string                    // 2
	Initializer            []*TensorProto            // 5
	SparseInitializer      []*SparseTensorProto      // 15
	DocString              string                    // 10
	Input                  []*ValueInfoProto         // 11
	Output                 []*ValueInfoProto         // 12
	ValueInfo              []*ValueInfoProto         // 13
	QuantizationAnnotation []*TensorAnnotation       // 14
	MetadataProps          []*StringStringEntryProto // 16
}

// TensorAnnotation maps a tensor to its quantization parameter tensors.
type TensorAnnotation struct {
	TensorName                string                    // 1
	QuantParameterTensorNames []*StringStringEntryProto // 2
}

// NodeProto is one operator invocation in a graph.
type NodeProto struct {
	Input         []string                  // 1
	Output        []string                  // 2
	Name          string                    // 3
	OpType        string                    // 4
	Domain        string                    // 7
	Overload      string                    // 8
	Attribute     []*AttributeProto         // 5
	DocString     string                    // 6
	MetadataProps []*StringStringEntryProto // 9
}

// Attr returns the node's attribute called name, or nil.
func (n *NodeProto) Attr(name string) *AttributeProto {
	for _, a := range n.Attribute {
		if a != nil && a.Name == name {
			return a
		}
	}
	return nil
}

// AttributeType is the discriminator of an AttributeProto
// (AttributeProto.AttributeType in onnx.proto).
type AttributeType int32

// The attribute types of onnx.proto.
const (
	AttributeUndefined     AttributeType = 0
	AttributeFloat         AttributeType = 1
	AttributeInt           AttributeType = 2
	AttributeString        AttributeType = 3
	AttributeTensor        AttributeType = 4
	AttributeGraph         AttributeType = 5
	AttributeFloats        AttributeType = 6
	AttributeInts          AttributeType = 7
	AttributeStrings       AttributeType = 8
	AttributeTensors       AttributeType = 9
	AttributeGraphs        AttributeType = 10
	AttributeSparseTensor  AttributeType = 11
	AttributeSparseTensors AttributeType = 12
	AttributeTypeProto     AttributeType = 13
	AttributeTypeProtos    AttributeType = 14
)

var attributeTypeNames = [...]string{
	"UNDEFINED", "FLOAT", "INT", "STRING", "TENSOR", "GRAPH", "FLOATS", "INTS", "STRINGS",
	"TENSORS", "GRAPHS", "SPARSE_TENSOR", "SPARSE_TENSORS", "TYPE_PROTO", "TYPE_PROTOS",
}

// String returns the name onnx.proto gives the type, e.g. "INTS".
func (t AttributeType) String() string {
	if t >= 0 && int(t) < len(attributeTypeNames) {
		return attributeTypeNames[t]
	}
	return fmt.Sprintf("AttributeType(%d)", int32(t))
}

// AttributeProto is a named attribute of a node (or a function's default
// attribute value). Type says which of the value fields is in use; when
// RefAttrName is set (inside a function body) the value is taken from the
// calling node's attribute of that name instead.
type AttributeProto struct {
	Name          string               // 1
	RefAttrName   string               // 21
	DocString     string               // 13
	Type          AttributeType        // 20
	F             float32              // 2
	I             int64                // 3
	S             []byte               // 4
	T             *TensorProto         // 5
	G             *GraphProto          // 6
	SparseTensor  *SparseTensorProto   // 22
	TP            *TypeProto           // 14
	Floats        []float32            // 7
	Ints          []int64              // 8
	Strings       [][]byte             // 9
	Tensors       []*TensorProto       // 10
	Graphs        []*GraphProto        // 11
	SparseTensors []*SparseTensorProto // 23
	TypeProtos    []*TypeProto         // 15
}

// ValueInfoProto names a value of a graph and gives its type.
type ValueInfoProto struct {
	Name          string                    // 1
	Type          *TypeProto                // 2
	DocString     string                    // 3
	MetadataProps []*StringStringEntryProto // 4
}

// TypeProto is the type of a value. At most one of the *Type fields is set
// (a oneof in onnx.proto); none set means the type is unknown.
type TypeProto struct {
	TensorType       *TypeProtoTensor       // 1
	SequenceType     *TypeProtoSequence     // 4
	MapType          *TypeProtoMap          // 5
	OptionalType     *TypeProtoOptional     // 9
	SparseTensorType *TypeProtoSparseTensor // 8
	OpaqueType       *TypeProtoOpaque       // 7
	Denotation       string                 // 6
}

// TypeProtoTensor is a dense tensor type (TypeProto.Tensor). A nil Shape
// means the rank is unknown; a Shape with no dims is a scalar.
type TypeProtoTensor struct {
	ElemType tensor.DType      // 1
	Shape    *TensorShapeProto // 2
}

// TypeProtoSparseTensor is a sparse tensor type (TypeProto.SparseTensor).
type TypeProtoSparseTensor struct {
	ElemType tensor.DType      // 1
	Shape    *TensorShapeProto // 2
}

// TypeProtoSequence is a sequence type (TypeProto.Sequence).
type TypeProtoSequence struct {
	ElemType *TypeProto // 1
}

// TypeProtoMap is a map type (TypeProto.Map).
type TypeProtoMap struct {
	KeyType   tensor.DType // 1
	ValueType *TypeProto   // 2
}

// TypeProtoOptional is an optional type (TypeProto.Optional).
type TypeProtoOptional struct {
	ElemType *TypeProto // 1
}

// TypeProtoOpaque is an opaque type (TypeProto.Opaque, from onnx-ml).
type TypeProtoOpaque struct {
	Domain string // 1
	Name   string // 2
}

// TensorShapeProto is a tensor shape whose dimensions may be known, symbolic
// or unknown.
type TensorShapeProto struct {
	Dim []*TensorShapeDimension // 1
}

// TensorShapeDimension is one dimension of a TensorShapeProto
// (TensorShapeProto.Dimension). It is a known size when HasValue is set
// (DimValue, which may be 0), symbolic when DimParam is set (e.g. "batch"),
// and unknown otherwise.
type TensorShapeDimension struct {
	DimValue   int64  // 1
	HasValue   bool   // whether dim_value is present
	DimParam   string // 2
	Denotation string // 3
}

// DataLocation says where a tensor's data is stored
// (TensorProto.DataLocation).
type DataLocation int32

// The data locations of onnx.proto.
const (
	// DataLocationDefault: the data is in the TensorProto itself (raw_data
	// or one of the typed fields).
	DataLocationDefault DataLocation = 0
	// DataLocationExternal: the data is in a separate file described by
	// TensorProto.ExternalData.
	DataLocationExternal DataLocation = 1
)

// TensorProto is a serialized tensor: an initializer, a constant attribute,
// or a test input or output (input_0.pb). The elements are in exactly one of
// RawData (little endian), the typed field for the data type, or external
// storage.
type TensorProto struct {
	Dims          []int64                   // 1
	DataType      tensor.DType              // 2
	Segment       *TensorSegment            // 3
	FloatData     []float32                 // 4
	Int32Data     []int32                   // 5
	StringData    [][]byte                  // 6
	Int64Data     []int64                   // 7
	Name          string                    // 8
	DocString     string                    // 12
	RawData       []byte                    // 9
	ExternalData  []*StringStringEntryProto // 13
	DataLocation  DataLocation              // 14
	DoubleData    []float64                 // 10
	Uint64Data    []uint64                  // 11
	MetadataProps []*StringStringEntryProto // 16
}

// TensorSegment marks a TensorProto as one chunk, [Begin, End), of a larger
// tensor (TensorProto.Segment).
type TensorSegment struct {
	Begin int64 // 1
	End   int64 // 2
}

// SparseTensorProto is a sparse tensor in coordinate format: Values holds
// the NNZ non-zero values, Indices their [NNZ, rank] or [NNZ] (linearized)
// positions, Dims the dense shape.
type SparseTensorProto struct {
	Values  *TensorProto // 1
	Indices *TensorProto // 2
	Dims    []int64      // 3
}

// FunctionProto is a model-local function: a named sub-graph that nodes of
// the model can call like an operator.
type FunctionProto struct {
	Name           string                    // 1
	Input          []string                  // 4
	Output         []string                  // 5
	Attribute      []string                  // 6
	AttributeProto []*AttributeProto         // 11
	Node           []*NodeProto              // 7
	DocString      string                    // 8
	OpsetImport    []*OperatorSetIdProto     // 9
	Domain         string                    // 10
	Overload       string                    // 13
	ValueInfo      []*ValueInfoProto         // 12
	MetadataProps  []*StringStringEntryProto // 14
}

// The messages of onnx-data.proto, used for the inputs and outputs of test
// data sets whose values are not plain tensors.

// ElemType says what a SequenceProto or OptionalProto holds
// (SequenceProto.DataType and OptionalProto.DataType in onnx-data.proto).
type ElemType int32

// The element kinds of onnx-data.proto.
const (
	ElemUndefined    ElemType = 0
	ElemTensor       ElemType = 1
	ElemSparseTensor ElemType = 2
	ElemSequence     ElemType = 3
	ElemMap          ElemType = 4
	ElemOptional     ElemType = 5
)

// SequenceProto is a sequence value: a list of tensors, sparse tensors,
// sequences, maps or optionals, as ElemType says.
type SequenceProto struct {
	Name               string               // 1
	ElemType           ElemType             // 2
	TensorValues       []*TensorProto       // 3
	SparseTensorValues []*SparseTensorProto // 4
	SequenceValues     []*SequenceProto     // 5
	MapValues          []*MapProto          // 6
	OptionalValues     []*OptionalProto     // 7
}

// MapProto is a map value: integer keys (Keys) or string keys (StringKeys)
// of KeyType, and a sequence of as many values.
type MapProto struct {
	Name       string         // 1
	KeyType    tensor.DType   // 2
	Keys       []int64        // 3
	StringKeys [][]byte       // 4
	Values     *SequenceProto // 5
}

// OptionalProto is an optional value: empty, or one value of ElemType.
type OptionalProto struct {
	Name              string             // 1
	ElemType          ElemType           // 2
	TensorValue       *TensorProto       // 3
	SparseTensorValue *SparseTensorProto // 4
	SequenceValue     *SequenceProto     // 5
	MapValue          *MapProto          // 6
	OptionalValue     *OptionalProto     // 7
}
