package ops_test

import (
	"slices"
	"testing"

	"github.com/kilnai/kiln/ops"
	_ "github.com/kilnai/kiln/ops/all"
)

// TestTraits: the ops that declare each trait are exactly those of the
// list its user kept before the trait existed: the memory planner's views
// (engine/memplan.go), the float16 adapter's float16-native ops
// (ops/fp16.go), FP16Convert's keep-in-float32 ops (quant/fp16.go) and the
// layout pass's unary and binary layout-agnostic ops (optimize/layout.go:
// layoutUnary and layoutBinary) and FP16Convert's shape-only ops
// (quant/fp16.go: fp16ShapeOnly).
func TestTraits(t *testing.T) {
	for _, tt := range []struct {
		name  string
		trait ops.Traits
		want  []string
	}{
		{"ViewOfInput0", ops.ViewOfInput0, []string{"Flatten", "Identity", "Reshape", "Squeeze", "Unsqueeze"}},
		{"MayViewInput0", ops.MayViewInput0, []string{"Cast", "CastLike", "DepthToSpace", "Dropout", "Max", "Mean", "Min", "SpaceToDepth", "Sum", "Transpose"}},
		{"HasFloat16", ops.HasFloat16, []string{
			"Bernoulli", "Cast", "CastLike", "Compress", "Concat", "Constant", "ConstantOfShape", "DepthToSpace",
			"Expand", "EyeLike", "Flatten", "Gather", "GatherElements", "GatherND", "Identity", "If", "Loop",
			"MelWeightMatrix", "Multinomial", "Pad", "RandomNormalLike", "RandomUniformLike", "Reshape",
			"ReverseSequence", "Scan", "Scatter", "ScatterElements", "ScatterND", "Shape", "Size", "Slice",
			"SpaceToDepth", "Split", "Squeeze", "Tile", "Transpose", "Trilu", "Unsqueeze", "Where"}},
		{"KeepFloat32", ops.KeepFloat32, []string{
			"Bernoulli", "BlackmanWindow", "ConvInteger", "DequantizeLinear", "DynamicQuantizeLinear", "EyeLike",
			"HammingWindow", "HannWindow", "MatMulInteger", "MelWeightMatrix", "Multinomial", "QLinearConv",
			"QLinearMatMul", "QuantizeLinear", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"}},
		{"ElementwiseUnary", ops.ElementwiseUnary, []string{
			"Abs", "Cast", "Ceil", "Celu", "Clip", "Cos", "Elu", "Erf", "Exp", "Floor", "Gelu", "HardSigmoid",
			"HardSwish", "Identity", "LeakyRelu", "Log", "Mish", "Neg", "Not", "Reciprocal", "Relu", "Round",
			"Selu", "Sigmoid", "Sign", "Sin", "Softplus", "Softsign", "Sqrt", "Tanh", "ThresholdedRelu"}},
		{"ElementwiseBinary", ops.ElementwiseBinary, []string{
			"Add", "And", "Div", "Equal", "Greater", "Less", "Max", "Min", "Mul", "Or", "Pow", "Sub", "Xor"}},
		{"ShapeOnly", ops.ShapeOnly, []string{"Shape", "Size"}},
	} {
		var got []string
		for _, op := range ops.Types() {
			if ops.TraitsOf("", op).Has(tt.trait) {
				got = append(got, op)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("ops with trait %s: %v, want %v", tt.name, got, tt.want)
		}
	}
	if ops.TraitsOf("", "NoSuchOp") != 0 || ops.TraitsOf("ai.onnx", "Reshape") != ops.ViewOfInput0|ops.HasFloat16 || ops.TraitsOf("", "Max") != ops.MayViewInput0|ops.ElementwiseBinary {
		t.Errorf("TraitsOf: unknown op %b, ai.onnx::Reshape %b", ops.TraitsOf("", "NoSuchOp"), ops.TraitsOf("ai.onnx", "Reshape"))
	}
	if (ops.ViewOfInput0|ops.MayViewInput0).Has(ops.ViewOfInput0) != true || ops.ViewOfInput0.Has(ops.MayViewInput0) {
		t.Error("Traits.Has")
	}
}
