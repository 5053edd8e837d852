package shape

import (
	"testing"

	"github.com/kilnai/kiln/tensor"
)

func benchKernel(b *testing.B, shape, perm []int) {
	x := bigF32(shape...)
	od := make([]int, len(perm))
	st := tensor.Strides(shape)
	ss := make([]int, len(perm))
	for i, p := range perm {
		od[i], ss[i] = shape[p], st[p]
	}
	y := tensor.New(tensor.Float32, od...)
	b.SetBytes(int64(len(x.Data)))
	for i := 0; i < b.N; i++ {
		copyND(y, 0, tensor.Strides(od), x, 0, ss, od)
	}
}

func BenchmarkKernBERT(b *testing.B) { benchKernel(b, []int{8, 128, 12, 64}, []int{0, 2, 1, 3}) }
func BenchmarkKernKT(b *testing.B)   { benchKernel(b, []int{8, 12, 128, 64}, []int{0, 1, 3, 2}) }
func BenchmarkKernNHWC(b *testing.B) { benchKernel(b, []int{8, 64, 56, 56}, []int{0, 2, 3, 1}) }
func BenchmarkKern2D(b *testing.B)   { benchKernel(b, []int{2048, 2048}, []int{1, 0}) }
func BenchmarkKernRot(b *testing.B)  { benchKernel(b, []int{64, 96, 512}, []int{2, 0, 1}) }
func BenchmarkKern3210(b *testing.B) { benchKernel(b, []int{16, 32, 48, 64}, []int{3, 2, 1, 0}) }
func BenchmarkKern0321(b *testing.B) { benchKernel(b, []int{16, 32, 48, 64}, []int{0, 3, 2, 1}) }

func BenchmarkKern2000(b *testing.B) { benchKernel(b, []int{2000, 2000}, []int{1, 0}) }
func BenchmarkKern1024(b *testing.B) { benchKernel(b, []int{1024, 4096}, []int{1, 0}) }
