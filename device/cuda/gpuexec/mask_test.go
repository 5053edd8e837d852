package gpuexec

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// maskGraph is y = op2(op1(Cast(mask), c0), c1) over an int64 [2, 5] mask,
// with the constants on the side left says, as a BERT exporter writes
// (1 - mask) * -10000 and its variants.
func maskGraph(op1 string, left1 bool, c0 float32, left2 bool, c1 float32) *ir.Graph {
	b := ir.NewBuilder("mask", 17)
	m := b.Input("mask", tensor.Int64, ir.D(2), ir.D(5))
	x := b.Op("Cast", []*ir.Value{m}, ir.IntAttr("to", int64(tensor.Float32)))
	k0, k1 := b.Const("c0", tensor.FromFloat32([]float32{c0}, 1)), b.Const("c1", tensor.FromFloat32([]float32{c1}))
	pair := func(left bool, k, v *ir.Value) []*ir.Value {
		if left {
			return []*ir.Value{k, v}
		}
		return []*ir.Value{v, k}
	}
	x = b.Op(op1, pair(left1, k0, x))
	b.Output(b.Op("Mul", pair(left2, k1, x)), "y")
	return b.Graph()
}

// TestMaskAffineCompile checks which mask arithmetic the Cast's step
// computes in one launch (mask_affine_i64_f16: y = (s0 + sign*x) * s1) and
// that its Sub (or Add) and Mul launch nothing: (1 - m) * -10000 as BERT's
// exporter writes it, m - 1 and m + 2 with the constants on either side;
// not in float32, nor with maskFusion off.
func TestMaskAffineCompile(t *testing.T) {
	defer func(f bool) { maskFusion = f }(maskFusion)
	for _, tt := range []struct {
		name         string
		g            *ir.Graph
		on, half     bool
		s0, sign, s1 float32 // 0 sign: not fused
	}{
		{"(1 - m) * -10000", maskGraph("Sub", true, 1, false, -10000), true, true, 1, -1, -10000},
		{"-10000 * (1 - m)", maskGraph("Sub", true, 1, true, -10000), true, true, 1, -1, -10000},
		{"(m - 1) * 3", maskGraph("Sub", false, 1, false, 3), true, true, -1, 1, 3},
		{"(2 + m) * 0.5", maskGraph("Add", true, 2, true, 0.5), true, true, 2, 1, 0.5},
		{"float32", maskGraph("Sub", true, 1, false, -10000), true, false, 0, 0, 0},
		{"maskFusion off", maskGraph("Sub", true, 1, false, -10000), false, true, 0, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			maskFusion = tt.on
			if _, err := ops.InferGraph(tt.g); err != nil {
				t.Fatal(err)
			}
			p, err := compileWith(tt.g, false, tt.half, true)
			if err != nil {
				t.Fatal(err)
			}
			var kernels []string
			computed := 0
			for _, s := range p.steps {
				for _, l := range s.launches {
					kernels = append(kernels, l.kernel)
					if l.kernel == "mask_affine_i64_f16" {
						if got := []float32{l.args[3].f, l.args[4].f, l.args[5].f}; fmt.Sprint(got) != fmt.Sprint([]float32{tt.s0, tt.sign, tt.s1}) {
							t.Errorf("s0, sign, s1 = %v, want %v %v %v", got, tt.s0, tt.sign, tt.s1)
						}
						if l.args[2].i != 10 {
							t.Errorf("n = %d, want 10", l.args[2].i)
						}
					}
				}
				if strings.HasPrefix(s.inPlace, "mask arithmetic, computed by Cast ") {
					computed++
				}
			}
			fused := tt.sign != 0
			if got := strings.Contains(strings.Join(kernels, " "), "mask_affine_i64_f16"); got != fused || (fused && computed != 2) {
				t.Errorf("kernels %v, %d nodes computed by the Cast; fused: %v", kernels, computed, fused)
			}
			if fused && len(kernels) != 2 { // the fused kernel and the output's cast to float32
				t.Errorf("kernels %v, want the fused one and the output cast", kernels)
			}
			checkProgram(t, p)
		})
	}
}

// TestMaskAffineOnGPU runs the mask graphs of TestMaskAffineCompile in half
// precision, fused and not, against kiln's CPU engine: equal within half's
// rounding. Needs a GPU.
func TestMaskAffineOnGPU(t *testing.T) {
	needGPU(t)
	defer func(f bool) { maskFusion = f }(maskFusion)
	in := map[string]*tensor.Tensor{"mask": tensor.FromInt64([]int64{1, 1, 1, 0, 0, 1, 0, 1, 0, 3}, 2, 5)}
	for _, g := range []*ir.Graph{
		maskGraph("Sub", true, 1, false, -10000),
		maskGraph("Sub", false, 1, false, 3),
		maskGraph("Add", true, 2, true, 0.5),
	} {
		if _, err := ops.InferGraph(g); err != nil {
			t.Fatal(err)
		}
		ce, err := engine.New(g.Clone())
		if err != nil {
			t.Fatal(err)
		}
		want, err := ce.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		for _, on := range []bool{true, false} {
			maskFusion = on
			e, err := NewEngine(g.Clone(), Options{FP16: true})
			if err != nil {
				t.Fatal(err)
			}
			c, err := e.NewContext()
			if err != nil {
				e.Close()
				t.Fatal(err)
			}
			for run := range 3 {
				got, err := c.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 10 {
					w, v := want["y"].Float(i), got["y"].Float(i)
					if math.Abs(v-w) > 1e-3*math.Abs(w)+1e-3 {
						t.Errorf("fused=%v run %d: y[%d] = %g, want %g (layers %s)", on, run, i, v, w, summarize(e.Layers()))
					}
				}
			}
			c.Close()
			e.Close()
		}
	}
}

// TestMaskAffineBert checks that a BERT graph's half program computes the
// extended attention mask in one launch, and counts the launches of a
// batch-1 BERT-base run (kernels, without cuBLASLt's products): 7 a layer
// less the 4 products, and 6 around the layers (the embeddings' LayerNorm,
// the mask, the pooler's Gather and Tanh, the two outputs' casts).
func TestMaskAffineBert(t *testing.T) {
	cfg := bertBase(1, 128)
	g0 := bertGraph(cfg, 1)
	if _, err := ops.InferGraph(g0); err != nil {
		t.Fatal(err)
	}
	p, err := compileWith(optimizeBert(t, g0), false, true, true)
	if err != nil {
		t.Fatal(err)
	}
	kernels, fused := 0, 0
	for _, s := range p.steps {
		if s.gemm != nil {
			continue // a product, with its bias, activation and residual in cuBLASLt's epilogue
		}
		for _, l := range s.launches {
			kernels++
			if l.kernel == "mask_affine_i64_f16" {
				fused++
			}
		}
	}
	if fused != 1 {
		t.Errorf("%d mask_affine launches, want 1", fused)
	}
	if want := 3*cfg.layers + 6; kernels != want {
		t.Errorf("%d kernel launches besides the products, want %d", kernels, want)
	}
}
