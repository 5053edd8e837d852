package nn

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// benchOp runs node n on inputs repeatedly.
func benchOp(b *testing.B, n *ir.Node, opset int64, in ...*tensor.Tensor) {
	k, err := ops.Prepare(n, opset)
	if err != nil {
		b.Fatal(err)
	}
	env := &ops.Env{Ctx: context.Background()}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := k.Run(env, in); err != nil {
			b.Fatal(err)
		}
	}
}

func benchRand(shape ...int) *tensor.Tensor {
	return randTensor(rand.New(rand.NewPCG(1, 1)), tensor.Float32, shape...)
}

func BenchmarkConv(b *testing.B) {
	b.Run("resnet3x3_64x56x56", func(b *testing.B) {
		benchOp(b, opstest.Node("Conv", 3, 1, opstest.Ints("pads", 1, 1, 1, 1)), 13,
			benchRand(1, 64, 56, 56), benchRand(64, 64, 3, 3), benchRand(64))
	})
	b.Run("mobilenet_dw3x3_144x56x56", func(b *testing.B) {
		benchOp(b, opstest.Node("Conv", 3, 1, opstest.Ints("pads", 1, 1, 1, 1), opstest.Int("group", 144)), 13,
			benchRand(1, 144, 56, 56), benchRand(144, 1, 3, 3), benchRand(144))
	})
	b.Run("conv1d_256x512_k3", func(b *testing.B) {
		benchOp(b, opstest.Node("Conv", 2, 1, opstest.Ints("pads", 1, 1)), 13, benchRand(1, 256, 512), benchRand(256, 256, 3))
	})
	b.Run("conv3d_32x16x28x28_k3", func(b *testing.B) {
		benchOp(b, opstest.Node("Conv", 2, 1, opstest.Ints("pads", 1, 1, 1, 1, 1, 1)), 13, benchRand(1, 32, 16, 28, 28), benchRand(32, 32, 3, 3, 3))
	})
	b.Run("convtranspose_64x28x28_s2", func(b *testing.B) {
		benchOp(b, opstest.Node("ConvTranspose", 2, 1, opstest.Ints("strides", 2, 2), opstest.Ints("pads", 1, 1, 1, 1), opstest.Ints("output_padding", 1, 1)), 13,
			benchRand(1, 64, 28, 28), benchRand(64, 32, 3, 3))
	})
}

func BenchmarkMatMul(b *testing.B) {
	b.Run("bert_128x768x768", func(b *testing.B) {
		benchOp(b, opstest.Node("MatMul", 2, 1), 13, benchRand(1, 128, 768), benchRand(768, 768))
	})
	b.Run("attention_12x128x64x128", func(b *testing.B) {
		benchOp(b, opstest.Node("MatMul", 2, 1), 13, benchRand(1, 12, 128, 64), benchRand(1, 12, 64, 128))
	})
	b.Run("small_batched_64x16x16", func(b *testing.B) {
		benchOp(b, opstest.Node("MatMul", 2, 1), 13, benchRand(64, 16, 16), benchRand(64, 16, 16))
	})
}

func BenchmarkGemm(b *testing.B) {
	b.Run("fc_1x2048x1000", func(b *testing.B) {
		benchOp(b, opstest.Node("Gemm", 3, 1, opstest.Int("transB", 1)), 13, benchRand(1, 2048), benchRand(1000, 2048), benchRand(1000))
	})
	b.Run("fc_64x1024x1024", func(b *testing.B) {
		benchOp(b, opstest.Node("Gemm", 3, 1, opstest.Int("transB", 1)), 13, benchRand(64, 1024), benchRand(1024, 1024), benchRand(1024))
	})
}

func BenchmarkPool(b *testing.B) {
	b.Run("maxpool_64x112x112_k3s2", func(b *testing.B) {
		benchOp(b, opstest.Node("MaxPool", 1, 1, opstest.Ints("kernel_shape", 3, 3), opstest.Ints("strides", 2, 2), opstest.Ints("pads", 1, 1, 1, 1)), 12,
			benchRand(1, 64, 112, 112))
	})
	b.Run("maxpool_yolo_512x13x13_k5s1", func(b *testing.B) {
		benchOp(b, opstest.Node("MaxPool", 1, 1, opstest.Ints("kernel_shape", 5, 5), opstest.Ints("pads", 2, 2, 2, 2)), 12,
			benchRand(1, 512, 13, 13))
	})
	b.Run("avgpool_256x28x28_k3s1", func(b *testing.B) {
		benchOp(b, opstest.Node("AveragePool", 1, 1, opstest.Ints("kernel_shape", 3, 3), opstest.Ints("pads", 1, 1, 1, 1)), 12,
			benchRand(1, 256, 28, 28))
	})
	b.Run("globalavg_2048x7x7", func(b *testing.B) {
		benchOp(b, opstest.Node("GlobalAveragePool", 1, 1), 12, benchRand(1, 2048, 7, 7))
	})
	b.Run("globalavg_8x1280x7x7", func(b *testing.B) {
		benchOp(b, opstest.Node("GlobalAveragePool", 1, 1), 12, benchRand(8, 1280, 7, 7))
	})
}
