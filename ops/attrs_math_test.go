package ops_test

import (
	"math"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestMathAttrs: the activations', Clip's, Mod's, BitShift's and IsInf's
// typed attributes, with the ONNX defaults.
func TestMathAttrs(t *testing.T) {
	inf := float32(math.Inf(1))
	seed := int64(3)
	runAttrCases(t, []attrCase{
		{"leakyrelu default", "LeakyRelu", nil, 16, ops.ActivationAttrs{Alpha: 0.01}, ""},
		{"leakyrelu alpha", "LeakyRelu", []*ir.Attr{floatA("alpha", 0.2)}, 16, ops.ActivationAttrs{Alpha: 0.2}, ""},
		{"elu default", "Elu", nil, 6, ops.ActivationAttrs{Alpha: 1}, ""},
		{"selu default", "Selu", nil, 6, ops.ActivationAttrs{Alpha: 1.67326319217681884765625, Gamma: 1.05070102214813232421875}, ""},
		{"celu alpha 0", "Celu", []*ir.Attr{floatA("alpha", 0)}, 12, nil, "alpha"},
		{"thresholdedrelu default", "ThresholdedRelu", nil, 10, ops.ActivationAttrs{Alpha: 1}, ""},
		{"hardsigmoid default", "HardSigmoid", nil, 6, ops.ActivationAttrs{Alpha: 0.2, Beta: 0.5}, ""},
		{"hardswish", "HardSwish", nil, 14, ops.ActivationAttrs{}, ""},
		{"gelu default", "Gelu", nil, 20, ops.ActivationAttrs{}, ""},
		{"gelu tanh", "Gelu", []*ir.Attr{strA("approximate", "tanh")}, 20, ops.ActivationAttrs{Tanh: true}, ""},
		{"gelu bad approximate", "Gelu", []*ir.Attr{strA("approximate", "fast")}, 20, nil, "approximate"},
		{"shrink default", "Shrink", nil, 9, ops.ActivationAttrs{Lambd: 0.5}, ""},
		{"leakyrelu mistyped", "LeakyRelu", []*ir.Attr{intA("alpha", 1)}, 16, nil, "alpha"},
		{"clip opset 6", "Clip", []*ir.Attr{floatA("min", 0), floatA("max", 6)}, 6, ops.ClipAttrs{FromAttrs: true, Min: 0, Max: 6}, ""},
		{"clip opset 6 default", "Clip", nil, 6, ops.ClipAttrs{FromAttrs: true, Min: -inf, Max: inf}, ""},
		{"clip opset 13 ignores attributes", "Clip", []*ir.Attr{floatA("min", 0)}, 13, ops.ClipAttrs{Min: -inf, Max: inf}, ""},
		{"mod default", "Mod", nil, 13, ops.ModAttrs{}, ""},
		{"mod fmod", "Mod", []*ir.Attr{intA("fmod", 1)}, 13, ops.ModAttrs{Fmod: true}, ""},
		{"mod fmod 2", "Mod", []*ir.Attr{intA("fmod", 2)}, 13, nil, "fmod"},
		{"bitshift right", "BitShift", []*ir.Attr{strA("direction", "RIGHT")}, 11, ops.BitShiftAttrs{Right: true}, ""},
		{"bitshift left", "BitShift", []*ir.Attr{strA("direction", "LEFT")}, 11, ops.BitShiftAttrs{}, ""},
		{"bitshift no direction", "BitShift", nil, 11, nil, "direction"},
		{"isinf default", "IsInf", nil, 10, ops.IsInfAttrs{DetectPositive: true, DetectNegative: true}, ""},
		{"isinf negative only", "IsInf", []*ir.Attr{intA("detect_positive", 0)}, 10, ops.IsInfAttrs{DetectNegative: true}, ""},
		{"cast", "Cast", []*ir.Attr{intA("to", int64(tensor.Float16))}, 13, ops.CastAttrs{To: tensor.Float16}, ""},
		{"cast no to", "Cast", nil, 13, nil, "to"},
		{"add opset 6 axis", "Add", []*ir.Attr{intA("broadcast", 1), intA("axis", 1)}, 6, ops.BroadcastAttrs{Legacy: true, Axis: 1}, ""},
		{"add opset 6 no axis", "Add", []*ir.Attr{intA("broadcast", 1)}, 6, ops.BroadcastAttrs{}, ""},
		{"mul opset 6 no broadcast", "Mul", []*ir.Attr{intA("axis", 1)}, 6, ops.BroadcastAttrs{}, ""},
		{"equal opset 13 ignores", "Equal", []*ir.Attr{intA("broadcast", 1), intA("axis", 0)}, 13, ops.BroadcastAttrs{}, ""},
		{"pow opset 1 axis", "Pow", []*ir.Attr{intA("broadcast", 1), intA("axis", -1)}, 1, ops.BroadcastAttrs{Legacy: true, Axis: -1}, ""},
		{"sub opset 6 mistyped broadcast", "Sub", []*ir.Attr{floatA("broadcast", 1)}, 6, nil, "broadcast"},
		{"dropout opset 7", "Dropout", []*ir.Attr{floatA("ratio", 0.2)}, 7, ops.DropoutAttrs{Ratio: 0.2}, ""},
		{"dropout seed", "Dropout", []*ir.Attr{intA("seed", 3)}, 13, ops.DropoutAttrs{Ratio: 0.5, Seed: &seed}, ""},
	})
}
