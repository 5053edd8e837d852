package gpuexec

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestLayerNormVecKernel checks which one-warp-per-row kernel a half
// LayerNormalization runs: layernorm_vec_f16 (gamma and beta loaded with
// the row) for rows up to 1024 elements, layernorm_vec8_f16 up to 2048;
// and that a BERT-base layer's program runs every residual normalization
// on the first (the embeddings' on layernorm_embed_f16, embed.go).
func TestLayerNormVecKernel(t *testing.T) {
	for _, tt := range []struct {
		cols int64
		want string
	}{
		{64, "layernorm_vec_f16"},
		{768, "layernorm_vec_f16"},
		{1024, "layernorm_vec_f16"},
		{1032, "layernorm_vec8_f16"},
		{2048, "layernorm_vec8_f16"},
	} {
		if got := lnVecKernel(tt.cols); got != tt.want {
			t.Errorf("%d columns: %s, want %s", tt.cols, got, tt.want)
		}
	}
	cfg := bertConfig{layers: 1, hidden: 768, heads: 12, ffn: 3072, vocab: 100, batch: 1, seq: 128}
	g0 := bertGraph(cfg, 1)
	if _, err := ops.InferGraph(g0); err != nil {
		t.Fatal(err)
	}
	p, err := compileWith(optimizeBert(t, g0), false, true, true)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range p.steps {
		if s.node.OpType != "LayerNormalization" {
			continue
		}
		want := "layernorm_vec_f16"
		if n == 0 {
			want = "layernorm_embed_f16"
		}
		if l := s.launches[len(s.launches)-1]; l.kernel != want {
			t.Errorf("%s runs %s, want %s", s.node.Name, l.kernel, want)
		}
		n++
	}
	if n != 2*cfg.layers+1 {
		t.Errorf("%d LayerNormalizations, want %d", n, 2*cfg.layers+1)
	}
	checkProgram(t, p)
}

// lnAddGraph is y = LayerNormalization(x + z) over rows of cols, as BERT's
// residual blocks compute it, with random gamma and beta.
func lnAddGraph(rows, cols int, r *rand.Rand) *ir.Graph {
	b := ir.NewBuilder("ln", 17)
	x := b.Input("x", tensor.Float32, ir.D(int64(rows)), ir.D(int64(cols)))
	z := b.Input("z", tensor.Float32, ir.D(int64(rows)), ir.D(int64(cols)))
	vec := func(c, std float64) *tensor.Tensor {
		v := tensor.New(tensor.Float32, cols)
		for i := range v.Float32s() {
			v.Float32s()[i] = float32(c + std*r.NormFloat64())
		}
		return v
	}
	y := b.Op("LayerNormalization", []*ir.Value{b.Op("Add", []*ir.Value{x, z}), b.Const("gamma", vec(1, 0.1)), b.Const("beta", vec(0, 0.1))},
		ir.IntAttr("axis", -1), ir.FloatAttr("epsilon", 1e-5))
	b.Output(y, "y")
	return b.Graph()
}

// TestLayerNormVecOnGPU runs the half residual Add + LayerNormalization on
// both kernels (rows of 64, 768 and 1024 on layernorm_vec_f16, 1032 and
// 2048 on layernorm_vec8_f16; 37 rows, so the last block is partial)
// against kiln's CPU engine in float32: cosine at least 0.9999, relative
// L2 under 2e-3. Needs a GPU.
func TestLayerNormVecOnGPU(t *testing.T) {
	needGPU(t)
	r := rand.New(rand.NewPCG(7, 8))
	for _, cols := range []int{64, 768, 1024, 1032, 2048} {
		t.Run(fmt.Sprintf("cols %d", cols), func(t *testing.T) {
			const rows = 37
			g := lnAddGraph(rows, cols, r)
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			in := map[string]*tensor.Tensor{}
			for _, name := range []string{"x", "z"} {
				v := tensor.New(tensor.Float32, rows, cols)
				for i := range v.Float32s() {
					v.Float32s()[i] = float32(r.NormFloat64())
				}
				in[name] = v
			}
			ce, err := engine.New(g.Clone())
			if err != nil {
				t.Fatal(err)
			}
			want, err := ce.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			e, err := NewEngine(g.Clone(), Options{FP16: true})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			t.Logf("layers: %s", summarize(e.Layers()))
			c, err := e.NewContext()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for run := range 3 { // eager, captured, replayed
				got, err := c.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				if cos, rel := cosine(got["y"], want["y"]); !(cos >= 0.9999) || !(rel < 2e-3) {
					t.Errorf("run %d: cosine %.6f, relative L2 %.3g", run, cos, rel)
				}
			}
		})
	}
}
