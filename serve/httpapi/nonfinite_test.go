package httpapi

import (
	"math"
	"strings"
	"testing"

	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/tensor"
)

// TestNonFiniteOutputs: float outputs with NaN or infinities are written
// as Triton writes them (NaN, Infinity, -Infinity tokens, which Python's
// json reads), the finite ones as usual, and a string that looks like the
// placeholder without the process's key is left alone.
func TestNonFiniteOutputs(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	floats := func(dt tensor.DType, v ...float64) *tensor.Tensor {
		x := tensor.New(dt, len(v))
		for i, f := range v {
			x.SetFloat(i, f)
		}
		return x
	}
	for _, c := range []struct {
		name string
		t    *tensor.Tensor
		want string
	}{
		{"float32", tensor.FromFloat32([]float32{nan, inf, -inf, 1.5}, 4), `"data":[NaN,Infinity,-Infinity,1.5]`},
		{"float64", floats(tensor.Float64, math.Inf(-1), 0.25), `"data":[-Infinity,0.25]`},
		{"float16", floats(tensor.Float16, 1, math.NaN()), `"data":[1,NaN]`},
		{"finite", tensor.FromFloat32([]float32{0.5, -2}, 2), `"data":[0.5,-2]`},
	} {
		resp := &serve.InferResponse{Model: "m", Version: "1", ID: "\x01kiln-nonfinite-0:NaN",
			Outputs: []serve.NamedTensor{{Name: "y", Tensor: c.t}}}
		body, _, err := encodeResponse(resp, &Decoded{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !strings.Contains(string(body), c.want) || !strings.Contains(string(body), `"id":"\u0001kiln-nonfinite-0:NaN"`) {
			t.Errorf("%s: %s, want %s and the id as sent", c.name, body, c.want)
		}
	}
}
