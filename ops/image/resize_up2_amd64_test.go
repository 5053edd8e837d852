//go:build amd64 && !purego

package image

import (
	"testing"

	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// BenchmarkResizeYOLO times Resize on yolo_tiny's two 2x nearest
// upsamplings through the op's Run: the output on the heap with the Go
// loop (as before) against the output from an allocator (the arena's part)
// with the AVX-512 kernel, and the two changes apart; compare the paths of
// one run:
//
//	go test ./ops/image -run '^$' -bench ResizeYOLO -count 6
func BenchmarkResizeYOLO(b *testing.B) {
	for _, shape := range [][]int{{1, 256, 10, 10}, {1, 128, 20, 20}} {
		x := tensor.New(tensor.Float32, shape...)
		k, err := ops.Prepare(opstest.Node("Resize", 4, 1, opstest.String("coordinate_transformation_mode", "asymmetric"),
			opstest.String("nearest_mode", "floor")), 13)
		if err != nil {
			b.Fatal(err)
		}
		in := []*tensor.Tensor{x, nil, f32(1, 1, 2, 2), nil}
		out := tensor.New(tensor.Float32, shape[0], shape[1], 2*shape[2], 2*shape[3])
		arena := &ops.Env{Alloc: func(tensor.DType, []int) (*tensor.Tensor, error) { return out, nil }}
		for _, v := range []struct {
			name string
			env  *ops.Env
			asm  bool
		}{{"heap-go", &ops.Env{}, false}, {"heap-avx512", &ops.Env{}, true}, {"arena-go", arena, false}, {"arena-avx512", arena, true}} {
			if v.asm && !up2Asm {
				continue
			}
			b.Run(tensor.ShapeString(shape)+"/"+v.name, func(b *testing.B) {
				old := up2Asm
				up2Asm = v.asm
				defer func() { up2Asm = old }()
				b.SetBytes(int64(4 * 5 * x.Len()))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := k.Run(v.env, in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
