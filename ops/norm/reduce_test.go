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

// refReduce reduces x (shape) over the dims marked in red, in float64.
func refReduce(kind reduceKind, x []float64, shape []int, red []bool) []float64 {
	groups := groupAlong(shape, red)
	out := make([]float64, len(groups))
	for gi, g := range groups {
		var r float64
		switch kind {
		case rMax:
			r = math.Inf(-1)
		case rMin:
			r = math.Inf(1)
		case rProd:
			r = 1
		}
		for _, i := range g {
			v := x[i]
			switch kind {
			case rSum, rMean, rLogSum:
				r += v
			case rL1:
				r += math.Abs(v)
			case rL2, rSumSquare:
				r += v * v
			case rLogSumExp:
				r += math.Exp(v)
			case rProd:
				r *= v
			case rMax:
				r = math.Max(r, v)
			case rMin:
				r = math.Min(r, v)
			}
		}
		switch kind {
		case rMean:
			r /= float64(len(g))
		case rL2:
			r = math.Sqrt(r)
		case rLogSum, rLogSumExp:
			r = math.Log(r)
		}
		out[gi] = r
	}
	return out
}

// reduceNode builds a Reduce node for opset, with axes as an attribute or
// an input as the opset wants; it returns the node and its inputs.
func reduceNode(kind reduceKind, opset int64, x *tensor.Tensor, axes []int64, keepdims bool, noop bool) (*ir.Node, []*tensor.Tensor) {
	attrs := []*ir.Attr{opstest.Int("keepdims", map[bool]int64{false: 0, true: 1}[keepdims])}
	if noop {
		attrs = append(attrs, opstest.Int("noop_with_empty_axes", 1))
	}
	axesInput := opset >= 18 || (kind == rSum && opset >= 13)
	if !axesInput {
		if axes != nil {
			attrs = append(attrs, opstest.Ints("axes", axes...))
		}
		return opstest.Node(reduceNames[kind], 1, 1, attrs...), []*tensor.Tensor{x}
	}
	if axes == nil {
		return opstest.Node(reduceNames[kind], 1, 1, attrs...), []*tensor.Tensor{x}
	}
	return opstest.Node(reduceNames[kind], 2, 1, attrs...), []*tensor.Tensor{x, i64(sh(len(axes)), axes...)}
}

func TestReduceRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cases := []struct {
		shape []int
		axes  []int64
	}{
		{sh(7), nil},
		{sh(3, 4, 5), nil},
		{sh(3, 4, 5), []int64{2}},
		{sh(3, 4, 5), []int64{-1}},
		{sh(3, 4, 5), []int64{1}},
		{sh(3, 4, 5), []int64{0}},
		{sh(3, 4, 5), []int64{0, 2}},
		{sh(3, 4, 5), []int64{2, 0}},
		{sh(3, 4, 5), []int64{1, 2}},
		{sh(2, 3, 4, 5), []int64{0, 2, 3}},
		{sh(2, 3, 4, 5), []int64{1, 3}},
		{sh(2, 3, 4, 5), []int64{2, 3}},
		{sh(2, 1, 4, 1), []int64{1, 3}},
		{sh(2, 1, 4, 1), []int64{0, 3}},
		{sh(1, 2000, 3), []int64{1}},
		{sh(3, 0, 2), []int64{1}},
		{sh(3, 0, 2), []int64{0}},
		{sh(), nil},
	}
	kinds := []reduceKind{rSum, rMean, rMax, rMin, rProd, rL1, rL2, rLogSum, rLogSumExp, rSumSquare}
	for _, kind := range kinds {
		for _, c := range cases {
			for _, keep := range []bool{true, false} {
				for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16, tensor.Int64, tensor.Int32, tensor.Uint8} {
					for _, opset := range []int64{11, 13, 18} {
						name := fmt.Sprintf("%s/%v/axes%v/keep=%v/%v/opset%d", reduceNames[kind], c.shape, c.axes, keep, dt, opset)
						x := randTensor(rng, dt, c.shape...)
						if kind == rProd && dt.IsFloat() {
							for i := range x.Len() { // keep products moderate
								x.SetFloat(i, 0.5+x.Float(i)/6)
							}
						}
						if (kind == rLogSum) && dt.IsFloat() {
							for i := range x.Len() {
								x.SetFloat(i, math.Abs(x.Float(i))+0.1)
							}
						}
						n, in := reduceNode(kind, opset, x, c.axes, keep, false)
						out, err := opstest.Exec(n, opset, in...)
						if err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						red := make([]bool, len(c.shape))
						for i := range red {
							red[i] = c.axes == nil
						}
						for _, a := range c.axes {
							red[(int(a)+len(c.shape))%len(c.shape)] = true
						}
						var wantShape []int
						for i, d := range c.shape {
							switch {
							case !red[i]:
								wantShape = append(wantShape, d)
							case keep:
								wantShape = append(wantShape, 1)
							}
						}
						if fmt.Sprint(out[0].Shape) != fmt.Sprint(wantShape) && !(len(wantShape) == 0 && len(out[0].Shape) == 0) {
							t.Fatalf("%s: shape %v, want %v", name, out[0].Shape, wantShape)
						}
						if out[0].DType != dt {
							t.Fatalf("%s: dtype %v", name, out[0].DType)
						}
						want := refReduce(kind, values(x), c.shape, red)
						if dt.IsInt() {
							for i, w := range want {
								switch kind {
								case rMean, rL2, rLogSum, rLogSumExp:
									want[i] = math.Trunc(w)
								}
							}
							if kind == rMax || kind == rMin {
								// empty reductions give the type's extremes
								for i, w := range want {
									if math.IsInf(w, 0) {
										want[i] = out[0].Float(i)
									}
								}
							}
							if kind == rLogSum || kind == rLogSumExp || kind == rMean {
								for i, w := range want {
									if math.IsInf(w, 0) || math.IsNaN(w) {
										want[i] = out[0].Float(i) // undefined integer conversion
									}
								}
							}
							if dt == tensor.Uint8 {
								switch kind {
								case rProd, rL2:
									continue // wraps around before the final step
								case rSum, rSumSquare, rL1:
									for i, w := range want {
										want[i] = math.Mod(w, 256)
									}
								}
							}
							if kind == rProd && (dt != tensor.Int64 || overflows(want)) {
								continue // wraps around
							}
						}
						tol := 1e-5
						if dt == tensor.Float16 {
							tol = 4e-3
						}
						if dt.IsInt() {
							tol = 0
						}
						closeTo(t, name, out[0], want, tol, tol)
					}
				}
			}
		}
	}
}

func TestReduceNoop(t *testing.T) {
	x := f32(sh(2, 2), 1, -2, 3, 4)
	// empty axes input with noop: the input passes through the element term
	for _, c := range []struct {
		kind reduceKind
		want []float64
	}{
		{rSum, []float64{1, -2, 3, 4}},
		{rSumSquare, []float64{1, 4, 9, 16}},
		{rL1, []float64{1, 2, 3, 4}},
		{rMean, []float64{1, -2, 3, 4}},
	} {
		n := opstest.Node(reduceNames[c.kind], 2, 1, opstest.Int("noop_with_empty_axes", 1))
		out := opstest.Run(t, n, 18, x, i64(sh(0)))
		if fmt.Sprint(out[0].Shape) != "[2 2]" {
			t.Fatalf("%s: shape %v", reduceNames[c.kind], out[0].Shape)
		}
		closeTo(t, reduceNames[c.kind], out[0], c.want, 0, 0)
		// omitted axes input with noop: same
		out = opstest.Run(t, opstest.Node(reduceNames[c.kind], 1, 1, opstest.Int("noop_with_empty_axes", 1)), 18, x)
		closeTo(t, reduceNames[c.kind], out[0], c.want, 0, 0)
	}
	// empty axes without noop: reduce everything
	out := opstest.Run(t, opstest.Node("ReduceSum", 2, 1, opstest.Int("keepdims", 0)), 13, x, i64(sh(0)))
	if len(out[0].Shape) != 0 || out[0].Float(0) != 6 {
		t.Fatal(out[0])
	}
}

func TestReduceEmptySet(t *testing.T) {
	x := tensor.New(tensor.Float32, 2, 0)
	for kind, want := range map[reduceKind]float64{rSum: 0, rProd: 1, rMax: math.Inf(-1), rMin: math.Inf(1), rLogSumExp: math.Inf(-1), rLogSum: math.Inf(-1)} {
		out := opstest.Run(t, opstest.Node(reduceNames[kind], 1, 1, opstest.Ints("axes", 1)), 11, x)
		closeTo(t, reduceNames[kind], out[0], []float64{want, want}, 0, 0)
	}
	xi := tensor.New(tensor.Int32, 2, 0)
	out := opstest.Run(t, opstest.Node("ReduceMax", 1, 1, opstest.Ints("axes", 1)), 13, xi)
	if out[0].Int32s()[0] != math.MinInt32 {
		t.Fatal(out[0])
	}
	out = opstest.Run(t, opstest.Node("ReduceMin", 1, 1, opstest.Ints("axes", 1)), 13, tensor.New(tensor.Uint16, 2, 0))
	if out[0].Uint16s()[0] != math.MaxUint16 {
		t.Fatal(out[0])
	}
}

func TestReduceNaN(t *testing.T) {
	nan := float32(math.NaN())
	x := f32(sh(2, 3), 1, nan, 3, 4, 5, 6)
	out := opstest.Run(t, opstest.Node("ReduceMax", 1, 1, opstest.Ints("axes", 1)), 13, x)
	closeTo(t, "max", out[0], []float64{math.NaN(), 6}, 0, 0)
	out = opstest.Run(t, opstest.Node("ReduceMin", 1, 1, opstest.Ints("axes", 0)), 13, x)
	closeTo(t, "min", out[0], []float64{1, math.NaN(), 3}, 0, 0)
}

func TestReduceIntWrapAndBool(t *testing.T) {
	x := &tensor.Tensor{DType: tensor.Int8, Shape: []int{3}, Data: []byte{100, 100, 100}}
	out := opstest.Run(t, opstest.Node("ReduceSum", 1, 1, opstest.Int("keepdims", 0)), 11, x)
	if out[0].Int8s()[0] != int8(44) { // 300 mod 256
		t.Fatal(out[0])
	}
	b := &tensor.Tensor{DType: tensor.Bool, Shape: []int{2, 2}, Data: []byte{0, 1, 0, 0}}
	out = opstest.Run(t, opstest.Node("ReduceMax", 1, 1, opstest.Ints("axes", 1)), 13, b)
	if fmt.Sprint(out[0].Bools()) != "[true false]" {
		t.Fatal(out[0])
	}
	big := i64(sh(2), 1<<62, 3)
	out = opstest.Run(t, opstest.Node("ReduceSum", 1, 1), 11, big)
	if out[0].Int64s()[0] != 1<<62+3 {
		t.Fatal(out[0])
	}
}

func TestReduceLongRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	x := randTensor(rng, tensor.Float32, 1<<17)
	for _, kind := range []reduceKind{rSum, rMean, rMax, rMin, rL1, rL2, rSumSquare} {
		out := opstest.Run(t, opstest.Node(reduceNames[kind], 1, 1), 13, x)
		closeTo(t, reduceNames[kind], out[0], refReduce(kind, values(x), x.Shape, []bool{true}), 1e-5, 1e-5)
	}
}

func TestReduceInfer(t *testing.T) {
	bsh := ir.Shape{ir.S("batch"), ir.S("seq"), ir.D(768)}
	types, err := infer(opstest.Node("ReduceMean", 1, 1, opstest.Ints("axes", -1)), 13, val(tensor.Float32, bsh))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[batch,seq,1]")
	// opset 18: constant axes input
	types, err = infer(opstest.Node("ReduceMean", 2, 1, opstest.Int("keepdims", 0)), 18, val(tensor.Float32, bsh), constVal(i64(sh(1), 1)))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[batch,768]")
	// unknown axes: keepdims keeps the rank
	types, err = infer(opstest.Node("ReduceSum", 2, 1), 13, val(tensor.Float32, ir.Shape{ir.S("n"), ir.D(1), ir.D(3)}), val(tensor.Int64, ir.Shape{ir.D(1)}))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[?,1,?]")
	types, err = infer(opstest.Node("ReduceSum", 2, 1, opstest.Int("keepdims", 0)), 13, val(tensor.Float32, ir.Shape{ir.S("n"), ir.D(3)}), val(tensor.Int64, ir.Shape{ir.D(1)}))
	if err != nil || types[0].Shape != nil {
		t.Fatal(types, err)
	}
	// no axes: all reduced
	types, err = infer(opstest.Node("ReduceL2", 1, 1, opstest.Int("keepdims", 0)), 13, val(tensor.Float16, bsh))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[]")
	// unknown rank
	types, err = infer(opstest.Node("ReduceMax", 1, 1), 13, val(tensor.Int32, nil))
	if err != nil || types[0].Shape != nil || types[0].DType != tensor.Int32 {
		t.Fatal(types, err)
	}
}

func TestReduceErrors(t *testing.T) {
	x := f32(sh(2, 3), 1, 2, 3, 4, 5, 6)
	_, err := opstest.Exec(opstest.Node("ReduceSum", 1, 1, opstest.Ints("axes", 2)), 11, x)
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("ReduceSum", 1, 1, opstest.Ints("axes", 1, -1)), 11, x)
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("ReduceSum", 2, 1), 13, x, f32(sh(1), 1))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("ReduceMean", 2, 1), 18, x, i64(sh(1, 1), 1))
	wantErr(t, err, ops.ErrBadInput)
	// an axes attribute where the spec wants an input is still honoured
	out := opstest.Run(t, opstest.Node("ReduceMean", 1, 1, opstest.Ints("axes", 1)), 18, x)
	closeTo(t, "axes attribute at opset 18", out[0], []float64{2, 5}, 0, 0)
	_, err = opstest.Exec(opstest.Node("ReduceMean", 1, 1, opstest.Int("keepdims", 2)), 13, x)
	wantErr(t, err, ops.ErrBadAttr)
	b := &tensor.Tensor{DType: tensor.Bool, Shape: []int{1}, Data: []byte{1}}
	_, err = opstest.Exec(opstest.Node("ReduceSum", 1, 1), 11, b)
	wantErr(t, err, ops.ErrBadInput)
	_, err = infer(opstest.Node("ReduceSum", 1, 1, opstest.Ints("axes", 5)), 11, val(tensor.Float32, ir.Shape{ir.D(1)}))
	wantErr(t, err, ops.ErrBadInput)
	k, _ := ops.Prepare(opstest.Node("ReduceProd", 1, 1), 13)
	_, err = k.Run(nil, []*tensor.Tensor{nil})
	wantErr(t, err, ops.ErrBadInput)
}

func BenchmarkReduceMean(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, c := range []struct {
		name  string
		shape []int
		axes  []int64
	}{
		{"last/bert", sh(8, 128, 768), []int64{-1}},
		{"spatial", sh(8, 256, 28, 28), []int64{2, 3}},
		{"batch", sh(64, 4096), []int64{0}},
	} {
		x := randTensor(rng, tensor.Float32, c.shape...)
		k, err := ops.Prepare(opstest.Node("ReduceMean", 1, 1, opstest.Ints("axes", c.axes...)), 13)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(x.Data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Run(nil, []*tensor.Tensor{x}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// overflows reports whether a value of v is beyond exact float64 integers.
func overflows(v []float64) bool {
	for _, e := range v {
		if math.Abs(e) > 1<<53 {
			return true
		}
	}
	return false
}
