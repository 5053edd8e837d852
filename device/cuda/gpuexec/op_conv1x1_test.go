package gpuexec

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// pointwiseNet is a graph of 1x1 convolutions written with ir.Builder,
// input "x" [batch, c, hw, hw] (c a multiple of 8, hw even):
//
//   - stem: s = Relu(Conv c->c 3x3 + bias), a convolution cuDNN runs;
//   - a = Relu(Conv 1x1 c->4c + bias)(s): bias+ReLU in cuBLASLt's epilogue;
//   - r = Relu(Conv 1x1 4c->c + bias (a) + s): bias+residual+ReLU, the
//     residual through C;
//   - k = Clip(Conv 1x1 c->4c + bias (r), 0, 6): an activation cuBLASLt's
//     epilogue lacks, the product then the epilogue kernel;
//   - y = Conv 1x1 4c->c (k), no bias: the product alone (output "y");
//   - down = Conv 1x1 c->2c of stride 2 + bias (r): not a plain product,
//     cuDNN's (output "down").
func pointwiseNet(t testing.TB, c, hw int) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(c), uint64(hw)))
	randT := func(scale float64, shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64() * scale)
		}
		return x
	}
	b := ir.NewBuilder("pointwise", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(int64(c)), ir.D(int64(hw)), ir.D(int64(hw)))
	conv := func(in *ir.Value, cin, cout, k, s int, bias bool) *ir.Value {
		p := int64(k / 2)
		ins := []*ir.Value{in, b.Const("", randT(1/math.Sqrt(float64(cin*k*k)), cout, cin, k, k))}
		if bias {
			ins = append(ins, b.Const("", randT(0.1, cout)))
		}
		return b.Op("Conv", ins, ir.IntsAttr("kernel_shape", int64(k), int64(k)), ir.IntsAttr("strides", int64(s), int64(s)),
			ir.IntsAttr("pads", p, p, p, p))
	}
	relu := func(v *ir.Value) *ir.Value { return b.Op("Relu", []*ir.Value{v}) }
	s := relu(conv(x, c, c, 3, 1, true))
	a := relu(conv(s, c, 4*c, 1, 1, true))
	res := relu(b.Op("Add", []*ir.Value{conv(a, 4*c, c, 1, 1, true), s}))
	k := b.Op("Clip", []*ir.Value{conv(res, c, 4*c, 1, 1, true), b.Const("", tensor.FromFloat32([]float32{0})), b.Const("", tensor.FromFloat32([]float32{6}))})
	b.Output(conv(k, 4*c, c, 1, 1, false), "y")
	b.Output(conv(res, c, 2*c, 1, 2, true), "down")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

// pointwiseModel writes pointwiseNet(c, hw) to a file and returns its path
// and an input of the given batch.
func pointwiseModel(t testing.TB, c, hw, batch int) (string, map[string]*tensor.Tensor) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pointwise.onnx")
	if err := os.WriteFile(path, pointwiseNet(t, c, hw), 0o644); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(batch), 3))
	x := tensor.New(tensor.Float32, batch, c, hw, hw)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(r.NormFloat64())
	}
	return path, map[string]*tensor.Tensor{"x": x}
}

// pointwiseLayer is a 1x1 convolution of an engine that cuBLASLt can run.
type pointwiseLayer struct {
	name, sig string
	epi       bool // its whole epilogue fits cuBLASLt's
	residual  bool
}

// pointwiseLayers lists e's 1x1 convolutions that are products, and counts
// the other 1x1 convolutions.
func pointwiseLayers(e *Engine) (pw []pointwiseLayer, other int) {
	for _, s := range e.prog.steps {
		switch cc := s.conv; {
		case cc == nil:
		case cc.gemm1x1():
			pw = append(pw, pointwiseLayer{s.node.Name, convSig(s, e.prog.half), cc.ltEpilogue1x1(), cc.z != nil})
		case cc.kh == 1 && cc.kw == 1:
			other++
		}
	}
	return pw, other
}

// layerTactics maps the engine's convolutions to their Layer.Tactic.
func layerTactics(e *Engine) map[string]string {
	out := map[string]string{}
	for _, l := range e.Layers() {
		if strings.Contains(l.Op, "Conv") {
			out[l.Node] = l.Tactic
		}
	}
	return out
}

// TestConv1x1Fake builds pointwiseNet in half against the fake libraries,
// as kiln build --device cuda --fp16 does: untuned, every convolution stays
// cuDNN's; tuning times cuBLASLt's products (each heuristic result, with
// the epilogue where it fits, else plain; both with conv1x1PlainToo)
// beside cuDNN's candidates for the four stride-1 1x1 layers only and
// stores them in the timing cache; times in
// the cache that favour the products make the layers run as products
// (epilogue bias+ReLU, bias+residual+ReLU, or the epilogue kernel after),
// which the tactics record; the tactics applied to a new engine and
// through a plan's blob give the same layers, and the plan's layer report
// (what kiln inspect prints) shows them; a stale or refused tactic leaves
// cuDNN's plan.
func TestConv1x1Fake(t *testing.T) {
	dir := fakeLibs(t)
	path, in := pointwiseModel(t, 16, 8, 2)
	g := optimizedGraph(t, path, in)
	fp := device.Fingerprint{"gpu": "fake"}

	base, bc := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true})
	pw, strided := pointwiseLayers(base)
	var epis, resids int
	for _, l := range pw {
		if l.epi {
			epis++
		}
		if l.residual {
			resids++
		}
	}
	if len(pw) != 4 || epis != 2 || resids != 1 || strided != 1 {
		t.Fatalf("products %+v (%d with cuBLASLt's epilogue, %d with a residual), %d other 1x1 convolutions; want 4, 2, 1 and 1", pw, epis, resids, strided)
	}
	baseTactics := layerTactics(base)
	for n, tac := range baseTactics {
		if !strings.HasPrefix(tac, "cudnn nhwc") {
			t.Errorf("untuned: %s runs as %q", n, tac)
		}
	}
	if _, err := bc.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}

	// Tuning: the fake's events measure 1.5 ms for every candidate, ties
	// keep cuDNN's first choice.
	cache := tactic.New()
	e1, c1 := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Tune: true, TimingCache: cache, CacheDevice: fp})
	if _, err := c1.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	for _, l := range pw {
		if tt := e1.Tactics()[l.name]; tt.Impl != ImplCUDNN {
			t.Errorf("%s: tactic %+v on ties, want cuDNN's", l.name, tt)
		}
		for r := range 3 { // the fake's heuristic gives 3 results
			if _, ok := cache.Lookup(fp, l.sig, Tactic{Impl: ImplCUBLASLt, Algo: r}.name()); ok == l.epi {
				t.Errorf("%s: plain product %d timed %v, want %v", l.name, r, ok, !l.epi)
			}
			if _, ok := cache.Lookup(fp, l.sig, Tactic{Impl: ImplCUBLASLt, Algo: r, Epi: true}.name()); ok != l.epi {
				t.Errorf("%s: product %d with the epilogue timed %v, want %v", l.name, r, ok, l.epi)
			}
		}
	}
	for i, s := range e1.prog.steps {
		if s.conv != nil && !s.conv.gemm1x1() {
			if _, ok := cache.Lookup(fp, convSig(s, true), "cublaslt:0"); ok {
				t.Errorf("%s (not a stride-1 1x1 convolution): a product was timed", s.name())
			}
		}
		if e1.conv1x1.use[i] != nil {
			t.Errorf("%s runs as a product after ties", s.name())
		}
	}
	if len(e1.conv1x1.spare) != 0 {
		t.Errorf("%d steps keep spare products after tuning", len(e1.conv1x1.spare))
	}
	// With conv1x1PlainToo, the plain products are timed where the
	// epilogue fits too.
	conv1x1PlainToo = true
	both := tactic.New()
	fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Tune: true, TimingCache: both, CacheDevice: fp})
	conv1x1PlainToo = false
	for _, l := range pw {
		for _, epi := range []bool{false, true} {
			if _, ok := both.Lookup(fp, l.sig, Tactic{Impl: ImplCUBLASLt, Algo: 2, Epi: epi}.name()); ok != (!epi || l.epi) {
				t.Errorf("%s with conv1x1PlainToo: product 2 (epilogue %v) timed %v", l.name, epi, ok)
			}
		}
	}

	// The cache says the products are faster: the epilogue's second
	// result where the epilogue fits, else the plain third.
	want := Tactics{}
	for _, l := range pw {
		tt := Tactic{Sig: l.sig, Impl: ImplCUBLASLt, Algo: 2, NS: 1000}
		if l.epi {
			tt.Algo, tt.Epi = 1, true
		}
		cache.Store(fp, l.sig, tt.name(), time.Duration(tt.NS))
		want[l.name] = tt
	}
	e2, c2 := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Tune: true, TimingCache: cache, CacheDevice: fp})
	if e2.Measured() != 0 || e2.reverted {
		t.Fatalf("tuning from the cache measured %d, reverted %v", e2.Measured(), e2.reverted)
	}
	got := e2.Tactics()
	for _, l := range pw {
		if !reflect.DeepEqual(got[l.name], want[l.name]) {
			t.Errorf("%s: tactic %+v, want %+v", l.name, got[l.name], want[l.name])
		}
	}
	tuned := layerTactics(e2)
	for _, l := range pw {
		tac := tuned[l.name]
		var wantTac string
		switch {
		case l.residual:
			wantTac = "cublaslt nhwc 1x1 gemm 128x16x64 algo 43 (heuristic #1 of 3), bias+residual+ReLU epilogue"
		case l.epi:
			wantTac = "cublaslt nhwc 1x1 gemm 128x64x16 algo 43 (heuristic #1 of 3), bias+ReLU epilogue"
		case strings.Contains(l.sig, "post= "): // no bias, no activation
			wantTac = "cublaslt nhwc 1x1 gemm 128x16x64 algo 44 (heuristic #2 of 3)"
		default:
			wantTac = "cublaslt nhwc 1x1 gemm 128x64x16 algo 44 (heuristic #2 of 3) + chan_epilogue_vec_f16"
		}
		if tac != wantTac {
			t.Errorf("%s runs as %q, want %q", l.name, tac, wantTac)
		}
	}
	for i, s := range e2.prog.steps {
		if e2.conv1x1.use[i] != nil && (e2.convs[i] != nil || e2.fused[i] != nil || e2.graphs[i] != nil) {
			t.Errorf("%s: a product and a cuDNN plan", s.name())
		}
		if s.conv != nil && !s.conv.gemm1x1() && e2.conv1x1.use[i] != nil {
			t.Errorf("%s runs as a product", s.name())
		}
	}
	for _, l := range e2.Layers() {
		if strings.HasPrefix(l.Tactic, "cublaslt nhwc 1x1") && (!strings.HasPrefix(l.Impl, "cublaslt nhwc 1x1") || l.Workspace != 0 || l.Time != time.Microsecond) {
			t.Errorf("%s: %+v", l.Node, l)
		}
	}
	for range 3 { // eager, captured, replayed
		if _, err := c2.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}

	// The choices as a plan keeps them, applied without timing.
	parsed, err := ParseTactics(e2.Tactics().Marshal())
	if err != nil {
		t.Fatal(err)
	}
	e3, c3 := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Tactics: parsed})
	if e3.Measured() != 0 || !reflect.DeepEqual(layerTactics(e3), tuned) {
		t.Errorf("applied: measured %d, layers\n%v\nwant\n%v", e3.Measured(), layerTactics(e3), tuned)
	}
	if _, err := c3.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}

	// cuDNN's plan runs where the product cannot: without cuBLASLt, or a
	// tactic naming a heuristic result that is not there, or another
	// signature's.
	stale, other := Tactics{}, Tactics{}
	for n, tt := range parsed {
		if tt.Impl == ImplCUBLASLt {
			s := tt
			s.Algo = 9
			stale[n] = s
			o := tt
			o.Sig += " other"
			other[n] = o
		}
	}
	for _, tc := range []struct {
		name string
		opt  Options
	}{
		{"no cuBLASLt", Options{LibDir: dir, FP16: true, Tactics: parsed, NoCUBLASLt: true}},
		{"stale rank", Options{LibDir: dir, FP16: true, Tactics: stale}},
		{"other signature", Options{LibDir: dir, FP16: true, Tactics: other}},
	} {
		e, c := fakeEngine(t, dir, g, tc.opt)
		for _, l := range pw {
			if tac := layerTactics(e)[l.name]; tac != baseTactics[l.name] {
				t.Errorf("%s: %s runs as %q, want %q", tc.name, l.name, tac, baseTactics[l.name])
			}
		}
		if _, err := c.Run(context.Background(), in); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}

	// Through the device's Compiler with the plan header's choices, as
	// kiln run and kiln inspect load a plan: the layer report names the
	// products.
	t.Setenv(cuda.EnvLibPath, dir)
	var header []device.Tactic
	for layer, tt := range parsed {
		header = append(header, device.Tactic{Layer: layer, Tactic: tt.name(), Sig: tt.Sig})
	}
	prog, err := compilePlan(g, device.ExecOptions{Precision: "fp16", Tactics: header})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	rep, err := device.ParseLayerReport(prog.(*planProgram).Blobs()[device.LayersBlob])
	if err != nil {
		t.Fatal(err)
	}
	reported := map[string]string{}
	for _, l := range rep.Layers {
		reported[l.Name] = l.Tactic
	}
	for _, l := range pw {
		if reported[l.name] != tuned[l.name] {
			t.Errorf("plan report: %s runs as %q, want %q", l.name, reported[l.name], tuned[l.name])
		}
	}
	if _, err := prog.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}

	// TestConv1x1BenchOnGPU's one-layer networks: a graph input as the
	// residual, and a downsample without activation, are products with
	// the epilogue; the strided one is not a product.
	for _, tc := range []struct {
		stride           int
		residual, linear bool
		products         int
	}{{1, true, false, 1}, {1, false, true, 1}, {2, false, true, 0}} {
		p := filepath.Join(t.TempDir(), "oneconv.onnx")
		if err := os.WriteFile(p, oneConvNet(t, 16, 8, 32, tc.stride, tc.residual, tc.linear), 0o644); err != nil {
			t.Fatal(err)
		}
		x := map[string]*tensor.Tensor{"x": fastRandom(1, 2, 16, 8, 8)}
		if tc.residual {
			x["z"] = fastRandom(2, 2, 32, 8, 8)
		}
		e, c := fakeEngine(t, dir, optimizedGraph(t, p, x), Options{LibDir: dir, FP16: true, Tune: true})
		pw, _ := pointwiseLayers(e)
		if len(pw) != tc.products || (len(pw) == 1 && (!pw[0].epi || pw[0].residual != tc.residual)) {
			t.Errorf("one convolution %+v: products %+v", tc, pw)
		}
		if _, err := c.Run(context.Background(), x); err != nil {
			t.Errorf("one convolution %+v: %v", tc, err)
		}
	}
}

// TestConv1x1OnGPU runs pointwiseNet in half with its 1x1 convolutions as
// cuBLASLt products (with the epilogue and residual through C, and plain
// with the epilogue kernel, each of the first heuristic results), and
// tuned, and compares every output with the CPU engine's float32 (cosine
// >= minCosine, three runs: eager, captured, replayed).
func TestConv1x1OnGPU(t *testing.T) {
	needGPU(t)
	for _, m := range []struct{ c, hw, batch int }{{16, 8, 1}, {16, 8, 3}, {64, 14, 4}} {
		path, in := pointwiseModel(t, m.c, m.hw, m.batch)
		want := cpuRun(t, path, in)
		g := optimizedGraph(t, path, in)
		base, err := NewEngine(g, Options{FP16: true})
		if err != nil {
			t.Fatal(err)
		}
		pw, _ := pointwiseLayers(base)
		base.Close()
		forced := func(rank int, epi bool) Tactics {
			out := Tactics{}
			for _, l := range pw {
				out[l.name] = Tactic{Sig: l.sig, Impl: ImplCUBLASLt, Algo: rank, Epi: epi && l.epi}
			}
			return out
		}
		cfgs := []struct {
			name    string
			opt     Options
			product bool // every 1x1 layer must run as a product
		}{{"tuned", Options{FP16: true, Tune: true}, false}}
		for r := range 4 {
			cfgs = append(cfgs,
				struct {
					name    string
					opt     Options
					product bool
				}{fmt.Sprintf("epilogue-%d", r), Options{FP16: true, Tactics: forced(r, true)}, r == 0},
				struct {
					name    string
					opt     Options
					product bool
				}{fmt.Sprintf("plain-%d", r), Options{FP16: true, Tactics: forced(r, false)}, r == 0})
		}
		for _, cfg := range cfgs {
			t.Run(fmt.Sprintf("c%d/hw%d/batch%d/%s", m.c, m.hw, m.batch, cfg.name), func(t *testing.T) {
				e, err := NewEngine(g, cfg.opt)
				if err != nil {
					t.Fatal(err)
				}
				defer e.Close()
				tacs := layerTactics(e)
				products := 0
				for _, l := range pw {
					if strings.HasPrefix(tacs[l.name], "cublaslt nhwc 1x1") {
						products++
					} else if cfg.product {
						t.Errorf("%s runs as %q", l.name, tacs[l.name])
					}
				}
				t.Logf("%d of %d 1x1 layers as products: %v", products, len(pw), tacs)
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
						cos, rel := cosine(got[name], w)
						if !(cos >= minCosine) {
							t.Errorf("run %d %s: cosine %.6f < %g (relative L2 error %.3g)", run, name, cos, minCosine, rel)
						} else if run == 2 {
							t.Logf("%s: cosine %.6f, relative L2 error %.3g", name, cos, rel)
						}
					}
				}
			})
		}
	}
}

// resnet50Pointwise are ResNet-50's 1x1 convolutions (torchvision v1.5,
// BatchNorm folded into the bias): input channels, size, output channels,
// stride, how many, and whether the residual is added (then ReLU) or the
// layer has no activation (a downsample) rather than ReLU.
var resnet50Pointwise = []struct {
	c, hw, m, stride, count int
	residual, linear        bool
}{
	{64, 56, 64, 1, 1, false, false},
	{256, 56, 64, 1, 2, false, false},
	{64, 56, 256, 1, 3, true, false},
	{64, 56, 256, 1, 1, false, true},
	{256, 56, 128, 1, 1, false, false},
	{256, 56, 512, 2, 1, false, true},
	{512, 28, 128, 1, 3, false, false},
	{128, 28, 512, 1, 4, true, false},
	{512, 28, 256, 1, 1, false, false},
	{512, 28, 1024, 2, 1, false, true},
	{1024, 14, 256, 1, 5, false, false},
	{256, 14, 1024, 1, 6, true, false},
	{1024, 14, 512, 1, 1, false, false},
	{1024, 14, 2048, 2, 1, false, true},
	{2048, 7, 512, 1, 2, false, false},
	{512, 7, 2048, 1, 3, true, false},
}

// oneConvNet is x [batch, c, hw, hw] -> Conv 1x1 c->m of the stride, with
// bias, then + z [batch, m, oh, oh] (residual) and Relu unless linear,
// then GlobalAveragePool -> "y" [batch, m, 1, 1]: the pooled output is the
// same in either layout, so the convolution's region has no transpose at
// its edges and runs NHWC (an NCHW output would cost one: layout.go).
func oneConvNet(t testing.TB, c, hw, m, stride int, residual, linear bool) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(c), uint64(m)))
	randT := func(scale float64, shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32((r.Float64()*2 - 1) * scale)
		}
		return x
	}
	b := ir.NewBuilder("oneconv", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(int64(c)), ir.D(int64(hw)), ir.D(int64(hw)))
	y := b.Op("Conv", []*ir.Value{x, b.Const("w", randT(math.Sqrt(3/float64(c)), m, c, 1, 1)), b.Const("b", randT(0.1, m))},
		ir.IntsAttr("kernel_shape", 1, 1), ir.IntsAttr("strides", int64(stride), int64(stride)))
	if residual {
		oh := (hw-1)/stride + 1
		z := b.Input("z", tensor.Float32, ir.S("batch"), ir.D(int64(m)), ir.D(int64(oh)), ir.D(int64(oh)))
		y = b.Op("Add", []*ir.Value{y, z})
	}
	if !linear {
		y = b.Op("Relu", []*ir.Value{y})
	}
	b.Output(b.Op("GlobalAveragePool", []*ir.Value{y}), "y")
	mod, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return mod.Marshal()
}

// fastRandom fills a float32 tensor of the shape with values in [-1, 1)
// (a cheap generator: batch-256 activations are hundreds of millions).
func fastRandom(seed uint64, shape ...int) *tensor.Tensor {
	x := tensor.New(tensor.Float32, shape...)
	s := seed*0x9E3779B97F4A7C15 + 1
	for i := range x.Float32s() {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		x.Float32s()[i] = float32(s>>40)/float32(1<<23) - 1
	}
	return x
}

// TestConv1x1BenchOnGPU times ResNet-50's 1x1 convolutions in half at
// batch 256 ($KILN_CONV1X1_BENCH_BATCH), each as a one-layer network
// tuned twice with one timing cache: without cuBLASLt (cuDNN's fused and
// plain NHWC calls and kiln's kernel: the best of them), then with the
// products (cuBLASLt's best, with the epilogue and plain + the epilogue
// kernel: conv1x1PlainToo), and checks on the GPU that the best product's output (pooled:
// oneConvNet) matches cuDNN's (cosine >= minCosine). It logs a table (also written to
// $KILN_CONV1X1_BENCH_OUT). Set KILN_CONV1X1_BENCH=1 to run it (about a
// minute on an H100); KILN_CONV1X1_BENCH_GRAPH=1 adds cuDNN's graph-API
// engines to cuDNN's side.
func TestConv1x1BenchOnGPU(t *testing.T) {
	if os.Getenv("KILN_CONV1X1_BENCH") == "" {
		t.Skip("set KILN_CONV1X1_BENCH=1 to time ResNet-50's 1x1 convolutions as cuDNN calls and cuBLASLt products")
	}
	needGPU(t)
	batch, err := strconv.Atoi(cmp.Or(os.Getenv("KILN_CONV1X1_BENCH_BATCH"), "256"))
	if err != nil || batch < 1 {
		t.Fatalf("KILN_CONV1X1_BENCH_BATCH: %v", err)
	}
	graphs := os.Getenv("KILN_CONV1X1_BENCH_GRAPH") == "1"
	conv1x1PlainToo = true // the table's plain column
	t.Cleanup(func() { conv1x1PlainToo = false })
	gfp, _ := cuda.Probe(cuda.Options{})
	fp := device.Fingerprint{"gpu": gfp.String()}
	us := func(ns int64) string {
		if ns <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(ns)/1e3)
	}
	rows := []string{fmt.Sprintf("ResNet-50 1x1 convolutions, FP16 NHWC, batch %d, %s: device time per layer in us (tuning's median of 7, CUDA graph replay)", batch, gfp.GPUName), "",
		"| layer | count | epilogue | cuDNN best | its tactic | cuBLASLt with epilogue | cuBLASLt + epilogue kernel | tuned picks | product vs cuDNN (cosine) |",
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- |"}
	var sumDNN, sumLt, sumBest float64
	for _, l := range resnet50Pointwise {
		name := fmt.Sprintf("%dx%dx%d -> %d, 1x1/%d", l.c, l.hw, l.hw, l.m, l.stride)
		epi := "bias+ReLU"
		switch {
		case l.residual:
			epi = "bias+residual+ReLU"
		case l.linear:
			epi = "bias"
		}
		path := filepath.Join(t.TempDir(), "oneconv.onnx")
		if err := os.WriteFile(path, oneConvNet(t, l.c, l.hw, l.m, l.stride, l.residual, l.linear), 0o644); err != nil {
			t.Fatal(err)
		}
		in := map[string]*tensor.Tensor{"x": fastRandom(1, batch, l.c, l.hw, l.hw)}
		if l.residual {
			in["z"] = fastRandom(2, batch, l.m, l.hw, l.hw)
		}
		g := optimizedGraph(t, path, in)
		cache := tactic.New()
		build := func(o Options) (*Engine, Tactic, string) {
			t.Helper()
			o.FP16, o.Tune, o.TimingCache, o.CacheDevice = true, true, cache, fp
			e, err := NewEngine(g, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, ly := range e.Layers() {
				if strings.Contains(ly.Op, "Conv") {
					return e, e.Tactics()[ly.Node], ly.Tactic
				}
			}
			e.Close()
			t.Fatalf("%s: no convolution in %+v", name, e.Layers())
			return nil, Tactic{}, ""
		}
		dnn, dt, dtac := build(Options{NoCUBLASLt: true, GraphConv: graphs})
		if !strings.HasPrefix(dtac, "cudnn nhwc") && !strings.HasPrefix(dtac, "conv2d_nhwc") {
			t.Errorf("%s: not NHWC: %q", name, dtac)
		}
		lt, ltT, ltTac := build(Options{GraphConv: graphs})
		// the products' times, from the cache the second build filled
		bestLt := func(epi bool) (int64, int) {
			best, rank := int64(0), -1
			for r := range 16 {
				if d, ok := cache.Lookup(fp, ltT.Sig, Tactic{Impl: ImplCUBLASLt, Algo: r, Epi: epi}.name()); ok && (rank < 0 || int64(d) < best) {
					best, rank = int64(d), r
				}
			}
			return best, rank
		}
		epiNS, epiRank := bestLt(true)
		plainNS, plainRank := bestLt(false)
		agree := "-"
		if epiRank >= 0 || plainRank >= 0 {
			// the fastest product, forced, against cuDNN's output
			ft := Tactic{Sig: ltT.Sig, Impl: ImplCUBLASLt, Algo: plainRank}
			if epiRank >= 0 && (plainRank < 0 || epiNS <= plainNS) {
				ft.Algo, ft.Epi = epiRank, true
			}
			var node string
			for n := range lt.Tactics() {
				node = n
			}
			forced, err := NewEngine(g, Options{FP16: true, Tactics: Tactics{node: ft}})
			if err != nil {
				t.Fatal(err)
			}
			outs := make([]map[string]*tensor.Tensor, 2)
			for k, e := range []*Engine{dnn, forced} {
				c, err := e.NewContext()
				if err != nil {
					t.Fatal(err)
				}
				if outs[k], err = c.Run(context.Background(), in); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				c.Close()
			}
			if tac := layerTactics(forced)[node]; !strings.HasPrefix(tac, "cublaslt nhwc 1x1") {
				t.Errorf("%s: the forced product runs as %q", name, tac)
			}
			forced.Close()
			cos, rel := cosine(outs[1]["y"], outs[0]["y"])
			agree = fmt.Sprintf("%.6f", cos)
			if !(cos >= minCosine) {
				t.Errorf("%s: product against cuDNN: cosine %.6f (relative L2 %.3g)", name, cos, rel)
			}
		}
		dnn.Close()
		lt.Close()
		rows = append(rows, fmt.Sprintf("| %s | %d | %s | %s | %s | %s | %s | %s | %s |", name, l.count, epi, us(dt.NS), dtac, us(epiNS), us(plainNS), ltTac, agree))
		t.Log(rows[len(rows)-1])
		n := float64(l.count)
		lb := float64(dt.NS) // strided: cuDNN's
		if epiNS > 0 || plainNS > 0 {
			lb = math.Inf(1)
			for _, v := range []int64{epiNS, plainNS} {
				if v > 0 {
					lb = min(lb, float64(v))
				}
			}
		}
		sumDNN += n * float64(dt.NS)
		sumLt += n * lb
		sumBest += n * min(lb, float64(dt.NS))
	}
	rows = append(rows, fmt.Sprintf("\nAll %d 1x1 layers: cuDNN best %.3f ms; cuBLASLt where it applies (cuDNN on the strided ones) %.3f ms; the faster of the two per layer %.3f ms.",
		func() int {
			n := 0
			for _, l := range resnet50Pointwise {
				n += l.count
			}
			return n
		}(), sumDNN/1e6, sumLt/1e6, sumBest/1e6))
	table := strings.Join(rows, "\n") + "\n"
	t.Log("\n" + table)
	if p := os.Getenv("KILN_CONV1X1_BENCH_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}
