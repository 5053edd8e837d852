package norm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func TestArgMaxMin(t *testing.T) {
	x := f32(sh(2, 3), 2, 5, 5, 7, 1, 7)
	for _, c := range []struct {
		op         string
		axis, keep int64
		last       int64
		wantShape  string
		want       []int64
	}{
		{"ArgMax", 1, 1, 0, "[2 1]", []int64{1, 0}},
		{"ArgMax", 1, 1, 1, "[2 1]", []int64{2, 2}},
		{"ArgMax", 0, 0, 0, "[3]", []int64{1, 0, 1}},
		{"ArgMax", -1, 0, 0, "[2]", []int64{1, 0}},
		{"ArgMin", 1, 1, 0, "[2 1]", []int64{0, 1}},
		{"ArgMin", 0, 1, 0, "[1 3]", []int64{0, 1, 0}},
		{"ArgMin", 0, 1, 1, "[1 3]", []int64{0, 1, 0}},
	} {
		n := opstest.Node(c.op, 1, 1, opstest.Int("axis", c.axis), opstest.Int("keepdims", c.keep), opstest.Int("select_last_index", c.last))
		out := opstest.Run(t, n, 13, x)
		if fmt.Sprint(out[0].Shape) != c.wantShape || fmt.Sprint(out[0].Int64s()) != fmt.Sprint(c.want) {
			t.Errorf("%+v: got %v %v", c, out[0].Shape, out[0].Int64s())
		}
	}
}

func TestArgMaxTypes(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16, tensor.BFloat16, tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64} {
		x := randTensor(rng, dt, 3, 4, 5)
		for axis := 0; axis < 3; axis++ {
			for _, last := range []int64{0, 1} {
				out := opstest.Run(t, opstest.Node("ArgMax", 1, 1, opstest.Int("axis", int64(axis)), opstest.Int("select_last_index", last)), 13, x)
				red := []bool{axis == 0, axis == 1, axis == 2}
				xv := values(x)
				for gi, g := range groupAlong(x.Shape, red) {
					best, bi := math.Inf(-1), 0
					for j, i := range g {
						if xv[i] > best || (last == 1 && xv[i] == best) {
							best, bi = xv[i], j
						}
					}
					if out[0].Int64s()[gi] != int64(bi) {
						t.Fatalf("%v axis %d last %d: group %d: %d, want %d", dt, axis, last, gi, out[0].Int64s()[gi], bi)
					}
				}
			}
		}
	}
}

func TestArgMaxNaN(t *testing.T) {
	nan := float32(math.NaN())
	out := opstest.Run(t, opstest.Node("ArgMax", 1, 1, opstest.Int("keepdims", 0)), 13, f32(sh(4), 1, nan, 3, nan))
	if out[0].Int64s()[0] != 1 {
		t.Fatal(out[0])
	}
	out = opstest.Run(t, opstest.Node("ArgMin", 1, 1, opstest.Int("keepdims", 0), opstest.Int("select_last_index", 1)), 13, f32(sh(4), 1, nan, 3, nan))
	if out[0].Int64s()[0] != 3 {
		t.Fatal(out[0])
	}
}

func TestArgMaxInferAndErrors(t *testing.T) {
	types, err := infer(opstest.Node("ArgMax", 1, 1, opstest.Int("axis", -1)), 13, val(tensor.Float32, ir.Shape{ir.S("b"), ir.D(10)}))
	if err != nil || types[0].DType != tensor.Int64 {
		t.Fatal(types, err)
	}
	checkShape(t, types[0].Shape, "[b,1]")
	types, err = infer(opstest.Node("ArgMin", 1, 1, opstest.Int("keepdims", 0)), 13, val(tensor.Float32, ir.Shape{ir.S("b"), ir.D(10)}))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[10]")
	_, err = infer(opstest.Node("ArgMax", 1, 1, opstest.Int("axis", 2)), 13, val(tensor.Float32, ir.Shape{ir.S("b"), ir.D(10)}))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("ArgMax", 1, 1, opstest.Int("axis", 1)), 13, tensor.New(tensor.Float32, 2, 0))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("ArgMax", 1, 1), 13, &tensor.Tensor{DType: tensor.String, Shape: []int{1}, Strings: []string{"a"}})
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("ArgMax", 1, 1, opstest.Int("keepdims", 3)), 13, f32(sh(1), 1))
	wantErr(t, err, ops.ErrBadAttr)
	// an empty batch is fine
	out := opstest.Run(t, opstest.Node("ArgMax", 1, 1, opstest.Int("axis", 1)), 13, tensor.New(tensor.Float32, 0, 3))
	if fmt.Sprint(out[0].Shape) != "[0 1]" {
		t.Fatal(out[0].Shape)
	}
}

func TestTopK(t *testing.T) {
	x := f32(sh(3, 4), 0, 1, 2, 3, 4, 5, 6, 7, 11, 10, 9, 8)
	out := opstest.Run(t, opstest.Node("TopK", 2, 2, opstest.Int("axis", 1)), 11, x, i64(sh(1), 3))
	closeTo(t, "values", out[0], []float64{3, 2, 1, 7, 6, 5, 11, 10, 9}, 0, 0)
	if fmt.Sprint(out[1].Int64s()) != "[3 2 1 3 2 1 0 1 2]" || fmt.Sprint(out[1].Shape) != "[3 3]" {
		t.Fatal(out[1])
	}
	// smallest, ties in index order, along axis 0
	y := f32(sh(4, 2), 3, 1, 1, 1, 2, 0, 1, 5)
	out = opstest.Run(t, opstest.Node("TopK", 2, 2, opstest.Int("axis", 0), opstest.Int("largest", 0)), 11, y, i64(sh(1), 3))
	closeTo(t, "values", out[0], []float64{1, 0, 1, 1, 2, 1}, 0, 0)
	if fmt.Sprint(out[1].Int64s()) != "[1 2 3 0 2 1]" {
		t.Fatal(out[1].Int64s())
	}
	// ties among the largest: lower index first
	z := i64(sh(6), 5, 7, 7, 1, 7, 5)
	out = opstest.Run(t, opstest.Node("TopK", 2, 2), 11, z, i64(sh(1), 4))
	if fmt.Sprint(out[0].Int64s(), out[1].Int64s()) != "[7 7 7 5] [1 2 4 0]" {
		t.Fatal(out[0].Int64s(), out[1].Int64s())
	}
	// opset 1: k attribute
	out = opstest.Run(t, opstest.Node("TopK", 1, 2, opstest.Int("k", 2)), 9, x)
	closeTo(t, "values", out[0], []float64{3, 2, 7, 6, 11, 10}, 0, 0)
	// k = 0
	out = opstest.Run(t, opstest.Node("TopK", 2, 2), 11, x, i64(sh(1), 0))
	if fmt.Sprint(out[0].Shape) != "[3 0]" {
		t.Fatal(out[0].Shape)
	}
	// NaN last
	nan := float32(math.NaN())
	out = opstest.Run(t, opstest.Node("TopK", 2, 2), 11, f32(sh(4), nan, 1, 3, 2), i64(sh(1), 4))
	if fmt.Sprint(out[1].Int64s()) != "[2 3 1 0]" {
		t.Fatal(out[1].Int64s())
	}
}

func TestTopKRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16, tensor.Int32, tensor.Uint8} {
		for _, n := range []int{1, 5, 100} {
			x := randTensor(rng, dt, 3, n, 2)
			for _, k := range []int{0, 1, n / 5, n} {
				for _, largest := range []int64{0, 1} {
					out := opstest.Run(t, opstest.Node("TopK", 2, 2, opstest.Int("axis", 1), opstest.Int("largest", largest)), 11, x, i64(sh(1), int64(k)))
					xv := values(x)
					for o := 0; o < 3; o++ {
						for i := 0; i < 2; i++ {
							// reference: repeated selection of the best remaining
							used := make([]bool, n)
							for j := 0; j < k; j++ {
								bi := -1
								for c := 0; c < n; c++ {
									if used[c] {
										continue
									}
									v := xv[(o*n+c)*2+i]
									if bi < 0 || (largest == 1 && v > xv[(o*n+bi)*2+i]) || (largest == 0 && v < xv[(o*n+bi)*2+i]) {
										bi = c
									}
								}
								used[bi] = true
								p := (o*k+j)*2 + i
								if out[1].Int64s()[p] != int64(bi) || out[0].Float(p) != xv[(o*n+bi)*2+i] {
									t.Fatalf("%v n=%d k=%d largest=%d: [%d,%d,%d] = %v@%d, want %v@%d", dt, n, k, largest, o, j, i,
										out[0].Float(p), out[1].Int64s()[p], xv[(o*n+bi)*2+i], bi)
								}
							}
						}
					}
				}
			}
		}
	}
}

func TestTopKInferAndErrors(t *testing.T) {
	s := ir.Shape{ir.S("b"), ir.D(10)}
	types, err := infer(opstest.Node("TopK", 2, 2), 11, val(tensor.Float32, s), constVal(i64(sh(1), 3)))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[b,3]")
	checkShape(t, types[1].Shape, "[b,3]")
	if types[1].DType != tensor.Int64 {
		t.Fatal(types[1])
	}
	types, err = infer(opstest.Node("TopK", 2, 2), 11, val(tensor.Float32, s), val(tensor.Int64, ir.Shape{ir.D(1)}))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[b,?]")
	_, err = infer(opstest.Node("TopK", 2, 2), 11, val(tensor.Float32, s), constVal(i64(sh(1), 11)))
	wantErr(t, err, ops.ErrBadInput)
	x := f32(sh(2, 2), 1, 2, 3, 4)
	_, err = opstest.Exec(opstest.Node("TopK", 2, 2), 11, x, i64(sh(1), 3))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("TopK", 2, 2), 11, x, i64(sh(1), -1))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("TopK", 2, 2), 11, x, i64(sh(2), 1, 1))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("TopK", 2, 2), 11, x, nil)
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("TopK", 1, 2), 9, x)
	wantErr(t, err, ops.ErrBadAttr)
	_, err = opstest.Exec(opstest.Node("TopK", 2, 2, opstest.Int("axis", 2)), 11, x, i64(sh(1), 1))
	wantErr(t, err, ops.ErrBadInput)
}

func TestCumSum(t *testing.T) {
	x := tensor.New(tensor.Float64, 5)
	for i := range 5 {
		x.Float64s()[i] = float64(i + 1)
	}
	axis := tensor.New(tensor.Int32)
	for _, c := range []struct {
		ex, rev int64
		want    []float64
	}{
		{0, 0, []float64{1, 3, 6, 10, 15}},
		{1, 0, []float64{0, 1, 3, 6, 10}},
		{0, 1, []float64{15, 14, 12, 9, 5}},
		{1, 1, []float64{14, 12, 9, 5, 0}},
	} {
		out := opstest.Run(t, opstest.Node("CumSum", 2, 1, opstest.Int("exclusive", c.ex), opstest.Int("reverse", c.rev)), 14, x, axis)
		closeTo(t, fmt.Sprintf("ex=%d rev=%d", c.ex, c.rev), out[0], c.want, 0, 0)
	}
	y := f32(sh(2, 3), 1, 2, 3, 4, 5, 6)
	out := opstest.Run(t, opstest.Node("CumSum", 2, 1), 14, y, i64(sh(1), 0))
	closeTo(t, "axis 0", out[0], []float64{1, 2, 3, 5, 7, 9}, 0, 0)
	out = opstest.Run(t, opstest.Node("CumSum", 2, 1), 14, y, i64(nil, -1))
	closeTo(t, "axis -1", out[0], []float64{1, 3, 6, 4, 9, 15}, 0, 0)
	yi := i64(sh(2, 3), 1, 2, 3, 4, 5, 6)
	out = opstest.Run(t, opstest.Node("CumSum", 2, 1, opstest.Int("reverse", 1)), 14, yi, i64(nil, 1))
	if fmt.Sprint(out[0].Int64s()) != "[6 5 3 15 11 6]" {
		t.Fatal(out[0].Int64s())
	}
	h := fromFloat64(tensor.Float16, sh(3), []float64{0.5, 0.25, 1})
	out = opstest.Run(t, opstest.Node("CumSum", 2, 1), 14, h, i64(nil, 0))
	closeTo(t, "float16", out[0], []float64{0.5, 0.75, 1.75}, 0, 0)
}

func TestCumSumInferAndErrors(t *testing.T) {
	types, err := infer(opstest.Node("CumSum", 2, 1), 14, val(tensor.Float32, ir.Shape{ir.S("n"), ir.D(3)}), val(tensor.Int64, ir.Scalar()))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[n,3]")
	_, err = infer(opstest.Node("CumSum", 2, 1), 14, val(tensor.Float32, ir.Shape{ir.S("n"), ir.D(3)}), constVal(i64(nil, 2)))
	wantErr(t, err, ops.ErrBadInput)
	y := f32(sh(2, 3), 1, 2, 3, 4, 5, 6)
	_, err = opstest.Exec(opstest.Node("CumSum", 2, 1), 14, y, i64(sh(2), 0, 1))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("CumSum", 2, 1), 14, y, f32(nil, 0))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("CumSum", 2, 1), 14, y, nil)
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("CumSum", 2, 1, opstest.Int("exclusive", 2)), 14, y, i64(nil, 0))
	wantErr(t, err, ops.ErrBadAttr)
}
