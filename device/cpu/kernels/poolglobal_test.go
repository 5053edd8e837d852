package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// TestGlobalAveragePoolF32 runs GlobalAveragePool as the registry prepares
// it (cpu.GlobalAveragePool), into garbage outputs, on the plane sizes of the shared CNNs and sizes around the vector width, with
// the assembly and the Go sums, against a float64 reference.
func TestGlobalAveragePoolF32(t *testing.T) {
	for _, c := range []struct{ n, ch, h, w int }{
		{1, 1000, 13, 13}, {1, 1280, 7, 7}, {1, 128, 7, 7}, {2, 3, 1, 1}, {1, 5, 4, 4}, {1, 7, 1, 15},
		{1, 7, 1, 17}, {1, 3, 1, 31}, {1, 3, 1, 32}, {1, 3, 1, 33}, {1, 3, 1, 48}, {1, 2, 20, 20}, {1, 3, 0, 5},
	} {
		r := rand.New(rand.NewPCG(3, uint64(c.ch*c.h*c.w)))
		x := tensor.New(tensor.Float32, c.n, c.ch, c.h, c.w)
		for i := range x.Float32s() {
			x.Float32s()[i] = r.Float32()*4 - 1
		}
		size := c.h * c.w
		for _, asm := range asmModes() {
			setPoolAsm(t, asm)
			k, impl, err := Prepare(node("", "GlobalAveragePool", tensor.Float32), 12)
			if err != nil || impl != "cpu.GlobalAveragePool" {
				t.Fatalf("Prepare = %q, %v", impl, err)
			}
			out, err := k.Run(garbageEnv(), []*tensor.Tensor{x})
			if err != nil {
				t.Fatal(err)
			}
			got := out[0].Float32s()
			for p := 0; p < c.n*c.ch; p++ {
				var s float64
				for _, v := range x.Float32s()[p*size : (p+1)*size] {
					s += float64(v)
				}
				want := s / float64(size)
				if size == 0 {
					if !math.IsNaN(float64(got[p])) {
						t.Fatalf("%v asm=%v: empty plane %d = %g, want NaN (0/0 as before)", c, asm, p, got[p])
					}
					continue
				}
				if d := math.Abs(float64(got[p]) - want); d > 1e-5*(1+math.Abs(want)) {
					t.Fatalf("%v asm=%v: plane %d = %g, want %g", c, asm, p, got[p], want)
				}
			}
		}
	}
}

// BenchmarkGlobalAvg times GlobalAveragePool's float32 path (vector sums)
// against the generic one on the shared CNNs' classifier pools:
//
//	go test ./device/cpu/kernels -run '^$' -bench GlobalAvg -count 6
func BenchmarkGlobalAvg(b *testing.B) {
	for _, c := range []struct {
		name         string
		planes, size int
	}{{"squeezenet_1000x13x13", 1000, 169}, {"mobilenet_1280x7x7", 1280, 49}} {
		x := make([]float32, c.planes*c.size)
		for i := range x {
			x[i] = float32(i%13) - 6
		}
		y := make([]float32, c.planes)
		k, err := ops.Prepare(opstest.Node("GlobalAveragePool", 1, 1), 12)
		if err != nil {
			b.Fatal(err)
		}
		xt := tensor.FromFloat32(x, 1, c.planes, 1, c.size)
		env := &ops.Env{Alloc: func(tensor.DType, []int) (*tensor.Tensor, error) {
			return tensor.FromFloat32(y, 1, c.planes, 1, 1), nil
		}}
		for _, path := range []string{"generic", "vector"} {
			b.Run(c.name+"/"+path, func(b *testing.B) {
				b.SetBytes(int64(4 * len(x)))
				for b.Loop() {
					if path == "generic" {
						if _, err := k.Run(env, []*tensor.Tensor{xt}); err != nil {
							b.Fatal(err)
						}
					} else {
						globalAvgF32(c.planes, c.size, x, y)
					}
				}
			})
		}
	}
}

// TestGlobalMaxPoolF32 runs GlobalMaxPool as the registry prepares it
// (cpu.GlobalMaxPool), into garbage outputs, on plane sizes around the
// vector widths, with the assembly and in Go, against the reference kernel
// of ops/nn, NaNs included: a NaN counts only where it
// comes first and only NaNs follow.
func TestGlobalMaxPoolF32(t *testing.T) {
	nan := float32(math.NaN())
	ninf := float32(math.Inf(-1))
	for _, c := range []struct {
		n, ch, h, w int
		set         map[int]float32 // elements of plane 0 to overwrite
	}{
		{1, 1000, 13, 13, nil}, {1, 128, 7, 7, nil}, {2, 3, 1, 1, nil}, {1, 5, 1, 15, nil}, {1, 5, 1, 16, nil},
		{1, 5, 1, 17, nil}, {1, 3, 1, 31, nil}, {1, 3, 1, 32, nil}, {1, 3, 1, 33, nil}, {1, 3, 1, 48, nil}, {1, 2, 20, 20, nil},
		{1, 2, 1, 1, map[int]float32{0: nan}},
		{1, 2, 1, 20, map[int]float32{0: nan, 1: nan, 2: nan, 3: nan, 4: nan, 5: nan, 6: nan, 7: nan, 8: nan, 9: nan,
			10: nan, 11: nan, 12: nan, 13: nan, 14: nan, 15: nan, 16: nan, 17: nan, 18: nan, 19: nan}},
		{1, 2, 1, 20, map[int]float32{0: nan, 5: nan}},
		{1, 2, 1, 3, map[int]float32{0: nan, 1: ninf, 2: ninf}},
		{1, 2, 1, 3, map[int]float32{0: ninf, 1: ninf, 2: ninf}},
	} {
		r := rand.New(rand.NewPCG(4, uint64(c.ch*c.h*c.w)))
		x := tensor.New(tensor.Float32, c.n, c.ch, c.h, c.w)
		xs := x.Float32s()
		for i := range xs {
			xs[i] = r.Float32()*4 - 3
		}
		for i, v := range c.set {
			xs[i] = v
		}
		ref, err := ops.Prepare(opstest.Node("GlobalMaxPool", 1, 1), 12)
		if err != nil {
			t.Fatal(err)
		}
		wt, err := ref.Run(garbageEnv(), []*tensor.Tensor{x})
		if err != nil {
			t.Fatal(err)
		}
		want := wt[0].Float32s()
		for _, asm := range asmModes() {
			setPoolAsm(t, asm)
			k, impl, err := Prepare(node("", "GlobalMaxPool", tensor.Float32), 12)
			if err != nil || impl != "cpu.GlobalMaxPool" {
				t.Fatalf("Prepare = %q, %v", impl, err)
			}
			out, err := k.Run(garbageEnv(), []*tensor.Tensor{x})
			if err != nil {
				t.Fatal(err)
			}
			for p, g := range out[0].Float32s() {
				if g != want[p] && !(g != g && want[p] != want[p]) {
					t.Fatalf("%d planes of %dx%d asm=%v: plane %d = %g, want %g", c.n*c.ch, c.h, c.w, asm, p, g, want[p])
				}
			}
		}
	}
}
