package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

// TestMHAZeroMask checks that a mask of zeros (+0 or -0), which the
// kernel drops, gives the unmasked result, and that a mask with one
// nonzero element is still applied.
func TestMHAZeroMask(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, tc := range []struct {
		b, s, h, d int
		mask       []int
	}{
		{1, 128, 4, 32, []int{1, 1, 1, 128}},
		{2, 17, 2, 8, []int{2, 1, 1, 17}},
		{1, 30, 3, 16, []int{1, 1, 30, 30}},
	} {
		x := tensor.New(tensor.Float32, tc.b, tc.s, 3*tc.h*tc.d)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64())
		}
		k := mhaKernelOf(t, tc.h)
		run := func(in ...*tensor.Tensor) []float32 {
			out, err := k.Run(nil, in)
			if err != nil {
				t.Fatal(err)
			}
			return out[0].Float32s()
		}
		want := run(x)
		for _, neg := range []bool{false, true} {
			m := tensor.New(tensor.Float32, tc.mask...)
			if neg {
				for i := range m.Float32s() {
					m.Float32s()[i] = float32(math.Copysign(0, -1))
				}
			}
			got := run(x, m)
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-6*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("%v negative zero %v: y[%d] = %v, unmasked %v", tc.mask, neg, i, got[i], want[i])
				}
			}
			// one masked key: the output must change
			m.Float32s()[len(m.Float32s())-1] = -10000
			got = run(x, m)
			same := true
			for i := range want {
				if got[i] != want[i] {
					same = false
					break
				}
			}
			if same {
				t.Fatalf("%v: a mask with a masked key gave the unmasked result", tc.mask)
			}
		}
	}
}
