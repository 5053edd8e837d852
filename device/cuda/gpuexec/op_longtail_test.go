package gpuexec

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestLongTailRefuses checks what the kernels of the long tail
// (op_groupnorm.go, op_upsample.go, op_lppool.go, op_rnn.go, op_roi.go,
// op_unpool.go) leave to the CPU, with the reason Supports gives
// (op_rnn_test.go's TestRNNRefuses has the recurrent ops' other cases).
func TestLongTailRefuses(t *testing.T) {
	f32 := func(shape ...int) *tensor.Tensor { return tensor.New(tensor.Float32, shape...) }
	tests := []struct {
		name  string
		dt    tensor.DType
		shape []int
		build func(b *ir.Builder, x *ir.Value) *ir.Value
		want  string
	}{
		{"GroupNormalization of float64", tensor.Float64, []int{1, 4, 3}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			s := tensor.New(tensor.Float64, 4)
			return b.Op("GroupNormalization", []*ir.Value{x, b.Const("s", s), b.Const("b", s)}, ir.IntAttr("num_groups", 2))
		}, "GroupNormalization of opset 17 computes input 0 of float32 on CUDA, not float64"},
		{"MeanVarianceNormalization of float64", tensor.Float64, []int{1, 4, 3, 3}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("MeanVarianceNormalization", []*ir.Value{x})
		}, "MeanVarianceNormalization of opset 17 computes input 0 of float32 on CUDA, not float64"},
		{"Upsample with scales computed at run time", tensor.Float32, []int{1, 2, 3, 3}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Upsample", []*ir.Value{x, b.Input("scales", tensor.Float32, ir.D(4))})
		}, "Upsample scales computed at run time"},
		{"Upsample linear of int32", tensor.Int32, []int{1, 2, 3, 3}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Upsample", []*ir.Value{x, b.Const("s", tensor.FromFloat32([]float32{1, 1, 2, 2}, 4))}, ir.StringAttr("mode", "linear"))
		}, "only float32 has a CUDA implementation"},
		{"LpPool 3-D", tensor.Float32, []int{1, 2, 4, 4, 4}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("LpPool", []*ir.Value{x}, ir.IntsAttr("kernel_shape", 2, 2, 2))
		}, "3-D LpPool"},
		{"LSTM of float64", tensor.Float64, []int{3, 1, 2}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.OpN("LSTM", 3, []*ir.Value{x, b.Const("w", tensor.New(tensor.Float64, 1, 16, 2)), b.Const("r", tensor.New(tensor.Float64, 1, 16, 4))},
				ir.IntAttr("hidden_size", 4))[0]
		}, "LSTM of opset 17 computes input 0 of float32 on CUDA, not float64"},
		{"RoiAlign with int32 batch indices", tensor.Float32, []int{1, 2, 5, 5}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			bi := tensor.New(tensor.Int32, 2)
			return b.Op("RoiAlign", []*ir.Value{x, b.Const("rois", f32(2, 4)), b.Const("bi", bi)})
		}, "input 2 of RoiAlign is int32"},
		{"MaxUnpool of uint8", tensor.Uint8, []int{1, 1, 2, 2}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("MaxUnpool", []*ir.Value{x, b.Const("i", tensor.New(tensor.Int64, 1, 1, 2, 2))}, ir.IntsAttr("kernel_shape", 2, 2))
		}, "MaxUnpool of uint8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ir.NewBuilder("refuse", 17)
			var dims []ir.Dim
			for _, d := range tt.shape {
				dims = append(dims, ir.D(int64(d)))
			}
			y := tt.build(b, b.Input("x", tt.dt, dims...))
			b.Output(y, "y")
			g := b.Graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			err := Supports(y.Producer, g)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, device.ErrUnsupported) {
				t.Errorf("Supports(%s): %v, want device.ErrUnsupported saying %q", y.Producer.OpType, err, tt.want)
			}
		})
	}
}
