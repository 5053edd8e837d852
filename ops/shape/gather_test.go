package shape

import (
	"testing"

	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func TestGather(t *testing.T) {
	x := iotaF(3, 4)
	runCases(t, []opCase{
		{name: "rows", op: "Gather", in: []*tensor.Tensor{x, i64(sh(2), 2, 0)}, want: []*tensor.Tensor{f32(sh(2, 4), 8, 9, 10, 11, 0, 1, 2, 3)}},
		{name: "negative", op: "Gather", in: []*tensor.Tensor{x, i32(sh(1), -1)}, want: []*tensor.Tensor{f32(sh(1, 4), 8, 9, 10, 11)}},
		{name: "scalar index", op: "Gather", in: []*tensor.Tensor{x, sc(1)}, want: []*tensor.Tensor{f32(sh(4), 4, 5, 6, 7)}},
		{name: "axis 1", op: "Gather", attrs: opAttrs(opstest.Int("axis", 1)), in: []*tensor.Tensor{x, i64(sh(2, 2), 3, 0, 1, 1)},
			want: []*tensor.Tensor{f32(sh(3, 2, 2), 3, 0, 1, 1, 7, 4, 5, 5, 11, 8, 9, 9)}},
		{name: "shape vector", op: "Gather", in: []*tensor.Tensor{i64(sh(3), 2, 5, 7), sc(-2)}, want: []*tensor.Tensor{sc(5)}},
		{name: "strings", op: "Gather", in: []*tensor.Tensor{strs(sh(3), "a", "b", "c"), i64(sh(2), 2, 2)}, want: []*tensor.Tensor{strs(sh(2), "c", "c")}},
		{name: "empty indices", op: "Gather", in: []*tensor.Tensor{x, tensor.New(tensor.Int64, 0)}, want: []*tensor.Tensor{tensor.New(tensor.Float32, 0, 4)}},
		{name: "out of range", op: "Gather", in: []*tensor.Tensor{x, i64(sh(1), 3)}, err: true},
		{name: "too negative", op: "Gather", in: []*tensor.Tensor{x, i64(sh(1), -4)}, err: true},
		{name: "float indices", op: "Gather", in: []*tensor.Tensor{x, f32(sh(1), 0)}, err: true},
		{name: "bad axis", op: "Gather", attrs: opAttrs(opstest.Int("axis", 2)), in: []*tensor.Tensor{x, sc(0)}, err: true},
	})
}

func TestGatherElements(t *testing.T) {
	x := f32(sh(2, 2), 1, 2, 3, 4)
	runCases(t, []opCase{
		{name: "axis 1", op: "GatherElements", attrs: opAttrs(opstest.Int("axis", 1)), in: []*tensor.Tensor{x, i64(sh(2, 2), 0, 0, 1, 0)}, want: []*tensor.Tensor{f32(sh(2, 2), 1, 1, 4, 3)}},
		{name: "axis 0 negative", op: "GatherElements", in: []*tensor.Tensor{iotaF(3, 3), i32(sh(2, 3), -1, 0, 2, 1, 2, 0)},
			want: []*tensor.Tensor{f32(sh(2, 3), 6, 1, 8, 3, 7, 2)}},
		{name: "smaller indices", op: "GatherElements", attrs: opAttrs(opstest.Int("axis", 1)), in: []*tensor.Tensor{iotaF(3, 3), i64(sh(1, 2), 2, 1)},
			want: []*tensor.Tensor{f32(sh(1, 2), 2, 1)}},
		{name: "out of range", op: "GatherElements", in: []*tensor.Tensor{x, i64(sh(1, 1), 2)}, err: true},
		{name: "rank", op: "GatherElements", in: []*tensor.Tensor{x, i64(sh(1), 0)}, err: true},
		{name: "too big", op: "GatherElements", attrs: opAttrs(opstest.Int("axis", 1)), in: []*tensor.Tensor{x, i64(sh(3, 1), 0, 0, 0)}, err: true},
	})
}

func TestGatherND(t *testing.T) {
	x := iotaF(2, 2, 2)
	runCases(t, []opCase{
		{name: "elements", op: "GatherND", in: []*tensor.Tensor{iotaF(2, 2), i64(sh(2, 2), 0, 0, 1, 1)}, want: []*tensor.Tensor{f32(sh(2), 0, 3)}},
		{name: "rows", op: "GatherND", in: []*tensor.Tensor{iotaF(2, 2), i64(sh(2, 1), 1, 0)}, want: []*tensor.Tensor{f32(sh(2, 2), 2, 3, 0, 1)}},
		{name: "3-D", op: "GatherND", in: []*tensor.Tensor{x, i64(sh(2, 1, 2), 0, 1, 1, 0)}, want: []*tensor.Tensor{f32(sh(2, 1, 2), 2, 3, 4, 5)}},
		{name: "batch_dims", op: "GatherND", attrs: opAttrs(opstest.Int("batch_dims", 1)), in: []*tensor.Tensor{x, i64(sh(2, 1), 1, 0)}, want: []*tensor.Tensor{f32(sh(2, 2), 2, 3, 4, 5)}},
		{name: "negative", op: "GatherND", in: []*tensor.Tensor{iotaF(2, 2), i64(sh(1, 2), -1, -2)}, want: []*tensor.Tensor{f32(sh(1), 2)}},
		{name: "out of range", op: "GatherND", in: []*tensor.Tensor{iotaF(2, 2), i64(sh(1, 2), 2, 0)}, err: true},
		{name: "tuple too long", op: "GatherND", in: []*tensor.Tensor{iotaF(2, 2), i64(sh(1, 3), 0, 0, 0)}, err: true},
		{name: "batch mismatch", op: "GatherND", attrs: opAttrs(opstest.Int("batch_dims", 1)), in: []*tensor.Tensor{x, i64(sh(3, 1), 0, 0, 0)}, err: true},
		{name: "scalar indices", op: "GatherND", in: []*tensor.Tensor{x, sc(0)}, err: true},
	})
}

func TestScatter(t *testing.T) {
	data := f32(sh(4, 2), 1, 2, 3, 4, 5, 6, 7, 8)
	runCases(t, []opCase{
		{name: "nd rows", op: "ScatterND", in: []*tensor.Tensor{data, i64(sh(2, 1), 3, 0), f32(sh(2, 2), 10, 20, 30, 40)},
			want: []*tensor.Tensor{f32(sh(4, 2), 30, 40, 3, 4, 5, 6, 10, 20)}},
		{name: "nd elements", op: "ScatterND", in: []*tensor.Tensor{data, i64(sh(1, 2), 1, 1), f32(sh(1), 9)},
			want: []*tensor.Tensor{f32(sh(4, 2), 1, 2, 3, 9, 5, 6, 7, 8)}},
		{name: "nd add duplicates", op: "ScatterND", opset: 16, attrs: opAttrs(opstest.String("reduction", "add")),
			in:   []*tensor.Tensor{data, i64(sh(2, 1), 0, 0), f32(sh(2, 2), 1, 1, 2, 2)},
			want: []*tensor.Tensor{f32(sh(4, 2), 4, 5, 3, 4, 5, 6, 7, 8)}},
		{name: "nd mul", op: "ScatterND", opset: 16, attrs: opAttrs(opstest.String("reduction", "mul")),
			in:   []*tensor.Tensor{i64(sh(3), 1, 2, 3), i64(sh(2, 1), 2, 2), i64(sh(2), 2, 5)},
			want: []*tensor.Tensor{i64(sh(3), 1, 2, 30)}},
		{name: "nd max", op: "ScatterND", opset: 18, attrs: opAttrs(opstest.String("reduction", "max")),
			in: []*tensor.Tensor{data, i64(sh(1, 2), 0, 1), f32(sh(1), 0)}, want: []*tensor.Tensor{data}},
		{name: "nd min", op: "ScatterND", opset: 18, attrs: opAttrs(opstest.String("reduction", "min")),
			in: []*tensor.Tensor{data, i64(sh(1, 2), 0, 1), f32(sh(1), 0)}, want: []*tensor.Tensor{f32(sh(4, 2), 1, 0, 3, 4, 5, 6, 7, 8)}},
		{name: "nd max too early", op: "ScatterND", opset: 16, attrs: opAttrs(opstest.String("reduction", "max")),
			in: []*tensor.Tensor{data, i64(sh(1, 2), 0, 1), f32(sh(1), 0)}, err: true},
		{name: "nd bad updates", op: "ScatterND", in: []*tensor.Tensor{data, i64(sh(2, 1), 3, 0), f32(sh(2), 10, 20)}, err: true},
		{name: "nd out of range", op: "ScatterND", in: []*tensor.Tensor{data, i64(sh(1, 1), 4), f32(sh(1, 2), 10, 20)}, err: true},
		{name: "elements axis 1", op: "ScatterElements", attrs: opAttrs(opstest.Int("axis", 1)),
			in:   []*tensor.Tensor{f32(sh(1, 5), 1, 2, 3, 4, 5), i64(sh(1, 2), 1, 3), f32(sh(1, 2), 1.1, 2.1)},
			want: []*tensor.Tensor{f32(sh(1, 5), 1, 1.1, 3, 2.1, 5)}},
		{name: "elements negative", op: "ScatterElements", attrs: opAttrs(opstest.Int("axis", 1)),
			in:   []*tensor.Tensor{f32(sh(1, 5), 1, 2, 3, 4, 5), i64(sh(1, 2), 1, -3), f32(sh(1, 2), 1.1, 2.1)},
			want: []*tensor.Tensor{f32(sh(1, 5), 1, 1.1, 2.1, 4, 5)}},
		{name: "elements axis 0", op: "ScatterElements",
			in:   []*tensor.Tensor{tensor.New(tensor.Float32, 3, 3), i64(sh(2, 3), 1, 0, 2, 0, 2, 1), f32(sh(2, 3), 1, 1.1, 1.2, 2, 2.1, 2.2)},
			want: []*tensor.Tensor{f32(sh(3, 3), 2, 1.1, 0, 1, 0, 2.2, 0, 2.1, 1.2)}},
		{name: "elements add", op: "ScatterElements", opset: 16, attrs: opAttrs(opstest.Int("axis", 1), opstest.String("reduction", "add")),
			in:   []*tensor.Tensor{f32(sh(1, 5), 1, 2, 3, 4, 5), i64(sh(1, 2), 1, 1), f32(sh(1, 2), 1.1, 2.1)},
			want: []*tensor.Tensor{f32(sh(1, 5), 1, 5.2, 3, 4, 5)}},
		{name: "elements float16 max", op: "ScatterElements", opset: 18, attrs: opAttrs(opstest.String("reduction", "max")),
			in:   []*tensor.Tensor{toHalf(f32(sh(3), 1, 5, 3)), i64(sh(2), 1, 2), toHalf(f32(sh(2), 4, 4))},
			want: []*tensor.Tensor{toHalf(f32(sh(3), 1, 5, 4))}},
		{name: "elements bool add", op: "ScatterElements", opset: 16, attrs: opAttrs(opstest.String("reduction", "add")),
			in: []*tensor.Tensor{bools(sh(2), false, true), i64(sh(1), 0), bools(sh(1), true)}, err: true},
		{name: "elements shape mismatch", op: "ScatterElements", in: []*tensor.Tensor{iotaF(3), i64(sh(2), 0, 1), f32(sh(1), 1)}, err: true},
		{name: "elements out of range", op: "ScatterElements", in: []*tensor.Tensor{iotaF(3), i64(sh(1), 3), f32(sh(1), 1)}, err: true},
		{name: "elements type mismatch", op: "ScatterElements", in: []*tensor.Tensor{iotaF(3), i64(sh(1), 0), i64(sh(1), 1)}, err: true},
		{name: "deprecated Scatter", op: "Scatter", opset: 9, attrs: opAttrs(opstest.Int("axis", 1)),
			in:   []*tensor.Tensor{f32(sh(1, 5), 1, 2, 3, 4, 5), i64(sh(1, 2), 1, 3), f32(sh(1, 2), 1.1, 2.1)},
			want: []*tensor.Tensor{f32(sh(1, 5), 1, 1.1, 3, 2.1, 5)}},
	})
}

// toHalf converts a float32 tensor to float16.
func toHalf(x *tensor.Tensor) *tensor.Tensor {
	y := tensor.New(tensor.Float16, x.Shape...)
	for i := 0; i < x.Len(); i++ {
		y.SetFloat(i, x.Float(i))
	}
	return y
}
