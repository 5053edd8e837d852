package httpapi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/kilnai/kiln/tensor"
)

// ErrDecode is returned for a request body that is not a valid KServe v2
// inference request.
var ErrDecode = errors.New("httpapi: bad inference request")

var dtypeNames = map[string]tensor.DType{
	"BOOL": tensor.Bool, "UINT8": tensor.Uint8, "UINT16": tensor.Uint16, "UINT32": tensor.Uint32,
	"UINT64": tensor.Uint64, "INT8": tensor.Int8, "INT16": tensor.Int16, "INT32": tensor.Int32,
	"INT64": tensor.Int64, "FP16": tensor.Float16, "FP32": tensor.Float32, "FP64": tensor.Float64,
	"BYTES": tensor.String, "BF16": tensor.BFloat16,
}

// DataTypeName returns the KServe v2 name of dt ("FP32").
func DataTypeName(dt tensor.DType) string {
	for k, v := range dtypeNames {
		if v == dt {
			return k
		}
	}
	return "INVALID"
}

// requestTensor is an input of a request body.
type requestTensor struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

type requestOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

type requestBody struct {
	ID         string          `json:"id,omitempty"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Inputs     []requestTensor `json:"inputs"`
	Outputs    []requestOutput `json:"outputs,omitempty"`
}

// Decoded is a decoded inference request.
type Decoded struct {
	ID     string
	Inputs map[string]*tensor.Tensor
	// Outputs are the outputs asked for (empty: all).
	Outputs []string
	// Binary tells, per output, whether to return it as binary data.
	Binary map[string]bool
	// BinaryDefault is the request's binary_data_output parameter.
	BinaryDefault bool
	// Priority and TimeoutMicros are the request parameters "priority" and "timeout".
	Priority      int
	TimeoutMicros int64
}

func paramInt(p map[string]any, key string) (int64, bool, error) {
	v, ok := p[key]
	if !ok {
		return 0, false, nil
	}
	f, isNum := v.(float64)
	if !isNum || f != math.Trunc(f) || f < 0 || f > 1<<53 {
		return 0, true, fmt.Errorf("%w: parameter %q must be a non-negative integer", ErrDecode, key)
	}
	return int64(f), true, nil
}

func paramBool(p map[string]any, key string) (bool, error) {
	v, ok := p[key]
	if !ok {
		return false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, fmt.Errorf("%w: parameter %q must be true or false", ErrDecode, key)
	}
	return b, nil
}

// DecodeRequest decodes a KServe v2 request body. headerLen is the
// Inference-Header-Content-Length (-1 when absent: the body is all JSON);
// binary tensor data follows the JSON header in input order.
func DecodeRequest(body []byte, headerLen int) (*Decoded, error) {
	if headerLen < 0 {
		headerLen = len(body)
	}
	if headerLen > len(body) {
		return nil, fmt.Errorf("%w: Inference-Header-Content-Length %d exceeds the body (%d bytes)", ErrDecode, headerLen, len(body))
	}
	var rb requestBody
	dec := json.NewDecoder(bytes.NewReader(body[:headerLen]))
	if err := dec.Decode(&rb); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	if len(rb.Inputs) == 0 {
		return nil, fmt.Errorf("%w: no inputs", ErrDecode)
	}
	d := &Decoded{ID: rb.ID, Inputs: map[string]*tensor.Tensor{}, Binary: map[string]bool{}}
	var err error
	if d.BinaryDefault, err = paramBool(rb.Parameters, "binary_data_output"); err != nil {
		return nil, err
	}
	if p, _, err := paramInt(rb.Parameters, "priority"); err != nil {
		return nil, err
	} else if p > 1<<20 {
		return nil, fmt.Errorf("%w: priority %d", ErrDecode, p)
	} else {
		d.Priority = int(p)
	}
	if d.TimeoutMicros, _, err = paramInt(rb.Parameters, "timeout"); err != nil {
		return nil, err
	}
	rest := body[headerLen:]
	for _, in := range rb.Inputs {
		if in.Name == "" {
			return nil, fmt.Errorf("%w: an input has no name", ErrDecode)
		}
		if _, dup := d.Inputs[in.Name]; dup {
			return nil, fmt.Errorf("%w: input %q given twice", ErrDecode, in.Name)
		}
		dt, ok := dtypeNames[in.Datatype]
		if !ok {
			return nil, fmt.Errorf("%w: input %q: unknown datatype %q", ErrDecode, in.Name, in.Datatype)
		}
		shape := make([]int, len(in.Shape))
		for i, s := range in.Shape {
			if s < 0 || s > tensor.MaxElements {
				return nil, fmt.Errorf("%w: input %q: bad shape %v", ErrDecode, in.Name, in.Shape)
			}
			shape[i] = int(s)
		}
		if err := tensor.CheckShape(shape); err != nil {
			return nil, fmt.Errorf("%w: input %q: %w", ErrDecode, in.Name, err)
		}
		size, isBinary, err := paramInt(in.Parameters, "binary_data_size")
		if err != nil {
			return nil, err
		}
		var t *tensor.Tensor
		if isBinary {
			if len(in.Data) > 0 {
				return nil, fmt.Errorf("%w: input %q has both data and binary_data_size", ErrDecode, in.Name)
			}
			if size > int64(len(rest)) {
				return nil, fmt.Errorf("%w: input %q: binary_data_size %d but %d bytes left in the body", ErrDecode, in.Name, size, len(rest))
			}
			t, err = fromBinary(dt, shape, rest[:size])
			rest = rest[size:]
		} else {
			t, err = fromJSON(dt, shape, in.Data)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: input %q: %w", ErrDecode, in.Name, err)
		}
		d.Inputs[in.Name] = t
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes of binary data not claimed by any input", ErrDecode, len(rest))
	}
	for _, o := range rb.Outputs {
		b, err := paramBool(o.Parameters, "binary_data")
		if err != nil {
			return nil, err
		}
		d.Outputs = append(d.Outputs, o.Name)
		if _, set := o.Parameters["binary_data"]; set {
			d.Binary[o.Name] = b
		}
	}
	return d, nil
}

func fromBinary(dt tensor.DType, shape []int, b []byte) (*tensor.Tensor, error) {
	if dt != tensor.String {
		n := tensor.NumElements(shape) * dt.Size()
		if len(b) != n {
			return nil, fmt.Errorf("%d bytes of binary data, shape %v of %s needs %d", len(b), shape, DataTypeName(dt), n)
		}
		data := tensor.AlignedBytes(n)
		copy(data, b)
		if dt == tensor.Bool {
			for _, c := range data {
				if c > 1 {
					return nil, fmt.Errorf("BOOL byte %d is neither 0 nor 1", c)
				}
			}
		}
		return tensor.FromBytes(dt, shape, data)
	}
	n := tensor.NumElements(shape)
	if n > len(b)/4 && n > 0 {
		return nil, fmt.Errorf("%d bytes cannot hold %d BYTES elements", len(b), n)
	}
	t := &tensor.Tensor{DType: tensor.String, Shape: shape, Strings: make([]string, 0, n)}
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("truncated BYTES length prefix")
		}
		l := binary.LittleEndian.Uint32(b)
		if uint64(l) > uint64(len(b)-4) {
			return nil, fmt.Errorf("BYTES element of %d bytes overruns the data", l)
		}
		t.Strings = append(t.Strings, string(b[4:4+l]))
		b = b[4+l:]
	}
	if len(t.Strings) != n {
		return nil, fmt.Errorf("%d BYTES elements for shape %v", len(t.Strings), shape)
	}
	return t, nil
}

// flatten appends the leaves of a possibly nested JSON array.
func flatten(raw json.RawMessage, out []json.RawMessage, limit int, depth int) ([]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		if len(out) >= limit {
			return nil, fmt.Errorf("more data elements than the shape holds")
		}
		return append(out, raw), nil
	}
	if depth > 32 {
		return nil, fmt.Errorf("data nested too deep")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	for _, it := range items {
		var err error
		if out, err = flatten(it, out, limit, depth+1); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func fromJSON(dt tensor.DType, shape []int, raw json.RawMessage) (*tensor.Tensor, error) {
	n := tensor.NumElements(shape)
	if len(raw) == 0 {
		return nil, fmt.Errorf("no data")
	}
	leaves, err := flatten(raw, nil, n, 0)
	if err != nil {
		return nil, err
	}
	if len(leaves) != n {
		return nil, fmt.Errorf("%d data elements for shape %v", len(leaves), shape)
	}
	t, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, err
	}
	for i, l := range leaves {
		switch dt {
		case tensor.String:
			if err := json.Unmarshal(l, &t.Strings[i]); err != nil {
				return nil, fmt.Errorf("element %d: want a string", i)
			}
		case tensor.Bool:
			var b bool
			if err := json.Unmarshal(l, &b); err != nil {
				return nil, fmt.Errorf("element %d: want true or false", i)
			}
			t.Bools()[i] = b
		case tensor.Float16, tensor.Float32, tensor.Float64, tensor.BFloat16:
			f, err := strconv.ParseFloat(string(l), 64)
			if err != nil {
				return nil, fmt.Errorf("element %d: %s is not a number", i, l)
			}
			t.SetFloat(i, f)
		default:
			if err := setInt(t, i, string(l)); err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
		}
	}
	return t, nil
}

func setInt(t *tensor.Tensor, i int, s string) error {
	if t.DType == tensor.Uint64 {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%s is not a UINT64", s)
		}
		t.Uint64s()[i] = v
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%s is not an integer", s)
	}
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	switch t.DType {
	case tensor.Int8:
		lo, hi = math.MinInt8, math.MaxInt8
	case tensor.Int16:
		lo, hi = math.MinInt16, math.MaxInt16
	case tensor.Int32:
		lo, hi = math.MinInt32, math.MaxInt32
	case tensor.Uint8:
		lo, hi = 0, math.MaxUint8
	case tensor.Uint16:
		lo, hi = 0, math.MaxUint16
	case tensor.Uint32:
		lo, hi = 0, math.MaxUint32
	}
	if v < lo || v > hi {
		return fmt.Errorf("%d out of range for %s", v, DataTypeName(t.DType))
	}
	switch t.DType {
	case tensor.Int8:
		t.Int8s()[i] = int8(v)
	case tensor.Int16:
		t.Int16s()[i] = int16(v)
	case tensor.Int32:
		t.Int32s()[i] = int32(v)
	case tensor.Int64:
		t.Int64s()[i] = v
	case tensor.Uint8:
		t.Uint8s()[i] = uint8(v)
	case tensor.Uint16:
		t.Uint16s()[i] = uint16(v)
	case tensor.Uint32:
		t.Uint32s()[i] = uint32(v)
	default:
		return fmt.Errorf("unsupported type %v", t.DType)
	}
	return nil
}

// jsonData returns the elements of t as JSON-encodable values.
func jsonData(t *tensor.Tensor) any {
	switch t.DType {
	case tensor.String:
		return t.Strings
	case tensor.Bool:
		return t.Bools()
	case tensor.Float32:
		return t.Float32s()
	case tensor.Float64:
		return t.Float64s()
	case tensor.Float16, tensor.BFloat16:
		out := make([]float32, t.Len())
		for i := range out {
			out[i] = float32(t.Float(i))
		}
		return out
	case tensor.Int64:
		return t.Int64s()
	case tensor.Uint64:
		return t.Uint64s()
	case tensor.Uint8:
		// []uint8 would encode as base64
		out := make([]int, t.Len())
		for i, v := range t.Uint8s() {
			out[i] = int(v)
		}
		return out
	}
	out := make([]int64, t.Len())
	for i := range out {
		out[i] = t.Int(i)
	}
	return out
}

// binaryData returns t's raw bytes in the binary tensor data extension's layout.
func binaryData(t *tensor.Tensor) []byte {
	if t.DType != tensor.String {
		return t.Data
	}
	var b []byte
	for _, s := range t.Strings {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}
