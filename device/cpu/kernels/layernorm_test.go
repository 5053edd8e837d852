package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestSkipLayerNormRegistry: the registry's kiln::SkipLayerNormalization
// (rows over the cores, AVX2 loops) matches the reference of ops/nn (plain
// float32 loops, one row after another) into garbage outputs, with and
// without skip, beta and the sum output, on row widths around the vector
// loops and row counts on either side of the parallel grain: x + skip bit
// for bit, the normalized rows within float32 rounding of the sums' order.
func TestSkipLayerNormRegistry(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	randT := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64()*2 + 0.5)
		}
		return x
	}
	for _, shape := range [][]int{{1, 1}, {3, 7}, {2, 5, 16}, {4, 33}, {128, 128}, {1, 128, 768}, {2, 3, 0}} {
		for _, withSkip := range []bool{false, true} {
			for _, withBeta := range []bool{false, true} {
				for _, withSum := range []bool{false, true} {
					name := fmt.Sprintf("%v skip=%v beta=%v sum=%v", shape, withSkip, withBeta, withSum)
					d := shape[len(shape)-1]
					in := []*tensor.Tensor{randT(shape...), nil, randT(d), nil}
					if withSkip {
						in[1] = randT(shape...)
					}
					if withBeta {
						in[3] = randT(d)
					}
					n := &ir.Node{Name: "ln", Domain: "kiln", OpType: "SkipLayerNormalization", Outputs: []*ir.Value{{Name: "y"}},
						Attrs: map[string]*ir.Attr{"epsilon": {Name: "epsilon", Type: ir.AttrFloat, F: 1e-5}}}
					for i := range 4 {
						n.Inputs = append(n.Inputs, &ir.Value{Name: fmt.Sprint("in", i), Type: ir.Type{DType: tensor.Float32}})
					}
					if withSum {
						n.Outputs = append(n.Outputs, &ir.Value{Name: "sum"})
					}
					fast, impl, err := Prepare(n, 17)
					if err != nil || impl != "cpu.SkipLayerNormalization" {
						t.Fatalf("%s: Prepare = %q, %v", name, impl, err)
					}
					ref, err := ops.Prepare(n, 17)
					if err != nil {
						t.Fatal(err)
					}
					got, err := fast.Run(garbageEnv(), in)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					want, err := ref.Run(garbageEnv(), in)
					if err != nil {
						t.Fatalf("%s reference: %v", name, err)
					}
					if len(got) != len(want) || len(got) != map[bool]int{false: 1, true: 2}[withSum] {
						t.Fatalf("%s: %d outputs, reference %d", name, len(got), len(want))
					}
					for o := range got {
						if !slices.Equal(got[o].Shape, want[o].Shape) {
							t.Fatalf("%s output %d: shape %v, reference %v", name, o, got[o].Shape, want[o].Shape)
						}
						tol := 2e-5
						if o == 1 {
							tol = 0 // x + skip
						}
						for i, g := range got[o].Float32s() {
							w := float64(want[o].Float32s()[i])
							if dv := math.Abs(float64(g) - w); !(dv <= tol*(1+math.Abs(w))) {
								t.Fatalf("%s output %d [%d] = %v, reference %v", name, o, i, g, w)
							}
						}
					}
				}
			}
		}
	}
	// what the fast kernel does not take goes to the reference, errors
	// included
	n := &ir.Node{Name: "ln", Domain: "kiln", OpType: "SkipLayerNormalization", Outputs: []*ir.Value{{Name: "y"}},
		Inputs: []*ir.Value{{Name: "x", Type: ir.Type{DType: tensor.Float32}}, nil, {Name: "g"}}}
	fast, _, err := Prepare(n, 17)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fast.Run(garbageEnv(), []*tensor.Tensor{randT(2, 4), nil, randT(3)}); err == nil {
		t.Error("gamma of the wrong length accepted")
	}
}
