package math

import (
	"context"
	"testing"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func randTensor(shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Float32, shape...)
	v := t.Float32s()
	s := uint32(12345)
	for i := range v {
		s = s*1664525 + 1013904223
		v[i] = float32(int32(s>>8)-(1<<23)) / (1 << 21) // about [-4, 4)
	}
	return t
}

func benchOp(b *testing.B, op string, nIn int, in ...*tensor.Tensor) {
	k, err := ops.Prepare(opstest.Node(op, nIn, 1), 17)
	if err != nil {
		b.Fatal(err)
	}
	env := &ops.Env{Ctx: context.Background()}
	b.ReportAllocs()
	b.SetBytes(int64(4 * in[0].Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := k.Run(env, in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAddNCHWxC11(b *testing.B) {
	benchOp(b, "Add", 2, randTensor(8, 64, 56, 56), randTensor(64, 1, 1))
}

func BenchmarkMulNCHWx1C11(b *testing.B) {
	benchOp(b, "Mul", 2, randTensor(8, 64, 56, 56), randTensor(1, 64, 1, 1))
}

func BenchmarkAddBSHxH(b *testing.B) {
	benchOp(b, "Add", 2, randTensor(8, 128, 768), randTensor(768))
}

func BenchmarkDivSame(b *testing.B) {
	benchOp(b, "Div", 2, randTensor(8, 128, 768), randTensor(8, 128, 768))
}

func BenchmarkSubScalar(b *testing.B) {
	benchOp(b, "Sub", 2, randTensor(8, 128, 768), randTensor())
}

func BenchmarkAddGenericIndex(b *testing.B) {
	// the former path: a per-element index table
	a, c := randTensor(8, 64, 56, 56), randTensor(64, 1, 1)
	out := tensor.New(tensor.Float32, 8, 64, 56, 56)
	b.SetBytes(int64(4 * a.Len()))
	for i := 0; i < b.N; i++ {
		indexMap(a.Float32s(), a.Shape, c.Float32s(), c.Shape, out.Float32s(), out.Shape,
			func(x, y float32) float32 { return x + y })
	}
}

// indexMap is the former broadcast path (ops.BinaryMap, used by no kernel
// any more): dst[i] = f(a[ia[i]], b[ib[i]]) through a per-element index
// table, split over the cores.
func indexMap[A, B, C any](a []A, as []int, b []B, bs []int, dst []C, out []int, f func(A, B) C) {
	idx := ops.BroadcastIndex(out, as, bs)
	ia, ib := idx[0], idx[1]
	parallel.For(len(dst), ops.ElemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = f(a[ia[i]], b[ib[i]])
		}
	})
}

func BenchmarkSigmoid(b *testing.B) { benchOp(b, "Sigmoid", 1, randTensor(8, 128, 768)) }
func BenchmarkTanh(b *testing.B)    { benchOp(b, "Tanh", 1, randTensor(8, 128, 768)) }
func BenchmarkErf(b *testing.B)     { benchOp(b, "Erf", 1, randTensor(8, 128, 768)) }
func BenchmarkRelu(b *testing.B)    { benchOp(b, "Relu", 1, randTensor(8, 128, 768)) }
func BenchmarkClip(b *testing.B) {
	lo, hi := tensor.FromFloat32([]float32{0}), tensor.FromFloat32([]float32{6})
	lo.Shape, hi.Shape = nil, nil
	benchOp(b, "Clip", 3, randTensor(8, 128, 768), lo, hi)
}
