package gpuexec

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// bertConfig is the shape of a BERT encoder.
type bertConfig struct {
	layers, hidden, heads, ffn, vocab int
	batch, seq                        int
}

// bertBase is BERT-base (uncased): 12 layers, 768 wide, 12 heads of 64.
func bertBase(batch, seq int) bertConfig {
	return bertConfig{layers: 12, hidden: 768, heads: 12, ffn: 3072, vocab: 30522, batch: batch, seq: seq}
}

// bertGraph builds a BERT encoder with random weights as Hugging Face's
// exporter writes it (opset 17): embeddings (word + position + token type,
// LayerNormalization), the extended attention mask ((1 - mask) * -10000),
// and per layer three separate Q, K, V projections (Add(bias, MatMul)),
// the heads as Reshape + Transpose, MatMul / Div / Add mask / Softmax /
// MatMul, the output projection, residual Adds, LayerNormalizations and
// the erf GELU written out (x * 0.5 * (1 + Erf(x / sqrt 2))); then the
// pooler (first token, Gemm, Tanh). Outputs: last_hidden_state,
// pooler_output. Weights are N(0, 0.02) as BERT initializes them.
func bertGraph(cfg bertConfig, seed uint64) *ir.Graph {
	r := rand.New(rand.NewPCG(seed, 11))
	rnd := func(std float64, shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64() * std)
		}
		return x
	}
	around := func(c, std float64, n int) *tensor.Tensor {
		x := rnd(std, n)
		for i := range x.Float32s() {
			x.Float32s()[i] += float32(c)
		}
		return x
	}
	f32 := func(v float32) *tensor.Tensor { return tensor.FromFloat32([]float32{v}, 1) }
	i64 := func(v ...int64) *tensor.Tensor { return tensor.FromInt64(v, len(v)) }
	B, S, Hd, H := cfg.batch, cfg.seq, cfg.hidden, cfg.heads
	D := Hd / H
	b := ir.NewBuilder("bert", 17)
	ids := b.Input("input_ids", tensor.Int64, ir.D(int64(B)), ir.D(int64(S)))
	mask := b.Input("attention_mask", tensor.Int64, ir.D(int64(B)), ir.D(int64(S)))
	n := 0
	name := func(s string) string { n++; return fmt.Sprintf("%s_%d", s, n) }
	c := func(t *tensor.Tensor) *ir.Value { return b.Const(name("c"), t) }
	ln := func(x *ir.Value) *ir.Value {
		return b.Op("LayerNormalization", []*ir.Value{x, c(around(1, 0.1, Hd)), c(rnd(0.1, Hd))},
			ir.IntAttr("axis", -1), ir.FloatAttr("epsilon", 1e-12))
	}
	linear := func(x *ir.Value, in, out int) *ir.Value {
		return b.Op("Add", []*ir.Value{c(rnd(0.02, out)), b.Op("MatMul", []*ir.Value{x, c(rnd(0.02, in, out))})})
	}
	pos := tensor.New(tensor.Int64, 1, S)
	for i := range pos.Int64s() {
		pos.Int64s()[i] = int64(i)
	}
	x := b.Op("Gather", []*ir.Value{c(rnd(1, cfg.vocab, Hd)), ids})
	x = b.Op("Add", []*ir.Value{x, b.Op("Gather", []*ir.Value{c(rnd(1, 512, Hd)), c(pos)})})
	x = b.Op("Add", []*ir.Value{x, b.Op("Gather", []*ir.Value{c(rnd(1, 2, Hd)), c(tensor.New(tensor.Int64, B, S))})})
	x = ln(x)
	m := b.Op("Unsqueeze", []*ir.Value{mask, c(i64(1, 2))})
	m = b.Op("Cast", []*ir.Value{m}, ir.IntAttr("to", int64(tensor.Float32)))
	m = b.Op("Mul", []*ir.Value{b.Op("Sub", []*ir.Value{c(f32(1)), m}), c(f32(-10000))})
	heads := c(i64(int64(B), int64(S), int64(H), int64(D)))
	merged := c(i64(int64(B), int64(S), int64(Hd)))
	for range cfg.layers {
		q := b.Op("Transpose", []*ir.Value{b.Op("Reshape", []*ir.Value{linear(x, Hd, Hd), heads})}, ir.IntsAttr("perm", 0, 2, 1, 3))
		k := b.Op("Transpose", []*ir.Value{b.Op("Reshape", []*ir.Value{linear(x, Hd, Hd), heads})}, ir.IntsAttr("perm", 0, 2, 3, 1))
		v := b.Op("Transpose", []*ir.Value{b.Op("Reshape", []*ir.Value{linear(x, Hd, Hd), heads})}, ir.IntsAttr("perm", 0, 2, 1, 3))
		s := b.Op("Div", []*ir.Value{b.Op("MatMul", []*ir.Value{q, k}), c(f32(float32(math.Sqrt(float64(D)))))})
		p := b.Op("Softmax", []*ir.Value{b.Op("Add", []*ir.Value{s, m})}, ir.IntAttr("axis", -1))
		a := b.Op("Transpose", []*ir.Value{b.Op("MatMul", []*ir.Value{p, v})}, ir.IntsAttr("perm", 0, 2, 1, 3))
		a = linear(b.Op("Reshape", []*ir.Value{a, merged}), Hd, Hd)
		x = ln(b.Op("Add", []*ir.Value{a, x}))
		h := linear(x, Hd, cfg.ffn)
		erf := b.Op("Erf", []*ir.Value{b.Op("Div", []*ir.Value{h, c(f32(float32(math.Sqrt2)))})})
		h = b.Op("Mul", []*ir.Value{b.Op("Mul", []*ir.Value{h, c(f32(0.5))}), b.Op("Add", []*ir.Value{c(f32(1)), erf})})
		x = ln(b.Op("Add", []*ir.Value{linear(h, cfg.ffn, Hd), x}))
	}
	b.Output(x, "last_hidden_state")
	first := b.Op("Gather", []*ir.Value{x, c(tensor.FromInt64([]int64{0}))}, ir.IntAttr("axis", 1))
	pooled := b.Op("Gemm", []*ir.Value{first, c(rnd(0.02, Hd, Hd)), c(rnd(0.02, Hd))}, ir.IntAttr("transB", 1))
	b.Output(b.Op("Tanh", []*ir.Value{pooled}), "pooler_output")
	return b.Graph()
}

// bertInputs are random token ids and a mask whose sequence i has
// seq - 9*i tokens (at least 1): padding at the end, as a tokenizer gives.
func bertInputs(cfg bertConfig, seed uint64) map[string]*tensor.Tensor {
	r := rand.New(rand.NewPCG(seed, 13))
	ids := tensor.New(tensor.Int64, cfg.batch, cfg.seq)
	mask := tensor.New(tensor.Int64, cfg.batch, cfg.seq)
	for i := range cfg.batch {
		n := max(1, cfg.seq-9*i)
		for j := range cfg.seq {
			ids.Int64s()[i*cfg.seq+j] = int64(r.IntN(cfg.vocab))
			if j < n {
				mask.Int64s()[i*cfg.seq+j] = 1
			}
		}
	}
	return map[string]*tensor.Tensor{"input_ids": ids, "attention_mask": mask}
}

// optimizeBert optimizes a clone of g (level 2) and infers its shapes.
func optimizeBert(t testing.TB, g *ir.Graph) *ir.Graph {
	t.Helper()
	g = g.Clone()
	if err := optimize.Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// opCount counts g's nodes by domain::op.
func opCount(g *ir.Graph) map[string]int {
	out := map[string]int{}
	for _, n := range g.Nodes {
		k := n.OpType
		if n.Domain != "" {
			k = n.Domain + "::" + k
		}
		out[k]++
	}
	return out
}

// TestBertGraphCompile checks, without a GPU, what the BERT tests need:
// the optimizer turns the exported form into one merged QKV product, one
// kiln::Attention, and products with their bias (and GELU) fused per
// layer; the half program runs attention on attention_mma_fa128 (128
// keys staged, sequence 128) with 1 to 4 warps a block, or at batch 32 on
// attention_mma_fw (one block of 4 warps a head), reads Q, K, V in place, folds the residual Adds into the
// LayerNormalizations, and gives cuBLASLt's epilogue the bias (and GELU)
// of every projection, the erf GELU only in half precision.
func TestBertGraphCompile(t *testing.T) {
	tests := []struct {
		cfg       bertConfig
		warps     uint32 // of the attention blocks
		attBlocks uint32
	}{
		{bertConfig{layers: 2, hidden: 128, heads: 2, ffn: 512, vocab: 1000, batch: 2, seq: 128}, 1, 8},
		{bertConfig{layers: 1, hidden: 256, heads: 4, ffn: 1024, vocab: 100, batch: 20, seq: 128}, 4, 2},
		{bertConfig{layers: 1, hidden: 768, heads: 12, ffn: 3072, vocab: 100, batch: 32, seq: 128}, 4, 1}, // attention_mma_fw
		{bertConfig{layers: 1, hidden: 768, heads: 12, ffn: 3072, vocab: 100, batch: 1, seq: 128}, 2, 4},
	}
	for _, tt := range tests {
		cfg := tt.cfg
		t.Run(fmt.Sprintf("L%d_H%d_B%d", cfg.layers, cfg.hidden, cfg.batch), func(t *testing.T) {
			g0 := bertGraph(cfg, 1)
			if _, err := ops.InferGraph(g0); err != nil {
				t.Fatal(err)
			}
			g := optimizeBert(t, g0)
			ops := opCount(g)
			want := map[string]int{"kiln::Attention": cfg.layers, "kiln::FusedMatMul": 4 * cfg.layers, "MatMul": 0, "Softmax": 0, "Erf": 0}
			for k, v := range want {
				if ops[k] != v {
					t.Errorf("%d %s after optimizing, want %d: %v", ops[k], k, v, ops)
				}
			}
			for _, half := range []bool{false, true} {
				p, err := compileWith(g, false, half, true)
				if err != nil {
					t.Fatal(err)
				}
				var att []launch
				epi, gelu, lnAdds, posts, resid, lnOne, resAdds := 0, 0, 0, 0, 0, 0, 0
				for _, s := range p.steps {
					switch {
					case s.node.OpType == "Attention":
						att = append(att, s.launches...)
					case s.node.OpType == "LayerNormalization":
						if l := s.launches[len(s.launches)-1]; l.kernel == "layernorm_vec_f16" && l.args[2].ref.buf == bufNil {
							lnOne++
						}
					case s.gemm != nil:
						if s.gemm.post.kernel != "" {
							posts++
						}
						if s.gemm.resid != nil {
							resid++
							if s.gemm.post.kernel != "row_epilogue_res_vec_f16" || s.launches[len(s.launches)-1].kernel != "row_epilogue_res_vec_f16" {
								t.Errorf("%s adds a residual with post %s, launches %v", s.node.Name, s.gemm.post.kernel, s.launches)
							}
						}
						if relu, gl, ok := s.gemm.ltEpilogue(half); ok && !relu {
							epi++
							if gl {
								gelu++
							}
						}
					case strings.HasPrefix(s.inPlace, "fused into LayerNormalization"):
						lnAdds++
						if strings.Contains(s.inPlace, "residual added by") {
							resAdds++
						}
					}
				}
				// QKV, output, FFN in and out per layer, and the pooler
				wantEpi := 4*cfg.layers + 1
				if !half {
					wantEpi -= cfg.layers // float32 keeps the erf GELU kernel
				}
				if epi != wantEpi || posts != 4*cfg.layers+1 {
					t.Errorf("half=%v: %d of %d products with a bias epilogue cuBLASLt can do, want %d", half, epi, posts, wantEpi)
				}
				if wantGELU := map[bool]int{false: 0, true: cfg.layers}[half]; gelu != wantGELU {
					t.Errorf("half=%v: %d products with GELU in cuBLASLt's epilogue, want %d", half, gelu, wantGELU)
				}
				if !half {
					continue
				}
				if lnAdds != 2*cfg.layers+1 {
					t.Errorf("%d residual Adds folded into LayerNormalization, want %d", lnAdds, 2*cfg.layers+1)
				}
				// the output projections add the residual; the embeddings'
				// Add (of two Gathers) stays in its LayerNormalization
				if resid != 2*cfg.layers || lnOne != 2*cfg.layers || resAdds != resid {
					t.Errorf("%d products add a residual (%d Adds say so) and %d LayerNormalizations read one matrix, want %d", resid, resAdds, lnOne, 2*cfg.layers)
				}
				if len(att) != cfg.layers {
					t.Fatalf("%d attention launches for %d layers", len(att), cfg.layers)
				}
				l := att[0]
				wantK := fmt.Sprintf("attention_mma_fa128_d%d_f16", cfg.hidden/cfg.heads) // attentionKeys128, head 64
				if cfg.batch*cfg.heads >= int(fwMinBlocks) {
					wantK = fmt.Sprintf("attention_mma_fw_d%d_f16", cfg.hidden/cfg.heads) // attentionWide
				}
				if l.kernel != wantK || l.block.X != 32*tt.warps || l.grid.X != tt.attBlocks || l.grid.Y != uint32(cfg.batch*cfg.heads) {
					t.Errorf("attention launch %s grid %v block %v; want %s with %d warps, %d blocks a head", l.kernel, l.grid, l.block, wantK, tt.warps, tt.attBlocks)
				}
				checkProgram(t, p)
			}
		})
	}
}

// TestAttentionKeys128 checks which attention kernel attentionKeys128
// selects: attention_mma_fa128 for head sizes up to 64 from 128 query rows
// on, attention_mma_fa otherwise.
func TestAttentionKeys128(t *testing.T) {
	defer func(k bool) { attentionKeys128 = k }(attentionKeys128)
	for _, tt := range []struct {
		keys128 bool
		d       int
		want    string
	}{
		{false, 64, "attention_mma_fa_d64_f16"},
		{true, 64, "attention_mma_fa128_d64_f16"},
		{true, 32, "attention_mma_fa128_d32_f16"},
		{true, 128, "attention_mma_fa_d128_f16"},
	} {
		attentionKeys128 = tt.keys128
		if l := mmaLaunch(tt.d, 128, 24, nil); l.kernel != tt.want {
			t.Errorf("keys128=%v, head %d: %s, want %s", tt.keys128, tt.d, l.kernel, tt.want)
		}
		// below 128 query rows: the 64-key kernel
		if l := mmaLaunch(tt.d, 127, 24, nil); l.kernel != fmt.Sprintf("attention_mma_fa_d%d_f16", tt.d) {
			t.Errorf("keys128=%v, head %d, 127 rows: %s", tt.keys128, tt.d, l.kernel)
		}
	}
}

// TestAttentionFill checks how many warps a block of attention_mma_fa gets
// for BERT-base at batch 1 (12 heads of 128 rows): two (48 blocks) by
// default (faFill 48), one (96 blocks) with faFill 264; four at batch 32
// either way.
func TestAttentionFill(t *testing.T) {
	defer func(f int64, w bool) { faFill, attentionWide = f, w }(faFill, attentionWide)
	attentionWide = false // attention_mma_fa's blocks (fw would take 384 heads)
	for _, tt := range []struct {
		fill        int64
		b           int64
		warps, grid uint32
	}{
		{264, 12, 1, 8}, {48, 12, 2, 4}, {264, 384, 4, 2}, {48, 384, 4, 2},
	} {
		faFill = tt.fill
		l := mmaLaunch(64, 128, tt.b, nil)
		if l.block.X != 32*tt.warps || l.grid.X != tt.grid || l.grid.Y != uint32(tt.b) {
			t.Errorf("faFill %d, %d heads: block %v grid %v; want %d warps, %d blocks a head", tt.fill, tt.b, l.block, l.grid, tt.warps, tt.grid)
		}
	}
}

// TestBertGraphCPU checks that the BERT graph as built runs on kiln's CPU
// engine and that optimizing it keeps its outputs (so that the GPU tests
// compare with a right reference).
func TestBertGraphCPU(t *testing.T) {
	cfg := bertConfig{layers: 2, hidden: 64, heads: 2, ffn: 256, vocab: 500, batch: 3, seq: 40}
	g := bertGraph(cfg, 2)
	in := bertInputs(cfg, 2)
	run := func(g *ir.Graph) map[string]*tensor.Tensor {
		e, err := engine.New(g)
		if err != nil {
			t.Fatal(err)
		}
		out, err := e.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	want := run(g.Clone())
	got := run(optimizeBert(t, g))
	for _, name := range []string{"last_hidden_state", "pooler_output"} {
		if want[name] == nil || got[name] == nil {
			t.Fatalf("no output %s", name)
		}
		compareFloat32(t, name, got[name], want[name], 1e-3, 1e-4)
	}
	if s := want["last_hidden_state"].Shape; !sameDims(s, []int{cfg.batch, cfg.seq, cfg.hidden}) {
		t.Errorf("last_hidden_state %v", s)
	}
}

// bertCosine is the FP16 rule of the BERT tests (issue 11): cosine
// similarity with the CPU's float32 of at least 0.9999.
const bertCosine = 0.9999

// bertVariant is a way to build the half engine: the defaults, or without
// some of the BERT work's changes (nn.cu's attention_mma, GELU after
// cuBLASLt, the residual read by the LayerNormalization, 64 keys staged;
// programmatic dependent launch), or with cuBLASLt's split-K variants
// among the tuned candidates.
type bertVariant struct {
	name                  string
	fa, erfGELUEpi, resid bool
	keys128               bool  // attention_mma_fa128 (attentionKeys128)
	noPDL, splitK         bool  // programmaticLaunch off, ltSplitK on
	noEmbed, noMask       bool  // embedFusion, maskFusion off
	faFill                int64 // attention's faFill, when not 0
	fq                    bool  // attention_mma_fq (attentionQStaged)
	fw                    bool  // attention_mma_fw (attentionWide)
	fwMin                 int64 // fwMinBlocks, when not 0
	fw2                   bool  // attention_mma_fw2 (fwPipelined)
	enum                  bool  // cuBLASLt's enumerated configurations timed too (ltEnumerateAll: --opt-level 3's search)
}

var bertVariants = []bertVariant{
	{name: "before", noPDL: true, noEmbed: true, noMask: true},
	{name: "after", fa: true, erfGELUEpi: true, resid: true, keys128: true, noPDL: true, fw: true},
	bertNoFW,
	bertFQ,
	{name: "after + attention_mma_fw2 (K and V in two halves)", fa: true, erfGELUEpi: true, resid: true, keys128: true, noPDL: true, fw: true, fw2: true},
}

// bertNoFW is "after" without attention_mma_fw (the defaults until it was
// measured: attention_mma_fa128 at every batch).
var bertNoFW = bertVariant{name: "after, attention_mma_fa128 (no wide attention)", fa: true, erfGELUEpi: true, resid: true, keys128: true, noPDL: true}

// bertFQ is "after" with attention on attention_mma_fq (Q staged in shared
// memory by cp.async, V waited for after the first scores, the output
// stored 16 bytes at a time; attentionQStaged).
// Measured no faster than attention_mma_fa (NOTES.md): off by default.
var bertFQ = bertVariant{name: "after + Q staged (attention_mma_fq)", fa: true, erfGELUEpi: true, resid: true, keys128: true, noPDL: true, fq: true}

// bertFW is "after" (attention_mma_fw where there are enough heads: 32
// query rows a warp, one block per head at sequence 128; attentionWide):
// batch 32, not batch 1.
var bertFW = bertVariants[1]

// bertKeys64 is "after" with attention_mma_fa staging 64 keys at a time
// (the default until attention_mma_fa128 was measured), and without
// attention_mma_fw (which would take batch 32's attention).
var bertKeys64 = bertVariant{name: "after, 64 keys staged", fa: true, erfGELUEpi: true, resid: true, noPDL: true}

// bertLaunchVariants time the batch-1 changes apart: without the
// embeddings' and the mask's fusions, with programmatic dependent launch,
// attention on 96 blocks of one warp at batch 1 (48 of two by default),
// and with the split-K candidates (which tuning never kept in the first
// measurement).
var bertLaunchVariants = []bertVariant{
	{name: "after, embeddings and mask unfused", fa: true, erfGELUEpi: true, resid: true, keys128: true, noPDL: true, noEmbed: true, noMask: true, fw: true},
	{name: "after + PDL", fa: true, erfGELUEpi: true, resid: true, keys128: true, fw: true},
	{name: "after, attention 1 warp a block at batch 1", fa: true, erfGELUEpi: true, resid: true, keys128: true, noPDL: true, faFill: 264, fw: true},
	{name: "after + split-K candidates", fa: true, erfGELUEpi: true, resid: true, keys128: true, noPDL: true, splitK: true, fw: true},
	bertEnum,
}

// bertEnum is "after" tuned at the wider search of --opt-level 3: up to 24
// enumerated cuBLASLt configurations a product (tile shapes that fill
// whole waves first, lt_algo.go) timed beside the heuristic's results.
var bertEnum = bertVariant{name: "after + enumerated cuBLASLt candidates", fa: true, erfGELUEpi: true, resid: true, keys128: true, noPDL: true, fw: true, enum: true}

// bertAblations time each change alone against "after" (TestBertTimingOnGPU
// with KILN_BERT_ABLATE=1): which of the three gains what.
var bertAblations = []bertVariant{
	{name: "after, nn.cu's attention", erfGELUEpi: true, resid: true, noPDL: true, fw: true},
	{name: "after, GELU as a pass", fa: true, resid: true, keys128: true, noPDL: true, fw: true},
	{name: "after, LayerNorm reads the residual", fa: true, erfGELUEpi: true, keys128: true, noPDL: true, fw: true},
	bertKeys64,
}

func (v bertVariant) set() func() {
	fa, ge, re, k1 := attentionFA, erfGELUEpilogue, residualGEMM, attentionKeys128
	pd, sk, em, mf, ff, fq, fw, fm, f2 := programmaticLaunch, ltSplitK, embedFusion, maskFusion, faFill, attentionQStaged, attentionWide, fwMinBlocks, fwPipelined
	en := ltEnumerateAll
	fwPipelined, ltEnumerateAll = v.fw2, v.enum
	attentionFA, erfGELUEpilogue, residualGEMM, attentionKeys128, attentionQStaged, attentionWide = v.fa, v.erfGELUEpi, v.resid, v.keys128, v.fq, v.fw
	programmaticLaunch, ltSplitK, embedFusion, maskFusion = !v.noPDL, v.splitK, !v.noEmbed, !v.noMask
	if v.faFill != 0 {
		faFill = v.faFill
	}
	if v.fwMin != 0 {
		fwMinBlocks = v.fwMin
	}
	return func() {
		attentionFA, erfGELUEpilogue, residualGEMM, attentionKeys128, attentionQStaged, attentionWide = fa, ge, re, k1, fq, fw
		fwMinBlocks, fwPipelined, ltEnumerateAll = fm, f2, en
		programmaticLaunch, ltSplitK, embedFusion, maskFusion, faFill = pd, sk, em, mf, ff
	}
}

// launchCounts counts what one run of c queues: kernel launches, library
// calls (cuBLASLt's products; each may run more than one kernel) and the
// launches with programmatic dependent launch.
func launchCounts(c *Context) (kernels, lib, pdl int) {
	for _, k := range c.calls {
		switch {
		case k.lib != nil:
			lib++
		case k.pdl:
			pdl++
			kernels++
		default:
			kernels++
		}
	}
	return kernels, lib, pdl
}

// gemmChoices says, for each distinct product signature of e, which
// cuBLASLt candidate tuning kept (split-K or not) and its time.
func gemmChoices(e *Engine) string {
	seen := map[string]bool{}
	var parts []string
	for i, s := range e.prog.steps {
		mm := e.gemms[i]
		if s.gemm == nil || mm == nil {
			continue
		}
		t, ok := e.tactics[s.node.Name]
		if !ok {
			continue
		}
		key := fmt.Sprintf("%dx%dx%d epi=%v resid=%v", s.gemm.m, s.gemm.n, s.gemm.k, e.gemmEpi[i], s.gemm.resid != nil)
		if seen[key] {
			continue
		}
		seen[key] = true
		splits := 0
		for _, sp := range mm.Splits {
			if sp.Parts > 1 {
				splits++
			}
		}
		parts = append(parts, fmt.Sprintf("%s: %s, %.1f us (of %d candidates, %d split-K)", key, mm.CandidateString(ltRank(mm, t)), float64(t.NS)/1e3, len(mm.Candidates), splits))
	}
	return strings.Join(parts, "; ")
}

// TestBertFP16OnGPU builds bert_mini (its test inputs) and a BERT-base
// shaped graph (batch 2, sequence 128, padded sequences) in half precision
// as kiln build does (tactic timing on), before and after this work's
// kernels, and compares every output with kiln's CPU engine in float32:
// cosine at least 0.9999, and the elementwise error logged against kiln
// run's FP16 tolerance (rtol 1e-2, atol 1e-2). Three runs each (eager,
// capture, replay).
func TestBertFP16OnGPU(t *testing.T) {
	needGPU(t)
	type model struct {
		name string
		g    func(t *testing.T) (*ir.Graph, map[string]*tensor.Tensor, map[string]*tensor.Tensor)
	}
	models := []model{
		{"bert_mini", func(t *testing.T) (*ir.Graph, map[string]*tensor.Tensor, map[string]*tensor.Tensor) {
			path := modelPath(t, "bert_mini")
			in := testInputs(t, "bert_mini")
			return optimizedGraph(t, path, in), in, cpuRun(t, path, in)
		}},
		{"bert_base_shaped_b2_s128", func(t *testing.T) (*ir.Graph, map[string]*tensor.Tensor, map[string]*tensor.Tensor) {
			cfg := bertBase(2, 128)
			g := bertGraph(cfg, 3)
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			in := bertInputs(cfg, 3)
			e, err := engine.New(g.Clone())
			if err != nil {
				t.Fatal(err)
			}
			want, err := e.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			return optimizeBert(t, g), in, want
		}},
	}
	for _, m := range models {
		t.Run(m.name, func(t *testing.T) {
			g, in, want := m.g(t)
			// attention_mma_fw at batch 2 too (24 heads: below fwMinBlocks)
			fwAll := bertFW
			fwAll.name, fwAll.fwMin = "after + wide attention at any batch", 1
			fw2All := fwAll
			fw2All.name, fw2All.fw2 = "after + attention_mma_fw2 at any batch", true
			for _, v := range append(append([]bertVariant{}, bertVariants...), fwAll, fw2All, bertKeys64, bertLaunchVariants[0], bertLaunchVariants[1]) {
				t.Run(v.name, func(t *testing.T) {
					restore := v.set()
					e, err := NewEngine(g.Clone(), Options{FP16: true, Tune: true})
					restore()
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
					for run := range 3 {
						got, err := c.Run(context.Background(), in)
						if err != nil {
							t.Fatalf("run %d: %v", run, err)
						}
						for name, w := range want {
							gv := got[name]
							if gv == nil || !sameDims(gv.Shape, w.Shape) {
								t.Fatalf("run %d: output %s is %v, want shape %v", run, name, gv, w.Shape)
							}
							cos, rel := cosine(gv, w)
							if !(cos >= bertCosine) {
								t.Errorf("run %d %s: cosine %.6f < %g (relative L2 %.3g)", run, name, cos, bertCosine, rel)
							}
							if run == 2 {
								worst, over := 0.0, 0
								for i := range w.Len() {
									d := math.Abs(gv.Float(i) - w.Float(i))
									worst = max(worst, d)
									if !(d <= 1e-2+1e-2*math.Abs(w.Float(i))) {
										over++
									}
								}
								t.Logf("%s %s: cosine %.7f, relative L2 %.3g, max abs %.3g, %d of %d over rtol/atol 1e-2 (graph %v)",
									v.name, name, cos, rel, worst, over, w.Len(), c.Graphed())
							}
						}
					}
				})
			}
		})
	}
}

// pickBertVariants keeps the variants whose name is one of the
// comma-separated names in only (all when only is empty); the first
// variant is always kept (the others' outputs are compared with its).
func pickBertVariants(vs []bertVariant, only string) []bertVariant {
	if only == "" {
		return vs
	}
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		want[strings.TrimSpace(n)] = true
	}
	out := vs[:1:1]
	for _, v := range vs[1:] {
		if want[v.name] {
			out = append(out, v)
		}
	}
	return out
}

// TestBertTimingOnGPU prints BERT-base FP16 device latencies at sequence
// 128, batches 1 and 32 ($KILN_BERT_BATCHES, "1,32"), before and after this
// work's kernels, tuned as kiln build tunes: the layers' CUDA graph
// replayed between CUDA events (Context.DeviceTimes, as TestGPUBench),
// median of 200 after 20 warm-up replays; then where the time goes by op
// (TestGPUProfile's eager profile). $KILN_BERT_OUT, when set, names a file
// for the table; KILN_BERT_ABLATE=1 adds the variants with one change off;
// $KILN_BERT_VARIANTS (comma-separated names) times only those besides the
// first ("before").
func TestBertTimingOnGPU(t *testing.T) {
	needGPU(t)
	batches := []int{1, 32}
	if s := os.Getenv("KILN_BERT_BATCHES"); s != "" {
		batches = nil
		for _, f := range strings.Split(s, ",") {
			var b int
			if _, err := fmt.Sscan(f, &b); err != nil || b < 1 {
				t.Fatalf("KILN_BERT_BATCHES: %q", s)
			}
			batches = append(batches, b)
		}
	}
	type row struct {
		batch             int
		v                 string
		ms                float64
		layers            string
		kernels, lib, pdl int
	}
	var rows []row
	for _, batch := range batches {
		cfg := bertBase(batch, 128)
		g0 := bertGraph(cfg, 4)
		if _, err := ops.InferGraph(g0); err != nil {
			t.Fatal(err)
		}
		g := optimizeBert(t, g0)
		in := bertInputs(cfg, 4)
		variants := append(append([]bertVariant{}, bertVariants...), bertLaunchVariants...)
		if os.Getenv("KILN_BERT_ABLATE") == "1" {
			variants = append(variants, bertAblations...)
		}
		variants = pickBertVariants(variants, os.Getenv("KILN_BERT_VARIANTS"))
		var first map[string]*tensor.Tensor // the first variant's outputs
		for _, v := range variants {
			t.Run(fmt.Sprintf("batch %d %s", batch, v.name), func(t *testing.T) {
				restore := v.set()
				built := time.Now()
				e, err := NewEngine(g.Clone(), Options{FP16: true, Tune: true})
				restore()
				if err != nil {
					t.Fatal(err)
				}
				defer e.Close()
				t.Logf("batch %d %s: engine built and tuned in %.1f s (%d timings)", batch, v.name, time.Since(built).Seconds(), e.Measured())
				c, err := e.NewContext()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				var out map[string]*tensor.Tensor
				for range 2 {
					if out, err = c.Run(context.Background(), in); err != nil {
						t.Fatal(err)
					}
				}
				if first == nil {
					first = out
				} else {
					for name, w := range first {
						if cos, rel := cosine(out[name], w); !(cos >= bertCosine) {
							t.Errorf("%s: cosine %.6f with the %s engine's (relative L2 %.3g)", name, cos, variants[0].name, rel)
						}
					}
				}
				if _, err := c.DeviceTimes(20); err != nil {
					t.Fatal(err)
				}
				dev, err := c.DeviceTimes(200)
				if err != nil {
					t.Fatal(err)
				}
				sort.Float64s(dev)
				prof := profileLayers(t, c)
				var keys []string
				total := 0.0
				for k, ms := range prof {
					keys = append(keys, k)
					total += ms
				}
				sort.Slice(keys, func(i, j int) bool { return prof[keys[i]] > prof[keys[j]] })
				var parts []string
				for _, k := range keys {
					parts = append(parts, fmt.Sprintf("%s %.3f", k, prof[k]))
				}
				t.Logf("BERT-base fp16 seq 128 batch %d %s: device %.3f ms (p10 %.3f, p90 %.3f; CUDA graph %v); eager profile %.3f ms: %s",
					batch, v.name, dev[len(dev)/2], dev[len(dev)/10], dev[len(dev)*9/10], c.hasLayer, total, strings.Join(parts, "; "))
				epi, plain := 0, 0
				for _, l := range e.Layers() {
					switch l.Impl {
					case "cublaslt (bias epilogue)":
						epi++
					case "cublaslt":
						plain++
					}
				}
				t.Logf("batch %d %s: tuning kept cuBLASLt's epilogue on %d products, the plain call (+ kiln's epilogue kernel) on %d", batch, v.name, epi, plain)
				kernels, lib, pdl := launchCounts(c)
				t.Logf("batch %d %s: a run queues %d kernel launches (%d with programmatic dependent launch; engine pdl=%v) and %d cuBLASLt calls; products: %s",
					batch, v.name, kernels, pdl, e.pdl, lib, gemmChoices(e))
				rows = append(rows, row{batch, v.name, dev[len(dev)/2], summarize(e.Layers()), kernels, lib, pdl})
			})
		}
	}
	var b strings.Builder
	b.WriteString("\n| batch | variant | device ms (median of 200) | kernel launches (PDL) + cuBLASLt calls |\n| --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %s | %.3f | %d (%d) + %d |\n", r.batch, r.v, r.ms, r.kernels, r.pdl, r.lib)
	}
	t.Log(b.String())
	for _, r := range rows {
		t.Logf("layers batch %d %s: %s", r.batch, r.v, r.layers)
	}
	if p := os.Getenv("KILN_BERT_OUT"); p != "" { // the table, for bench/results
		if err := os.WriteFile(p, []byte(b.String()[1:]), 0o644); err != nil {
			t.Error(err)
		}
	}
}
