package shape

import (
	"math/rand"
	"testing"

	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func TestConcat(t *testing.T) {
	a := f32(sh(2, 2), 1, 2, 3, 4)
	b := f32(sh(2, 1), 5, 6)
	c := f32(sh(1, 2), 7, 8)
	runCases(t, []opCase{
		{name: "axis 1", op: "Concat", attrs: opAttrs(opstest.Int("axis", 1)), in: []*tensor.Tensor{a, b}, want: []*tensor.Tensor{f32(sh(2, 3), 1, 2, 5, 3, 4, 6)}},
		{name: "axis -1", op: "Concat", attrs: opAttrs(opstest.Int("axis", -1)), in: []*tensor.Tensor{b, a}, want: []*tensor.Tensor{f32(sh(2, 3), 5, 1, 2, 6, 3, 4)}},
		{name: "axis 0", op: "Concat", attrs: opAttrs(opstest.Int("axis", 0)), in: []*tensor.Tensor{a, c, c}, want: []*tensor.Tensor{f32(sh(4, 2), 1, 2, 3, 4, 7, 8, 7, 8)}},
		{name: "empty input", op: "Concat", attrs: opAttrs(opstest.Int("axis", 0)), in: []*tensor.Tensor{tensor.New(tensor.Float32, 0, 2), c}, want: []*tensor.Tensor{c}},
		{name: "int64 1-D", op: "Concat", attrs: opAttrs(opstest.Int("axis", 0)), in: []*tensor.Tensor{i64(sh(1), 1), i64(sh(2), 2, 3)}, want: []*tensor.Tensor{i64(sh(3), 1, 2, 3)}},
		{name: "strings", op: "Concat", attrs: opAttrs(opstest.Int("axis", 1)), in: []*tensor.Tensor{strs(sh(2, 1), "a", "b"), strs(sh(2, 1), "c", "d")}, want: []*tensor.Tensor{strs(sh(2, 2), "a", "c", "b", "d")}},
		{name: "shape mismatch", op: "Concat", attrs: opAttrs(opstest.Int("axis", 0)), in: []*tensor.Tensor{a, b}, err: true},
		{name: "type mismatch", op: "Concat", attrs: opAttrs(opstest.Int("axis", 0)), in: []*tensor.Tensor{a, i64(sh(1, 2), 1, 2)}, err: true},
		{name: "rank mismatch", op: "Concat", attrs: opAttrs(opstest.Int("axis", 0)), in: []*tensor.Tensor{a, f32(sh(2), 1, 2)}, err: true},
		{name: "bad axis", op: "Concat", attrs: opAttrs(opstest.Int("axis", 2)), in: []*tensor.Tensor{a, a}, err: true},
		{name: "no axis", op: "Concat", in: []*tensor.Tensor{a, a}, err: true},
	})
}

func TestSplit(t *testing.T) {
	x := iotaF(2, 6)
	runCases(t, []opCase{
		{name: "equal", op: "Split", attrs: opAttrs(opstest.Int("axis", 1)), in: []*tensor.Tensor{x},
			want: []*tensor.Tensor{f32(sh(2, 2), 0, 1, 6, 7), f32(sh(2, 2), 2, 3, 8, 9), f32(sh(2, 2), 4, 5, 10, 11)}},
		{name: "sizes input", op: "Split", attrs: opAttrs(opstest.Int("axis", -1)), in: []*tensor.Tensor{x, i64(sh(2), 2, 4)},
			want: []*tensor.Tensor{f32(sh(2, 2), 0, 1, 6, 7), f32(sh(2, 4), 2, 3, 4, 5, 8, 9, 10, 11)}},
		{name: "sizes attr", op: "Split", opset: 11, attrs: opAttrs(opstest.Int("axis", 1), opstest.Ints("split", 5, 1)), in: []*tensor.Tensor{x},
			want: []*tensor.Tensor{f32(sh(2, 5), 0, 1, 2, 3, 4, 6, 7, 8, 9, 10), f32(sh(2, 1), 5, 11)}},
		{name: "axis 0", op: "Split", in: []*tensor.Tensor{x}, want: []*tensor.Tensor{iotaF(1, 6), f32(sh(1, 6), 6, 7, 8, 9, 10, 11)}},
		{name: "uneven num_outputs", op: "Split", opset: 18, attrs: opAttrs(opstest.Int("num_outputs", 3)), in: []*tensor.Tensor{iotaF(7)},
			want: []*tensor.Tensor{f32(sh(3), 0, 1, 2), f32(sh(3), 3, 4, 5), f32(sh(1), 6)}},
		{name: "zero sizes", op: "Split", in: []*tensor.Tensor{tensor.New(tensor.Float32, 0), i64(sh(3), 0, 0, 0)},
			want: []*tensor.Tensor{tensor.New(tensor.Float32, 0), tensor.New(tensor.Float32, 0), tensor.New(tensor.Float32, 0)}},
		{name: "strings", op: "Split", in: []*tensor.Tensor{strs(sh(2), "a", "b")}, want: []*tensor.Tensor{strs(sh(1), "a"), strs(sh(1), "b")}},
		{name: "bad sum", op: "Split", in: []*tensor.Tensor{x, i64(sh(2), 1, 2)}, nOut: 2, err: true},
		{name: "negative size", op: "Split", in: []*tensor.Tensor{x, i64(sh(2), -1, 3)}, nOut: 2, err: true},
		{name: "count mismatch", op: "Split", in: []*tensor.Tensor{x, i64(sh(3), 1, 1, 0)}, nOut: 2, err: true},
		{name: "num_outputs mismatch", op: "Split", opset: 18, attrs: opAttrs(opstest.Int("num_outputs", 3)), in: []*tensor.Tensor{x}, nOut: 2, err: true},
		{name: "too many chunks", op: "Split", opset: 18, attrs: opAttrs(opstest.Int("num_outputs", 4)), in: []*tensor.Tensor{iotaF(5)}, nOut: 4, err: true},
	})
}

// refSlice slices element by element.
func refSlice(x *tensor.Tensor, starts, counts, steps []int) *tensor.Tensor {
	y := tensor.New(x.DType, counts...)
	is := tensor.Strides(x.Shape)
	coord := make([]int, len(counts))
	for o := 0; o < y.Len(); o++ {
		rem := o
		for a := len(counts) - 1; a >= 0; a-- {
			coord[a] = rem % counts[a]
			rem /= counts[a]
		}
		src := 0
		for a := range coord {
			src += (starts[a] + coord[a]*steps[a]) * is[a]
		}
		copyElems(y, o, x, src, 1)
	}
	return y
}

func TestSlice(t *testing.T) {
	x := iotaF(3, 4)
	big := int64(1) << 62
	runCases(t, []opCase{
		{name: "basic", op: "Slice", in: []*tensor.Tensor{x, i64(sh(2), 1, 0), i64(sh(2), 2, 3)}, want: []*tensor.Tensor{f32(sh(1, 3), 4, 5, 6)}},
		{name: "axes", op: "Slice", in: []*tensor.Tensor{x, i64(sh(1), 1), i64(sh(1), big), i64(sh(1), -1)}, want: []*tensor.Tensor{f32(sh(3, 3), 1, 2, 3, 5, 6, 7, 9, 10, 11)}},
		{name: "negative step", op: "Slice", in: []*tensor.Tensor{x, i64(sh(2), -1, -1), i64(sh(2), -big, -big), i64(sh(2), 0, 1), i64(sh(2), -1, -2)},
			want: []*tensor.Tensor{f32(sh(3, 2), 11, 9, 7, 5, 3, 1)}},
		{name: "step 2", op: "Slice", in: []*tensor.Tensor{x, i32(sh(1), 0), i32(sh(1), 4), i32(sh(1), 1), i32(sh(1), 3)}, want: []*tensor.Tensor{f32(sh(3, 2), 0, 3, 4, 7, 8, 11)}},
		{name: "clamped start", op: "Slice", in: []*tensor.Tensor{x, i64(sh(1), 10), i64(sh(1), 20)}, want: []*tensor.Tensor{tensor.New(tensor.Float32, 0, 4)}},
		{name: "empty range", op: "Slice", in: []*tensor.Tensor{x, i64(sh(1), 2), i64(sh(1), 1)}, want: []*tensor.Tensor{tensor.New(tensor.Float32, 0, 4)}},
		{name: "opset 9 attributes", op: "Slice", opset: 9, attrs: opAttrs(opstest.Ints("starts", 0, 1), opstest.Ints("ends", -1, 1000)), in: []*tensor.Tensor{x},
			want: []*tensor.Tensor{f32(sh(2, 3), 1, 2, 3, 5, 6, 7)}},
		{name: "step 0", op: "Slice", in: []*tensor.Tensor{x, i64(sh(1), 0), i64(sh(1), 1), i64(sh(1), 0), i64(sh(1), 0)}, err: true},
		{name: "repeated axis", op: "Slice", in: []*tensor.Tensor{x, i64(sh(2), 0, 0), i64(sh(2), 1, 1), i64(sh(2), 0, -2)}, err: true},
		{name: "length mismatch", op: "Slice", in: []*tensor.Tensor{x, i64(sh(2), 0, 0), i64(sh(1), 1)}, err: true},
		{name: "bad axis", op: "Slice", in: []*tensor.Tensor{x, i64(sh(1), 0), i64(sh(1), 1), i64(sh(1), 2)}, err: true},
		{name: "float starts", op: "Slice", in: []*tensor.Tensor{x, f32(sh(1), 0), i64(sh(1), 1)}, err: true},
	})
	// random slices against a reference
	r := rand.New(rand.NewSource(3))
	for trial := 0; trial < 200; trial++ {
		shape := []int{1 + r.Intn(5), 1 + r.Intn(6), 1 + r.Intn(40)}
		x := randTensor(r, []tensor.DType{tensor.Float32, tensor.Int16, tensor.String}[r.Intn(3)], shape...)
		var st, en, ax, sp []int64
		starts, counts, steps := make([]int, 3), append([]int{}, shape...), []int{1, 1, 1}
		for _, a := range r.Perm(3)[:1+r.Intn(3)] {
			d := shape[a]
			step := r.Intn(3) + 1
			if r.Intn(2) == 0 {
				step = -step
			}
			s0, e0 := r.Intn(d+4)-2, r.Intn(d+4)-2
			st, en, ax, sp = append(st, int64(s0)), append(en, int64(e0)), append(ax, int64(a)), append(sp, int64(step))
			// reference normalization, the simple way
			s, e := s0, e0
			if s < 0 {
				s += d
			}
			if e < 0 {
				e += d
			}
			n := 0
			if step > 0 {
				s, e = min(max(s, 0), d), min(max(e, 0), d)
				for i := s; i < e; i += step {
					n++
				}
			} else {
				s, e = min(max(s, 0), d-1), min(max(e, -1), d-1)
				for i := s; i > e; i += step {
					n++
				}
			}
			starts[a], counts[a], steps[a] = s, n, step
		}
		want := refSlice(x, starts, counts, steps)
		out := opstest.Run(t, opstest.Node("Slice", 5, 1), 13, x, i64(sh(len(st)), st...), i64(sh(len(en)), en...), i64(sh(len(ax)), ax...), i64(sh(len(sp)), sp...))
		if err := opstest.Close(out[0], want, 0, 0); err != nil {
			t.Fatalf("slice %v starts %v ends %v axes %v steps %v: %v", shape, st, en, ax, sp, err)
		}
	}
}
