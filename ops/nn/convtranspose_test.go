package nn

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// refConvTranspose is the oracle: every input element times every kernel
// element is added at output position i*stride + k*dil - padB.
func refConvTranspose(x []float64, xs []int, w []float64, ws []int, bias []float64, group int, strides, dils, padB, outSp []int) []float64 {
	r := len(xs) - 2
	n, c := xs[0], xs[1]
	cg, mg := c/group, ws[1]
	m := mg * group
	in, k := xs[2:], ws[2:]
	inSize, kSize, outSize := tensor.NumElements(in), tensor.NumElements(k), tensor.NumElements(outSp)
	y := make([]float64, n*m*outSize)
	for b := 0; b < n; b++ {
		for mo := 0; mo < m; mo++ {
			for o := 0; o < outSize; o++ {
				if bias != nil {
					y[(b*m+mo)*outSize+o] = bias[mo]
				}
			}
		}
	}
	ic, kc := make([]int, r), make([]int, r)
	for b := 0; b < n; b++ {
		for ci := 0; ci < c; ci++ {
			gr := ci / cg
			for i := 0; i < inSize; i++ {
				rem := i
				for d := r - 1; d >= 0; d-- {
					ic[d] = rem % in[d]
					rem /= in[d]
				}
				for mj := 0; mj < mg; mj++ {
					mo := gr*mg + mj
					for kk := 0; kk < kSize; kk++ {
						rem := kk
						for d := r - 1; d >= 0; d-- {
							kc[d] = rem % k[d]
							rem /= k[d]
						}
						off, ok := 0, true
						for d := 0; d < r; d++ {
							p := ic[d]*strides[d] + kc[d]*dils[d] - padB[d]
							if p < 0 || p >= outSp[d] {
								ok = false
								break
							}
							off = off*outSp[d] + p
						}
						if ok {
							y[(b*m+mo)*outSize+off] += x[(b*c+ci)*inSize+i] * w[(ci*mg+mj)*kSize+kk]
						}
					}
				}
			}
		}
	}
	return y
}

func TestConvTransposeAgainstReference(t *testing.T) {
	cases := []struct {
		name          string
		x, w          []int
		group         int
		attrs         []*ir.Attr
		strides, dils []int
		padB, out     []int
		bias          bool
	}{
		{"1d", []int{1, 1, 3}, []int{1, 2, 3}, 1, nil, []int{1}, []int{1}, []int{0}, []int{5}, false},
		{"2d_default", []int{2, 3, 3, 4}, []int{3, 2, 3, 3}, 1, nil, []int{1, 1}, []int{1, 1}, []int{0, 0}, []int{5, 6}, true},
		{"2d_strides_pads", []int{1, 1, 3, 3}, []int{1, 2, 3, 3}, 1,
			[]*ir.Attr{opstest.Ints("strides", 3, 2), opstest.Ints("pads", 1, 2, 1, 2)}, []int{3, 2}, []int{1, 1}, []int{1, 2}, []int{7, 3}, false},
		{"2d_output_padding", []int{1, 1, 3, 3}, []int{1, 2, 3, 3}, 1,
			[]*ir.Attr{opstest.Ints("strides", 3, 2), opstest.Ints("output_padding", 1, 1)}, []int{3, 2}, []int{1, 1}, []int{0, 0}, []int{10, 8}, false},
		{"2d_output_shape", []int{1, 1, 3, 3}, []int{1, 2, 3, 3}, 1,
			[]*ir.Attr{opstest.Ints("strides", 3, 2), opstest.Ints("output_shape", 10, 8)}, []int{3, 2}, []int{1, 1}, []int{0, 0}, []int{10, 8}, false},
		{"2d_output_shape_crop", []int{1, 2, 4, 4}, []int{2, 1, 3, 3}, 1,
			[]*ir.Attr{opstest.Ints("strides", 2, 2), opstest.Ints("output_shape", 1, 1, 7, 8)}, []int{2, 2}, []int{1, 1}, []int{1, 1}, []int{7, 8}, true},
		{"2d_same_upper", []int{1, 1, 3, 3}, []int{1, 2, 3, 3}, 1,
			[]*ir.Attr{opstest.Ints("strides", 2, 2), opstest.String("auto_pad", "SAME_UPPER")}, []int{2, 2}, []int{1, 1}, []int{0, 0}, []int{6, 6}, false},
		{"2d_same_lower", []int{1, 1, 3, 3}, []int{1, 2, 3, 3}, 1,
			[]*ir.Attr{opstest.Ints("strides", 2, 2), opstest.String("auto_pad", "SAME_LOWER")}, []int{2, 2}, []int{1, 1}, []int{1, 1}, []int{6, 6}, false},
		{"2d_dilations", []int{1, 1, 3, 3}, []int{1, 1, 2, 2}, 1,
			[]*ir.Attr{opstest.Ints("dilations", 2, 2)}, []int{1, 1}, []int{2, 2}, []int{0, 0}, []int{5, 5}, false},
		{"2d_groups", []int{2, 4, 3, 3}, []int{4, 3, 2, 2}, 2,
			[]*ir.Attr{opstest.Ints("strides", 2, 2), opstest.Ints("pads", 1, 0, 0, 1)}, []int{2, 2}, []int{1, 1}, []int{1, 0}, []int{5, 5}, true},
		{"3d", []int{1, 1, 3, 4, 5}, []int{1, 2, 3, 3, 3}, 1, nil, []int{1, 1, 1}, []int{1, 1, 1}, []int{0, 0, 0}, []int{5, 6, 7}, true},
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, c := range cases {
		for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64} {
			t.Run(fmt.Sprintf("%s/%v", c.name, dt), func(t *testing.T) {
				x := randTensor(r, dt, c.x...)
				w := randTensor(r, dt, c.w...)
				in := []*tensor.Tensor{x, w}
				var bias []float64
				if c.bias {
					b := randTensor(r, dt, c.w[1]*c.group)
					in = append(in, b)
					bias = floats(b)
				}
				attrs := append([]*ir.Attr{opstest.Int("group", int64(c.group))}, c.attrs...)
				out := opstest.Run(t, opstest.Node("ConvTranspose", len(in), 1, attrs...), 11, in...)
				want := refConvTranspose(floats(x), c.x, floats(w), c.w, bias, c.group, c.strides, c.dils, c.padB, c.out)
				closeTo(t, "ConvTranspose", out[0], append([]int{c.x[0], c.w[1] * c.group}, c.out...), want, 1e-9+1e-5)
			})
		}
	}
}

func TestConvTransposeInferAndErrors(t *testing.T) {
	n := opstest.Node("ConvTranspose", 2, 1, opstest.Ints("strides", 2, 2), opstest.Ints("pads", 1, 1, 1, 1), opstest.Ints("output_padding", 1, 1))
	got := inferTypes(t, n, 13,
		ty(tensor.Float32, ir.S("b"), ir.D(8), ir.D(16), ir.S("w")),
		ty(tensor.Float32, ir.D(8), ir.D(4), ir.D(3), ir.D(3)))
	if s := got[0].Shape.String(); s != "[b,4,32,?]" {
		t.Errorf("ConvTranspose shape %s", s)
	}
	x := tensor.New(tensor.Float32, 1, 2, 3, 3)
	wantBadInput(t, "channels", opstest.Node("ConvTranspose", 2, 1), 11, x, tensor.New(tensor.Float32, 3, 1, 3, 3))
	wantBadInput(t, "bias", opstest.Node("ConvTranspose", 3, 1), 11, x, tensor.New(tensor.Float32, 2, 1, 3, 3), tensor.New(tensor.Float32, 2))
	wantBadInput(t, "output_padding", opstest.Node("ConvTranspose", 2, 1, opstest.Ints("output_padding", 1, 1)), 11, x, tensor.New(tensor.Float32, 2, 1, 3, 3))
	wantBadInput(t, "pads too big", opstest.Node("ConvTranspose", 2, 1, opstest.Ints("pads", 5, 5, 5, 5)), 11, x, tensor.New(tensor.Float32, 2, 1, 3, 3))
	wantBadInput(t, "output_shape rank", opstest.Node("ConvTranspose", 2, 1, opstest.Ints("output_shape", 5)), 11, x, tensor.New(tensor.Float32, 2, 1, 3, 3))
	wantBadInput(t, "int", opstest.Node("ConvTranspose", 2, 1), 11, tensor.New(tensor.Int64, 1, 2, 3, 3), tensor.New(tensor.Int64, 2, 1, 3, 3))
}
