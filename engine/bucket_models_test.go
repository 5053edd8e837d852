package engine

import (
	"context"
	"fmt"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

// reshapeInput returns x at shape: element (i0, i1, ...) is x's element
// (i0 mod x.Shape[0], i1 mod x.Shape[1], ...): rows repeated, or cut.
func reshapeInput(x *tensor.Tensor, shape []int) *tensor.Tensor {
	y := tensor.New(x.DType, shape...)
	es := x.DType.Size()
	idx := make([]int, len(shape))
	for i := 0; i < y.Len(); i++ {
		src, stride := 0, 1
		for d := len(shape) - 1; d >= 0; d-- {
			src += (idx[d] % x.Shape[d]) * stride
			stride *= x.Shape[d]
		}
		copy(y.Data[i*es:(i+1)*es], x.Data[src*es:(src+1)*es])
		for d := len(shape) - 1; d >= 0; d-- {
			if idx[d]++; idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
	}
	return y
}

// TestModelsBucketArena runs every shared model (optimized) planned for
// large max shapes (batch 8, every other free dimension twice the test
// data's) with inputs whose free dimensions are not powers of two (batch
// 3, the others three quarters of the test data's, a multiple of 32): the
// run uses the plan of its bucket (batch 4, the others the next power of
// two), bigger than the inputs, in a poisoned arena with unplanned
// aliases fatal, and its outputs are bit-identical to a run without arena.
// The same without max shapes: the run plans for its own shapes.
func TestModelsBucketArena(t *testing.T) {
	withStrictAlias(t)
	for _, name := range sharedModels(t) {
		t.Run(name, func(t *testing.T) {
			ref, err := NewWithOptions(loadModel(t, name, 3), Options{NoArena: true})
			if err != nil {
				t.Fatal(err)
			}
			data, _ := modelInputs(t, name, ref)
			in, maxShapes := map[string]*tensor.Tensor{}, map[string][]int{}
			for _, v := range ref.Inputs() {
				x := data[v.Name]
				s, mx := append([]int(nil), x.Shape...), append([]int(nil), x.Shape...)
				for d, dim := range v.Type.Shape {
					switch {
					case dim.Known():
					case d == 0:
						s[d], mx[d] = 3, 8
					default:
						s[d], mx[d] = max(x.Shape[d]*3/4/32*32, 1), 2*x.Shape[d]
					}
				}
				in[v.Name], maxShapes[v.Name] = reshapeInput(x, s), mx
			}
			want, err := ref.Run(context.Background(), in)
			if err != nil {
				t.Skipf("the model does not take the inputs %v: %v", shapesOf(in), err)
			}
			for _, o := range []Options{{MaxShapes: maxShapes}, {}} {
				e, err := NewWithOptions(loadModel(t, name, 3), o)
				if err != nil {
					t.Fatal(err)
				}
				c := e.NewContext()
				for run := 0; run < 2; run++ {
					poison(c)
					got, err := c.Run(context.Background(), in)
					if err != nil {
						t.Fatal(err)
					}
					for _, v := range e.Outputs() {
						if c.inArena(got[v.Name]) {
							t.Fatalf("output %q points into the arena", v.Name)
						}
						equal(t, fmt.Sprintf("run %d output %q", run, v.Name), got[v.Name], want[v.Name])
					}
				}
				if o.MaxShapes == nil {
					// planned for the inputs exactly
					if c.ArenaBytes() == 0 {
						t.Fatal("no arena planned for the run's shapes")
					}
					t.Logf("inputs %v without max shapes: arena %d bytes", shapesOf(in), c.ArenaBytes())
					continue
				}
				if a, m := c.ArenaBytes(), e.Memory().ArenaBytes; a == 0 || a >= m {
					t.Fatalf("arena %d bytes for inputs %v, the max shapes' is %d: want a smaller bucket arena", a, shapesOf(in), m)
				}
				t.Logf("inputs %v: bucket arena %d bytes, max shapes' %d", shapesOf(in), c.ArenaBytes(), e.Memory().ArenaBytes)
			}
		})
	}
}

func shapesOf(in map[string]*tensor.Tensor) map[string][]int {
	m := map[string][]int{}
	for k, v := range in {
		m[k] = v.Shape
	}
	return m
}
