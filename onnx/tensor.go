package onnx

import (
	"fmt"
	"os"
	"strconv"

	"github.com/kilnai/kiln/tensor"
)

// ExternalResolver gives access to the files that hold tensors' external
// data (TensorProto.data_location EXTERNAL). *File implements it for the
// files next to a loaded model.
type ExternalResolver interface {
	// ExternalData returns length bytes at offset of the file at location,
	// a path relative to the model's directory as written in the model.
	// A negative length means up to the end of the file. The result may
	// share memory with the resolver and must not be modified.
	ExternalData(location string, offset, length int64) ([]byte, error)
}

// ExternalInfo is the parsed external_data of a TensorProto.
type ExternalInfo struct {
	// Location is the file's path relative to the model's directory.
	Location string
	// Offset is the byte offset of the data in the file (0 when absent).
	Offset int64
	// Length is the number of bytes, or -1 when absent (up to the end of
	// the file).
	Length int64
	// Checksum is the SHA-1 digest of the data as written in the model, or
	// "". It is not verified.
	Checksum string
}

// External parses tp's external_data entries. It returns an error wrapping
// ErrExternalData if the location is missing or offset or length is not a
// non-negative integer. Unknown keys are ignored.
func (tp *TensorProto) External() (ExternalInfo, error) {
	info := ExternalInfo{Length: -1}
	for _, e := range tp.ExternalData {
		if e == nil {
			continue
		}
		switch e.Key {
		case "location":
			info.Location = e.Value
		case "offset", "length":
			v, err := strconv.ParseInt(e.Value, 10, 64)
			if err != nil || v < 0 {
				return info, fmt.Errorf("%w: tensor %q: bad %s %q", ErrExternalData, tp.Name, e.Key, e.Value)
			}
			if e.Key == "offset" {
				info.Offset = v
			} else {
				info.Length = v
			}
		case "checksum":
			info.Checksum = e.Value
		}
	}
	if info.Location == "" {
		return info, fmt.Errorf("%w: tensor %q: external data without a location", ErrExternalData, tp.Name)
	}
	return info, nil
}

// TensorFromProto converts tp to a tensor. Data kiln can hold: float32,
// float16, bfloat16, float64, int8/16/32/64, uint8/16/32/64, bool and
// string. The elements come from raw_data (little endian), from the typed
// field for the type, or, when tp's data_location is EXTERNAL, from ext
// (which may be nil for tensors that have no external data).
//
// Numeric data taken from raw_data or external data is not copied when it is
// suitably aligned: the tensor then shares the memory of the decoded input
// (or of ext), which must outlive it. Other data is copied into a fresh
// aligned tensor.
//
// Errors name the tensor and wrap ErrUnsupported (a data type kiln cannot
// hold, segmented tensors), ErrMalformed (dims that are negative or
// overflow, an element count that does not match dims, data in the wrong
// field) or ErrExternalData.
func TensorFromProto(tp *TensorProto, ext ExternalResolver) (*tensor.Tensor, error) {
	if tp == nil {
		return nil, fmt.Errorf("%w: nil TensorProto", ErrMalformed)
	}
	dt := tp.DataType
	if dt == tensor.Undefined {
		return nil, fmt.Errorf("%w: tensor %q: data_type not set", ErrMalformed, tp.Name)
	}
	if !dt.Valid() {
		return nil, fmt.Errorf("%w: tensor %q: data type %v", ErrUnsupported, tp.Name, dt)
	}
	if tp.Segment != nil {
		return nil, fmt.Errorf("%w: tensor %q: segmented tensors", ErrUnsupported, tp.Name)
	}
	shape, err := protoShape(tp.Dims)
	if err != nil {
		return nil, fmt.Errorf("%w: tensor %q: %v", ErrMalformed, tp.Name, err)
	}
	n := tensor.NumElements(shape)

	switch {
	case tp.DataLocation == DataLocationExternal:
		if dt == tensor.String {
			return nil, fmt.Errorf("%w: tensor %q: string tensors cannot have external data", ErrMalformed, tp.Name)
		}
		info, err := tp.External()
		if err != nil {
			return nil, err
		}
		want := int64(n) * int64(dt.Size())
		if info.Length >= 0 && info.Length != want {
			return nil, fmt.Errorf("%w: tensor %q: external length %d, want %d bytes for %v %v", ErrMalformed, tp.Name, info.Length, want, dt, shape)
		}
		if ext == nil {
			return nil, fmt.Errorf("%w: tensor %q: data in %q but no resolver (load the model from a file)", ErrExternalData, tp.Name, info.Location)
		}
		data, err := ext.ExternalData(info.Location, info.Offset, want)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
		}
		return fromRaw(tp.Name, dt, shape, data)
	case tp.DataLocation != DataLocationDefault:
		return nil, fmt.Errorf("%w: tensor %q: data_location %d", ErrUnsupported, tp.Name, tp.DataLocation)
	case len(tp.RawData) > 0:
		if dt == tensor.String {
			return nil, fmt.Errorf("%w: tensor %q: string tensor with raw_data", ErrMalformed, tp.Name)
		}
		return fromRaw(tp.Name, dt, shape, tp.RawData)
	}
	return fromTyped(tp, dt, shape, n)
}

// protoShape converts ONNX dims to a shape, rejecting negative dimensions and
// element counts past tensor.MaxElements.
func protoShape(dims []int64) ([]int, error) {
	shape := make([]int, len(dims))
	for i, d := range dims {
		if d < 0 || d > tensor.MaxElements {
			return nil, fmt.Errorf("bad dimension %d in %v", d, dims)
		}
		shape[i] = int(d)
	}
	if err := tensor.CheckShape(shape); err != nil {
		return nil, err
	}
	return shape, nil
}

func fromRaw(name string, dt tensor.DType, shape []int, data []byte) (*tensor.Tensor, error) {
	n := tensor.NumElements(shape)
	if want := n * dt.Size(); len(data) != want {
		return nil, fmt.Errorf("%w: tensor %q: %d bytes of data for %v %v, want %d", ErrMalformed, name, len(data), dt, shape, want)
	}
	if dt == tensor.Bool {
		// Go requires a bool's byte to be 0 or 1: normalize anything else
		// (in a copy, never in the input).
		for i, c := range data {
			if c > 1 {
				fixed := tensor.AlignedBytes(len(data))
				copy(fixed, data[:i])
				for j := i; j < len(data); j++ {
					if data[j] != 0 {
						fixed[j] = 1
					}
				}
				data = fixed
				break
			}
		}
	}
	t, err := tensor.FromBytes(dt, shape, data)
	if err != nil {
		return nil, fmt.Errorf("%w: tensor %q: %v", ErrMalformed, name, err)
	}
	return t, nil
}

// typedField returns the name of the typed field that holds elements of dt.
func typedField(dt tensor.DType) string {
	switch dt {
	case tensor.Float32:
		return "float_data"
	case tensor.Int32, tensor.Int16, tensor.Int8, tensor.Uint16, tensor.Uint8, tensor.Bool,
		tensor.Float16, tensor.BFloat16:
		return "int32_data"
	case tensor.String:
		return "string_data"
	case tensor.Int64:
		return "int64_data"
	case tensor.Float64:
		return "double_data"
	case tensor.Uint32, tensor.Uint64:
		return "uint64_data"
	}
	return ""
}

func fromTyped(tp *TensorProto, dt tensor.DType, shape []int, n int) (*tensor.Tensor, error) {
	field := typedField(dt)
	fields := [...]struct {
		name string
		n    int
	}{
		{"float_data", len(tp.FloatData)}, {"int32_data", len(tp.Int32Data)},
		{"string_data", len(tp.StringData)}, {"int64_data", len(tp.Int64Data)},
		{"double_data", len(tp.DoubleData)}, {"uint64_data", len(tp.Uint64Data)},
	}
	got := 0
	for _, f := range fields {
		if f.name == field {
			got = f.n
		} else if f.n > 0 {
			return nil, fmt.Errorf("%w: tensor %q: %v data in %s (want %s or raw_data)", ErrMalformed, tp.Name, dt, f.name, field)
		}
	}
	if got != n {
		if got == 0 {
			return nil, fmt.Errorf("%w: tensor %q: no data for %d elements of %v %v", ErrMalformed, tp.Name, n, dt, shape)
		}
		return nil, fmt.Errorf("%w: tensor %q: %d values in %s for %v %v (%d elements)", ErrMalformed, tp.Name, got, field, dt, shape, n)
	}
	t, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, fmt.Errorf("%w: tensor %q: %v", ErrMalformed, tp.Name, err)
	}
	switch dt {
	case tensor.Float32:
		copy(t.Float32s(), tp.FloatData)
	case tensor.Float64:
		copy(t.Float64s(), tp.DoubleData)
	case tensor.Int64:
		copy(t.Int64s(), tp.Int64Data)
	case tensor.Int32:
		copy(t.Int32s(), tp.Int32Data)
	case tensor.Int16:
		convert(t.Int16s(), tp.Int32Data)
	case tensor.Int8:
		convert(t.Int8s(), tp.Int32Data)
	case tensor.Uint16:
		convert(t.Uint16s(), tp.Int32Data)
	case tensor.Float16:
		convert(t.Halfs(), tp.Int32Data)
	case tensor.BFloat16:
		convert(t.BHalfs(), tp.Int32Data)
	case tensor.Uint8:
		convert(t.Uint8s(), tp.Int32Data)
	case tensor.Bool:
		bs := t.Bools()
		for i, v := range tp.Int32Data {
			bs[i] = v != 0
		}
	case tensor.Uint32:
		convert(t.Uint32s(), tp.Uint64Data)
	case tensor.Uint64:
		copy(t.Uint64s(), tp.Uint64Data)
	case tensor.String:
		for i, s := range tp.StringData {
			t.Strings[i] = string(s)
		}
	}
	return t, nil
}

// convert stores each element of src, truncated to the width of D, in dst.
// ONNX stores 8- and 16-bit values (and float16/bfloat16 bit patterns) in
// int32_data, and uint32 values in uint64_data.
func convert[D int8 | int16 | uint8 | uint16 | uint32, S int32 | uint64](dst []D, src []S) {
	for i, v := range src {
		dst[i] = D(v)
	}
}

// TensorToProto returns t as a TensorProto named name: numeric data in
// raw_data (sharing t's storage, not copied), strings in string_data.
func TensorToProto(name string, t *tensor.Tensor) *TensorProto {
	tp := &TensorProto{Name: name, DataType: t.DType, Dims: make([]int64, len(t.Shape))}
	for i, d := range t.Shape {
		tp.Dims[i] = int64(d)
	}
	if t.DType == tensor.String {
		tp.StringData = make([][]byte, len(t.Strings))
		for i, s := range t.Strings {
			tp.StringData[i] = []byte(s)
		}
	} else {
		tp.RawData = t.Data
	}
	return tp
}

// SaveTensor writes t as a serialized TensorProto named name to path (the
// format of the input_0.pb files of ONNX test data sets). It returns an
// error if t's data does not match its type and shape.
func SaveTensor(path, name string, t *tensor.Tensor) error {
	if err := checkTensor(t); err != nil {
		return fmt.Errorf("onnx: save tensor %q: %w", name, err)
	}
	return os.WriteFile(path, TensorToProto(name, t).Marshal(), 0o644)
}

func checkTensor(t *tensor.Tensor) error {
	if t == nil {
		return fmt.Errorf("%w: nil tensor", tensor.ErrShape)
	}
	if !t.DType.Valid() {
		return fmt.Errorf("%w: %v", tensor.ErrDType, t.DType)
	}
	if err := tensor.CheckShape(t.Shape); err != nil {
		return err
	}
	n := tensor.NumElements(t.Shape)
	if t.DType == tensor.String {
		if len(t.Strings) != n {
			return fmt.Errorf("%w: %d strings for shape %v", tensor.ErrShape, len(t.Strings), t.Shape)
		}
	} else if len(t.Data) != n*t.DType.Size() {
		return fmt.Errorf("%w: %d bytes for %v %v", tensor.ErrShape, len(t.Data), t.DType, t.Shape)
	}
	return nil
}
