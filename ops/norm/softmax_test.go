package norm

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// refSoftmax computes Softmax, LogSoftmax or Hardmax of x in float64 over
// the groups of elements that differ only in the reduced dims.
func refSoftmax(kind softmaxKind, x []float64, shape []int, red []bool) []float64 {
	y := make([]float64, len(x))
	for _, g := range groupAlong(shape, red) {
		m, arg := math.Inf(-1), -1
		for _, i := range g {
			if x[i] > m {
				m, arg = x[i], i
			}
		}
		var s float64
		for _, i := range g {
			s += math.Exp(x[i] - m)
		}
		for _, i := range g {
			switch kind {
			case kindSoftmax:
				y[i] = math.Exp(x[i]-m) / s
			case kindLogSoftmax:
				y[i] = x[i] - m - math.Log(s)
			case kindHardmax:
				if i == arg {
					y[i] = 1
				}
			}
		}
	}
	return y
}

func TestSoftmaxExample(t *testing.T) {
	x := f32(sh(2, 3), 1, 2, 3, 1000, 1000, 1000)
	out := opstest.Run(t, opstest.Node("Softmax", 1, 1), 13, x)
	e := math.Exp(1.0)
	s := 1 + e + e*e
	closeTo(t, "softmax", out[0], []float64{1 / s, e / s, e * e / s, 1.0 / 3, 1.0 / 3, 1.0 / 3}, 1e-6, 1e-7)
	out = opstest.Run(t, opstest.Node("LogSoftmax", 1, 1), 13, x)
	closeTo(t, "logsoftmax", out[0], []float64{-math.Log(s), 1 - math.Log(s), 2 - math.Log(s), -math.Log(3), -math.Log(3), -math.Log(3)}, 1e-6, 1e-6)
	out = opstest.Run(t, opstest.Node("Hardmax", 1, 1), 13, f32(sh(2, 3), 1, 3, 3, -1, -2, -3))
	closeTo(t, "hardmax", out[0], []float64{0, 1, 0, 1, 0, 0}, 0, 0)
}

func TestSoftmaxFamilyRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	shapes := [][]int{{7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 70}, {4, 33, 2}}
	for _, kind := range []softmaxKind{kindSoftmax, kindLogSoftmax, kindHardmax} {
		name := softmaxNames[kind]
		for _, opset := range []int64{11, 13} {
			for _, shape := range shapes {
				for axis := -len(shape); axis < len(shape); axis++ {
					for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16} {
						x := randTensor(rng, dt, shape...)
						ax := axis
						if ax < 0 {
							ax += len(shape)
						}
						red := make([]bool, len(shape))
						for i := range red {
							red[i] = i == ax || (opset < 13 && i > ax)
						}
						want := refSoftmax(kind, values(x), shape, red)
						out := opstest.Run(t, opstest.Node(name, 1, 1, opstest.Int("axis", int64(axis))), opset, x)
						tol := 1e-5
						if dt == tensor.Float16 {
							tol = 4e-3
						}
						if out[0].DType != dt {
							t.Fatalf("%s: output %v, want %v", name, out[0].DType, dt)
						}
						closeTo(t, name, out[0], want, tol, tol)
					}
				}
			}
		}
	}
}

func TestSoftmaxDefaultAxis(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := randTensor(rng, tensor.Float32, 2, 3, 4)
	// opset 11: axis 1, flattened [2, 12]
	out := opstest.Run(t, opstest.Node("Softmax", 1, 1), 11, x)
	closeTo(t, "opset 11", out[0], refSoftmax(kindSoftmax, values(x), x.Shape, []bool{false, true, true}), 1e-5, 1e-6)
	out = opstest.Run(t, opstest.Node("Softmax", 1, 1), 13, x)
	closeTo(t, "opset 13", out[0], refSoftmax(kindSoftmax, values(x), x.Shape, []bool{false, false, true}), 1e-5, 1e-6)
}

func TestSoftmaxInferAndErrors(t *testing.T) {
	n := opstest.Node("Softmax", 1, 1)
	types, err := infer(n, 13, val(tensor.Float32, ir.Shape{ir.S("batch"), ir.S("seq"), ir.D(8)}))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[batch,seq,8]")
	if types[0].DType != tensor.Float32 {
		t.Fatal(types[0].DType)
	}
	if types, err = infer(n, 13, val(tensor.Float16, nil)); err != nil || types[0].Shape != nil {
		t.Fatal(types, err)
	}
	_, err = infer(opstest.Node("Softmax", 1, 1, opstest.Int("axis", 3)), 13, val(tensor.Float32, ir.Shape{ir.D(2), ir.D(3)}))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("Softmax", 1, 1, opstest.Int("axis", -4)), 13, f32(sh(1, 2, 3), 1, 2, 3, 4, 5, 6))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("LogSoftmax", 1, 1), 13, i64(sh(2), 1, 2))
	wantErr(t, err, ops.ErrBadInput)
	k, _ := ops.Prepare(opstest.Node("Hardmax", 1, 1), 13)
	_, err = k.Run(nil, nil)
	wantErr(t, err, ops.ErrBadInput)
	// scalar input has no axis
	_, err = opstest.Exec(opstest.Node("Softmax", 1, 1), 13, tensor.Scalar(tensor.Float32, 1))
	wantErr(t, err, ops.ErrBadInput)
	// empty input
	out := opstest.Run(t, opstest.Node("Softmax", 1, 1), 13, tensor.New(tensor.Float32, 0, 3))
	if out[0].Len() != 0 {
		t.Fatal(out[0])
	}
}

func TestSoftmaxExtremes(t *testing.T) {
	inf := float32(math.Inf(1))
	x := f32(sh(2, 3), -inf, 0, 0, 88, -88, 1e30)
	out := opstest.Run(t, opstest.Node("Softmax", 1, 1), 13, x)
	closeTo(t, "softmax", out[0], []float64{0, 0.5, 0.5, 0, 0, 1}, 1e-6, 1e-7)
	out = opstest.Run(t, opstest.Node("LogSoftmax", 1, 1), 13, x)
	closeTo(t, "logsoftmax", out[0], []float64{math.Inf(-1), -math.Log(2), -math.Log(2), 88 - 1e30, -88 - 1e30, 0}, 1e-6, 1e-6)
}

func BenchmarkSoftmaxLastAxis(b *testing.B) {
	// BERT-base attention scores: [batch*heads, seq, seq]
	rng := rand.New(rand.NewPCG(1, 1))
	x := randTensor(rng, tensor.Float32, 12, 128, 128)
	k, _ := ops.Prepare(opstest.Node("Softmax", 1, 1), 13)
	b.SetBytes(int64(len(x.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Run(nil, []*tensor.Tensor{x}); err != nil {
			b.Fatal(err)
		}
	}
}
