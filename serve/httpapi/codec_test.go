package httpapi

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/tensor"
)

// referenceResponse encodes a response as kiln did before appendResponse:
// encoding/json over boxed values, non-finite floats as placeholders
// replaced afterwards. appendResponse must write the same bytes.
func referenceResponse(t *testing.T, resp *serve.InferResponse, d *Decoded) ([]byte, [][]byte) {
	t.Helper()
	outs := []responseTensor{}
	var bin [][]byte
	for _, o := range resp.Outputs {
		rt := responseTensor{Name: o.Name, Datatype: DataTypeName(o.Tensor.DType), Shape: o.Tensor.Shape}
		if outputBinary(d, o.Name) {
			b := binaryData(o.Tensor)
			rt.Parameters = map[string]any{"binary_data_size": len(b)}
			bin = append(bin, b)
		} else {
			rt.Data = jsonData(o.Tensor)
		}
		outs = append(outs, rt)
	}
	body, err := json.Marshal(map[string]any{"model_name": resp.Model, "model_version": resp.Version, "id": resp.ID, "outputs": outs})
	if err != nil {
		t.Fatal(err)
	}
	return nonFinite.restore(body), bin
}

// randomTensor returns a tensor of dt with values that exercise the JSON
// number forms: tiny and huge magnitudes, integers, negative zero and, for
// floats, NaN and infinities when special is set.
func randomTensor(rng *rand.Rand, dt tensor.DType, special bool, shape ...int) *tensor.Tensor {
	t := tensor.New(dt, shape...)
	for i := range t.Len() {
		f := rng.NormFloat64() * math.Pow(10, float64(rng.IntN(60)-30))
		switch rng.IntN(12) {
		case 0:
			f = math.Copysign(0, -1)
		case 1:
			f = math.Trunc(f)
		case 2:
			if special {
				f = []float64{math.NaN(), math.Inf(1), math.Inf(-1)}[rng.IntN(3)]
			}
		}
		switch dt {
		case tensor.Float32:
			t.Float32s()[i] = float32(f)
		case tensor.Float64:
			t.Float64s()[i] = f
		case tensor.Float16:
			t.Halfs()[i] = tensor.Float32ToHalf(float32(f))
		case tensor.BFloat16:
			t.BHalfs()[i] = tensor.Float32ToBF16(float32(f))
		case tensor.Bool:
			t.Bools()[i] = rng.IntN(2) == 1
		case tensor.Int8:
			t.Int8s()[i] = int8(rng.Uint32())
		case tensor.Int16:
			t.Int16s()[i] = int16(rng.Uint32())
		case tensor.Int32:
			t.Int32s()[i] = int32(rng.Uint32())
		case tensor.Int64:
			t.Int64s()[i] = int64(rng.Uint64())
		case tensor.Uint8:
			t.Uint8s()[i] = uint8(rng.Uint32())
		case tensor.Uint16:
			t.Uint16s()[i] = uint16(rng.Uint32())
		case tensor.Uint32:
			t.Uint32s()[i] = rng.Uint32()
		case tensor.Uint64:
			t.Uint64s()[i] = rng.Uint64()
		}
	}
	return t
}

// TestAppendResponseMatchesEncodingJSON: the hand-written response encoder
// writes, byte for byte, what encoding/json wrote, for every datatype, JSON
// and binary outputs, and non-finite floats; and leaves to encoding/json
// what it does not write itself.
func TestAppendResponseMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 6))
	dtypes := []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16, tensor.BFloat16, tensor.Bool, tensor.Int8,
		tensor.Int16, tensor.Int32, tensor.Int64, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64}
	type tc struct {
		name string
		resp *serve.InferResponse
		d    *Decoded
	}
	var cases []tc
	for _, dt := range dtypes {
		for _, special := range []bool{false, true} {
			resp := &serve.InferResponse{Model: "m", Version: "1", ID: "req-7", Outputs: []serve.NamedTensor{
				{Name: "out", Tensor: randomTensor(rng, dt, special, 3, 50)},
				{Name: "scalar_row", Tensor: randomTensor(rng, dt, special, 1)},
			}}
			cases = append(cases, tc{DataTypeName(dt), resp, &Decoded{}})
			cases = append(cases, tc{DataTypeName(dt) + " binary", resp, &Decoded{Binary: map[string]bool{"out": true}}})
			cases = append(cases, tc{DataTypeName(dt) + " all binary", resp, &Decoded{BinaryDefault: true, Binary: map[string]bool{"scalar_row": false}}})
		}
	}
	probs := serve.NamedTensor{Name: "probabilities", Tensor: randomTensor(rng, tensor.Float32, false, 1, 10)}
	cases = append(cases,
		tc{"tinycnn", &serve.InferResponse{Model: "tinycnn", Version: "1", Outputs: []serve.NamedTensor{probs}}, &Decoded{}},
		tc{"no outputs", &serve.InferResponse{Model: "tinycnn", Version: "1"}, &Decoded{}},
	)
	for _, c := range cases {
		want, wantBin := referenceResponse(t, c.resp, c.d)
		got, gotBin, ok := appendResponse(c.resp, c.d)
		if !ok {
			t.Errorf("%s: appendResponse left it to encoding/json", c.name)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, want)
		}
		if len(gotBin) != len(wantBin) {
			t.Errorf("%s: %d binary outputs, want %d", c.name, len(gotBin), len(wantBin))
		}
		for i := range min(len(gotBin), len(wantBin)) {
			if !bytes.Equal(gotBin[i], wantBin[i]) {
				t.Errorf("%s: binary output %d differs", c.name, i)
			}
		}
	}
	// what it leaves to encoding/json, which encodeResponse then uses
	for _, c := range []struct {
		name string
		resp *serve.InferResponse
	}{
		{"BYTES", &serve.InferResponse{Model: "m", Version: "1", Outputs: []serve.NamedTensor{{Name: "s", Tensor: &tensor.Tensor{DType: tensor.String, Shape: []int{1}, Strings: []string{"a"}}}}}},
		{"empty", &serve.InferResponse{Model: "m", Version: "1", Outputs: []serve.NamedTensor{{Name: "e", Tensor: tensor.New(tensor.Float32, 0, 4)}}}},
		{"rank 0", &serve.InferResponse{Model: "m", Version: "1", Outputs: []serve.NamedTensor{{Name: "r", Tensor: tensor.New(tensor.Float32)}}}},
		{"escaped id", &serve.InferResponse{Model: "m", Version: "1", ID: `a"<b>`, Outputs: []serve.NamedTensor{probs}}},
		{"non-ASCII name", &serve.InferResponse{Model: "m", Version: "1", Outputs: []serve.NamedTensor{{Name: "é", Tensor: probs.Tensor}}}},
	} {
		if _, _, ok := appendResponse(c.resp, &Decoded{}); ok {
			t.Errorf("%s: appendResponse wrote it", c.name)
		}
		want, _ := referenceResponse(t, c.resp, &Decoded{})
		got, _, err := encodeResponse(c.resp, &Decoded{})
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: encodeResponse gave %s, %v; want %s", c.name, got, err, want)
		}
	}
}
