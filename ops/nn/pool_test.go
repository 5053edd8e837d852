package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// refPool is the oracle of the windowed pools: for each output, it visits
// every kernel position, skipping those outside the input. kind is "max",
// "avg", "avgpad" (count_include_pad) or "lp2". It also returns the flat
// argmax of MaxPool (row-major).
func refPool(kind string, x []float64, xs []int, k, strides, dils, padB, padE, out []int) ([]float64, []int64) {
	r := len(k)
	planes := xs[0] * xs[1]
	in := xs[2:]
	inSize, outSize, kSize := tensor.NumElements(in), tensor.NumElements(out), tensor.NumElements(k)
	y := make([]float64, planes*outSize)
	idx := make([]int64, planes*outSize)
	oc, kc := make([]int, r), make([]int, r)
	for p := 0; p < planes; p++ {
		for o := 0; o < outSize; o++ {
			rem := o
			for i := r - 1; i >= 0; i-- {
				oc[i] = rem % out[i]
				rem /= out[i]
			}
			best, arg, sum, cnt, cntPad := math.Inf(-1), -1, 0.0, 0, 0
			for kk := 0; kk < kSize; kk++ {
				rem := kk
				for i := r - 1; i >= 0; i-- {
					kc[i] = rem % k[i]
					rem /= k[i]
				}
				off, inside, inPad := 0, true, true
				for i := 0; i < r; i++ {
					q := oc[i]*strides[i] - padB[i] + kc[i]*dils[i]
					if q < -padB[i] || q >= in[i]+padE[i] {
						inPad = false
					}
					if q < 0 || q >= in[i] {
						inside = false
					}
					off = off*in[i] + q
				}
				if inPad {
					cntPad++
				}
				if !inside {
					continue
				}
				v := x[p*inSize+off]
				cnt++
				sum += v
				if kind == "lp2" {
					sum += v*v - v
				}
				if v > best {
					best, arg = v, p*inSize+off
				}
			}
			switch kind {
			case "max":
				y[p*outSize+o], idx[p*outSize+o] = best, int64(arg)
			case "avg":
				y[p*outSize+o] = sum / float64(cnt)
			case "avgpad":
				y[p*outSize+o] = sum / float64(cntPad)
			case "lp2":
				y[p*outSize+o] = math.Sqrt(sum)
			}
		}
	}
	return y, idx
}

func TestPoolsAgainstReference(t *testing.T) {
	cases := []struct {
		name    string
		x       []int
		attrs   []*ir.Attr
		k       []int
		strides []int
		dils    []int
		padB    []int
		padE    []int
		out     []int
	}{
		{"1d", []int{1, 3, 32}, nil, []int{2}, []int{1}, []int{1}, []int{0}, []int{0}, []int{31}},
		{"2d_pads", []int{2, 3, 9, 9}, []*ir.Attr{opstest.Ints("pads", 2, 2, 2, 2)}, []int{3, 3}, []int{1, 1}, []int{1, 1}, []int{2, 2}, []int{2, 2}, []int{11, 11}},
		{"2d_strides", []int{1, 2, 32, 32}, []*ir.Attr{opstest.Ints("strides", 3, 3)}, []int{5, 5}, []int{3, 3}, []int{1, 1}, []int{0, 0}, []int{0, 0}, []int{10, 10}},
		{"2d_ceil", []int{1, 1, 4, 4}, []*ir.Attr{opstest.Ints("strides", 2, 2), opstest.Int("ceil_mode", 1)}, []int{3, 3}, []int{2, 2}, []int{1, 1}, []int{0, 0}, []int{0, 0}, []int{2, 2}},
		{"2d_ceil_pads", []int{1, 2, 7, 6}, []*ir.Attr{opstest.Ints("strides", 2, 2), opstest.Ints("pads", 1, 1, 1, 1), opstest.Int("ceil_mode", 1)}, []int{3, 2}, []int{2, 2}, []int{1, 1}, []int{1, 1}, []int{1, 1}, []int{4, 4}},
		{"2d_same_upper", []int{1, 1, 5, 5}, []*ir.Attr{opstest.Ints("strides", 2, 2), opstest.String("auto_pad", "SAME_UPPER")}, []int{3, 3}, []int{2, 2}, []int{1, 1}, []int{1, 1}, []int{1, 1}, []int{3, 3}},
		{"2d_same_lower", []int{1, 3, 8, 8}, []*ir.Attr{opstest.String("auto_pad", "SAME_LOWER")}, []int{2, 2}, []int{1, 1}, []int{1, 1}, []int{1, 1}, []int{0, 0}, []int{8, 8}},
		{"2d_valid", []int{1, 1, 7, 7}, []*ir.Attr{opstest.Ints("strides", 2, 2), opstest.String("auto_pad", "VALID")}, []int{3, 3}, []int{2, 2}, []int{1, 1}, []int{0, 0}, []int{0, 0}, []int{3, 3}},
		{"2d_dilations", []int{1, 2, 8, 8}, []*ir.Attr{opstest.Ints("dilations", 2, 3), opstest.Ints("pads", 1, 2, 1, 2)}, []int{3, 2}, []int{1, 1}, []int{2, 3}, []int{1, 2}, []int{1, 2}, []int{6, 9}},
		{"3d", []int{1, 2, 6, 5, 4}, []*ir.Attr{opstest.Ints("strides", 2, 1, 2), opstest.Ints("pads", 1, 0, 1, 0, 1, 1)}, []int{2, 3, 2}, []int{2, 1, 2}, []int{1, 1, 1}, []int{1, 0, 1}, []int{0, 1, 1}, []int{3, 4, 3}},
	}
	r := rand.New(rand.NewPCG(51, 52))
	for _, c := range cases {
		for _, kind := range []string{"max", "avg", "avgpad", "lp2"} {
			for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16} {
				t.Run(fmt.Sprintf("%s/%s/%v", c.name, kind, dt), func(t *testing.T) {
					k64 := make([]int64, len(c.k))
					for i, v := range c.k {
						k64[i] = int64(v)
					}
					attrs := append([]*ir.Attr{opstest.Ints("kernel_shape", k64...)}, c.attrs...)
					op, nOut := "MaxPool", 2
					switch kind {
					case "avg":
						op, nOut = "AveragePool", 1
					case "avgpad":
						op, nOut = "AveragePool", 1
						attrs = append(attrs, opstest.Int("count_include_pad", 1))
					case "lp2":
						op, nOut = "LpPool", 1
						if _, ok := map[string]bool{"1d": true, "2d_pads": true, "2d_strides": true, "3d": true}[c.name]; !ok {
							t.Skip("LpPool before opset 18 has no ceil_mode or dilations")
						}
					}
					x := randTensor(r, dt, c.x...)
					outs := opstest.Run(t, opstest.Node(op, 1, nOut, attrs...), 19, x)
					want, idx := refPool(kind, floats(x), c.x, c.k, c.strides, c.dils, c.padB, c.padE, c.out)
					tol := 1e-6
					if dt == tensor.Float16 {
						tol = 2e-3
					}
					closeTo(t, op, outs[0], append([]int{c.x[0], c.x[1]}, c.out...), want, tol)
					if kind == "max" && dt != tensor.Float16 {
						closeTo(t, "indices", outs[1], outs[0].Shape, floats(i64(idx, len(idx))), 0)
					}
				})
			}
		}
	}
}

func TestMaxPoolIntAndStorageOrder(t *testing.T) {
	x := make([]float64, 25)
	for i := range x {
		x[i] = float64(i + 1)
	}
	n := opstest.Node("MaxPool", 1, 1, opstest.Ints("kernel_shape", 5, 5), opstest.Ints("pads", 2, 2, 2, 2))
	for _, dt := range []tensor.DType{tensor.Uint8, tensor.Int8} {
		out := opstest.Run(t, n, 12, fromFloats(dt, x, 1, 1, 5, 5))
		want := []float64{13, 14, 15, 15, 15, 18, 19, 20, 20, 20, 23, 24, 25, 25, 25, 23, 24, 25, 25, 25, 23, 24, 25, 25, 25}
		closeTo(t, "MaxPool "+dt.String(), out[0], []int{1, 1, 5, 5}, want, 0)
	}
	// storage_order 1: column-major indices (ONNX's
	// test_maxpool_with_argmax_2d_precomputed_strides)
	n = opstest.Node("MaxPool", 1, 2, opstest.Ints("kernel_shape", 2, 2), opstest.Ints("strides", 2, 2), opstest.Int("storage_order", 1))
	out := opstest.Run(t, n, 12, fromFloats(tensor.Float32, x, 1, 1, 5, 5))
	closeTo(t, "MaxPool", out[0], []int{1, 1, 2, 2}, []float64{7, 9, 17, 19}, 0)
	closeTo(t, "Indices", out[1], []int{1, 1, 2, 2}, []float64{6, 16, 8, 18}, 0)
	wantBadInput(t, "int avg", opstest.Node("AveragePool", 1, 1, opstest.Ints("kernel_shape", 2, 2)), 12, tensor.New(tensor.Uint8, 1, 1, 3, 3))
}

func TestPoolInferAndErrors(t *testing.T) {
	n := opstest.Node("MaxPool", 1, 2, opstest.Ints("kernel_shape", 3, 3), opstest.Ints("strides", 2, 2), opstest.Ints("pads", 1, 1, 1, 1))
	got := inferTypes(t, n, 12, ty(tensor.Float32, ir.S("N"), ir.D(64), ir.D(112), ir.S("w")))
	if s := got[0].Shape.String(); s != "[N,64,56,?]" {
		t.Errorf("MaxPool shape %s", s)
	}
	if len(got) != 2 || got[1].DType != tensor.Int64 {
		t.Errorf("MaxPool indices type %v", got)
	}
	g := inferTypes(t, opstest.Node("GlobalAveragePool", 1, 1), 12, ty(tensor.Float32, ir.S("N"), ir.D(2048), ir.D(7), ir.D(7)))
	if s := g[0].Shape.String(); s != "[N,2048,1,1]" {
		t.Errorf("GlobalAveragePool shape %s", s)
	}
	wantBadInput(t, "no kernel", opstest.Node("MaxPool", 1, 1), 12, tensor.New(tensor.Float32, 1, 1, 3, 3))
	wantBadInput(t, "rank", n, 12, tensor.New(tensor.Float32, 1, 3, 3))
	wantBadInput(t, "window too big", opstest.Node("MaxPool", 1, 1, opstest.Ints("kernel_shape", 4, 4)), 12, tensor.New(tensor.Float32, 1, 1, 3, 3))
	wantBadInput(t, "bad pads", opstest.Node("AveragePool", 1, 1, opstest.Ints("kernel_shape", 2, 2), opstest.Ints("pads", 1, 1)), 12, tensor.New(tensor.Float32, 1, 1, 3, 3))
	wantBadInput(t, "4 spatial dims", opstest.Node("MaxPool", 1, 1, opstest.Ints("kernel_shape", 1, 1, 1, 1)), 12, tensor.New(tensor.Float32, 1, 1, 2, 2, 2, 2))
	wantBadInput(t, "global rank", opstest.Node("GlobalMaxPool", 1, 1), 12, tensor.New(tensor.Float32, 3))
	wantBadInput(t, "global int", opstest.Node("GlobalAveragePool", 1, 1), 12, tensor.New(tensor.Int32, 1, 2, 3))
}

func TestGlobalPools(t *testing.T) {
	r := rand.New(rand.NewPCG(61, 62))
	for _, shape := range [][]int{{2, 3, 5, 5}, {1, 4, 7}, {1, 2, 3, 4, 5}, {2, 3}} {
		for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16} {
			x := randTensor(r, dt, shape...)
			xf := floats(x)
			planes := shape[0] * shape[1]
			size := len(xf) / planes
			avg, mx, lp := make([]float64, planes), make([]float64, planes), make([]float64, planes)
			for p := 0; p < planes; p++ {
				mx[p] = math.Inf(-1)
				for _, v := range xf[p*size : (p+1)*size] {
					avg[p] += v / float64(size)
					mx[p] = math.Max(mx[p], v)
					lp[p] += math.Abs(v * v * v)
				}
				lp[p] = math.Cbrt(lp[p])
			}
			outShape := append([]int{}, shape[:2]...)
			for range shape[2:] {
				outShape = append(outShape, 1)
			}
			tol := 1e-6
			if dt == tensor.Float16 {
				tol = 3e-3
			}
			name := fmt.Sprint(shape, dt)
			closeTo(t, "GlobalAveragePool"+name, opstest.Run(t, opstest.Node("GlobalAveragePool", 1, 1), 12, x)[0], outShape, avg, tol)
			closeTo(t, "GlobalMaxPool"+name, opstest.Run(t, opstest.Node("GlobalMaxPool", 1, 1), 12, x)[0], outShape, mx, tol)
			closeTo(t, "GlobalLpPool"+name, opstest.Run(t, opstest.Node("GlobalLpPool", 1, 1, opstest.Int("p", 3)), 12, x)[0], outShape, lp, tol)
		}
	}
}

func TestLpPoolP1(t *testing.T) {
	x := f32([]float32{1, -2, 3, -4, 5, -6}, 1, 1, 6)
	out := opstest.Run(t, opstest.Node("LpPool", 1, 1, opstest.Ints("kernel_shape", 2), opstest.Ints("strides", 2), opstest.Int("p", 1)), 11, x)
	closeTo(t, "LpPool", out[0], []int{1, 1, 3}, []float64{3, 7, 11}, 1e-6)
	// opset 1: p is a float
	n := opstest.Node("LpPool", 1, 1, opstest.Ints("kernel_shape", 2), opstest.Ints("strides", 2), opstest.Float("p", 1))
	out = opstest.Run(t, n, 1, x)
	closeTo(t, "LpPool", out[0], []int{1, 1, 3}, []float64{3, 7, 11}, 1e-6)
}

func TestMaxUnpool(t *testing.T) {
	// MaxPool then MaxUnpool keeps the maxima in place
	r := rand.New(rand.NewPCG(71, 72))
	x := randTensor(r, tensor.Float32, 2, 3, 4, 6)
	pooled := opstest.Run(t, opstest.Node("MaxPool", 1, 2, opstest.Ints("kernel_shape", 2, 2), opstest.Ints("strides", 2, 2)), 12, x)
	un := opstest.Run(t, opstest.Node("MaxUnpool", 2, 1, opstest.Ints("kernel_shape", 2, 2), opstest.Ints("strides", 2, 2)), 11, pooled[0], pooled[1])
	if !sameShape(un[0].Shape, x.Shape) {
		t.Fatalf("shape %v", un[0].Shape)
	}
	idx := pooled[1].Int64s()
	want := make([]float64, x.Len())
	for i, p := range idx {
		want[p] = pooled[0].Float(i)
	}
	closeTo(t, "MaxUnpool", un[0], x.Shape, want, 0)
	// ONNX's test_maxunpool_export_with_output_shape
	xt := f32([]float32{5, 6, 7, 8}, 1, 1, 2, 2)
	xi := i64([]int64{5, 7, 13, 15}, 1, 1, 2, 2)
	n := opstest.Node("MaxUnpool", 3, 1, opstest.Ints("kernel_shape", 2, 2), opstest.Ints("strides", 2, 2))
	out := opstest.Run(t, n, 11, xt, xi, i64([]int64{1, 1, 5, 5}, 4))
	w := make([]float64, 25)
	w[6], w[8], w[16], w[18] = 5, 6, 7, 8
	closeTo(t, "MaxUnpool output_shape", out[0], []int{1, 1, 5, 5}, w, 0)
	wantBadInput(t, "index", opstest.Node("MaxUnpool", 2, 1, opstest.Ints("kernel_shape", 2, 2), opstest.Ints("strides", 2, 2)), 11, xt, i64([]int64{5, 7, 13, 16}, 1, 1, 2, 2))
	wantBadInput(t, "index shape", opstest.Node("MaxUnpool", 2, 1, opstest.Ints("kernel_shape", 2, 2)), 11, xt, i64([]int64{0, 1}, 1, 1, 1, 2))
	wantBadInput(t, "output_shape small", n, 11, xt, xi, i64([]int64{1, 1, 3, 3}, 4))
}

func TestMaxRoiPool(t *testing.T) {
	x := make([]float32, 2*1*4*4)
	for i := range x {
		x[i] = float32(i)
	}
	rois := f32([]float32{0, 0, 0, 3, 3, 1, 1, 1, 2, 2}, 2, 5)
	out := opstest.Run(t, opstest.Node("MaxRoiPool", 2, 1, opstest.Ints("pooled_shape", 2, 2)), 12, f32(x, 2, 1, 4, 4), rois)
	// roi 0 covers the whole first image: 2x2 bins of 2x2
	// roi 1 covers rows/cols 1..2 of the second image: 1x1 bins
	want := []float64{5, 7, 13, 15, 21, 22, 25, 26}
	closeTo(t, "MaxRoiPool", out[0], []int{2, 1, 2, 2}, want, 0)
	wantBadInput(t, "batch index", opstest.Node("MaxRoiPool", 2, 1, opstest.Ints("pooled_shape", 2, 2)), 12, f32(x, 2, 1, 4, 4), f32([]float32{5, 0, 0, 1, 1}, 1, 5))
	wantBadInput(t, "pooled_shape", opstest.Node("MaxRoiPool", 2, 1), 12, f32(x, 2, 1, 4, 4), rois)
}
