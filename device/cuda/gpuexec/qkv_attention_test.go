package gpuexec

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestAttentionFQChoice checks which kernel attentionQStaged selects:
// attention_mma_fq for heads of 32 and 64 from 128 query rows on (with
// attention_mma_fa's warps and grid), the earlier kernels otherwise.
func TestAttentionFQChoice(t *testing.T) {
	defer func(q, w, k, p bool, m int64) {
		attentionQStaged, attentionWide, attentionKeys128, fwPipelined, fwMinBlocks = q, w, k, p, m
	}(attentionQStaged, attentionWide, attentionKeys128, fwPipelined, fwMinBlocks)
	attentionKeys128 = true
	for _, tt := range []struct {
		fq, fw  bool
		d, s    int
		b       int64
		want    string
		warps   uint32
		perHead uint32
	}{
		{false, false, 64, 128, 384, "attention_mma_fa128_d64_f16", 4, 2},
		{true, false, 64, 128, 384, "attention_mma_fq_d64_f16", 4, 2},
		{true, false, 64, 128, 12, "attention_mma_fq_d64_f16", 2, 4},
		{true, false, 32, 200, 24, "attention_mma_fq_d32_f16", 4, 4},
		{true, false, 64, 127, 384, "attention_mma_fa_d64_f16", 4, 2},
		{true, false, 128, 128, 384, "attention_mma_fa_d128_f16", 4, 2},
		// attention_mma_fw: 4 warps of 32 rows, from 264 blocks of 128 rows
		{true, true, 64, 128, 384, "attention_mma_fw_d64_f16", 4, 1},
		{false, true, 64, 128, 384, "attention_mma_fw_d64_f16", 4, 1},
		{true, true, 32, 300, 132, "attention_mma_fw_d32_f16", 4, 3},
		{true, true, 64, 128, 263, "attention_mma_fq_d64_f16", 4, 2},
		{false, true, 64, 128, 12, "attention_mma_fa128_d64_f16", 2, 4},
		{true, true, 128, 128, 384, "attention_mma_fa_d128_f16", 4, 2},
		{true, true, 64, 127, 384, "attention_mma_fa_d64_f16", 4, 2},
	} {
		attentionQStaged, attentionWide = tt.fq, tt.fw
		l := mmaLaunch(tt.d, tt.s, tt.b, nil)
		fwPipelined = true // attention_mma_fw2 wherever fw runs
		l2 := mmaLaunch(tt.d, tt.s, tt.b, nil)
		fwPipelined = false
		if want2 := strings.Replace(tt.want, "_fw_", "_fw2_", 1); l2.kernel != want2 || l2.grid != l.grid || l2.block != l.block {
			t.Errorf("fw2: %s grid %v block %v; want %s grid %v block %v", l2.kernel, l2.grid, l2.block, want2, l.grid, l.block)
		}
		if l.kernel != tt.want || l.block.X != 32*tt.warps || l.grid.X != tt.perHead || l.grid.Y != uint32(tt.b) {
			t.Errorf("fq=%v fw=%v head %d, %d rows, %d heads: %s grid %v block %v; want %s, %d warps, %d blocks a head",
				tt.fq, tt.fw, tt.d, tt.s, tt.b, l.kernel, l.grid, l.block, tt.want, tt.warps, tt.perHead)
		}
	}
}

// TestAttentionFQBertProgram compiles BERT-base shaped layers (batch 32
// and 1, sequence 128) in half precision with attentionQStaged on: every
// layer's attention is one attention_mma_fq_d64_f16 launch reading the
// merged QKV product in place, and nothing else of the program changes
// (the same launches and products as with it off, the attention kernel's
// name aside).
func TestAttentionFQBertProgram(t *testing.T) {
	defer func(q, w bool) { attentionQStaged, attentionWide = q, w }(attentionQStaged, attentionWide)
	for _, batch := range []int{32, 1} {
		cfg := bertConfig{layers: 2, hidden: 768, heads: 12, ffn: 3072, vocab: 100, batch: batch, seq: 128}
		g0 := bertGraph(cfg, 1)
		if _, err := ops.InferGraph(g0); err != nil {
			t.Fatal(err)
		}
		g := optimizeBert(t, g0)
		kernels := map[string][]string{}
		for _, v := range []struct {
			name   string
			fq, fw bool
			want   string
		}{
			{"fa128", false, false, "attention_mma_fa128_d64_f16"},
			{"fq", true, false, "attention_mma_fq_d64_f16"},
			// attention_mma_fw at batch 32 (384 heads), fq at batch 1
			{"fw", true, true, map[bool]string{true: "attention_mma_fw_d64_f16", false: "attention_mma_fq_d64_f16"}[batch == 32]},
		} {
			attentionQStaged, attentionWide = v.fq, v.fw
			p, err := compileWith(g, false, true, true)
			if err != nil {
				t.Fatal(err)
			}
			checkProgram(t, p)
			att := 0
			for _, s := range p.steps {
				for _, l := range s.launches {
					name := l.kernel
					if s.node.OpType == "Attention" {
						att++
						if name != v.want {
							t.Errorf("batch %d %s: attention runs %s, want %s", batch, v.name, name, v.want)
						}
						// blocks a head and warps a block: fw 1 of 4; fa and fq
						// 2 of 4 at batch 32, 4 of 2 at batch 1
						perHead, warps := uint32(2), uint32(4)
						switch {
						case name == "attention_mma_fw_d64_f16":
							perHead = 1
						case batch == 1:
							perHead, warps = 4, 2
						}
						if l.grid.X != perHead || l.grid.Y != uint32(batch*cfg.heads) || l.block.X != 32*warps {
							t.Errorf("batch %d %s: %s grid %v block %v, want %d blocks a head of %d warps", batch, v.name, name, l.grid, l.block, perHead, warps)
						}
						name = "attention"
					}
					kernels[v.name] = append(kernels[v.name], name)
				}
				if s.gemm != nil {
					kernels[v.name] = append(kernels[v.name], fmt.Sprintf("gemm %dx%dx%d", s.gemm.m, s.gemm.n, s.gemm.k))
				}
			}
			if att != cfg.layers {
				t.Errorf("batch %d %s: %d attention launches for %d layers", batch, v.name, att, cfg.layers)
			}
		}
		for _, n := range []string{"fq", "fw"} {
			if a, b := strings.Join(kernels["fa128"], ","), strings.Join(kernels[n], ","); a != b {
				t.Errorf("batch %d %s: the programs differ beyond the attention kernel:\n%s\n%s", batch, n, a, b)
			}
		}
	}
}

// TestAttentionFQCompile compiles the kernel sources with NVRTC for sm_90
// (no GPU needed) and checks attention_mma_fq's and _fw's resources as
// ptxas reports them: fq at most 128 registers (four blocks of 128
// threads an SM, as __launch_bounds__ asks) and no spills, fw at most 170
// (three blocks) and at most 32 bytes spilled, static shared memory
// within 48 KB; and that their PTX waits for K before V
// (cp.async.wait_group 1) and stores 16 bytes at a time.
func TestAttentionFQCompile(t *testing.T) {
	nv, err := cuda.OpenNVRTC(cuda.Options{})
	if err != nil {
		t.Skipf("needs NVRTC (libnvrtc.so.13, .12 or .11.2; Debian: apt-get install libnvrtc11.2 from non-free): %v", err)
	}
	c, err := nv.Compile("kiln_kernels.cu", cuda.KernelSource(), "--gpu-architecture=sm_90", "--ptxas-options=-v")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(c.Log, "\n")
	regs := regexp.MustCompile(`Used (\d+) registers, (\d+) bytes smem`)
	spill := regexp.MustCompile(`(\d+) bytes spill stores, (\d+) bytes spill loads`)
	for _, k := range []string{"attention_mma_fq_d32_f16", "attention_mma_fq_d64_f16", "attention_mma_fw_d32_f16", "attention_mma_fw_d64_f16",
		"attention_mma_fw2_d32_f16", "attention_mma_fw2_d64_f16"} {
		// fq: 4 blocks of 128 threads an SM, no spills; fw: 3 blocks,
		// at most a few bytes spilled outside its loops
		maxRegs, maxSpill := 128, 0
		if strings.HasPrefix(k, "attention_mma_fw") {
			maxRegs, maxSpill = 170, 32
		}
		found := false
		for i, l := range lines {
			if !strings.Contains(l, "Compiling entry function '"+k+"'") {
				continue
			}
			found = true
			var r, sm, ss, sl int
			for _, l2 := range lines[i+1 : min(i+4, len(lines))] {
				if m := regs.FindStringSubmatch(l2); m != nil {
					r, _ = strconv.Atoi(m[1])
					sm, _ = strconv.Atoi(m[2])
				}
				if m := spill.FindStringSubmatch(l2); m != nil {
					ss, _ = strconv.Atoi(m[1])
					sl, _ = strconv.Atoi(m[2])
				}
			}
			t.Logf("%s: %d registers, %d bytes of shared memory, spills %d/%d bytes", k, r, sm, ss, sl)
			if r == 0 || r > maxRegs || ss > maxSpill || sl > maxSpill || sm == 0 || sm > 48*1024 {
				t.Errorf("%s: %d registers (want 1-%d), %d bytes smem (want <= 48 KB), spills %d/%d (want at most %d)", k, r, maxRegs, sm, ss, sl, maxSpill)
			}
		}
		if !found {
			t.Errorf("ptxas log has no entry %s:\n%s", k, c.Log)
		}
	}
	p, err := cuda.CompileKernels(nv, "compute_90")
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range strings.Split(string(p.PTX), ".entry ")[1:] {
		name := part[:strings.IndexAny(part, "( \n")]
		minBlocks := map[bool]string{true: "4", false: "3"}[strings.HasPrefix(name, "attention_mma_fq_")]
		if !strings.HasPrefix(name, "attention_mma_fq_") && !strings.HasPrefix(name, "attention_mma_fw") {
			continue
		}
		for _, want := range []string{"cp.async.wait_group 1", "cp.async.wait_group 0", "ldmatrix.sync.aligned.m8n8.x4.shared.b16", ".minnctapersm " + minBlocks, "st.global.v4"} {
			if !strings.Contains(part, want) {
				t.Errorf("%s: PTX has no %q", name, want)
			}
		}
	}
}

// attentionFQCase is an attention graph for TestAttentionFQOnGPU: built
// with kiln::Attention, with its inputs.
type attentionFQCase struct {
	name  string
	build func(b *ir.Builder, r *rand.Rand) *ir.Value
	in    func(r *rand.Rand) map[string]*tensor.Tensor
}

func attentionFQCases() []attentionFQCase {
	rnd := func(r *rand.Rand, shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64())
		}
		return x
	}
	f := func(s ...int) []ir.Dim {
		d := make([]ir.Dim, len(s))
		for i, x := range s {
			d[i] = ir.D(int64(x))
		}
		return d
	}
	// padding: the mask is -10000 past n_i keys of sequence i
	padMask := func(b, t int, shape ...int) *tensor.Tensor {
		m := tensor.New(tensor.Float32, shape...)
		per := m.Len() / b
		for i := range m.Len() {
			if key := i % t; key >= t-17*(i/per) {
				m.Float32s()[i] = -10000
			}
		}
		return m
	}
	// inPlace is BERT's form: one [B, S, 3*H*D] projection split into Q, K,
	// V and the heads transposed, which the compiler reads in place
	// (strided, 16-byte aligned rows) and whose output it writes as
	// [B, S, H, D].
	inPlace := func(B, S, H, D int) attentionFQCase {
		return attentionFQCase{fmt.Sprintf("in place B%d S%d H%d D%d, padding mask", B, S, H, D),
			func(b *ir.Builder, r *rand.Rand) *ir.Value {
				x := b.Input("x", tensor.Float32, f(B, S, 3*H*D)...)
				m := b.Input("m", tensor.Float32, f(B, 1, 1, S)...)
				qkv := b.OpN("Split", 3, []*ir.Value{x, b.Const("sp", tensor.FromInt64([]int64{int64(H * D), int64(H * D), int64(H * D)}, 3))}, ir.IntAttr("axis", -1))
				heads := b.Const("hs", tensor.FromInt64([]int64{int64(B), int64(S), int64(H), int64(D)}, 4))
				q := b.Op("Transpose", []*ir.Value{b.Op("Reshape", []*ir.Value{qkv[0], heads})}, ir.IntsAttr("perm", 0, 2, 1, 3))
				k := b.Op("Transpose", []*ir.Value{b.Op("Reshape", []*ir.Value{qkv[1], heads})}, ir.IntsAttr("perm", 0, 2, 3, 1))
				v := b.Op("Transpose", []*ir.Value{b.Op("Reshape", []*ir.Value{qkv[2], heads})}, ir.IntsAttr("perm", 0, 2, 1, 3))
				y := b.Op("Attention", []*ir.Value{q, k, v, m}, ir.FloatAttr("scale", float32(1/math.Sqrt(float64(D)))))
				y = b.Op("Transpose", []*ir.Value{y}, ir.IntsAttr("perm", 0, 2, 1, 3))
				return b.Op("Reshape", []*ir.Value{y, b.Const("os", tensor.FromInt64([]int64{int64(B), int64(S), int64(H * D)}, 3))})
			},
			func(r *rand.Rand) map[string]*tensor.Tensor {
				return map[string]*tensor.Tensor{"x": rnd(r, B, S, 3*H*D), "m": padMask(B, S, B, 1, 1, S)}
			}}
	}
	return []attentionFQCase{
		inPlace(3, 128, 4, 64),  // BERT's shape: one chunk of 128 keys, 2 blocks a head
		inPlace(2, 200, 2, 64),  // two chunks, the second partial; a partial block of rows
		inPlace(2, 140, 3, 32),  // head 32
		inPlace(1, 128, 12, 64), // batch 1: 2 warps a block
		{"separate inputs S 150 T 300 D 64, a mask per query row", // K as [D, T]: the scalar staging path
			func(b *ir.Builder, r *rand.Rand) *ir.Value {
				q := b.Input("q", tensor.Float32, f(2, 2, 150, 64)...)
				k := b.Input("k", tensor.Float32, f(2, 2, 64, 300)...)
				v := b.Input("v", tensor.Float32, f(2, 2, 300, 64)...)
				m := b.Input("m", tensor.Float32, f(2, 1, 150, 300)...)
				return b.Op("Attention", []*ir.Value{q, k, v, m}, ir.FloatAttr("scale", 0.125))
			},
			func(r *rand.Rand) map[string]*tensor.Tensor {
				return map[string]*tensor.Tensor{"q": rnd(r, 2, 2, 150, 64), "k": rnd(r, 2, 2, 64, 300), "v": rnd(r, 2, 2, 300, 64),
					"m": padMask(2, 300, 2, 1, 150, 300)}
			}},
		{"separate inputs S 128 T 70 D 32, no mask", // one sub-chunk of keys
			func(b *ir.Builder, r *rand.Rand) *ir.Value {
				q := b.Input("q", tensor.Float32, f(3, 128, 32)...)
				k := b.Input("k", tensor.Float32, f(3, 32, 70)...)
				v := b.Input("v", tensor.Float32, f(3, 70, 32)...)
				return b.Op("Attention", []*ir.Value{q, k, v}, ir.FloatAttr("scale", 0.3))
			},
			func(r *rand.Rand) map[string]*tensor.Tensor {
				return map[string]*tensor.Tensor{"q": rnd(r, 3, 128, 32), "k": rnd(r, 3, 32, 70), "v": rnd(r, 3, 70, 32)}
			}},
	}
}

// TestAttentionFQOnGPU runs each attention case in half precision with
// attention_mma_fa(128), attention_mma_fq, attention_mma_fw and _fw2 (its
// fwMinBlocks lowered to 1 so that they run for every case) and compares
// each with kiln's CPU engine in float32 (cosine at least 0.999, as every
// FP16 op test), and fq, fw and fw2 with fa (the same arithmetic up to the
// order of the softmax's rescaling: a few half-precision roundings apart).
// Three runs each (eager, capture, replay). Needs a GPU.
func TestAttentionFQOnGPU(t *testing.T) {
	needGPU(t)
	fwMin := fwMinBlocks
	defer func(q, w, p bool) { attentionQStaged, attentionWide, fwPipelined, fwMinBlocks = q, w, p, fwMin }(attentionQStaged, attentionWide, fwPipelined)
	for _, tc := range attentionFQCases() {
		t.Run(tc.name, func(t *testing.T) {
			mk := func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				b.Output(tc.build(b, rand.New(rand.NewPCG(3, 4))), "out")
				g := b.Graph()
				for _, n := range g.Nodes {
					if n.OpType == "Attention" {
						n.Domain = "kiln"
					}
				}
				if _, err := ops.InferGraph(g); err != nil {
					t.Fatal(err)
				}
				return g
			}
			in := tc.in(rand.New(rand.NewPCG(5, 6)))
			ce, err := engine.New(mk())
			if err != nil {
				t.Fatal(err)
			}
			want, err := ce.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]*tensor.Tensor{}
			for _, v := range []struct {
				name   string
				fq, fw bool
			}{{"fa", false, false}, {"fq", true, false}, {"fw", false, true}, {"fw2", false, true}} {
				attentionQStaged, attentionWide, fwMinBlocks, fwPipelined = v.fq, v.fw, 1, v.name == "fw2"
				e, err := NewEngine(mk(), Options{FP16: true})
				attentionQStaged, attentionWide, fwMinBlocks, fwPipelined = false, false, fwMin, false
				if err != nil {
					t.Fatal(err)
				}
				var kernel string
				for _, l := range e.Layers() {
					if strings.Contains(l.Impl, "attention") {
						kernel = l.Impl
					}
				}
				c, err := e.NewContext()
				if err != nil {
					e.Close()
					t.Fatal(err)
				}
				for run := range 3 {
					out, err := c.Run(context.Background(), in)
					if err != nil {
						t.Fatalf("%s run %d: %v", v.name, run, err)
					}
					cos, rel := cosine(out["out"], want["out"])
					if !(cos >= minCosine) {
						t.Errorf("%s run %d: cosine %.6f < %g (relative L2 %.3g)", v.name, run, cos, minCosine, rel)
					}
					if run == 2 {
						t.Logf("%s (%s): cosine %.7f, relative L2 %.3g (graph %v)", v.name, kernel, cos, rel, c.Graphed())
						got[v.name] = out["out"]
					}
				}
				c.Close()
				e.Close()
			}
			for _, n := range []string{"fq", "fw", "fw2"} {
				worst := 0.0
				for i := range got[n].Len() {
					worst = max(worst, math.Abs(got[n].Float(i)-got["fa"].Float(i)))
				}
				t.Logf("largest difference between %s and fa: %.3g", n, worst)
				if worst > 0.02 {
					t.Errorf("%s and fa differ by up to %.3g", n, worst)
				}
			}
		})
	}
}

// TestPickBertVariants checks $KILN_BERT_VARIANTS's filter: the first
// variant always, then the named ones in their order; all when empty.
func TestPickBertVariants(t *testing.T) {
	all := append(append([]bertVariant{}, bertVariants...), bertLaunchVariants...)
	names := func(vs []bertVariant) string {
		var s []string
		for _, v := range vs {
			s = append(s, v.name)
		}
		return strings.Join(s, "|")
	}
	for _, tt := range []struct{ only, want string }{
		{"", names(all)},
		{"after", "before|after"},
		{"after + Q staged (attention_mma_fq), after + PDL", "before|after + Q staged (attention_mma_fq)|after + PDL"},
		{"no such", "before"},
	} {
		if got := names(pickBertVariants(all, tt.only)); got != tt.want {
			t.Errorf("%q: %s, want %s", tt.only, got, tt.want)
		}
	}
}
