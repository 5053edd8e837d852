package optimize

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// geluGraph builds x -> [MatMul+Add] -> erf GELU in one of its groupings.
func geluGraph(form string, matmul bool) func() *ir.Graph {
	return func() *ir.Graph {
		r := rand.New(rand.NewPCG(10, 10))
		b := ir.NewBuilder("g", 17)
		x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3), ir.D(8))
		if matmul {
			x = b.Op("Add", []*ir.Value{b.Op("MatMul", []*ir.Value{x, b.Const("w", f32(r, 8, 8))}), b.Const("bias", f32(r, 8))})
		}
		k := func(v float64) *ir.Value { return b.Const("", tensor.Scalar(tensor.Float32, v)) }
		op := func(typ string, in ...*ir.Value) *ir.Value { return b.Op(typ, in) }
		var y *ir.Value
		switch form {
		case "div, half last":
			a := op("Add", op("Erf", op("Div", x, k(math.Sqrt2))), k(1))
			y = op("Mul", op("Mul", x, a), k(0.5))
		case "mul, half first":
			a := op("Add", k(1), op("Erf", op("Mul", k(1/math.Sqrt2), x)))
			y = op("Mul", op("Mul", x, k(0.5)), a)
		case "half on the sum":
			a := op("Add", op("Erf", op("Div", x, k(math.Sqrt2))), k(1))
			y = op("Mul", x, op("Mul", a, k(0.5)))
		case "wrong constant":
			a := op("Add", op("Erf", op("Div", x, k(1.5))), k(1))
			y = op("Mul", op("Mul", x, a), k(0.5))
		}
		b.Output(y, "y")
		return b.Graph()
	}
}

func TestGelu(t *testing.T) {
	gelu := map[string]int{"kiln::Gelu": 1}
	runCases(t, []passCase{
		{name: "div, half last", build: geluGraph("div, half last", false), passes: []string{"gelu", "dce"}, want: gelu, inits: 0},
		{name: "mul, half first", build: geluGraph("mul, half first", false), passes: []string{"gelu", "dce"}, want: gelu, inits: 0},
		{name: "half on the sum", build: geluGraph("half on the sum", false), passes: []string{"gelu", "dce"}, want: gelu, inits: 0},
		{name: "wrong constant", build: geluGraph("wrong constant", false), passes: []string{"gelu", "dce"},
			want: map[string]int{"Div": 1, "Erf": 1, "Add": 1, "Mul": 2}, inits: 3},
		{name: "into matmul", build: geluGraph("div, half last", true), passes: []string{"gelu", "matmuladd", "dce"},
			want: map[string]int{"kiln::FusedMatMul": 1}, inits: 2},
	})
}
