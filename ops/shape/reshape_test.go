package shape

import (
	"testing"

	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func TestReshape(t *testing.T) {
	x := iotaF(2, 3, 4)
	runCases(t, []opCase{
		{name: "copy and infer", op: "Reshape", in: []*tensor.Tensor{x, i64(sh(3), 0, -1, 2)}, want: []*tensor.Tensor{iotaF(2, 6, 2)}},
		{name: "flat", op: "Reshape", in: []*tensor.Tensor{x, i64(sh(1), -1)}, want: []*tensor.Tensor{iotaF(24)}},
		{name: "int32 shape", op: "Reshape", in: []*tensor.Tensor{x, i32(sh(2), 4, 6)}, want: []*tensor.Tensor{iotaF(4, 6)}},
		{name: "scalar", op: "Reshape", in: []*tensor.Tensor{iotaF(1, 1), i64(sh(0))}, want: []*tensor.Tensor{f32(sh(), 0)}},
		{name: "allowzero", op: "Reshape", opset: 14, attrs: opAttrs(opstest.Int("allowzero", 1)),
			in: []*tensor.Tensor{tensor.New(tensor.Float32, 0, 3), i64(sh(2), 3, 0)}, want: []*tensor.Tensor{tensor.New(tensor.Float32, 3, 0)}},
		{name: "zero copies empty", op: "Reshape", in: []*tensor.Tensor{tensor.New(tensor.Float32, 0, 3), i64(sh(2), 0, -1)}, err: true},
		{name: "empty", op: "Reshape", in: []*tensor.Tensor{tensor.New(tensor.Float32, 0, 3), i64(sh(3), 0, 7, 3)}, want: []*tensor.Tensor{tensor.New(tensor.Float32, 0, 7, 3)}},
		{name: "opset 1 attribute", op: "Reshape", opset: 1, attrs: opAttrs(opstest.Ints("shape", 4, -1)), in: []*tensor.Tensor{x}, want: []*tensor.Tensor{iotaF(4, 6)}},
		{name: "strings", op: "Reshape", in: []*tensor.Tensor{strs(sh(2, 2), "a", "b", "c", "d"), i64(sh(1), 4)}, want: []*tensor.Tensor{strs(sh(4), "a", "b", "c", "d")}},
		{name: "two -1", op: "Reshape", in: []*tensor.Tensor{x, i64(sh(2), -1, -1)}, err: true},
		{name: "bad count", op: "Reshape", in: []*tensor.Tensor{x, i64(sh(2), 5, 5)}, err: true},
		{name: "not divisible", op: "Reshape", in: []*tensor.Tensor{x, i64(sh(2), 5, -1)}, err: true},
		{name: "copy past rank", op: "Reshape", in: []*tensor.Tensor{iotaF(24), i64(sh(2), 0, 0)}, err: true},
		{name: "negative", op: "Reshape", in: []*tensor.Tensor{x, i64(sh(2), -2, 12)}, err: true},
		{name: "float shape", op: "Reshape", in: []*tensor.Tensor{x, f32(sh(1), 24)}, err: true},
	})
	// the output shares the input's storage
	out := opstest.Run(t, opstest.Node("Reshape", 2, 1), 17, x, i64(sh(2), 6, 4))
	if &out[0].Data[0] != &x.Data[0] {
		t.Error("Reshape copied its input")
	}
}

func TestFlatten(t *testing.T) {
	x := iotaF(2, 3, 4)
	runCases(t, []opCase{
		{name: "default", op: "Flatten", in: []*tensor.Tensor{x}, want: []*tensor.Tensor{iotaF(2, 12)}},
		{name: "axis 0", op: "Flatten", attrs: opAttrs(opstest.Int("axis", 0)), in: []*tensor.Tensor{x}, want: []*tensor.Tensor{iotaF(1, 24)}},
		{name: "axis 3", op: "Flatten", attrs: opAttrs(opstest.Int("axis", 3)), in: []*tensor.Tensor{x}, want: []*tensor.Tensor{iotaF(24, 1)}},
		{name: "axis -1", op: "Flatten", attrs: opAttrs(opstest.Int("axis", -1)), in: []*tensor.Tensor{x}, want: []*tensor.Tensor{iotaF(6, 4)}},
		{name: "axis out of range", op: "Flatten", attrs: opAttrs(opstest.Int("axis", 4)), in: []*tensor.Tensor{x}, err: true},
	})
}

func TestSqueezeUnsqueeze(t *testing.T) {
	x := iotaF(1, 3, 1, 2)
	runCases(t, []opCase{
		{name: "squeeze all", op: "Squeeze", in: []*tensor.Tensor{x}, want: []*tensor.Tensor{iotaF(3, 2)}},
		{name: "squeeze axes input", op: "Squeeze", in: []*tensor.Tensor{x, i64(sh(1), -2)}, want: []*tensor.Tensor{iotaF(1, 3, 2)}},
		{name: "squeeze axes attr", op: "Squeeze", opset: 11, attrs: opAttrs(opstest.Ints("axes", 0, 2)), in: []*tensor.Tensor{x}, want: []*tensor.Tensor{iotaF(3, 2)}},
		{name: "squeeze to scalar", op: "Squeeze", in: []*tensor.Tensor{iotaF(1, 1)}, want: []*tensor.Tensor{f32(sh(), 0)}},
		{name: "squeeze non-unit", op: "Squeeze", in: []*tensor.Tensor{x, i64(sh(1), 1)}, err: true},
		{name: "squeeze bad axis", op: "Squeeze", in: []*tensor.Tensor{x, i64(sh(1), 4)}, err: true},
		{name: "unsqueeze", op: "Unsqueeze", in: []*tensor.Tensor{iotaF(3, 2), i64(sh(2), 3, 0)}, want: []*tensor.Tensor{iotaF(1, 3, 2, 1)}},
		{name: "unsqueeze negative", op: "Unsqueeze", in: []*tensor.Tensor{iotaF(3, 2), i64(sh(1), -1)}, want: []*tensor.Tensor{iotaF(3, 2, 1)}},
		{name: "unsqueeze scalar", op: "Unsqueeze", in: []*tensor.Tensor{f32(sh(), 7), i64(sh(1), 0)}, want: []*tensor.Tensor{f32(sh(1), 7)}},
		{name: "unsqueeze attr", op: "Unsqueeze", opset: 11, attrs: opAttrs(opstest.Ints("axes", 1, 1)), in: []*tensor.Tensor{iotaF(3)}, err: true},
		{name: "unsqueeze attr ok", op: "Unsqueeze", opset: 11, attrs: opAttrs(opstest.Ints("axes", 1, 2)), in: []*tensor.Tensor{iotaF(3)}, want: []*tensor.Tensor{iotaF(3, 1, 1)}},
		{name: "unsqueeze missing axes", op: "Unsqueeze", in: []*tensor.Tensor{iotaF(3), nil}, err: true},
	})
}
