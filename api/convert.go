package api

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/tensor"
)

// datatypes pairs each KServe v2 datatype name with kiln's element type.
var datatypes = []struct {
	name string
	dt   tensor.DType
}{
	{"BOOL", tensor.Bool},
	{"UINT8", tensor.Uint8},
	{"UINT16", tensor.Uint16},
	{"UINT32", tensor.Uint32},
	{"UINT64", tensor.Uint64},
	{"INT8", tensor.Int8},
	{"INT16", tensor.Int16},
	{"INT32", tensor.Int32},
	{"INT64", tensor.Int64},
	{"FP16", tensor.Float16},
	{"BF16", tensor.BFloat16},
	{"FP32", tensor.Float32},
	{"FP64", tensor.Float64},
	{"BYTES", tensor.String},
}

// Datatypes returns the KServe v2 datatype names kiln supports.
func Datatypes() []string {
	out := make([]string, len(datatypes))
	for i, d := range datatypes {
		out[i] = d.name
	}
	return out
}

// Datatype returns the KServe v2 datatype name of dt ("FP32" for
// tensor.Float32, "BYTES" for tensor.String, ...).
func Datatype(dt tensor.DType) (string, error) {
	for _, d := range datatypes {
		if d.dt == dt {
			return d.name, nil
		}
	}
	return "", fmt.Errorf("%w: no KServe datatype for %v", ErrDatatype, dt)
}

// ParseDatatype returns the element type of a KServe v2 datatype name. Names
// are upper case, as the protocol writes them.
func ParseDatatype(s string) (tensor.DType, error) {
	for _, d := range datatypes {
		if d.name == s {
			return d.dt, nil
		}
	}
	return tensor.Undefined, fmt.Errorf("%w: %q", ErrDatatype, s)
}

// Shape converts a wire shape to a tensor shape, rejecting negative
// dimensions and shapes of more than tensor.MaxElements elements.
func Shape(s []int64) ([]int, error) {
	return AppendShape(make([]int, 0, len(s)), s)
}

// AppendShape appends wire shape s, converted and checked as Shape does, to
// dst and returns the result (dst's storage, when it has room, is the
// result's: a caller that converts into a buffer of its own spares the
// allocation).
func AppendShape(dst []int, s []int64) ([]int, error) {
	n := len(dst)
	for _, d := range s {
		if d < 0 || d > tensor.MaxElements {
			return nil, fmt.Errorf("%w: dimension %d of %v", ErrShape, d, s)
		}
		dst = append(dst, int(d))
	}
	if err := tensor.CheckShape(dst[n:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrShape, err)
	}
	return dst, nil
}

// WireShape converts a tensor shape to a wire shape.
func WireShape(s []int) []int64 {
	out := make([]int64, len(s))
	for i, d := range s {
		out[i] = int64(d)
	}
	return out
}

// checkTensor returns t's datatype name after checking that its data holds
// exactly the elements its shape says.
func checkTensor(t *tensor.Tensor) (string, error) {
	if t == nil {
		return "", fmt.Errorf("%w: nil tensor", ErrContents)
	}
	name, err := Datatype(t.DType)
	if err != nil {
		return "", err
	}
	if err := tensor.CheckShape(t.Shape); err != nil {
		return "", fmt.Errorf("%w: %v", ErrShape, err)
	}
	n := t.Len()
	if t.DType == tensor.String {
		if len(t.Strings) != n {
			return "", fmt.Errorf("%w: %d strings for shape %v", ErrSize, len(t.Strings), t.Shape)
		}
		return name, nil
	}
	if len(t.Data) != n*t.DType.Size() {
		return "", fmt.Errorf("%w: %d bytes for %s %v (want %d)", ErrSize, len(t.Data), name, t.Shape, n*t.DType.Size())
	}
	return name, nil
}

// EncodeRaw returns t's elements in the raw form of the protocol: row-major,
// little endian, BYTES elements as a 4-byte little-endian length followed by
// the bytes. For types other than BYTES the result shares t's storage.
func EncodeRaw(t *tensor.Tensor) ([]byte, error) {
	if _, err := checkTensor(t); err != nil {
		return nil, err
	}
	if t.DType != tensor.String {
		return t.Data, nil
	}
	size := 0
	for _, s := range t.Strings {
		if uint64(len(s)) > math.MaxUint32 {
			return nil, fmt.Errorf("%w: BYTES element of %d bytes", ErrSize, len(s))
		}
		size += 4 + len(s)
	}
	out := make([]byte, 0, size)
	for _, s := range t.Strings {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(s)))
		out = append(out, s...)
	}
	return out, nil
}

// DecodeRaw returns the tensor of the given datatype and shape whose raw
// contents are raw (see EncodeRaw). The size of raw must match the shape
// exactly; the result never shares raw's memory.
func DecodeRaw(datatype string, shape []int64, raw []byte) (*tensor.Tensor, error) {
	dt, err := ParseDatatype(datatype)
	if err != nil {
		return nil, err
	}
	sh, err := Shape(shape)
	if err != nil {
		return nil, err
	}
	n := tensor.NumElements(sh)
	if dt == tensor.String {
		return decodeRawBytes(sh, n, raw)
	}
	if want := n * dt.Size(); len(raw) != want {
		return nil, fmt.Errorf("%w: %d bytes for %s %v (want %d)", ErrSize, len(raw), datatype, sh, want)
	}
	if dt == tensor.Bool {
		if i := slices.IndexFunc(raw, func(b byte) bool { return b > 1 }); i >= 0 {
			return nil, fmt.Errorf("%w: BOOL element %d is byte %d, not 0 or 1", ErrContents, i, raw[i])
		}
	}
	t, err := tensor.Make(dt, sh)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrShape, err)
	}
	copy(t.Data, raw)
	return t, nil
}

func decodeRawBytes(shape []int, n int, raw []byte) (*tensor.Tensor, error) {
	// Every element takes at least its 4-byte length: check before allocating.
	if n > len(raw)/4 {
		return nil, fmt.Errorf("%w: %d bytes cannot hold %d BYTES elements", ErrSize, len(raw), n)
	}
	strs := make([]string, n)
	off := 0
	for i := range strs {
		if len(raw)-off < 4 {
			return nil, fmt.Errorf("%w: BYTES element %d: truncated length", ErrContents, i)
		}
		l := binary.LittleEndian.Uint32(raw[off:])
		off += 4
		if uint64(l) > uint64(len(raw)-off) {
			return nil, fmt.Errorf("%w: BYTES element %d: length %d past the end of the data", ErrContents, i, l)
		}
		strs[i] = string(raw[off : off+int(l)])
		off += int(l)
	}
	if off != len(raw) {
		return nil, fmt.Errorf("%w: %d bytes left after %d BYTES elements", ErrSize, len(raw)-off, n)
	}
	return &tensor.Tensor{DType: tensor.String, Shape: shape, Strings: strs}, nil
}

// contentsFields returns the names of the non-empty fields of c.
func contentsFields(c *inference.InferTensorContents) []string {
	var f []string
	add := func(n int, name string) {
		if n > 0 {
			f = append(f, name)
		}
	}
	add(len(c.GetBoolContents()), "bool_contents")
	add(len(c.GetIntContents()), "int_contents")
	add(len(c.GetInt64Contents()), "int64_contents")
	add(len(c.GetUintContents()), "uint_contents")
	add(len(c.GetUint64Contents()), "uint64_contents")
	add(len(c.GetFp32Contents()), "fp32_contents")
	add(len(c.GetFp64Contents()), "fp64_contents")
	add(len(c.GetBytesContents()), "bytes_contents")
	return f
}

// contentsField names the InferTensorContents field that carries dt.
func contentsField(dt tensor.DType) string {
	switch dt {
	case tensor.Bool:
		return "bool_contents"
	case tensor.Int8, tensor.Int16, tensor.Int32:
		return "int_contents"
	case tensor.Int64:
		return "int64_contents"
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		return "uint_contents"
	case tensor.Uint64:
		return "uint64_contents"
	case tensor.Float32:
		return "fp32_contents"
	case tensor.Float64:
		return "fp64_contents"
	case tensor.String:
		return "bytes_contents"
	}
	return ""
}

// EncodeContents returns t's elements in the typed field of
// InferTensorContents that matches its datatype. FP16 and BF16 have no such
// field and give an error: send them with EncodeRaw.
func EncodeContents(t *tensor.Tensor) (*inference.InferTensorContents, error) {
	name, err := checkTensor(t)
	if err != nil {
		return nil, err
	}
	c := &inference.InferTensorContents{}
	switch t.DType {
	case tensor.Bool:
		c.BoolContents = make([]bool, len(t.Data))
		for i, b := range t.Data {
			c.BoolContents[i] = b != 0
		}
	case tensor.Int8:
		c.IntContents = widen[int8, int32](t.Int8s())
	case tensor.Int16:
		c.IntContents = widen[int16, int32](t.Int16s())
	case tensor.Int32:
		c.IntContents = slices.Clone(t.Int32s())
	case tensor.Int64:
		c.Int64Contents = slices.Clone(t.Int64s())
	case tensor.Uint8:
		c.UintContents = widen[uint8, uint32](t.Uint8s())
	case tensor.Uint16:
		c.UintContents = widen[uint16, uint32](t.Uint16s())
	case tensor.Uint32:
		c.UintContents = slices.Clone(t.Uint32s())
	case tensor.Uint64:
		c.Uint64Contents = slices.Clone(t.Uint64s())
	case tensor.Float32:
		c.Fp32Contents = slices.Clone(t.Float32s())
	case tensor.Float64:
		c.Fp64Contents = slices.Clone(t.Float64s())
	case tensor.String:
		c.BytesContents = make([][]byte, len(t.Strings))
		for i, s := range t.Strings {
			c.BytesContents[i] = []byte(s)
		}
	default:
		return nil, fmt.Errorf("%w: %s has no typed contents field; send it raw", ErrContents, name)
	}
	return c, nil
}

func widen[S int8 | int16 | uint8 | uint16, D int32 | uint32](s []S) []D {
	out := make([]D, len(s))
	for i, v := range s {
		out[i] = D(v)
	}
	return out
}

// narrow copies src into dst, failing on a value outside [lo, hi].
func narrow[S int32 | uint32, D int8 | int16 | uint8 | uint16](dst []D, src []S, lo, hi S, datatype string) error {
	for i, v := range src {
		if v < lo || v > hi {
			return fmt.Errorf("%w: %s element %d is %d, out of range", ErrContents, datatype, i, v)
		}
		dst[i] = D(v)
	}
	return nil
}

// DecodeContents returns the tensor of the given datatype and shape whose
// elements are in the typed field of c that matches the datatype. That field
// must hold exactly the shape's number of elements and every other field
// must be empty; values must fit the datatype (an INT8 of 300 is an error).
// A nil c holds no elements.
func DecodeContents(datatype string, shape []int64, c *inference.InferTensorContents) (*tensor.Tensor, error) {
	dt, err := ParseDatatype(datatype)
	if err != nil {
		return nil, err
	}
	sh, err := Shape(shape)
	if err != nil {
		return nil, err
	}
	field := contentsField(dt)
	if field == "" {
		return nil, fmt.Errorf("%w: %s has no typed contents field; send it raw", ErrContents, datatype)
	}
	for _, f := range contentsFields(c) {
		if f != field {
			return nil, fmt.Errorf("%w: %s tensor with %s (want %s)", ErrContents, datatype, f, field)
		}
	}
	n := tensor.NumElements(sh)
	var got int
	switch field {
	case "bool_contents":
		got = len(c.GetBoolContents())
	case "int_contents":
		got = len(c.GetIntContents())
	case "int64_contents":
		got = len(c.GetInt64Contents())
	case "uint_contents":
		got = len(c.GetUintContents())
	case "uint64_contents":
		got = len(c.GetUint64Contents())
	case "fp32_contents":
		got = len(c.GetFp32Contents())
	case "fp64_contents":
		got = len(c.GetFp64Contents())
	case "bytes_contents":
		got = len(c.GetBytesContents())
	}
	if got != n {
		return nil, fmt.Errorf("%w: %d elements in %s for %s %v (want %d)", ErrSize, got, field, datatype, sh, n)
	}
	t, err := tensor.Make(dt, sh)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrShape, err)
	}
	switch dt {
	case tensor.Bool:
		for i, b := range c.GetBoolContents() {
			if b {
				t.Data[i] = 1
			}
		}
	case tensor.Int8:
		err = narrow(t.Int8s(), c.GetIntContents(), math.MinInt8, math.MaxInt8, datatype)
	case tensor.Int16:
		err = narrow(t.Int16s(), c.GetIntContents(), math.MinInt16, math.MaxInt16, datatype)
	case tensor.Int32:
		copy(t.Int32s(), c.GetIntContents())
	case tensor.Int64:
		copy(t.Int64s(), c.GetInt64Contents())
	case tensor.Uint8:
		err = narrow(t.Uint8s(), c.GetUintContents(), 0, math.MaxUint8, datatype)
	case tensor.Uint16:
		err = narrow(t.Uint16s(), c.GetUintContents(), 0, math.MaxUint16, datatype)
	case tensor.Uint32:
		copy(t.Uint32s(), c.GetUintContents())
	case tensor.Uint64:
		copy(t.Uint64s(), c.GetUint64Contents())
	case tensor.Float32:
		copy(t.Float32s(), c.GetFp32Contents())
	case tensor.Float64:
		copy(t.Float64s(), c.GetFp64Contents())
	case tensor.String:
		for i, b := range c.GetBytesContents() {
			t.Strings[i] = string(b)
		}
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

// wireTensor is what an input of a request and an output of a response have
// in common.
type wireTensor interface {
	GetName() string
	GetDatatype() string
	GetShape() []int64
	GetContents() *inference.InferTensorContents
}

// decodeTensors decodes tensors whose data is either all in raw (one entry
// per tensor, in order) or all in their typed contents.
func decodeTensors[T wireTensor](what string, ts []T, raw [][]byte) (map[string]*tensor.Tensor, error) {
	if len(raw) > 0 && len(raw) != len(ts) {
		return nil, fmt.Errorf("%w: %d raw contents for %d %ss", ErrContents, len(raw), len(ts), what)
	}
	out := make(map[string]*tensor.Tensor, len(ts))
	for i, w := range ts {
		name := w.GetName()
		if name == "" {
			return nil, fmt.Errorf("%w: %s %d has no name", ErrContents, what, i)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%w: %s %q given twice", ErrContents, what, name)
		}
		var t *tensor.Tensor
		var err error
		if len(raw) > 0 {
			if f := contentsFields(w.GetContents()); len(f) > 0 {
				return nil, fmt.Errorf("%w: %s %q has both raw contents and %s", ErrContents, what, name, f[0])
			}
			t, err = DecodeRaw(w.GetDatatype(), w.GetShape(), raw[i])
		} else {
			t, err = DecodeContents(w.GetDatatype(), w.GetShape(), w.GetContents())
		}
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", what, name, err)
		}
		out[name] = t
	}
	return out, nil
}

// RequestTensors decodes the input tensors of req, from raw_input_contents
// or from each input's typed contents, by name.
func RequestTensors(req *inference.ModelInferRequest) (map[string]*tensor.Tensor, error) {
	return decodeTensors("input", req.GetInputs(), req.GetRawInputContents())
}

// ResponseTensors decodes the output tensors of resp, from
// raw_output_contents or from each output's typed contents, by name.
func ResponseTensors(resp *inference.ModelInferResponse) (map[string]*tensor.Tensor, error) {
	return decodeTensors("output", resp.GetOutputs(), resp.GetRawOutputContents())
}

// sortedNames returns the keys of m in order, so that messages are
// deterministic.
func sortedNames(m map[string]*tensor.Tensor) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// NewInferRequest returns a request that runs model on inputs, sent as raw
// contents in name order. The request shares the storage of the inputs.
func NewInferRequest(model string, inputs map[string]*tensor.Tensor) (*inference.ModelInferRequest, error) {
	req := &inference.ModelInferRequest{ModelName: model}
	for _, name := range sortedNames(inputs) {
		t := inputs[name]
		dt, err := checkTensor(t)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		raw, err := EncodeRaw(t)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		req.Inputs = append(req.Inputs, &inference.ModelInferRequest_InferInputTensor{
			Name: name, Datatype: dt, Shape: WireShape(t.Shape),
		})
		req.RawInputContents = append(req.RawInputContents, raw)
	}
	return req, nil
}

// NewInferResponse returns the response of model (version) to the request
// with the given id, holding outputs as raw contents in name order. The
// response shares the storage of the outputs.
func NewInferResponse(model, version, id string, outputs map[string]*tensor.Tensor) (*inference.ModelInferResponse, error) {
	resp := &inference.ModelInferResponse{ModelName: model, ModelVersion: version, Id: id}
	for _, name := range sortedNames(outputs) {
		t := outputs[name]
		dt, err := checkTensor(t)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", name, err)
		}
		raw, err := EncodeRaw(t)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", name, err)
		}
		resp.Outputs = append(resp.Outputs, &inference.ModelInferResponse_InferOutputTensor{
			Name: name, Datatype: dt, Shape: WireShape(t.Shape),
		})
		resp.RawOutputContents = append(resp.RawOutputContents, raw)
	}
	return resp, nil
}

// configTypes pairs the DataType enum of model configurations with kiln's
// element types.
var configTypes = []struct {
	ct inference.DataType
	dt tensor.DType
}{
	{inference.DataType_TYPE_BOOL, tensor.Bool},
	{inference.DataType_TYPE_UINT8, tensor.Uint8},
	{inference.DataType_TYPE_UINT16, tensor.Uint16},
	{inference.DataType_TYPE_UINT32, tensor.Uint32},
	{inference.DataType_TYPE_UINT64, tensor.Uint64},
	{inference.DataType_TYPE_INT8, tensor.Int8},
	{inference.DataType_TYPE_INT16, tensor.Int16},
	{inference.DataType_TYPE_INT32, tensor.Int32},
	{inference.DataType_TYPE_INT64, tensor.Int64},
	{inference.DataType_TYPE_FP16, tensor.Float16},
	{inference.DataType_TYPE_FP32, tensor.Float32},
	{inference.DataType_TYPE_FP64, tensor.Float64},
	{inference.DataType_TYPE_STRING, tensor.String},
	{inference.DataType_TYPE_BF16, tensor.BFloat16},
}

// ConfigDataType returns the model-configuration DataType of dt
// (TYPE_FP32 for tensor.Float32, TYPE_STRING for tensor.String, ...).
func ConfigDataType(dt tensor.DType) (inference.DataType, error) {
	for _, c := range configTypes {
		if c.dt == dt {
			return c.ct, nil
		}
	}
	return inference.DataType_TYPE_INVALID, fmt.Errorf("%w: no model configuration type for %v", ErrDatatype, dt)
}

// ParseConfigDataType returns the element type of a model-configuration
// DataType; its name, as config.pbtxt writes it ("TYPE_FP32"), converts with
// inference.DataType_value.
func ParseConfigDataType(ct inference.DataType) (tensor.DType, error) {
	for _, c := range configTypes {
		if c.ct == ct {
			return c.dt, nil
		}
	}
	return tensor.Undefined, fmt.Errorf("%w: model configuration type %v", ErrDatatype, ct)
}
