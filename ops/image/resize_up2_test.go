package image

import (
	"math"
	"math/rand"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// TestUp2x2 checks the 2x2 nearest enlargement (assembly where the CPU has
// AVX-512, and the Go version) against a loop, at widths around the vector
// width, with guard elements after the output that must stay untouched.
func TestUp2x2(t *testing.T) {
	const guard = 0xdeadbeef
	for _, w := range []int{1, 2, 7, 8, 9, 10, 15, 16, 17, 20, 31, 32, 33, 40, 47, 80} {
		for _, rows := range []int{1, 3, 8} {
			src := make([]uint32, rows*w)
			for i := range src {
				src[i] = uint32(i*7 + 1)
			}
			want := make([]uint32, 4*len(src))
			for r := 0; r < 2*rows; r++ {
				for c := 0; c < 2*w; c++ {
					want[r*2*w+c] = src[(r/2)*w+c/2]
				}
			}
			for name, fn := range map[string]func(d, s []uint32, w int){"up2x2": up2x2, "go": up2x2Go, "parallel": upsample2x2} {
				buf := make([]uint32, len(want)+40)
				for i := range buf {
					buf[i] = guard
				}
				fn(buf[:len(want)], src, w)
				for i, v := range want {
					if buf[i] != v {
						t.Fatalf("%s w=%d rows=%d: element %d = %d, want %d", name, w, rows, i, buf[i], v)
					}
				}
				for i := len(want); i < len(buf); i++ {
					if buf[i] != guard {
						t.Fatalf("%s w=%d rows=%d: wrote element %d past the output", name, w, rows, i)
					}
				}
			}
		}
	}
}

// TestResizeArenaOutput runs Resize in every mode with an allocator that
// hands out outputs full of NaN (as the arena's undefined contents) and
// checks the result equals the heap-allocated one: every path writes every
// output element.
func TestResizeArenaOutput(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	x := tensor.New(tensor.Float32, 1, 3, 10, 13)
	for i := range x.Float32s() {
		x.Float32s()[i] = rng.Float32()
	}
	s := opstest.String
	cases := []struct {
		name   string
		attrs  []*ir.Attr
		scales *tensor.Tensor
		sizes  *tensor.Tensor
		roi    *tensor.Tensor
	}{
		{"nearest 2x asymmetric floor (YOLO)", []*ir.Attr{s("coordinate_transformation_mode", "asymmetric"), s("nearest_mode", "floor")}, f32(1, 1, 2, 2), nil, nil},
		{"nearest 2x half_pixel", nil, f32(1, 1, 2, 2), nil, nil},
		{"nearest 3x1.5 round_prefer_ceil", []*ir.Attr{s("nearest_mode", "round_prefer_ceil")}, f32(1, 1, 3, 1.5), nil, nil},
		{"nearest down sizes", nil, nil, i64(1, 2, 4, 5), nil},
		{"nearest tf_crop_and_resize extrapolation", []*ir.Attr{s("coordinate_transformation_mode", "tf_crop_and_resize"), opstest.Float("extrapolation_value", 7)}, nil, i64(1, 3, 6, 6), f32(0, 0, -0.2, 0.1, 1, 1, 1.3, 0.9)},
		{"linear 2x", []*ir.Attr{s("mode", "linear")}, f32(1, 1, 2, 2), nil, nil},
		{"linear align_corners down", []*ir.Attr{s("mode", "linear"), s("coordinate_transformation_mode", "align_corners")}, f32(1, 1, 0.5, 0.7), nil, nil},
		{"linear antialias down", []*ir.Attr{s("mode", "linear"), opstest.Int("antialias", 1)}, f32(1, 1, 0.4, 0.5), nil, nil},
		{"cubic 2x", []*ir.Attr{s("mode", "cubic")}, f32(1, 1, 2, 2), nil, nil},
		{"linear axes 2,3", []*ir.Attr{s("mode", "linear"), opstest.Ints("axes", 2, 3)}, f32(1.5, 2), nil, nil},
		{"linear channels too", []*ir.Attr{s("mode", "linear")}, f32(1, 2, 1.5, 1), nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, err := ops.Prepare(opstest.Node("Resize", 4, 1, c.attrs...), 19)
			if err != nil {
				t.Fatal(err)
			}
			in := []*tensor.Tensor{x, c.roi, c.scales, c.sizes}
			want, err := k.Run(&ops.Env{}, in)
			if err != nil {
				t.Fatal(err)
			}
			allocs := 0
			env := &ops.Env{Alloc: func(dt tensor.DType, shape []int) (*tensor.Tensor, error) {
				allocs++
				o, err := tensor.Make(dt, shape)
				if err == nil {
					for i := range o.Float32s() {
						o.Float32s()[i] = float32(math.NaN())
					}
				}
				return o, err
			}}
			got, err := k.Run(env, in)
			if err != nil {
				t.Fatal(err)
			}
			if allocs != 1 {
				t.Fatalf("the output came from the allocator %d times, want 1", allocs)
			}
			if err := opstest.Close(got[0], want[0], 0, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}
