package gpuexec

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ops"
)

// TestEmbedLayerNormCompile checks the embeddings' fusion in BERT graphs
// as Hugging Face exports them: with embedFusion the word-embedding Gather
// and the Add of the position embeddings launch nothing and say which
// LayerNormalization computes them, that normalization launches
// layernorm_embed_f16 with the table's rows, the position embeddings read
// modulo the sequence (broadcast over the batch) and the token-type
// embeddings row by row; float32 programs and embedFusion off keep the
// Gather and Add launches.
func TestEmbedLayerNormCompile(t *testing.T) {
	defer func(f bool) { embedFusion = f }(embedFusion)
	for _, tt := range []struct {
		cfg  bertConfig
		on   bool
		half bool
	}{
		{bertConfig{layers: 1, hidden: 768, heads: 12, ffn: 3072, vocab: 1000, batch: 1, seq: 128}, true, true},
		{bertConfig{layers: 1, hidden: 64, heads: 2, ffn: 256, vocab: 500, batch: 3, seq: 40}, true, true},
		{bertConfig{layers: 1, hidden: 64, heads: 2, ffn: 256, vocab: 500, batch: 3, seq: 40}, false, true},
		{bertConfig{layers: 1, hidden: 64, heads: 2, ffn: 256, vocab: 500, batch: 3, seq: 40}, true, false},
	} {
		cfg := tt.cfg
		t.Run(fmt.Sprintf("H%d_B%d_on=%v_half=%v", cfg.hidden, cfg.batch, tt.on, tt.half), func(t *testing.T) {
			embedFusion = tt.on
			g0 := bertGraph(cfg, 1)
			if _, err := ops.InferGraph(g0); err != nil {
				t.Fatal(err)
			}
			p, err := compileWith(optimizeBert(t, g0), false, tt.half, true)
			if err != nil {
				t.Fatal(err)
			}
			fused := tt.on && tt.half
			var embedLN *step
			computed, gathers, adds := 0, 0, 0
			for i, s := range p.steps {
				switch {
				case strings.HasPrefix(s.inPlace, "embedding, computed by LayerNormalization "):
					computed++
				case s.node.OpType == "Gather" && len(s.launches) > 0 && strings.HasPrefix(s.launches[0].kernel, "gather_"):
					gathers++
				case s.node.OpType == "Add" && len(s.launches) > 0:
					adds++
				case s.node.OpType == "LayerNormalization" && embedLN == nil:
					embedLN = &p.steps[i]
				}
			}
			// the pooler's Gather (first token) stays
			if wantG := map[bool]int{true: 1, false: 2}[fused]; computed != map[bool]int{true: 2, false: 0}[fused] || gathers != wantG {
				t.Errorf("%d nodes computed by a LayerNormalization, %d Gather launches; want %d, %d", computed, gathers,
					map[bool]int{true: 2, false: 0}[fused], wantG)
			}
			if !fused {
				if adds == 0 {
					t.Error("no Add launches left without the fusion")
				}
				return
			}
			if adds != 0 {
				t.Errorf("%d Add launches, want 0", adds)
			}
			l := embedLN.launches[len(embedLN.launches)-1]
			if l.kernel != "layernorm_embed_f16" {
				t.Fatalf("the embeddings' LayerNormalization runs %s", l.kernel)
			}
			rows := int64(cfg.batch * cfg.seq)
			// y, table, idx, len, a, aRows, z, zRows, gamma, beta, rows, cols, eps
			if got := []int64{l.args[3].i, l.args[5].i, l.args[7].i, l.args[10].i, l.args[11].i}; fmt.Sprint(got) !=
				fmt.Sprint([]int64{int64(cfg.vocab), int64(cfg.seq), rows, rows, int64(cfg.hidden)}) {
				t.Errorf("len, aRows, zRows, rows, cols = %v; want %d %d %d %d %d", got, cfg.vocab, cfg.seq, rows, rows, cfg.hidden)
			}
			if l.grid.X != uint32((rows+3)/4) || l.block.X != 128 {
				t.Errorf("grid %v block %v", l.grid, l.block)
			}
			checkProgram(t, p)
		})
	}
}

// TestEmbedLayerNormOnGPU runs a one-layer BERT (hidden 64 and 768, batch
// 3 with padded sequences, so that the position embeddings broadcast over
// the batch) in half precision with and without the embeddings' fusion,
// against kiln's CPU engine in float32: cosine at least 0.9999. Needs a
// GPU.
func TestEmbedLayerNormOnGPU(t *testing.T) {
	needGPU(t)
	defer func(f bool) { embedFusion = f }(embedFusion)
	for _, cfg := range []bertConfig{
		{layers: 1, hidden: 64, heads: 2, ffn: 256, vocab: 500, batch: 3, seq: 40},
		{layers: 1, hidden: 768, heads: 12, ffn: 3072, vocab: 1000, batch: 3, seq: 128},
	} {
		g := bertGraph(cfg, 5)
		if _, err := ops.InferGraph(g); err != nil {
			t.Fatal(err)
		}
		in := bertInputs(cfg, 5)
		ce, err := engine.New(g.Clone())
		if err != nil {
			t.Fatal(err)
		}
		want, err := ce.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		og := optimizeBert(t, g)
		for _, on := range []bool{true, false} {
			t.Run(fmt.Sprintf("H%d fused=%v", cfg.hidden, on), func(t *testing.T) {
				embedFusion = on
				e, err := NewEngine(og.Clone(), Options{FP16: true})
				if err != nil {
					t.Fatal(err)
				}
				defer e.Close()
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
					for name, w := range want {
						cos, rel := cosine(got[name], w)
						if !(cos >= bertCosine) {
							t.Errorf("run %d %s: cosine %.6f (relative L2 %.3g)", run, name, cos, rel)
						}
						if run == 2 {
							t.Logf("%s: cosine %.7f, relative L2 %.3g (graph %v)", name, cos, rel, c.Graphed())
						}
					}
				}
			})
		}
	}
}
