package api

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/tensor"
	"google.golang.org/protobuf/proto"
)

// sample returns a [2,3] tensor of dt with values that use the type's range.
func sample(t *testing.T, dt tensor.DType) *tensor.Tensor {
	t.Helper()
	if dt == tensor.String {
		return &tensor.Tensor{DType: tensor.String, Shape: []int{2, 3}, Strings: []string{"", "a", "héllo", "\x00\xff", "kiln", string(make([]byte, 300))}}
	}
	x := tensor.New(dt, 2, 3)
	for i := range x.Data {
		x.Data[i] = byte(i*37 + 200)
	}
	if dt == tensor.Bool {
		for i := range x.Data {
			x.Data[i] = byte(i % 2)
		}
	}
	return x
}

func equalTensors(a, b *tensor.Tensor) bool {
	return a.DType == b.DType && slices.Equal(a.Shape, b.Shape) && bytes.Equal(a.Data, b.Data) && slices.Equal(a.Strings, b.Strings)
}

func TestDatatypeMapping(t *testing.T) {
	tests := []struct {
		name string
		dt   tensor.DType
	}{
		{"BOOL", tensor.Bool}, {"UINT8", tensor.Uint8}, {"UINT16", tensor.Uint16}, {"UINT32", tensor.Uint32},
		{"UINT64", tensor.Uint64}, {"INT8", tensor.Int8}, {"INT16", tensor.Int16}, {"INT32", tensor.Int32},
		{"INT64", tensor.Int64}, {"FP16", tensor.Float16}, {"BF16", tensor.BFloat16}, {"FP32", tensor.Float32},
		{"FP64", tensor.Float64}, {"BYTES", tensor.String},
	}
	if len(tests) != len(Datatypes()) {
		t.Fatalf("Datatypes() = %v, want %d names", Datatypes(), len(tests))
	}
	for _, tt := range tests {
		if got, err := ParseDatatype(tt.name); err != nil || got != tt.dt {
			t.Errorf("ParseDatatype(%q) = %v, %v; want %v", tt.name, got, err, tt.dt)
		}
		if got, err := Datatype(tt.dt); err != nil || got != tt.name {
			t.Errorf("Datatype(%v) = %q, %v; want %q", tt.dt, got, err, tt.name)
		}
	}
	for _, bad := range []string{"", "fp32", "FLOAT", "STRING", "COMPLEX64"} {
		if _, err := ParseDatatype(bad); !errors.Is(err, ErrDatatype) {
			t.Errorf("ParseDatatype(%q) error = %v, want ErrDatatype", bad, err)
		}
	}
	for _, bad := range []tensor.DType{tensor.Undefined, tensor.Complex64, tensor.Complex128, 99} {
		if _, err := Datatype(bad); !errors.Is(err, ErrDatatype) {
			t.Errorf("Datatype(%v) error = %v, want ErrDatatype", bad, err)
		}
	}
}

func TestRawRoundTrip(t *testing.T) {
	for _, name := range Datatypes() {
		t.Run(name, func(t *testing.T) {
			dt, _ := ParseDatatype(name)
			x := sample(t, dt)
			raw, err := EncodeRaw(x)
			if err != nil {
				t.Fatal(err)
			}
			y, err := DecodeRaw(name, WireShape(x.Shape), raw)
			if err != nil {
				t.Fatal(err)
			}
			if !equalTensors(x, y) {
				t.Fatalf("round trip: got %+v, want %+v", y, x)
			}
			if dt != tensor.String && len(y.Data) > 0 && &y.Data[0] == &raw[0] {
				t.Error("DecodeRaw shares the raw buffer")
			}
		})
	}
}

func TestRawLayout(t *testing.T) {
	// Little endian, and BYTES as 4-byte length prefixes.
	raw, err := EncodeRaw(tensor.FromInt64([]int64{1, -2}, 2))
	if err != nil {
		t.Fatal(err)
	}
	want := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 1), math.MaxUint64-1)
	if !bytes.Equal(raw, want) {
		t.Errorf("INT64 raw = %x, want %x", raw, want)
	}
	raw, err = EncodeRaw(&tensor.Tensor{DType: tensor.String, Shape: []int{2}, Strings: []string{"ab", ""}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{2, 0, 0, 0, 'a', 'b', 0, 0, 0, 0}; !bytes.Equal(raw, want) {
		t.Errorf("BYTES raw = %v, want %v", raw, want)
	}
}

func TestContentsRoundTrip(t *testing.T) {
	for _, name := range Datatypes() {
		t.Run(name, func(t *testing.T) {
			dt, _ := ParseDatatype(name)
			x := sample(t, dt)
			c, err := EncodeContents(x)
			if dt == tensor.Float16 || dt == tensor.BFloat16 {
				if !errors.Is(err, ErrContents) {
					t.Fatalf("EncodeContents(%s) error = %v, want ErrContents", name, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f := contentsFields(c); len(f) != 1 || f[0] != contentsField(dt) {
				t.Fatalf("fields set = %v, want [%s]", f, contentsField(dt))
			}
			// Through the wire, so that proto encoding is part of the trip.
			b, err := proto.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			c2 := &inference.InferTensorContents{}
			if err := proto.Unmarshal(b, c2); err != nil {
				t.Fatal(err)
			}
			y, err := DecodeContents(name, WireShape(x.Shape), c2)
			if err != nil {
				t.Fatal(err)
			}
			if !equalTensors(x, y) {
				t.Fatalf("round trip: got %+v, want %+v", y, x)
			}
		})
	}
}

func TestContentsValues(t *testing.T) {
	c, err := EncodeContents(tensor.FromFloat32([]float32{1.5, -2}, 2))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Fp32Contents, []float32{1.5, -2}) {
		t.Errorf("fp32_contents = %v", c.Fp32Contents)
	}
	x, err := DecodeContents("INT8", []int64{3}, &inference.InferTensorContents{IntContents: []int32{-128, 0, 127}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x.Int8s(), []int8{-128, 0, 127}) {
		t.Errorf("INT8 = %v", x.Int8s())
	}
	x, err = DecodeContents("BOOL", []int64{2}, &inference.InferTensorContents{BoolContents: []bool{true, false}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x.Bools(), []bool{true, false}) {
		t.Errorf("BOOL = %v", x.Bools())
	}
	// An empty tensor needs no contents at all.
	x, err = DecodeContents("FP32", []int64{0, 4}, nil)
	if err != nil || x.Len() != 0 {
		t.Errorf("empty FP32 = %v, %v", x, err)
	}
}

func TestDecodeRawErrors(t *testing.T) {
	tests := []struct {
		name     string
		datatype string
		shape    []int64
		raw      []byte
		want     error
	}{
		{"unknown datatype", "FP8", []int64{1}, []byte{0}, ErrDatatype},
		{"lower-case datatype", "fp32", []int64{1}, make([]byte, 4), ErrDatatype},
		{"negative dim", "FP32", []int64{-1}, nil, ErrShape},
		{"huge dim", "FP32", []int64{math.MaxInt64}, nil, ErrShape},
		{"too many elements", "UINT8", []int64{1 << 30, 1 << 30}, nil, ErrShape},
		{"short", "FP32", []int64{2}, make([]byte, 7), ErrSize},
		{"long", "FP32", []int64{2}, make([]byte, 9), ErrSize},
		{"bytes for empty", "INT64", []int64{0}, make([]byte, 8), ErrSize},
		{"bool not 0/1", "BOOL", []int64{2}, []byte{1, 2}, ErrContents},
		{"BYTES truncated length", "BYTES", []int64{1}, []byte{1, 0, 0}, ErrSize},
		{"BYTES length past end", "BYTES", []int64{1}, []byte{5, 0, 0, 0, 'a'}, ErrContents},
		{"BYTES huge length", "BYTES", []int64{1}, []byte{255, 255, 255, 255}, ErrContents},
		{"BYTES second element truncated", "BYTES", []int64{2}, []byte{1, 0, 0, 0, 'a', 0, 0, 0}, ErrContents},
		{"BYTES trailing", "BYTES", []int64{1}, []byte{0, 0, 0, 0, 'x'}, ErrSize},
		{"BYTES too many elements for data", "BYTES", []int64{1 << 40}, make([]byte, 8), ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := DecodeRaw(tt.datatype, tt.shape, tt.raw)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeRaw = %v, %v; want error %v", x, err, tt.want)
			}
		})
	}
}

func TestDecodeContentsErrors(t *testing.T) {
	tests := []struct {
		name     string
		datatype string
		shape    []int64
		c        *inference.InferTensorContents
		want     error
	}{
		{"unknown datatype", "INT4", []int64{1}, &inference.InferTensorContents{IntContents: []int32{1}}, ErrDatatype},
		{"FP16 typed", "FP16", []int64{1}, &inference.InferTensorContents{Fp32Contents: []float32{1}}, ErrContents},
		{"BF16 typed", "BF16", []int64{0}, nil, ErrContents},
		{"wrong field", "FP32", []int64{1}, &inference.InferTensorContents{Fp64Contents: []float64{1}}, ErrContents},
		{"extra field", "INT32", []int64{1}, &inference.InferTensorContents{IntContents: []int32{1}, Int64Contents: []int64{1}}, ErrContents},
		{"too few", "FP32", []int64{3}, &inference.InferTensorContents{Fp32Contents: []float32{1, 2}}, ErrSize},
		{"too many", "INT64", []int64{1}, &inference.InferTensorContents{Int64Contents: []int64{1, 2}}, ErrSize},
		{"missing", "UINT64", []int64{1}, nil, ErrSize},
		{"INT8 overflow", "INT8", []int64{1}, &inference.InferTensorContents{IntContents: []int32{128}}, ErrContents},
		{"INT16 underflow", "INT16", []int64{1}, &inference.InferTensorContents{IntContents: []int32{-32769}}, ErrContents},
		{"UINT8 overflow", "UINT8", []int64{1}, &inference.InferTensorContents{UintContents: []uint32{256}}, ErrContents},
		{"UINT16 overflow", "UINT16", []int64{1}, &inference.InferTensorContents{UintContents: []uint32{70000}}, ErrContents},
		{"negative dim", "FP32", []int64{-2}, nil, ErrShape},
		{"huge shape", "FP32", []int64{1 << 40, 1 << 40}, nil, ErrShape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := DecodeContents(tt.datatype, tt.shape, tt.c)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeContents = %v, %v; want error %v", x, err, tt.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		t    *tensor.Tensor
		want error
	}{
		{"nil", nil, ErrContents},
		{"complex", &tensor.Tensor{DType: tensor.Complex64, Shape: []int{1}, Data: make([]byte, 8)}, ErrDatatype},
		{"short data", &tensor.Tensor{DType: tensor.Float32, Shape: []int{2}, Data: make([]byte, 4)}, ErrSize},
		{"strings count", &tensor.Tensor{DType: tensor.String, Shape: []int{2}, Strings: []string{"a"}}, ErrSize},
		{"negative shape", &tensor.Tensor{DType: tensor.Float32, Shape: []int{-1}}, ErrShape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := EncodeRaw(tt.t); !errors.Is(err, tt.want) {
				t.Errorf("EncodeRaw error = %v, want %v", err, tt.want)
			}
			if _, err := EncodeContents(tt.t); !errors.Is(err, tt.want) {
				t.Errorf("EncodeContents error = %v, want %v", err, tt.want)
			}
			if _, err := NewInferRequest("m", map[string]*tensor.Tensor{"x": tt.t}); !errors.Is(err, tt.want) {
				t.Errorf("NewInferRequest error = %v, want %v", err, tt.want)
			}
			if _, err := NewInferResponse("m", "1", "", map[string]*tensor.Tensor{"y": tt.t}); !errors.Is(err, tt.want) {
				t.Errorf("NewInferResponse error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRequestResponseTensors(t *testing.T) {
	ins := map[string]*tensor.Tensor{}
	for _, name := range Datatypes() {
		dt, _ := ParseDatatype(name)
		ins["in_"+name] = sample(t, dt)
	}
	req, err := NewInferRequest("m", ins)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	req2 := &inference.ModelInferRequest{}
	if err := proto.Unmarshal(b, req2); err != nil {
		t.Fatal(err)
	}
	if req2.ModelName != "m" || len(req2.Inputs) != len(ins) || len(req2.RawInputContents) != len(ins) {
		t.Fatalf("request: %d inputs, %d raw", len(req2.Inputs), len(req2.RawInputContents))
	}
	got, err := RequestTensors(req2)
	if err != nil {
		t.Fatal(err)
	}
	for name, x := range ins {
		if !equalTensors(x, got[name]) {
			t.Errorf("%s: got %+v, want %+v", name, got[name], x)
		}
	}

	resp, err := NewInferResponse("m", "3", "req-1", ins)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ModelVersion != "3" || resp.Id != "req-1" {
		t.Errorf("response header = %q %q", resp.ModelVersion, resp.Id)
	}
	outs, err := ResponseTensors(resp)
	if err != nil {
		t.Fatal(err)
	}
	for name, x := range ins {
		if !equalTensors(x, outs[name]) {
			t.Errorf("%s: got %+v, want %+v", name, outs[name], x)
		}
	}

	// Typed contents, as KServe's and Triton's clients may send.
	typed := &inference.ModelInferRequest{ModelName: "m"}
	typed.Inputs = append(typed.Inputs, &inference.ModelInferRequest_InferInputTensor{
		Name: "a", Datatype: "FP32", Shape: []int64{2},
		Contents: &inference.InferTensorContents{Fp32Contents: []float32{1, 2}},
	})
	got, err = RequestTensors(typed)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got["a"].Float32s(), []float32{1, 2}) {
		t.Errorf("typed input = %v", got["a"].Float32s())
	}
}

func TestRequestTensorsErrors(t *testing.T) {
	in := func(name string, c *inference.InferTensorContents) *inference.ModelInferRequest_InferInputTensor {
		return &inference.ModelInferRequest_InferInputTensor{Name: name, Datatype: "FP32", Shape: []int64{1}, Contents: c}
	}
	four := make([]byte, 4)
	one := &inference.InferTensorContents{Fp32Contents: []float32{1}}
	tests := []struct {
		name string
		req  *inference.ModelInferRequest
		want error
	}{
		{"raw count", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("a", nil), in("b", nil)}, RawInputContents: [][]byte{four}}, ErrContents},
		{"raw and typed", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("a", one)}, RawInputContents: [][]byte{four}}, ErrContents},
		{"duplicate", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("a", one), in("a", one)}}, ErrContents},
		{"no name", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("", one)}}, ErrContents},
		{"no data", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("a", nil)}}, ErrSize},
		{"raw size", &inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{in("a", nil)}, RawInputContents: [][]byte{make([]byte, 3)}}, ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := RequestTensors(tt.req); !errors.Is(err, tt.want) {
				t.Fatalf("RequestTensors error = %v, want %v", err, tt.want)
			}
		})
	}
	// The same rules hold for responses.
	bad := &inference.ModelInferResponse{
		Outputs:           []*inference.ModelInferResponse_InferOutputTensor{{Name: "y", Datatype: "FP32", Shape: []int64{1}}},
		RawOutputContents: [][]byte{four, four},
	}
	if _, err := ResponseTensors(bad); !errors.Is(err, ErrContents) {
		t.Errorf("ResponseTensors error = %v, want ErrContents", err)
	}
}

func TestShape(t *testing.T) {
	s, err := Shape([]int64{2, 0, 3})
	if err != nil || !slices.Equal(s, []int{2, 0, 3}) {
		t.Errorf("Shape = %v, %v", s, err)
	}
	if s, err := Shape(nil); err != nil || len(s) != 0 {
		t.Errorf("scalar Shape = %v, %v", s, err)
	}
	if w := WireShape([]int{4, 5}); !slices.Equal(w, []int64{4, 5}) {
		t.Errorf("WireShape = %v", w)
	}
}

// FuzzDecodeRaw checks that DecodeRaw never panics, and that what it accepts
// encodes back to the same bytes.
func FuzzDecodeRaw(f *testing.F) {
	f.Add("FP32", int64(2), int64(1), make([]byte, 8))
	f.Add("BYTES", int64(2), int64(1), []byte{1, 0, 0, 0, 'a', 0, 0, 0, 0})
	f.Add("BOOL", int64(3), int64(1), []byte{0, 1, 1})
	f.Add("BYTES", int64(1<<40), int64(1), []byte{0, 0, 0, 0})
	f.Add("FP16", int64(-1), int64(2), []byte{})
	f.Fuzz(func(t *testing.T, datatype string, d0, d1 int64, raw []byte) {
		x, err := DecodeRaw(datatype, []int64{d0, d1}, raw)
		if err != nil {
			if x != nil {
				t.Fatal("tensor returned with an error")
			}
			return
		}
		back, err := EncodeRaw(x)
		if err != nil {
			t.Fatalf("EncodeRaw of a decoded tensor: %v", err)
		}
		if !bytes.Equal(back, raw) {
			t.Fatalf("re-encoded %x, want %x", back, raw)
		}
	})
}

func TestConfigDataType(t *testing.T) {
	// Every KServe datatype has a configuration type named after it, except
	// BYTES, which configurations call TYPE_STRING.
	for _, name := range Datatypes() {
		dt, _ := ParseDatatype(name)
		ct, err := ConfigDataType(dt)
		if err != nil {
			t.Fatalf("ConfigDataType(%v): %v", dt, err)
		}
		want := "TYPE_" + name
		if name == "BYTES" {
			want = "TYPE_STRING"
		}
		if ct.String() != want {
			t.Errorf("ConfigDataType(%v) = %v, want %s", dt, ct, want)
		}
		if back, err := ParseConfigDataType(ct); err != nil || back != dt {
			t.Errorf("ParseConfigDataType(%v) = %v, %v; want %v", ct, back, err, dt)
		}
	}
	if _, err := ConfigDataType(tensor.Complex64); !errors.Is(err, ErrDatatype) {
		t.Errorf("ConfigDataType(complex64) error = %v", err)
	}
	for _, ct := range []inference.DataType{inference.DataType_TYPE_INVALID, 99} {
		if _, err := ParseConfigDataType(ct); !errors.Is(err, ErrDatatype) {
			t.Errorf("ParseConfigDataType(%v) error = %v", ct, err)
		}
	}
}

// FuzzRequestTensors feeds arbitrary wire bytes through proto decoding and
// RequestTensors, as a server does with untrusted requests: never a panic,
// and every accepted input re-encodes to a request that decodes the same.
func FuzzRequestTensors(f *testing.F) {
	seed := func(req *inference.ModelInferRequest) {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	r, err := NewInferRequest("m", map[string]*tensor.Tensor{
		"a": tensor.FromFloat32([]float32{1, 2}, 2),
		"s": {DType: tensor.String, Shape: []int{1}, Strings: []string{"x"}},
	})
	if err != nil {
		f.Fatal(err)
	}
	seed(r)
	seed(&inference.ModelInferRequest{Inputs: []*inference.ModelInferRequest_InferInputTensor{{
		Name: "b", Datatype: "INT8", Shape: []int64{2},
		Contents: &inference.InferTensorContents{IntContents: []int32{1, -1}},
	}}})
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &inference.ModelInferRequest{}
		if proto.Unmarshal(b, req) != nil {
			return
		}
		ins, err := RequestTensors(req)
		if err != nil {
			return
		}
		again, err := NewInferRequest(req.GetModelName(), ins)
		if err != nil {
			t.Fatalf("re-encoding accepted inputs: %v", err)
		}
		back, err := RequestTensors(again)
		if err != nil {
			t.Fatalf("decoding re-encoded inputs: %v", err)
		}
		for name, x := range ins {
			if !equalTensors(x, back[name]) {
				t.Fatalf("input %q changed: %+v vs %+v", name, x, back[name])
			}
		}
	})
}
