// Package examples holds the small models bundled with kiln, so that kiln runs
// something useful with nothing but its own binary: TinyCNN, an image
// classifier built in Go by ir.Builder and written by kiln's ONNX writer.
package examples

import (
	_ "embed"
	"math/rand/v2"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

//go:generate go run ./gen

// TinyCNNModel is tinycnn/model.onnx: input "image" float32 [batch,3,32,32],
// output "probabilities" float32 [batch,10].
//
//go:embed tinycnn/model.onnx
var TinyCNNModel []byte

// TinyCNN builds the example classifier: two Conv+Relu stages with
// MaxPool, GlobalAveragePool, Flatten, Gemm and Softmax, with weights drawn
// from a fixed seed.
func TinyCNN() *ir.Graph {
	rng := rand.New(rand.NewPCG(2026, 11))
	randT := func(scale float64, shape ...int) *tensor.Tensor {
		t := tensor.New(tensor.Float32, shape...)
		for i := range t.Float32s() {
			t.Float32s()[i] = float32((rng.Float64()*2 - 1) * scale)
		}
		return t
	}
	b := ir.NewBuilder("tinycnn", 17)
	x := b.Input("image", tensor.Float32, ir.S("batch"), ir.D(3), ir.D(32), ir.D(32))
	conv := func(in *ir.Value, cin, cout int) *ir.Value {
		w := b.Const("", randT(0.5, cout, cin, 3, 3))
		bias := b.Const("", randT(0.1, cout))
		y := b.Op("Conv", []*ir.Value{in, w, bias}, ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("pads", 1, 1, 1, 1))
		return b.Op("Relu", []*ir.Value{y})
	}
	h := conv(x, 3, 8)
	h = b.Op("MaxPool", []*ir.Value{h}, ir.IntsAttr("kernel_shape", 2, 2), ir.IntsAttr("strides", 2, 2))
	h = conv(h, 8, 16)
	h = b.Op("GlobalAveragePool", []*ir.Value{h})
	h = b.Op("Flatten", []*ir.Value{h}, ir.IntAttr("axis", 1))
	w := b.Const("fc.weight", randT(0.5, 10, 16))
	bias := b.Const("fc.bias", randT(0.1, 10))
	h = b.Op("Gemm", []*ir.Value{h, w, bias}, ir.IntAttr("transB", 1))
	out := b.Op("Softmax", []*ir.Value{h}, ir.IntAttr("axis", 1))
	b.Output(out, "probabilities")
	out.Type = ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("batch"), ir.D(10)}}
	return b.Graph()
}

// TinyCNNInput returns a deterministic test image batch [n,3,32,32].
func TinyCNNInput(n int) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(7, 7))
	t := tensor.New(tensor.Float32, n, 3, 32, 32)
	for i := range t.Float32s() {
		t.Float32s()[i] = float32(rng.Float64())
	}
	return t
}

//go:embed tinycnn/test_data_set_0/input_0.pb
var tinyCNNInput []byte

//go:embed tinycnn/test_data_set_0/output_0.pb
var tinyCNNOutput []byte

// TinyCNNTestData returns the bundled test input (2 images) and the output
// kiln computed for it when the example was generated.
func TinyCNNTestData() (input, output *tensor.Tensor, err error) {
	dec := func(b []byte) (*tensor.Tensor, error) {
		tp, err := onnx.DecodeTensor(b)
		if err != nil {
			return nil, err
		}
		return onnx.TensorFromProto(tp, nil)
	}
	if input, err = dec(tinyCNNInput); err != nil {
		return nil, nil, err
	}
	if output, err = dec(tinyCNNOutput); err != nil {
		return nil, nil, err
	}
	return input, output, nil
}
