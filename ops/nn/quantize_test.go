package nn

import (
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func TestQuantizeLinear(t *testing.T) {
	// ONNX's test_quantizelinear: rounding half to even, saturation
	x := f32([]float32{0, 2, 3, 1000, -254, -1000}, 6)
	out := opstest.Run(t, opstest.Node("QuantizeLinear", 3, 1), 13, x, scalarOf(tensor.Float32, 2), scalarOf(tensor.Uint8, 128))
	closeTo(t, "QuantizeLinear", out[0], []int{6}, []float64{128, 129, 130, 255, 1, 0}, 0)
	if out[0].DType != tensor.Uint8 {
		t.Errorf("dtype %v", out[0].DType)
	}
	// no zero point: uint8, zero point 0
	out = opstest.Run(t, opstest.Node("QuantizeLinear", 2, 1), 10, f32([]float32{-1, 0.5, 1.5, 2.5, 600}, 5), scalarOf(tensor.Float32, 1))
	closeTo(t, "QuantizeLinear no zp", out[0], []int{5}, []float64{0, 0, 2, 2, 255}, 0)
	// int8
	out = opstest.Run(t, opstest.Node("QuantizeLinear", 3, 1), 13, f32([]float32{-300, -1.5, 7}, 3), scalarOf(tensor.Float32, 1), scalarOf(tensor.Int8, -1))
	closeTo(t, "QuantizeLinear int8", out[0], []int{3}, []float64{-128, -3, 6}, 0)
	// per axis (ONNX's test_quantizelinear_axis)
	xa := f32([]float32{-162, 10, -100, 232, -20, -50, -76, 0, 0, 252, 32, -44, 245, 485, -960, -270, -375, -470}, 1, 3, 3, 2)
	out = opstest.Run(t, opstest.Node("QuantizeLinear", 3, 1), 13, xa, f32([]float32{2, 4, 5}, 3), u8([]uint8{84, 24, 196}, 3))
	closeTo(t, "QuantizeLinear axis", out[0], xa.Shape,
		[]float64{3, 89, 34, 200, 74, 59, 5, 24, 24, 87, 32, 13, 245, 255, 4, 142, 121, 102}, 0)
	// blocked (opset 21): blocks of 2 along axis 1
	xb := f32([]float32{1, 2, 3, 4, 5, 6, 7, 8}, 2, 4)
	sb := f32([]float32{1, 2, 0.5, 4}, 2, 2)
	out = opstest.Run(t, opstest.Node("QuantizeLinear", 2, 1, opstest.Int("axis", 1), opstest.Int("block_size", 2)), 21, xb, sb)
	closeTo(t, "QuantizeLinear blocked", out[0], []int{2, 4}, []float64{1, 2, 2, 2, 10, 12, 2, 2}, 0)
	// float16 input
	out = opstest.Run(t, opstest.Node("QuantizeLinear", 3, 1), 19, fromFloats(tensor.Float16, []float64{1, 2}, 2), fromFloats(tensor.Float16, []float64{0.5}), scalarOf(tensor.Uint8, 10))
	closeTo(t, "QuantizeLinear f16", out[0], []int{2}, []float64{12, 14}, 0)

	wantBadInput(t, "axis opset 10", opstest.Node("QuantizeLinear", 3, 1), 10, xa, f32([]float32{2, 4, 5}, 3), u8([]uint8{84, 24, 196}, 3))
	wantBadInput(t, "scale size", opstest.Node("QuantizeLinear", 2, 1), 13, xa, f32([]float32{2, 4}, 2))
	wantBadInput(t, "axis range", opstest.Node("QuantizeLinear", 2, 1, opstest.Int("axis", 7)), 13, xa, f32([]float32{2, 4, 5}, 3))
	wantBadInput(t, "int input", opstest.Node("QuantizeLinear", 2, 1), 13, tensor.New(tensor.Int8, 3), scalarOf(tensor.Float32, 1))
	wantBadInput(t, "blocked shape", opstest.Node("QuantizeLinear", 2, 1, opstest.Int("block_size", 1)), 21, xb, sb)
}

func TestDequantizeLinear(t *testing.T) {
	// ONNX's test_dequantizelinear
	out := opstest.Run(t, opstest.Node("DequantizeLinear", 3, 1), 13, u8([]uint8{0, 3, 128, 255}, 4), scalarOf(tensor.Float32, 2), scalarOf(tensor.Uint8, 128))
	closeTo(t, "DequantizeLinear", out[0], []int{4}, []float64{-256, -250, 0, 254}, 0)
	// per axis
	x := u8([]uint8{3, 89, 34, 200, 74, 59, 5, 24, 24, 87, 32, 13, 245, 255, 4, 142, 121, 102}, 1, 3, 3, 2)
	out = opstest.Run(t, opstest.Node("DequantizeLinear", 3, 1), 13, x, f32([]float32{2, 4, 5}, 3), u8([]uint8{84, 24, 196}, 3))
	closeTo(t, "DequantizeLinear axis", out[0], x.Shape,
		[]float64{-162, 10, -100, 232, -20, -50, -76, 0, 0, 252, 32, -44, 245, 295, -960, -270, -375, -470}, 0)
	// int32 input, no zero point
	xi := tensor.New(tensor.Int32, 3)
	copy(xi.Int32s(), []int32{-100000, 0, 7})
	out = opstest.Run(t, opstest.Node("DequantizeLinear", 2, 1), 10, xi, scalarOf(tensor.Float32, 0.5))
	closeTo(t, "DequantizeLinear int32", out[0], []int{3}, []float64{-50000, 0, 3.5}, 0)
	// float16 scale gives a float16 output (opset 19)
	out = opstest.Run(t, opstest.Node("DequantizeLinear", 2, 1), 19, u8([]uint8{4}, 1), fromFloats(tensor.Float16, []float64{0.5}))
	if out[0].DType != tensor.Float16 || out[0].Float(0) != 2 {
		t.Errorf("DequantizeLinear f16: %v", out[0])
	}
	got := inferTypes(t, opstest.Node("DequantizeLinear", 2, 1), 19, ty(tensor.Int8, ir.S("n"), ir.D(4)), ty(tensor.Float16))
	if got[0].DType != tensor.Float16 || got[0].Shape.String() != "[n,4]" {
		t.Errorf("DequantizeLinear infer %v", got[0])
	}
	wantBadInput(t, "zp type", opstest.Node("DequantizeLinear", 3, 1), 13, u8([]uint8{1}, 1), scalarOf(tensor.Float32, 1), scalarOf(tensor.Int8, 0))
	wantBadInput(t, "float input", opstest.Node("DequantizeLinear", 2, 1), 13, f32([]float32{1}, 1), scalarOf(tensor.Float32, 1))
}

func TestDynamicQuantizeLinear(t *testing.T) {
	// ONNX's test_dynamicquantizelinear
	x := f32([]float32{0, 2, -3, -2.5, 1.34, 0.5}, 6)
	out := opstest.Run(t, opstest.Node("DynamicQuantizeLinear", 1, 3), 11, x)
	closeTo(t, "y", out[0], []int{6}, []float64{153, 255, 0, 26, 221, 179}, 0)
	closeTo(t, "scale", out[1], []int{}, []float64{0.0196078438}, 1e-7)
	closeTo(t, "zero point", out[2], []int{}, []float64{153}, 0)
	// all positive: the range still includes 0
	out = opstest.Run(t, opstest.Node("DynamicQuantizeLinear", 1, 3), 11, f32([]float32{6, 3.1}, 2))
	closeTo(t, "zero point", out[2], []int{}, []float64{0}, 0)
	closeTo(t, "y", out[0], []int{2}, []float64{255, 132}, 0)
	// all zero
	out = opstest.Run(t, opstest.Node("DynamicQuantizeLinear", 1, 3), 11, f32([]float32{0, 0}, 2))
	closeTo(t, "y", out[0], []int{2}, []float64{0, 0}, 0)
	wantBadInput(t, "int", opstest.Node("DynamicQuantizeLinear", 1, 3), 11, tensor.New(tensor.Int32, 2))
}
