package shape

import (
	"testing"

	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func TestGenerators(t *testing.T) {
	ones := tensor.FromInt64([]int64{1}, 1)
	runCases(t, []opCase{
		{name: "constant of shape", op: "ConstantOfShape", in: []*tensor.Tensor{i64(sh(2), 2, 3)}, want: []*tensor.Tensor{tensor.New(tensor.Float32, 2, 3)}},
		{name: "constant of shape value", op: "ConstantOfShape", attrs: opAttrs(opstest.Tensor("value", ones)), in: []*tensor.Tensor{i64(sh(2), 1, 3)}, want: []*tensor.Tensor{i64(sh(1, 3), 1, 1, 1)}},
		{name: "constant of shape scalar", op: "ConstantOfShape", attrs: opAttrs(opstest.Tensor("value", f32(sh(1), 2.5))), in: []*tensor.Tensor{tensor.New(tensor.Int64, 0)}, want: []*tensor.Tensor{f32(sh(), 2.5)}},
		{name: "constant of shape negative", op: "ConstantOfShape", in: []*tensor.Tensor{i64(sh(1), -1)}, err: true},
		{name: "constant of shape two values", op: "ConstantOfShape", attrs: opAttrs(opstest.Tensor("value", f32(sh(2), 1, 2))), in: []*tensor.Tensor{i64(sh(1), 1)}, err: true},
		{name: "range float", op: "Range", in: []*tensor.Tensor{f32(sh(), 1), f32(sh(), 2), f32(sh(), 0.25)}, want: []*tensor.Tensor{f32(sh(4), 1, 1.25, 1.5, 1.75)}},
		{name: "range int negative", op: "Range", in: []*tensor.Tensor{i32(sh(), 10), i32(sh(), 4), i32(sh(), -3)}, want: []*tensor.Tensor{i32(sh(2), 10, 7)}},
		{name: "range int64", op: "Range", in: []*tensor.Tensor{sc(0), sc(5), sc(2)}, want: []*tensor.Tensor{i64(sh(3), 0, 2, 4)}},
		{name: "range empty", op: "Range", in: []*tensor.Tensor{sc(5), sc(0), sc(1)}, want: []*tensor.Tensor{tensor.New(tensor.Int64, 0)}},
		{name: "range zero delta", op: "Range", in: []*tensor.Tensor{sc(0), sc(5), sc(0)}, err: true},
		{name: "range huge", op: "Range", in: []*tensor.Tensor{sc(0), sc(1 << 62), sc(1)}, err: true},
		{name: "range mixed", op: "Range", in: []*tensor.Tensor{sc(0), f32(sh(), 5), sc(1)}, err: true},
		{name: "eye", op: "EyeLike", in: []*tensor.Tensor{tensor.New(tensor.Float32, 2, 3)}, want: []*tensor.Tensor{f32(sh(2, 3), 1, 0, 0, 0, 1, 0)}},
		{name: "eye k dtype", op: "EyeLike", attrs: opAttrs(opstest.Int("k", 1), opstest.Int("dtype", int64(tensor.Int64))), in: []*tensor.Tensor{tensor.New(tensor.Float32, 3, 3)},
			want: []*tensor.Tensor{i64(sh(3, 3), 0, 1, 0, 0, 0, 1, 0, 0, 0)}},
		{name: "eye negative k", op: "EyeLike", attrs: opAttrs(opstest.Int("k", -1)), in: []*tensor.Tensor{tensor.New(tensor.Int32, 3, 2)},
			want: []*tensor.Tensor{i32(sh(3, 2), 0, 0, 1, 0, 0, 1)}},
		{name: "eye rank", op: "EyeLike", in: []*tensor.Tensor{tensor.New(tensor.Float32, 3)}, err: true},
		{name: "one hot", op: "OneHot", in: []*tensor.Tensor{i64(sh(3), 0, 2, -1), sc(3), f32(sh(2), 0, 1)},
			want: []*tensor.Tensor{f32(sh(3, 3), 1, 0, 0, 0, 0, 1, 0, 0, 1)}},
		{name: "one hot axis 0", op: "OneHot", attrs: opAttrs(opstest.Int("axis", 0)), in: []*tensor.Tensor{f32(sh(2), 1, 5), f32(sh(1), 3), i64(sh(2), 2, 7)},
			want: []*tensor.Tensor{i64(sh(3, 2), 2, 2, 7, 2, 2, 2)}},
		{name: "one hot bad depth", op: "OneHot", in: []*tensor.Tensor{i64(sh(1), 0), sc(0), f32(sh(2), 0, 1)}, err: true},
		{name: "one hot values", op: "OneHot", in: []*tensor.Tensor{i64(sh(1), 0), sc(2), f32(sh(3), 0, 1, 2)}, err: true},
	})
}

func TestSelection(t *testing.T) {
	runCases(t, []opCase{
		{name: "nonzero", op: "NonZero", in: []*tensor.Tensor{bools(sh(2, 2), true, false, true, true)}, want: []*tensor.Tensor{i64(sh(2, 3), 0, 1, 1, 0, 0, 1)}},
		{name: "nonzero float", op: "NonZero", in: []*tensor.Tensor{f32(sh(3), 0, 2, 0)}, want: []*tensor.Tensor{i64(sh(1, 1), 1)}},
		{name: "nonzero none", op: "NonZero", in: []*tensor.Tensor{f32(sh(3), 0, 0, 0)}, want: []*tensor.Tensor{tensor.New(tensor.Int64, 1, 0)}},
		{name: "compress axis 0", op: "Compress", attrs: opAttrs(opstest.Int("axis", 0)), in: []*tensor.Tensor{iotaF(3, 2), bools(sh(3), false, true, true)},
			want: []*tensor.Tensor{f32(sh(2, 2), 2, 3, 4, 5)}},
		{name: "compress axis -1 short", op: "Compress", attrs: opAttrs(opstest.Int("axis", -1)), in: []*tensor.Tensor{iotaF(3, 2), bools(sh(1), true)},
			want: []*tensor.Tensor{f32(sh(3, 1), 0, 2, 4)}},
		{name: "compress flat", op: "Compress", in: []*tensor.Tensor{iotaF(3, 2), bools(sh(6), false, true, false, false, true, false)},
			want: []*tensor.Tensor{f32(sh(2), 1, 4)}},
		{name: "compress long", op: "Compress", attrs: opAttrs(opstest.Int("axis", 0)), in: []*tensor.Tensor{iotaF(1, 2), bools(sh(2), false, true)}, err: true},
		{name: "unique sorted", op: "Unique", in: []*tensor.Tensor{f32(sh(6), 2, 1, 1, 3, 4, 3)},
			want: []*tensor.Tensor{f32(sh(4), 1, 2, 3, 4), i64(sh(4), 1, 0, 3, 4), i64(sh(6), 1, 0, 0, 2, 3, 2), i64(sh(4), 2, 1, 2, 1)}},
		{name: "unique unsorted", op: "Unique", attrs: opAttrs(opstest.Int("sorted", 0)), in: []*tensor.Tensor{f32(sh(6), 2, 1, 1, 3, 4, 3)},
			want: []*tensor.Tensor{f32(sh(4), 2, 1, 3, 4), i64(sh(4), 0, 1, 3, 4), i64(sh(6), 0, 1, 1, 2, 3, 2), i64(sh(4), 1, 2, 2, 1)}},
		{name: "unique axis 0", op: "Unique", attrs: opAttrs(opstest.Int("axis", 0)), in: []*tensor.Tensor{f32(sh(3, 3), 1, 0, 0, 1, 0, 0, 2, 3, 4)},
			want: []*tensor.Tensor{f32(sh(2, 3), 1, 0, 0, 2, 3, 4), i64(sh(2), 0, 2), i64(sh(3), 0, 0, 1), i64(sh(2), 2, 1)}},
		{name: "unique axis 1", op: "Unique", attrs: opAttrs(opstest.Int("axis", -1)), in: []*tensor.Tensor{f32(sh(2, 3), 2, 1, 2, 0, 5, 0)},
			want: []*tensor.Tensor{f32(sh(2, 2), 1, 2, 5, 0), i64(sh(2), 1, 0), i64(sh(3), 1, 0, 1), i64(sh(2), 1, 2)}},
		{name: "unique strings", op: "Unique", in: []*tensor.Tensor{strs(sh(3), "b", "a", "b")},
			want: []*tensor.Tensor{strs(sh(2), "a", "b"), i64(sh(2), 1, 0), i64(sh(3), 1, 0, 1), i64(sh(2), 1, 2)}},
	})
}

func TestTriluReverseSequence(t *testing.T) {
	x := iotaF(3, 4)
	runCases(t, []opCase{
		{name: "triu", op: "Trilu", in: []*tensor.Tensor{x}, want: []*tensor.Tensor{f32(sh(3, 4), 0, 1, 2, 3, 0, 5, 6, 7, 0, 0, 10, 11)}},
		{name: "triu k", op: "Trilu", in: []*tensor.Tensor{x, sc(2)}, want: []*tensor.Tensor{f32(sh(3, 4), 0, 0, 2, 3, 0, 0, 0, 7, 0, 0, 0, 0)}},
		{name: "tril", op: "Trilu", attrs: opAttrs(opstest.Int("upper", 0)), in: []*tensor.Tensor{x}, want: []*tensor.Tensor{f32(sh(3, 4), 0, 0, 0, 0, 4, 5, 0, 0, 8, 9, 10, 0)}},
		{name: "tril k -1", op: "Trilu", attrs: opAttrs(opstest.Int("upper", 0)), in: []*tensor.Tensor{x, sc(-1)}, want: []*tensor.Tensor{f32(sh(3, 4), 0, 0, 0, 0, 4, 0, 0, 0, 8, 9, 0, 0)}},
		{name: "tril huge k", op: "Trilu", attrs: opAttrs(opstest.Int("upper", 0)), in: []*tensor.Tensor{x, sc(1 << 62)}, want: []*tensor.Tensor{x}},
		{name: "triu huge negative k", op: "Trilu", in: []*tensor.Tensor{x, sc(-1 << 62)}, want: []*tensor.Tensor{x}},
		{name: "triu batched", op: "Trilu", in: []*tensor.Tensor{iotaF(2, 2, 2)}, want: []*tensor.Tensor{f32(sh(2, 2, 2), 0, 1, 0, 3, 4, 5, 0, 7)}},
		{name: "trilu rank", op: "Trilu", in: []*tensor.Tensor{iotaF(3)}, err: true},
		{name: "reverse time", op: "ReverseSequence", attrs: opAttrs(opstest.Int("batch_axis", 1), opstest.Int("time_axis", 0)),
			in:   []*tensor.Tensor{iotaF(4, 2), i64(sh(2), 4, 2)},
			want: []*tensor.Tensor{f32(sh(4, 2), 6, 3, 4, 1, 2, 5, 0, 7)}},
		{name: "reverse batch", op: "ReverseSequence", attrs: opAttrs(opstest.Int("batch_axis", 0), opstest.Int("time_axis", 1)),
			in:   []*tensor.Tensor{iotaF(2, 3, 2), i64(sh(2), 1, 3)},
			want: []*tensor.Tensor{f32(sh(2, 3, 2), 0, 1, 2, 3, 4, 5, 10, 11, 8, 9, 6, 7)}},
		{name: "reverse too long", op: "ReverseSequence", in: []*tensor.Tensor{iotaF(4, 2), i64(sh(2), 5, 2)}, err: true},
		{name: "reverse lens count", op: "ReverseSequence", in: []*tensor.Tensor{iotaF(4, 2), i64(sh(1), 1)}, err: true},
		{name: "reverse same axes", op: "ReverseSequence", attrs: opAttrs(opstest.Int("batch_axis", 0)), in: []*tensor.Tensor{iotaF(4, 2), i64(sh(4), 1, 1, 1, 1)}, err: true},
	})
}
