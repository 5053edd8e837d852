package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// residualAdd is Y = X + Z (inputs X, A, B, Z; A and B unused), with Z
// broadcast over the last dimension when smaller: an op with the trait
// ops.OverwritesResidual, reading each z[i] before writing y[i].
type residualAdd struct{}

// residualAliased records whether the last run of a residualAdd had its
// output over its residual's memory.
var residualAliased atomic.Bool

func (residualAdd) Infer(in []*ir.Value) ([]ir.Type, error) { return []ir.Type{in[0].Type}, nil }
func (residualAdd) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	y, err := ops.NewOutput(env, tensor.Float32, in[0].Shape)
	if err != nil {
		return nil, err
	}
	x, z, yv := in[0].Float32s(), in[ops.ResidualInput].Float32s(), y.Float32s()
	residualAliased.Store(len(z) > 0 && len(yv) > 0 && unsafe.SliceData(z) == unsafe.SliceData(yv))
	for i := range yv {
		yv[i] = x[i] + z[i%len(z)]
	}
	return []*tensor.Tensor{y}, nil
}

func init() {
	ops.Register(ops.Def{Type: "ResidualAdd", Domain: testDomain, Traits: ops.OverwritesResidual,
		Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return residualAdd{}, nil }})
}

// TestResidualInPlace checks that a residual op's output shares its
// residual input's slot exactly when the residual dies at the op and
// nothing else may be in its memory, that the kernel then sees the two
// over the same memory, and that results match a run without arena.
func TestResidualInPlace(t *testing.T) {
	withStrictAlias(t)
	const w = 64
	type graph struct {
		b        *ir.Builder
		x, c     *ir.Value
		z, y     *ir.Value // the residual and the op's output
		residual func(x, z *ir.Value) *ir.Value
	}
	cases := []struct {
		name   string
		shared bool
		build  func(g *graph)
	}{
		{"residual dies at the op", true, func(g *graph) {
			g.z = g.b.Op("Abs", []*ir.Value{g.x})
			g.y = g.residual(g.b.Op("Neg", []*ir.Value{g.x}), g.z)
			g.b.Output(g.b.Op("Neg", []*ir.Value{g.y}), "out")
		}},
		{"two in a row", true, func(g *graph) {
			g.z = g.b.Op("Abs", []*ir.Value{g.x})
			y1 := g.residual(g.b.Op("Neg", []*ir.Value{g.x}), g.z) // over z
			g.y = g.residual(g.b.Op("Neg", []*ir.Value{g.x}), y1)  // over y1, so over z too
			g.b.Output(g.b.Op("Neg", []*ir.Value{g.y}), "out")
			g.z = y1
		}},
		{"residual read later", false, func(g *graph) {
			g.z = g.b.Op("Abs", []*ir.Value{g.x})
			g.y = g.residual(g.b.Op("Neg", []*ir.Value{g.x}), g.z)
			g.b.Output(g.b.Op("Add", []*ir.Value{g.b.Op("Neg", []*ir.Value{g.y}), g.z}), "out")
		}},
		{"residual a graph output", false, func(g *graph) {
			g.z = g.b.Op("Abs", []*ir.Value{g.x})
			g.y = g.residual(g.b.Op("Neg", []*ir.Value{g.x}), g.z)
			g.b.Output(g.b.Op("Neg", []*ir.Value{g.y}), "out")
			g.b.Output(g.z, "z")
		}},
		{"residual a view of a live value", false, func(g *graph) {
			a := g.b.Op("Abs", []*ir.Value{g.x})
			g.z = g.b.Op("Identity", []*ir.Value{a})
			g.y = g.residual(g.b.Op("Neg", []*ir.Value{g.x}), g.z)
			g.b.Output(g.b.Op("Add", []*ir.Value{g.b.Op("Neg", []*ir.Value{g.y}), a}), "out")
		}},
		{"residual may be a view", false, func(g *graph) {
			a := g.b.Op("Abs", []*ir.Value{g.x})
			g.z = g.b.Op("Transpose", []*ir.Value{a}, ir.IntsAttr("perm", 0, 1))
			g.y = g.residual(g.b.Op("Neg", []*ir.Value{g.x}), g.z)
			g.b.Output(g.b.Op("Add", []*ir.Value{g.b.Op("Neg", []*ir.Value{g.y}), a}), "out")
		}},
		{"a view of the residual read later", false, func(g *graph) {
			g.z = g.b.Op("Abs", []*ir.Value{g.x})
			v := g.b.Op("Identity", []*ir.Value{g.b.Op("Identity", []*ir.Value{g.z})})
			g.y = g.residual(g.b.Op("Neg", []*ir.Value{g.x}), g.z)
			g.b.Output(g.b.Op("Add", []*ir.Value{g.b.Op("Neg", []*ir.Value{g.y}), v}), "out")
		}},
		{"a view of the residual a graph output", false, func(g *graph) {
			g.z = g.b.Op("Abs", []*ir.Value{g.x})
			g.y = g.residual(g.b.Op("Neg", []*ir.Value{g.x}), g.z)
			g.b.Output(g.b.Op("Neg", []*ir.Value{g.y}), "out")
			g.b.Output(g.b.Op("Identity", []*ir.Value{g.z}), "zview")
		}},
		{"a view of the residual read by the op", false, func(g *graph) {
			g.z = g.b.Op("Abs", []*ir.Value{g.x})
			g.y = g.residual(g.b.Op("Identity", []*ir.Value{g.z}), g.z)
			g.b.Output(g.b.Op("Neg", []*ir.Value{g.y}), "out")
		}},
		{"the residual also the op's x", false, func(g *graph) {
			g.z = g.b.Op("Abs", []*ir.Value{g.x})
			g.y = g.residual(g.z, g.z)
			g.b.Output(g.b.Op("Neg", []*ir.Value{g.y}), "out")
		}},
		{"residual of another size", false, func(g *graph) {
			half := g.b.Op("Slice", []*ir.Value{g.x, g.b.Const("s0", tensor.FromInt64([]int64{0}, 1)),
				g.b.Const("s1", tensor.FromInt64([]int64{w / 2}, 1)), g.b.Const("s2", tensor.FromInt64([]int64{1}, 1))})
			g.z = g.b.Op("Abs", []*ir.Value{half})
			g.y = g.residual(g.b.Op("Neg", []*ir.Value{g.x}), g.z)
			g.b.Output(g.b.Op("Neg", []*ir.Value{g.y}), "out")
		}},
		{"residual a Concat's output", false, func(g *graph) {
			half := g.b.Op("Slice", []*ir.Value{g.x, g.b.Const("s0", tensor.FromInt64([]int64{0}, 1)),
				g.b.Const("s1", tensor.FromInt64([]int64{w / 2}, 1)), g.b.Const("s2", tensor.FromInt64([]int64{1}, 1))})
			a := g.b.Op("Abs", []*ir.Value{half})
			g.z = g.b.Op("Concat", []*ir.Value{a, g.b.Op("Neg", []*ir.Value{half})}, ir.IntAttr("axis", 1))
			g.y = g.residual(g.b.Op("Neg", []*ir.Value{g.x}), g.z)
			g.b.Output(g.b.Op("Add", []*ir.Value{g.b.Op("Neg", []*ir.Value{g.y}), g.b.Op("Concat", []*ir.Value{a, a}, ir.IntAttr("axis", 1))}), "out")
		}},
	}
	build := func(t *testing.T, o Options, f func(*graph)) (*Engine, *graph) {
		t.Helper()
		b := ir.NewBuilder("residual", 17)
		b.Graph().Opsets[testDomain] = 1
		g := &graph{b: b, x: b.Input("x", tensor.Float32, ir.D(1), ir.D(w)), c: b.Const("c", tensor.FromFloat32([]float32{1}, 1))}
		g.residual = func(x, z *ir.Value) *ir.Value {
			y := b.Op("ResidualAdd", []*ir.Value{x, g.c, g.c, z})
			y.Producer.Domain = testDomain
			return y
		}
		f(g)
		e, err := NewWithOptions(b.Graph(), o)
		if err != nil {
			t.Fatal(err)
		}
		return e, g
	}
	slotOf := func(e *Engine, v *ir.Value) slot {
		for i, s := range e.plans[e.graph].steps {
			for j, o := range s.node.Outputs {
				if o == v {
					return e.mem.slots[i][j]
				}
			}
		}
		t.Fatalf("no step computes %q", v.Name)
		return slot{}
	}
	x := ramp(w, 0.25, 1, w)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, g := build(t, Options{}, tc.build)
			ref, _ := build(t, Options{NoArena: true}, tc.build)
			sy, sz := slotOf(e, g.y), slotOf(e, g.z)
			if sy.size == 0 {
				t.Fatalf("output not planned: %+v", sy)
			}
			if shared := sz.size > 0 && sy.off == sz.off; shared != tc.shared {
				t.Fatalf("output slot %+v, residual slot %+v: shared %v, want %v", sy, sz, shared, tc.shared)
			}
			if n := e.Memory().InPlace; (n > 0) != tc.shared {
				t.Fatalf("Memory().InPlace %d, shared %v", n, tc.shared)
			}
			want, err := ref.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
			if err != nil {
				t.Fatal(err)
			}
			c := e.NewContext()
			for run := 0; run < 2; run++ {
				poison(c)
				got, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
				if err != nil {
					t.Fatal(err)
				}
				if residualAliased.Load() != tc.shared {
					t.Fatalf("run %d: the kernel saw its output over its residual: %v, want %v", run, residualAliased.Load(), tc.shared)
				}
				for name, w := range want {
					equal(t, name, got[name], w)
				}
			}
		})
	}
}
