package onnx

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/kilnai/kiln/tensor"
)

// testTensor returns a tensor of type dt and shape [2,3] with distinct
// values, including negative ones for signed types.
func testTensor(dt tensor.DType) *tensor.Tensor {
	t := tensor.New(dt, 2, 3)
	if dt == tensor.String {
		copy(t.Strings, []string{"a", "", "ccc", "\x00", "é", "f"})
		return t
	}
	vals := []float64{0, 1, -2, 3.5, 100, -7}
	for i, v := range vals {
		if !dt.IsSigned() {
			v = math.Abs(v)
		}
		if dt == tensor.Bool {
			v = float64(i % 2)
		}
		t.SetFloat(i, v)
	}
	return t
}

// typedProto returns t as a TensorProto using the typed data field for its
// type, the way older exporters write tensors.
func typedProto(t *tensor.Tensor) *TensorProto {
	tp := &TensorProto{Name: "typed", DataType: t.DType, Dims: []int64{2, 3}}
	n := t.Len()
	for i := 0; i < n; i++ {
		switch t.DType {
		case tensor.Float32:
			tp.FloatData = append(tp.FloatData, t.Float32s()[i])
		case tensor.Float64:
			tp.DoubleData = append(tp.DoubleData, t.Float64s()[i])
		case tensor.Int64:
			tp.Int64Data = append(tp.Int64Data, t.Int64s()[i])
		case tensor.Uint32:
			tp.Uint64Data = append(tp.Uint64Data, uint64(t.Uint32s()[i]))
		case tensor.Uint64:
			tp.Uint64Data = append(tp.Uint64Data, t.Uint64s()[i])
		case tensor.String:
			tp.StringData = append(tp.StringData, []byte(t.Strings[i]))
		case tensor.Float16:
			tp.Int32Data = append(tp.Int32Data, int32(t.Halfs()[i]))
		case tensor.BFloat16:
			tp.Int32Data = append(tp.Int32Data, int32(t.BHalfs()[i]))
		case tensor.Uint16:
			tp.Int32Data = append(tp.Int32Data, int32(t.Uint16s()[i]))
		default: // int32, int16, int8, uint8, bool
			tp.Int32Data = append(tp.Int32Data, int32(t.Int(i)))
		}
	}
	return tp
}

var allDTypes = []tensor.DType{
	tensor.Float32, tensor.Float16, tensor.BFloat16, tensor.Float64, tensor.Int8, tensor.Int16,
	tensor.Int32, tensor.Int64, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64,
	tensor.Bool, tensor.String,
}

func sameTensor(a, b *tensor.Tensor) bool {
	if a.DType != b.DType || !reflect.DeepEqual(a.Shape, b.Shape) {
		return false
	}
	if a.DType == tensor.String {
		return reflect.DeepEqual(a.Strings, b.Strings)
	}
	return string(a.Data) == string(b.Data)
}

// TestTensorFromProto converts every dtype from raw_data and from its typed
// field, each through an encode/decode with packed fields (Marshal) and
// unpacked ones.
func TestTensorFromProto(t *testing.T) {
	for _, dt := range allDTypes {
		want := testTensor(dt)
		forms := map[string]*TensorProto{"typed": typedProto(want)}
		if dt != tensor.String {
			forms["raw"] = TensorToProto("raw", want)
		} else {
			forms["ToProto"] = TensorToProto("s", want)
		}
		for form, tp := range forms {
			for enc, b := range map[string][]byte{"packed": tp.Marshal(), "unpacked": marshalUnpacked(tp)} {
				t.Run(dt.String()+"/"+form+"/"+enc, func(t *testing.T) {
					dec, err := DecodeTensor(b)
					if err != nil {
						t.Fatal(err)
					}
					got, err := TensorFromProto(dec, nil)
					if err != nil {
						t.Fatal(err)
					}
					if !sameTensor(got, want) {
						t.Fatalf("got %v, want %v", got, want)
					}
				})
			}
		}
	}
}

func TestTensorToProtoRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, dt := range allDTypes {
		want := testTensor(dt)
		path := filepath.Join(dir, dt.String()+".pb")
		if err := SaveTensor(path, "x", want); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		tp, err := DecodeTensor(b)
		if err != nil {
			t.Fatal(err)
		}
		if tp.Name != "x" {
			t.Errorf("%v: name %q", dt, tp.Name)
		}
		got, err := TensorFromProto(tp, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !sameTensor(got, want) {
			t.Errorf("%v: got %v, want %v", dt, got, want)
		}
	}
	if err := SaveTensor(filepath.Join(dir, "bad.pb"), "bad", &tensor.Tensor{DType: tensor.Float32, Shape: []int{2}, Data: make([]byte, 3)}); err == nil {
		t.Error("SaveTensor of a tensor with 3 bytes for 2 floats succeeded")
	}
}

func TestTensorFromProtoZeroCopy(t *testing.T) {
	raw := tensor.AlignedBytes(16)
	tp := &TensorProto{Dims: []int64{4}, DataType: tensor.Float32, RawData: raw}
	got, err := TensorFromProto(tp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if &got.Data[0] != &raw[0] {
		t.Error("aligned raw_data was copied")
	}
	tp.RawData = tensor.AlignedBytes(17)[1:]
	got, err = TensorFromProto(tp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if uintptr(unsafe.Pointer(&got.Data[0]))%4 != 0 {
		t.Error("misaligned raw_data was not copied to an aligned buffer")
	}
}

func TestTensorFromProtoBoolNormalized(t *testing.T) {
	raw := []byte{0, 1, 2, 255}
	got, err := TensorFromProto(&TensorProto{Dims: []int64{4}, DataType: tensor.Bool, RawData: raw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Data, []byte{0, 1, 1, 1}) {
		t.Errorf("bools = %v", got.Data)
	}
	if raw[2] != 2 {
		t.Error("the input was modified")
	}
}

func TestTensorFromProtoErrors(t *testing.T) {
	tests := []struct {
		name string
		tp   *TensorProto
		want error
	}{
		{"nil", nil, ErrMalformed},
		{"no type", &TensorProto{Name: "t", Dims: []int64{1}, FloatData: []float32{1}}, ErrMalformed},
		{"complex", &TensorProto{Name: "t", DataType: tensor.Complex64, Dims: []int64{1}, FloatData: []float32{1, 2}}, ErrUnsupported},
		{"float8", &TensorProto{Name: "t", DataType: 17, Dims: []int64{1}, RawData: []byte{1}}, ErrUnsupported},
		{"segment", &TensorProto{Name: "t", DataType: tensor.Float32, Segment: &TensorSegment{}}, ErrUnsupported},
		{"negative dim", &TensorProto{Name: "t", DataType: tensor.Float32, Dims: []int64{-1}}, ErrMalformed},
		{"huge dims", &TensorProto{Name: "t", DataType: tensor.Float32, Dims: []int64{1 << 30, 1 << 30, 1 << 30}}, ErrMalformed},
		{"raw too short", &TensorProto{Name: "t", DataType: tensor.Float32, Dims: []int64{2}, RawData: make([]byte, 7)}, ErrMalformed},
		{"raw too long", &TensorProto{Name: "t", DataType: tensor.Int64, Dims: []int64{1}, RawData: make([]byte, 9)}, ErrMalformed},
		{"too few values", &TensorProto{Name: "t", DataType: tensor.Float32, Dims: []int64{3}, FloatData: []float32{1, 2}}, ErrMalformed},
		{"too many values", &TensorProto{Name: "t", DataType: tensor.Int64, Int64Data: []int64{1, 2}}, ErrMalformed},
		{"no data", &TensorProto{Name: "t", DataType: tensor.Float32, Dims: []int64{3}}, ErrMalformed},
		{"wrong field", &TensorProto{Name: "t", DataType: tensor.Float32, Dims: []int64{1}, Int64Data: []int64{1}}, ErrMalformed},
		{"string raw", &TensorProto{Name: "t", DataType: tensor.String, Dims: []int64{1}, RawData: []byte{1}}, ErrMalformed},
		{"string external", &TensorProto{Name: "t", DataType: tensor.String, DataLocation: DataLocationExternal}, ErrMalformed},
		{"bad location", &TensorProto{Name: "t", DataType: tensor.Float32, DataLocation: 7}, ErrUnsupported},
		{"external no resolver", &TensorProto{Name: "t", DataType: tensor.Float32, DataLocation: DataLocationExternal,
			ExternalData: []*StringStringEntryProto{{Key: "location", Value: "w.bin"}}}, ErrExternalData},
		{"external no location", &TensorProto{Name: "t", DataType: tensor.Float32, DataLocation: DataLocationExternal}, ErrExternalData},
		{"external bad offset", &TensorProto{Name: "t", DataType: tensor.Float32, DataLocation: DataLocationExternal,
			ExternalData: []*StringStringEntryProto{{Key: "location", Value: "w.bin"}, {Key: "offset", Value: "-4"}}}, ErrExternalData},
		{"external length mismatch", &TensorProto{Name: "t", DataType: tensor.Float32, Dims: []int64{2}, DataLocation: DataLocationExternal,
			ExternalData: []*StringStringEntryProto{{Key: "location", Value: "w.bin"}, {Key: "length", Value: "4"}}}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TensorFromProto(tt.tp, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, %v; want error %v", got, err, tt.want)
			}
			if tt.tp != nil && !strings.Contains(err.Error(), `"`+tt.tp.Name+`"`) {
				t.Errorf("error %q does not name the tensor", err)
			}
		})
	}
}

func TestEmptyTensor(t *testing.T) {
	for _, dt := range allDTypes {
		got, err := TensorFromProto(&TensorProto{Name: "e", DataType: dt, Dims: []int64{0, 3}}, nil)
		if err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		if got.Len() != 0 || !reflect.DeepEqual(got.Shape, []int{0, 3}) {
			t.Errorf("%v: got %v", dt, got)
		}
	}
}
