package shape

import (
	"context"
	"math/rand"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func benchOp(b *testing.B, n *ir.Node, opset int64, in ...*tensor.Tensor) {
	k, err := ops.Prepare(n, opset)
	if err != nil {
		b.Fatal(err)
	}
	env := &ops.Env{Ctx: context.Background()}
	outs, err := k.Run(env, in)
	if err != nil {
		b.Fatal(err)
	}
	bytes := 0
	for _, o := range outs {
		bytes += len(o.Data)
	}
	b.SetBytes(int64(bytes))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := k.Run(env, in); err != nil {
			b.Fatal(err)
		}
	}
}

func bigF32(shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Float32, shape...)
	r := rand.New(rand.NewSource(1))
	for i := range t.Float32s() {
		t.Float32s()[i] = r.Float32()
	}
	return t
}

// BenchmarkCopyBaseline is a plain copy of a 24 MiB buffer, for comparison.
func BenchmarkCopyBaseline(b *testing.B) {
	x := bigF32(8, 128, 12, 64)
	y := tensor.New(tensor.Float32, 8, 128, 12, 64)
	b.SetBytes(int64(len(x.Data)))
	for i := 0; i < b.N; i++ {
		copy(y.Data, x.Data)
	}
}

func BenchmarkTransposeBERTHeads(b *testing.B) {
	benchOp(b, opstest.Node("Transpose", 1, 1, opstest.Ints("perm", 0, 2, 1, 3)), 13, bigF32(8, 128, 12, 64))
}

func BenchmarkTransposeKT(b *testing.B) {
	benchOp(b, opstest.Node("Transpose", 1, 1, opstest.Ints("perm", 0, 1, 3, 2)), 13, bigF32(8, 12, 128, 64))
}

func BenchmarkTransposeNCHWToNHWC(b *testing.B) {
	benchOp(b, opstest.Node("Transpose", 1, 1, opstest.Ints("perm", 0, 2, 3, 1)), 13, bigF32(8, 64, 56, 56))
}

func BenchmarkTransposeNHWCToNCHW(b *testing.B) {
	benchOp(b, opstest.Node("Transpose", 1, 1, opstest.Ints("perm", 0, 3, 1, 2)), 13, bigF32(8, 56, 56, 64))
}

func BenchmarkTranspose2D(b *testing.B) {
	benchOp(b, opstest.Node("Transpose", 1, 1), 13, bigF32(2048, 2048))
}

func BenchmarkTranspose3DRotate(b *testing.B) {
	benchOp(b, opstest.Node("Transpose", 1, 1, opstest.Ints("perm", 2, 0, 1)), 13, bigF32(64, 96, 512))
}

func BenchmarkConcatLastAxis(b *testing.B) {
	benchOp(b, opstest.Node("Concat", 2, 1, opstest.Int("axis", -1)), 13, bigF32(8, 128, 768), bigF32(8, 128, 768))
}

func BenchmarkConcatAxis0(b *testing.B) {
	benchOp(b, opstest.Node("Concat", 2, 1, opstest.Int("axis", 0)), 13, bigF32(8, 128, 768), bigF32(8, 128, 768))
}

func BenchmarkSplitQKV(b *testing.B) {
	benchOp(b, opstest.Node("Split", 1, 3, opstest.Int("axis", -1)), 13, bigF32(8, 128, 2304))
}

func BenchmarkSliceLastAxis(b *testing.B) {
	benchOp(b, opstest.Node("Slice", 4, 1), 13, bigF32(8, 128, 1536), i64(sh(1), 0), i64(sh(1), 768), i64(sh(1), -1))
}

func BenchmarkSliceStep2(b *testing.B) {
	benchOp(b, opstest.Node("Slice", 5, 1), 13, bigF32(8, 128, 1536), i64(sh(1), 0), i64(sh(1), 1536), i64(sh(1), -1), i64(sh(1), 2))
}

func BenchmarkGatherEmbedding(b *testing.B) {
	idx := tensor.New(tensor.Int64, 8, 128)
	r := rand.New(rand.NewSource(2))
	for i := range idx.Int64s() {
		idx.Int64s()[i] = int64(r.Intn(30522))
	}
	benchOp(b, opstest.Node("Gather", 2, 1), 13, bigF32(30522, 768), idx)
}

func BenchmarkExpand(b *testing.B) {
	benchOp(b, opstest.Node("Expand", 2, 1), 13, bigF32(1, 128, 768), i64(sh(3), 16, 128, 768))
}

func BenchmarkPadConstant(b *testing.B) {
	benchOp(b, opstest.Node("Pad", 2, 1), 13, bigF32(8, 64, 56, 56), i64(sh(8), 0, 0, 1, 1, 0, 0, 1, 1))
}
