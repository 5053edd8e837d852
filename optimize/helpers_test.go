package optimize

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/tensor"
)

// passCase is a small graph, the passes to run on it and the node counts
// ("Op" or "domain::Op") expected after them.
type passCase struct {
	name   string
	build  func() *ir.Graph
	passes []string
	want   map[string]int
	// inits, when not negative, is the initializer count expected after.
	inits int
	// bind gives sizes to the symbolic dimensions of the graph's inputs.
	bind map[string]int
}

// randF32 returns a float32 tensor uniform in [-2, 2).
func randF32(r *rand.Rand, shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Float32, shape...)
	for i := range t.Float32s() {
		t.Float32s()[i] = float32(r.Float64()*4 - 2)
	}
	return t
}

// randInputs makes random inputs for the graph inputs of g without a default.
func randInputs(t *testing.T, g *ir.Graph, seed uint64) map[string]*tensor.Tensor {
	t.Helper()
	return randInputsBound(t, g, seed, nil)
}

// randInputsBound is randInputs where bind sizes the symbolic dimensions.
func randInputsBound(t *testing.T, g *ir.Graph, seed uint64, bind map[string]int) map[string]*tensor.Tensor {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	in := map[string]*tensor.Tensor{}
	for _, v := range g.Inputs {
		if v.Const != nil {
			continue
		}
		dims := make([]int, len(v.Type.Shape))
		ok := v.Type.Shape != nil
		for i, d := range v.Type.Shape {
			switch n, bound := bind[d.Sym]; {
			case d.Known():
				dims[i] = int(d.Val)
			case d.Symbolic() && bound:
				dims[i] = n
			default:
				ok = false
			}
		}
		if !ok || v.Type.DType != tensor.Float32 {
			t.Fatalf("test input %v needs a float32 shape, static or bound by the case", v)
		}
		in[v.Name] = randF32(r, dims...)
	}
	return in
}

// runGraph builds an engine for g and runs it.
func runGraph(t *testing.T, g *ir.Graph, in map[string]*tensor.Tensor) map[string]*tensor.Tensor {
	t.Helper()
	e, err := engine.New(g)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	out, err := e.Run(context.Background(), in)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return out
}

// opCounts counts the nodes of g by op type.
func opCounts(g *ir.Graph) map[string]int {
	m := map[string]int{}
	for _, n := range g.Nodes {
		k := n.OpType
		if n.Domain != "" && n.Domain != "ai.onnx" {
			k = n.Domain + "::" + k
		}
		m[k]++
	}
	return m
}

func lookupAll(t *testing.T, names []string) []Pass {
	t.Helper()
	var ps []Pass
	for _, name := range names {
		p, ok := Lookup(name)
		if !ok {
			t.Fatalf("no pass %q", name)
		}
		ps = append(ps, p)
	}
	return ps
}

// runCases checks, for each case, that the passes fire (the node counts
// after them are the expected ones) and keep the outputs equal.
func runCases(t *testing.T, cases []passCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.build()
			in := randInputsBound(t, ref, 1, tc.bind)
			want := runGraph(t, ref, in)

			g := tc.build()
			var logs []string
			err := RunPasses(g, lookupAll(t, tc.passes), func(pass, msg string) {
				logs = append(logs, pass+": "+msg)
			})
			if err != nil {
				t.Fatal(err)
			}
			got := opCounts(g)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("ops after %v: %v, want %v (log %q)", tc.passes, got, tc.want, logs)
			}
			if len(logs) == 0 && fmt.Sprint(opCounts(tc.build())) != fmt.Sprint(tc.want) {
				t.Errorf("the passes changed the graph without logging it")
			}
			if tc.inits >= 0 && len(g.Initializers) != tc.inits {
				t.Errorf("%d initializers after, want %d", len(g.Initializers), tc.inits)
			}
			out := runGraph(t, g, in)
			for _, v := range ref.Outputs {
				c := compare(out[v.Name], want[v.Name], 1e-4, 1e-5)
				if !c.OK {
					t.Errorf("output %q changed: %s", v.Name, c.Reason)
				}
			}
		})
	}
}

// f32 returns a float32 constant tensor of the given shape filled from r.
func f32(r *rand.Rand, shape ...int) *tensor.Tensor { return randF32(r, shape...) }

// positive returns a float32 tensor uniform in [0.5, 1.5).
func positive(r *rand.Rand, n int) *tensor.Tensor {
	t := tensor.New(tensor.Float32, n)
	for i := range t.Float32s() {
		t.Float32s()[i] = float32(0.5 + r.Float64())
	}
	return t
}

var (
	d = ir.D
	_ = d
)

// comparison is the outcome of compare.
type comparison struct {
	OK     bool
	Reason string
}

// compare checks got against want elementwise, |got-want| <= atol +
// rtol*|want|, NaN matching NaN, as conformance.Compare does (which this
// package's tests cannot import: conformance imports kiln, which imports
// the builder, which imports optimize).
func compare(got, want *tensor.Tensor, rtol, atol float64) comparison {
	switch {
	case got == nil || want == nil:
		return comparison{Reason: fmt.Sprintf("got %v, want %v", got, want)}
	case got.DType != want.DType:
		return comparison{Reason: fmt.Sprintf("type %v, want %v", got.DType, want.DType)}
	case fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape):
		return comparison{Reason: fmt.Sprintf("shape %v, want %v", got.Shape, want.Shape)}
	}
	for i, n := 0, want.Len(); i < n; i++ {
		g, w := got.Float(i), want.Float(i)
		if math.IsNaN(g) || math.IsNaN(w) {
			if math.IsNaN(g) != math.IsNaN(w) {
				return comparison{Reason: fmt.Sprintf("element %d is %g, want %g", i, g, w)}
			}
			continue
		}
		if g == w {
			continue // equal infinities too
		}
		if d := math.Abs(g - w); math.IsInf(d, 0) || math.IsNaN(d) || d > atol+rtol*math.Abs(w) {
			return comparison{Reason: fmt.Sprintf("element %d is %g, want %g (rtol %g, atol %g)", i, g, w, rtol, atol)}
		}
	}
	return comparison{OK: true}
}
