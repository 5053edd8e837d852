package norm

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// randTensor returns a tensor of type dt with values uniform in [-3, 3)
// (rounded for integer types).
func randTensor(rng *rand.Rand, dt tensor.DType, shape ...int) *tensor.Tensor {
	t := tensor.New(dt, shape...)
	for i := range t.Len() {
		v := rng.Float64()*6 - 3
		if dt.IsInt() {
			v = math.Round(v * 3)
			if !dt.IsSigned() {
				v = math.Abs(v)
			}
		}
		t.SetFloat(i, v)
	}
	return t
}

// f32 returns a float32 tensor of the given shape.
func f32(shape []int, v ...float32) *tensor.Tensor { return tensor.FromFloat32(v, shape...) }

// i64 returns an int64 tensor of the given shape.
func i64(shape []int, v ...int64) *tensor.Tensor { return tensor.FromInt64(v, shape...) }

// sh is shorthand for a shape.
func sh(d ...int) []int { return d }

// fromFloat64 returns a tensor of type dt holding v with the given shape.
func fromFloat64(dt tensor.DType, shape []int, v []float64) *tensor.Tensor {
	t := tensor.New(dt, shape...)
	for i, e := range v {
		t.SetFloat(i, e)
	}
	return t
}

// values returns t's elements as float64.
func values(t *tensor.Tensor) []float64 {
	out := make([]float64, t.Len())
	for i := range out {
		out[i] = t.Float(i)
	}
	return out
}

// wantErr fails unless err wraps target.
func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

// infer prepares n for opset and infers its outputs from the given input
// values.
func infer(n *ir.Node, opset int64, in ...*ir.Value) ([]ir.Type, error) {
	k, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	return k.Infer(in)
}

// val returns a value of the given type.
func val(dt tensor.DType, s ir.Shape) *ir.Value {
	return &ir.Value{Name: "v", Type: ir.Type{DType: dt, Shape: s}}
}

// constVal returns a constant value holding t.
func constVal(t *tensor.Tensor) *ir.Value {
	return &ir.Value{Name: "c", Type: ops.TypeOf(t), Const: t}
}

// checkShape fails unless s prints as want.
func checkShape(t *testing.T, s ir.Shape, want string) {
	t.Helper()
	if s.String() != want {
		t.Fatalf("inferred shape %v, want %s", s, want)
	}
}

// close fails unless got and want (float64 values) agree.
func closeTo(t *testing.T, what string, got *tensor.Tensor, want []float64, rtol, atol float64) {
	t.Helper()
	w := fromFloat64(tensor.Float64, []int{len(want)}, want)
	g := fromFloat64(tensor.Float64, []int{got.Len()}, values(got))
	if err := opstest.Close(g, w, rtol, atol); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// coords iterates over every index of shape, calling fn with the flat index
// and the coordinates (reused between calls).
func coords(shape []int, fn func(flat int, idx []int)) {
	n := tensor.NumElements(shape)
	idx := make([]int, len(shape))
	for f := 0; f < n; f++ {
		fn(f, idx)
		for d := len(shape) - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
	}
}

// flatIndex returns the row-major offset of idx in shape.
func flatIndex(shape, idx []int) int {
	f := 0
	for i, d := range shape {
		f = f*d + idx[i]
	}
	return f
}

// groupAlong groups the elements of a tensor of the given shape by every
// coordinate except those in red: it returns, for each group in row-major
// order of the kept dims, the flat indices of its members in row-major
// order.
func groupAlong(shape []int, red []bool) [][]int {
	var keptShape []int
	for i, d := range shape {
		if !red[i] {
			keptShape = append(keptShape, d)
		}
	}
	groups := make([][]int, tensor.NumElements(keptShape))
	kept := make([]int, len(keptShape))
	coords(shape, func(f int, idx []int) {
		kept = kept[:0]
		for i, v := range idx {
			if !red[i] {
				kept = append(kept, v)
			}
		}
		g := flatIndex(keptShape, kept)
		groups[g] = append(groups[g], f)
	})
	return groups
}

func TestExpf(t *testing.T) {
	for x := float32(-110); x < 95; x += 0.0137 {
		got, want := float64(expf(x)), math.Exp(float64(x))
		if want > math.MaxFloat32 {
			if !math.IsInf(got, 1) {
				t.Fatalf("expf(%g) = %g, want +Inf", x, got)
			}
			continue
		}
		if want < 1e-37 { // denormals: absolute error only
			if math.Abs(got-want) > 1e-44 {
				t.Fatalf("expf(%g) = %g, want %g", x, got, want)
			}
			continue
		}
		if math.Abs(got-want) > 3e-7*want {
			t.Fatalf("expf(%g) = %g, want %g (rel err %g)", x, got, want, math.Abs(got-want)/want)
		}
	}
	if v := expf(float32(math.NaN())); v == v {
		t.Fatal("expf(NaN) is not NaN")
	}
	if expf(float32(math.Inf(-1))) != 0 {
		t.Fatal("expf(-Inf) != 0")
	}
}

func BenchmarkExpf(b *testing.B) {
	xs := make([]float32, 1024)
	for i := range xs {
		xs[i] = float32(i)/100 - 5
	}
	b.Run("expf", func(b *testing.B) {
		var s float32
		for b.Loop() {
			for _, x := range xs {
				s += expf(x)
			}
		}
		_ = s
	})
	b.Run("math.Exp", func(b *testing.B) {
		var s float32
		for b.Loop() {
			for _, x := range xs {
				s += float32(math.Exp(float64(x)))
			}
		}
		_ = s
	})
}

var _ = fmt.Sprint
