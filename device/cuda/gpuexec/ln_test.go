package gpuexec

import (
	"testing"

	"github.com/kilnai/kiln/ops"
)

// TestLayerNormPrefetchKernel checks which kernel a half LayerNormalization
// runs: layernorm_pf_f16 with lnPrefetch for rows up to 1024 elements,
// layernorm_vec_f16 otherwise; and that a BERT-base layer's program then
// runs every normalization (the embeddings' and the residual ones) on it.
func TestLayerNormPrefetchKernel(t *testing.T) {
	defer func(p bool) { lnPrefetch = p }(lnPrefetch)
	for _, tt := range []struct {
		on   bool
		cols int64
		want string
	}{
		{false, 768, "layernorm_vec_f16"},
		{true, 768, "layernorm_pf_f16"},
		{true, 1024, "layernorm_pf_f16"},
		{true, 1032, "layernorm_vec_f16"},
		{true, 2048, "layernorm_vec_f16"},
	} {
		lnPrefetch = tt.on
		if got := lnVecKernel(tt.cols); got != tt.want {
			t.Errorf("lnPrefetch=%v, %d columns: %s, want %s", tt.on, tt.cols, got, tt.want)
		}
	}
	lnPrefetch = true
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
		if l := s.launches[len(s.launches)-1]; l.kernel != "layernorm_pf_f16" {
			t.Errorf("%s runs %s", s.node.Name, l.kernel)
		}
		n++
	}
	if n != 2*cfg.layers+1 {
		t.Errorf("%d LayerNormalizations, want %d", n, 2*cfg.layers+1)
	}
	checkProgram(t, p)
}

// TestOpsLNPrefetchOnGPU is TestOpsOnGPU with lnPrefetch on (its half
// LayerNormalization cases run layernorm_pf_f16). Needs a GPU.
func TestOpsLNPrefetchOnGPU(t *testing.T) {
	defer func(p bool) { lnPrefetch = p }(lnPrefetch)
	lnPrefetch = true
	TestOpsOnGPU(t)
}
