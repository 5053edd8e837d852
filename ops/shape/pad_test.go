package shape

import (
	"testing"

	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func TestPad(t *testing.T) {
	x := f32(sh(2, 3), 1, 2, 3, 4, 5, 6)
	runCases(t, []opCase{
		{name: "constant", op: "Pad", in: []*tensor.Tensor{x, i64(sh(4), 1, 0, 0, 1), f32(sh(), 9)},
			want: []*tensor.Tensor{f32(sh(3, 4), 9, 9, 9, 9, 1, 2, 3, 9, 4, 5, 6, 9)}},
		{name: "constant default zero", op: "Pad", in: []*tensor.Tensor{x, i64(sh(4), 0, 1, 0, 0)},
			want: []*tensor.Tensor{f32(sh(2, 4), 0, 1, 2, 3, 0, 4, 5, 6)}},
		{name: "crop", op: "Pad", in: []*tensor.Tensor{x, i64(sh(4), 0, -1, -1, 1)},
			want: []*tensor.Tensor{f32(sh(1, 3), 2, 3, 0)}},
		{name: "reflect", op: "Pad", attrs: opAttrs(opstest.String("mode", "reflect")), in: []*tensor.Tensor{x, i64(sh(4), 0, 2, 0, 2)},
			want: []*tensor.Tensor{f32(sh(2, 7), 3, 2, 1, 2, 3, 2, 1, 6, 5, 4, 5, 6, 5, 4)}},
		{name: "reflect rows", op: "Pad", attrs: opAttrs(opstest.String("mode", "reflect")), in: []*tensor.Tensor{x, i64(sh(4), 1, 0, 1, 0)},
			want: []*tensor.Tensor{f32(sh(4, 3), 4, 5, 6, 1, 2, 3, 4, 5, 6, 1, 2, 3)}},
		{name: "edge", op: "Pad", attrs: opAttrs(opstest.String("mode", "edge")), in: []*tensor.Tensor{x, i64(sh(4), 1, 1, 0, 2)},
			want: []*tensor.Tensor{f32(sh(3, 6), 1, 1, 2, 3, 3, 3, 1, 1, 2, 3, 3, 3, 4, 4, 5, 6, 6, 6)}},
		{name: "wrap", op: "Pad", opset: 19, attrs: opAttrs(opstest.String("mode", "wrap")), in: []*tensor.Tensor{x, i64(sh(4), 0, 2, 0, 1)},
			want: []*tensor.Tensor{f32(sh(2, 6), 2, 3, 1, 2, 3, 1, 5, 6, 4, 5, 6, 4)}},
		{name: "axes", op: "Pad", opset: 18, in: []*tensor.Tensor{x, i64(sh(2), 1, 1), f32(sh(), 7), i64(sh(1), -1)},
			want: []*tensor.Tensor{f32(sh(2, 5), 7, 1, 2, 3, 7, 7, 4, 5, 6, 7)}},
		{name: "opset 2 attributes", op: "Pad", opset: 2, attrs: opAttrs(opstest.Ints("pads", 0, 1, 0, 0), opstest.Float("value", 1.5)), in: []*tensor.Tensor{x},
			want: []*tensor.Tensor{f32(sh(2, 4), 1.5, 1, 2, 3, 1.5, 4, 5, 6)}},
		{name: "int64 data", op: "Pad", in: []*tensor.Tensor{i64(sh(2), 1, 2), i64(sh(2), 1, 1), sc(-1)}, want: []*tensor.Tensor{i64(sh(4), -1, 1, 2, -1)}},
		{name: "wrap too early", op: "Pad", opset: 18, attrs: opAttrs(opstest.String("mode", "wrap")), in: []*tensor.Tensor{x, i64(sh(4), 0, 0, 0, 0)}, err: true},
		{name: "pads length", op: "Pad", in: []*tensor.Tensor{x, i64(sh(3), 0, 0, 0)}, err: true},
		{name: "crop too much", op: "Pad", in: []*tensor.Tensor{x, i64(sh(4), -3, 0, 0, 0)}, err: true},
		{name: "value type", op: "Pad", in: []*tensor.Tensor{x, i64(sh(4), 0, 0, 0, 0), i64(sh(), 0)}, err: true},
		{name: "reflect empty", op: "Pad", attrs: opAttrs(opstest.String("mode", "reflect")), in: []*tensor.Tensor{tensor.New(tensor.Float32, 0, 2), i64(sh(4), 1, 0, 0, 0)}, err: true},
	})
}

func TestExpandTile(t *testing.T) {
	runCases(t, []opCase{
		{name: "expand", op: "Expand", in: []*tensor.Tensor{f32(sh(3, 1), 1, 2, 3), i64(sh(3), 2, 1, 2)},
			want: []*tensor.Tensor{f32(sh(2, 3, 2), 1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3)}},
		{name: "expand smaller shape", op: "Expand", in: []*tensor.Tensor{f32(sh(3, 1), 1, 2, 3), i64(sh(1), 2)},
			want: []*tensor.Tensor{f32(sh(3, 2), 1, 1, 2, 2, 3, 3)}},
		{name: "expand row", op: "Expand", in: []*tensor.Tensor{f32(sh(2), 1, 2), i64(sh(2), 2, 1)},
			want: []*tensor.Tensor{f32(sh(2, 2), 1, 2, 1, 2)}},
		{name: "expand strings", op: "Expand", in: []*tensor.Tensor{strs(sh(1), "x"), i64(sh(1), 3)}, want: []*tensor.Tensor{strs(sh(3), "x", "x", "x")}},
		{name: "expand bad", op: "Expand", in: []*tensor.Tensor{f32(sh(3), 1, 2, 3), i64(sh(1), 2)}, err: true},
		{name: "expand negative", op: "Expand", in: []*tensor.Tensor{f32(sh(1), 1), i64(sh(1), -2)}, err: true},
		{name: "tile", op: "Tile", in: []*tensor.Tensor{f32(sh(2, 2), 1, 2, 3, 4), i64(sh(2), 2, 3)},
			want: []*tensor.Tensor{f32(sh(4, 6), 1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4, 1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4)}},
		{name: "tile column", op: "Tile", in: []*tensor.Tensor{f32(sh(2, 1), 1, 2), i64(sh(2), 1, 3)},
			want: []*tensor.Tensor{f32(sh(2, 3), 1, 1, 1, 2, 2, 2)}},
		{name: "tile zero", op: "Tile", in: []*tensor.Tensor{f32(sh(2), 1, 2), i64(sh(1), 0)}, want: []*tensor.Tensor{tensor.New(tensor.Float32, 0)}},
		{name: "tile-1", op: "Tile", opset: 1, in: []*tensor.Tensor{f32(sh(2, 1), 1, 2), sc(2), sc(1)}, want: []*tensor.Tensor{f32(sh(2, 2), 1, 1, 2, 2)}},
		{name: "tile length", op: "Tile", in: []*tensor.Tensor{f32(sh(2), 1, 2), i64(sh(2), 1, 1)}, err: true},
		{name: "tile negative", op: "Tile", in: []*tensor.Tensor{f32(sh(2), 1, 2), i64(sh(1), -1)}, err: true},
		{name: "tile huge", op: "Tile", in: []*tensor.Tensor{f32(sh(2), 1, 2), i64(sh(1), 1<<50)}, err: true},
	})
}

func TestShapeSize(t *testing.T) {
	x := tensor.New(tensor.Float32, 3, 4, 5)
	runCases(t, []opCase{
		{name: "shape", op: "Shape", in: []*tensor.Tensor{x}, want: []*tensor.Tensor{i64(sh(3), 3, 4, 5)}},
		{name: "start", op: "Shape", opset: 15, attrs: opAttrs(opstest.Int("start", -2)), in: []*tensor.Tensor{x}, want: []*tensor.Tensor{i64(sh(2), 4, 5)}},
		{name: "start end", op: "Shape", opset: 15, attrs: opAttrs(opstest.Int("start", 1), opstest.Int("end", -1)), in: []*tensor.Tensor{x}, want: []*tensor.Tensor{i64(sh(1), 4)}},
		{name: "clamped", op: "Shape", opset: 15, attrs: opAttrs(opstest.Int("start", -10), opstest.Int("end", 10)), in: []*tensor.Tensor{x}, want: []*tensor.Tensor{i64(sh(3), 3, 4, 5)}},
		{name: "empty", op: "Shape", opset: 15, attrs: opAttrs(opstest.Int("start", 2), opstest.Int("end", 1)), in: []*tensor.Tensor{x}, want: []*tensor.Tensor{tensor.New(tensor.Int64, 0)}},
		{name: "ignored before 15", op: "Shape", opset: 13, attrs: opAttrs(opstest.Int("start", 1)), in: []*tensor.Tensor{x}, want: []*tensor.Tensor{i64(sh(3), 3, 4, 5)}},
		{name: "scalar", op: "Shape", in: []*tensor.Tensor{f32(sh(), 1)}, want: []*tensor.Tensor{tensor.New(tensor.Int64, 0)}},
		{name: "size", op: "Size", in: []*tensor.Tensor{x}, want: []*tensor.Tensor{sc(60)}},
	})
}
