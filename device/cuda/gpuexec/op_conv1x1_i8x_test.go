package gpuexec

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// TestI8xScales checks expand_i8u2's alpha, bias' and beta against the
// layer they stand for: for random 8-bit x, z and weights, sy times the
// kernel's pre-rounding value alpha acc + bias' + beta z8 is the float
// layer sx sw acc + bias + sz z8 (relative 1e-5).
func TestI8xScales(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ sx, sz, sy float32 }{{0.02, 0.03, 0.05}, {1, 1, 1}, {0.5, 0.001, 0.1}} {
		const n, k = 8, 64
		sw, bias := make([]float32, n), make([]float32, n)
		for i := range sw {
			sw[i], bias[i] = 0.001+r.Float32()*0.01, r.Float32()-0.5
		}
		alpha, b, beta := i8xScales(c.sx, c.sz, c.sy, sw, bias)
		if want := c.sz / c.sy; beta != want {
			t.Errorf("%+v: beta %g, want %g", c, beta, want)
		}
		for ch := range n {
			acc := float64(r.IntN(2*127*127*k) - 127*127*k)
			z8 := float64(r.IntN(255) - 127)
			got := float64(c.sy) * (float64(alpha[ch])*acc + float64(b[ch]) + float64(beta)*z8)
			want := float64(c.sx)*float64(sw[ch])*acc + float64(bias[ch]) + float64(c.sz)*z8
			if math.Abs(got-want) > 1e-5*(math.Abs(want)+1) {
				t.Errorf("%+v channel %d: %g, want %g", c, ch, got, want)
			}
		}
	}
}

// TestI8xTacticName pins expand_i8u2's name in the timing cache and that
// ParseTactic reads it back.
func TestI8xTacticName(t *testing.T) {
	tt := Tactic{Impl: ImplKernel, Quant: quantI8x}
	if got := tt.name(); got != "kiln-expand-i8u2" {
		t.Errorf("name %q", got)
	}
	back, err := ParseTactic("kiln-expand-i8u2")
	if err != nil || back != tt {
		t.Errorf("ParseTactic = %+v, %v; want %+v", back, err, tt)
	}
	if k, err := ParseTactic(ImplKernel); err != nil || k.Quant != "" {
		t.Errorf("ParseTactic(%q) = %+v, %v", ImplKernel, k, err)
	}
}

// TestI8xLayout pins where expand_i8u2 keeps what it converts in the
// workspace: x (P x K), then z and y (P x N each), each 256-aligned, only
// those not in 8 bits already; none while timed as the chains run it.
func TestI8xLayout(t *testing.T) {
	const p, k, n = 256 * 14 * 14, 256, 1024
	xb, zb := align256(p*k), align256(p*n)
	for _, c := range []struct {
		in8, z8, out8, timing bool
		x, z, y, ws           int
	}{
		{false, false, false, false, 0, xb, xb + zb, xb + 2*zb},
		{true, false, false, false, -1, 0, zb, 2 * zb},
		{true, true, false, false, -1, -1, 0, zb},
		{true, true, true, false, -1, -1, -1, 0},
		{false, true, true, false, 0, -1, -1, xb},
		{false, false, false, true, -1, -1, -1, 0},
	} {
		q := &int8Conv{in8: c.in8, out8: c.out8, xq: xb, x8: &i8xConv{p: p, k: k, n: n, z8: c.z8, timing: c.timing}}
		x, z, y, ws := q.i8xLayout()
		if x != c.x || z != c.z || y != c.y || ws != c.ws {
			t.Errorf("%+v: x %d z %d y %d ws %d", c, x, z, y, ws)
		}
		if q.workspace(true) != c.ws {
			t.Errorf("%+v: workspace %d, want %d", c, q.workspace(true), c.ws)
		}
	}
}

// bodyGraph is bottleneckBody's first two stages at batch, optimized (the residual adds and
// ReLUs fused into the convolutions) with its shapes inferred.
func bodyGraph(t *testing.T, batch int) *ir.Graph {
	t.Helper()
	g := bottleneckBody(rand.New(rand.NewPCG(7, 8)), batch, 2)
	if err := optimize.Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestInt8ExpandFake builds the bottleneck body's first two stages at
// batch 2 as an untuned
// INT8 engine with the chains, against the fake libraries (compute 9.0;
// the module replaced by the quantizing kernel, nothing computed): the
// three expanding 1x1s of the 56x56 stage (the 28x28 stage's rows are not a
// multiple of 128 at batch 2) run expand_i8u2, each reading its input and
// residual and writing its output in 8 bits (the block inputs read by the
// next block's first 1x1 and as the residual, the downsample's output as
// the residual alone, the stage's output by the next stage's first 1x1
// and downsample), and so do the one reducing 1x1 that fits (the second
// stage's first, 256 -> 128 at 56x56; the others have 64 outputs or 28x28
// rows) without a residual (hasz 0), reading the stage's output and writing
// the 3x3's input in 8 bits, and the first stage's stride-1 downsample
// (bias only: hasz ExpandI8NoReLU), writing its output in 8 bits for the
// residual; every 1x1 that fits the kernel runs it; their
// tensor maps encoded into one allocation per layer
// and context, and the engine runs eagerly and captured. Without
// expand_i8u2 (KILN_CUDA_INT8_EXPAND=0), none runs it; with
// KILN_CUDA_INT8_REDUCE=0 only the expanding ones (with a residual).
func TestInt8ExpandFake(t *testing.T) {
	dir := fakeLibs(t)
	g := bodyGraph(t, 2)
	scales := map[string]float32{}
	for _, n := range g.Nodes {
		if strings.Contains(n.OpType, "Conv") {
			scales[n.Name] = 0.05
		}
		for _, v := range n.Outputs {
			scales[Int8ValueKey(v.Name)] = 0.05
		}
	}
	i8xLoadHook = func(e *Engine, st *i8xState) error {
		st.fn, st.dq, st.sms = e.int8.fns["int8"], e.int8.fns["int8"], 132
		return nil
	}
	t.Cleanup(func() { i8xLoadHook = nil })
	t.Setenv(EnvInt8All, "1")
	t.Setenv(EnvInt8Chain, "1")
	t.Setenv(EnvInt8Expand, "1")
	e, c := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
	var got, reduce, down []string
	for i, s := range e.prog.steps {
		cc := s.conv
		if cc == nil || !cc.gemm1x1() || !cc.fusable || cc.n*cc.h*cc.wd%128 != 0 || cc.m%128 != 0 || cc.c%64 != 0 {
			continue
		}
		if q := e.int8.use[i]; q == nil || q.x8 == nil {
			t.Errorf("%s (%dx%d, %d -> %d, residual %v) fits expand_i8u2 and does not run it", s.node.Name, cc.h, cc.wd, cc.c, cc.m, cc.z != nil)
		}
	}
	for i, q := range e.int8.use {
		if q.x8 == nil {
			continue
		}
		cc := e.prog.steps[i].conv
		if cc.z == nil && !cc.relu {
			// the first stage's stride-1 downsample (64 -> 256 at 56x56): bias
			// only, the network's input quantized, its output in 8 bits for
			// the residual
			down = append(down, q.name)
			if cc.h != 56 || cc.c != 64 || cc.m != 256 || !q.x8.noz || !q.x8.noRelu || q.x8.hasz() != cuda.ExpandI8NoReLU {
				t.Errorf("%s (%dx%d, %d -> %d, no residual %v, no ReLU %v, hasz %d) runs expand_i8u2", q.name, cc.h, cc.wd, cc.c, cc.m, q.x8.noz, q.x8.noRelu, q.x8.hasz())
			}
			if q.in8 || q.x8.z8 || !q.out8 {
				t.Errorf("%s: input in 8 bits %v, residual %v, output %v; want false, false, true", q.name, q.in8, q.x8.z8, q.out8)
			}
			if tac := e.int8Tactic(i); !strings.HasSuffix(tac, "per-channel scales, bias, output in 8 bits") {
				t.Errorf("%s: tactic %q", q.name, tac)
			}
		} else if cc.z == nil {
			// the reducing 1x1: the stage's output in, the 3x3's input out, no residual
			reduce = append(reduce, q.name)
			if cc.h != 56 || cc.c != 256 || cc.m != 128 || !q.x8.noz || q.x8.noRelu || q.x8.beta != 0 || q.x8.hasz() != 0 {
				t.Errorf("%s (%dx%d, %d -> %d, no residual %v, beta %g) runs expand_i8u2", q.name, cc.h, cc.wd, cc.c, cc.m, q.x8.noz, q.x8.beta)
			}
			if !q.in8 || q.x8.z8 || !q.out8 {
				t.Errorf("%s: input in 8 bits %v, residual %v, output %v; want true, false, true", q.name, q.in8, q.x8.z8, q.out8)
			}
			if tac := e.int8Tactic(i); !strings.Contains(tac, "expand_i8u2") || !strings.Contains(tac, "bias+ReLU, input in 8 bits, output in 8 bits") {
				t.Errorf("%s: tactic %q", q.name, tac)
			}
		} else {
			got = append(got, e.prog.steps[i].node.Name)
			if cc.h != 56 || cc.m != 256 || q.x8.noz || q.x8.noRelu || q.x8.hasz() != cuda.ExpandI8Residual {
				t.Errorf("%s (%dx%d, %d channels) runs expand_i8u2", e.prog.steps[i].node.Name, cc.h, cc.wd, cc.m)
			}
			if !q.in8 || !q.x8.z8 || !q.out8 {
				t.Errorf("%s: input in 8 bits %v, residual %v, output %v; want all", q.name, q.in8, q.x8.z8, q.out8)
			}
			if tac := e.int8Tactic(i); !strings.Contains(tac, "expand_i8u2") || !strings.Contains(tac, "bias+residual+ReLU, input and residual in 8 bits, output in 8 bits") {
				t.Errorf("%s: tactic %q", q.name, tac)
			}
		}
		if tt := e.Tactics()[q.name]; tt.name() != i8xName {
			t.Errorf("%s: tactic %+v", q.name, tt)
		}
		// the layers reading 8 bits need no workspace and make one call; the
		// downsample quantizes the network's input (P x K) first
		wantWS, wantCalls := 0, 1
		if !q.in8 {
			wantWS, wantCalls = align256(2*56*56*cc.c), 2
		}
		if _, _, _, ws := q.i8xLayout(); ws != wantWS {
			t.Errorf("%s: %d bytes of workspace, want %d", q.name, ws, wantWS)
		}
		// the kernel's launch (the last call): persistent grid, 288 threads, its shared memory
		var k *call
		n := 0
		for j := range c.calls {
			if c.calls[j].step == i {
				n++
				k = &c.calls[j]
			}
		}
		if n != wantCalls {
			t.Errorf("%s: %d calls, want %d", q.name, n, wantCalls)
		}
		tiles := uint32(cuda.ExpandI8Tiles(2*56*56, cc.m))
		if k == nil || k.block.X != cuda.ExpandI8Threads || k.grid.X != min(tiles, 264) || k.shmem != uint32(cuda.ExpandI8SharedMem()) {
			t.Errorf("%s: launch %+v", q.name, k)
		}
		if hasz := q.x8.hasz(); (hasz&cuda.ExpandI8Residual != 0) != (cc.z != nil) || (hasz&cuda.ExpandI8NoReLU != 0) != !cc.relu {
			t.Errorf("%s: hasz %d, residual %v", q.name, hasz, cc.z != nil)
		}
	}
	if len(got) != 3 || len(reduce) != 1 || len(down) != 1 {
		t.Errorf("expand_i8u2 runs %d expanding layers (%v), want the 56x56 stage's 3, %d reducing ones (%v), want 1, and %d downsamples (%v), want 1",
			len(got), got, len(reduce), reduce, len(down), down)
	}
	// every value a chain touches: its producer writes 8 bits and each
	// reader reads 8 bits
	for i, q := range e.int8.use {
		if !q.out8 {
			continue
		}
		rs, _ := e.readers(i, e.prog.steps[i].conv.y)
		for _, j := range rs {
			b, cb := e.int8.use[j], e.prog.steps[j].conv
			if b == nil || cb.x == e.prog.steps[i].conv.y && !b.in8 || cb.z != nil && *cb.z == e.prog.steps[i].conv.y && (b.x8 == nil || !b.x8.z8) {
				t.Errorf("%s writes 8 bits, its reader %s does not read them", q.name, e.prog.steps[j].node.Name)
			}
		}
	}
	if n := len(e.int8.x8.maps[c]); n != 5 {
		t.Errorf("the context holds %d layers' maps, want 5", n)
	}
	in := map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, 2, 64, 56, 56)}
	for range 3 { // eagerly, captured, replayed
		if _, err := c.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	// a second context: maps of its own
	c2, err := e.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if a, b := e.int8.x8.maps[c], e.int8.x8.maps[c2]; len(b) != 5 || len(a) != 5 {
		t.Errorf("maps: %d and %d layers", len(a), len(b))
	}
	c2.Close()

	// Tuned (the chains off): a timing cache that makes expand_i8u2 the
	// fastest for the 56x56 stage's expanding 1x1s gives it those layers,
	// named kiln-expand-i8u2 at 1 us, converting what is half around them;
	// the tactics applied without timing rebuild it.
	t.Setenv(EnvInt8Chain, "0")
	fp := device.Fingerprint{"gpu": "fake"}
	cache, err := tactic.Open(filepath.Join(t.TempDir(), "timing.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for i, q := range e.int8.use {
		if q.x8 != nil {
			want[q.name] = true
			cache.Store(fp, convSig(e.prog.steps[i], true), i8xName, time.Microsecond)
		}
	}
	et, ct := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tune: true, TimingCache: cache, CacheDevice: fp})
	picked := et.Tactics()
	for name, tt := range picked {
		if got := tt.Quant == quantI8x; got != want[name] || got && (tt.name() != i8xName || tt.NS != 1000) {
			t.Errorf("tuned: %s: tactic %+v (%s), expand_i8u2 wanted %v", name, tt, tt.name(), want[name])
		}
	}
	for i, q := range et.int8.use {
		if q.x8 == nil {
			continue
		}
		if q.x8.timing || q.in8 || q.x8.z8 || q.out8 {
			t.Errorf("tuned, no chains: %s timing %v, 8-bit input %v residual %v output %v", q.name, q.x8.timing, q.in8, q.x8.z8, q.out8)
		}
		if _, _, _, ws := q.i8xLayout(); et.ws < ws {
			t.Errorf("tuned: workspace %d, %s needs %d", et.ws, q.name, ws)
		}
		n := 0
		for _, k := range ct.calls {
			if k.step == i {
				n++
			}
		}
		want := 4 // quantize x, quantize z, the kernel, widen y
		if q.x8.noz {
			want = 3 // no residual to quantize
		}
		if n != want {
			t.Errorf("tuned: %s makes %d calls, want %d", q.name, n, want)
		}
	}
	if _, err := ct.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	checkApplied(t, dir, g, scales, picked, in, "run expand_i8u2", func(q *int8Conv) bool { return q.x8 != nil }, len(want))
	t.Setenv(EnvInt8Chain, "1")
	t.Setenv(EnvInt8Expand, "0")
	e2, _ := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
	for _, q := range e2.int8.use {
		if q.x8 != nil {
			t.Errorf("%s runs expand_i8u2 with %s=0", q.name, EnvInt8Expand)
		}
	}
	t.Setenv(EnvInt8Expand, "1")
	t.Setenv(EnvInt8Reduce, "0")
	e4, _ := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
	n4 := 0
	for i, q := range e4.int8.use {
		if q.x8 != nil {
			n4++
			if e4.prog.steps[i].conv.z == nil {
				t.Errorf("%s (no residual) runs expand_i8u2 with %s=0", q.name, EnvInt8Reduce)
			}
		}
	}
	if n4 != 3 {
		t.Errorf("%s=0: expand_i8u2 runs %d layers, want the 3 expanding ones", EnvInt8Reduce, n4)
	}
	// What a user gets (the kernel checked on an H100): no variable set,
	// on compute 9.0 the chains, every 1x1 in INT8 and expand_i8u2 on the
	// expanding layers, reading and writing 8 bits.
	for _, k := range []string{EnvInt8Expand, EnvInt8Reduce, EnvUnverified, EnvInt8Chain, EnvInt8All} {
		t.Setenv(k, "")
	}
	e3, _ := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
	n3 := 0
	for i, q := range e3.int8.use {
		if q.x8 != nil {
			n3++
			if !q.in8 && !q.x8.noRelu || q.x8.z8 == q.x8.noz || !q.out8 {
				t.Errorf("defaults: %s: input in 8 bits %v, residual %v (none %v), output %v; want all", q.name, q.in8, q.x8.z8, q.x8.noz, q.out8)
			}
		}
		if cc := e3.prog.steps[i].conv; cc.kh*cc.kw == 1 && q == nil {
			t.Errorf("defaults: 1x1 %s is not INT8", q.name)
		}
	}
	// the expanding form ran on an H100, the reducing and the downsample's
	// not yet: by default the 3 expanding layers, 5 with KILN_CUDA_INT8_REDUCE=1
	if n3 != 3 || len(e3.int8.use) != len(e.int8.use) {
		t.Errorf("defaults: expand_i8u2 runs %d layers, want 3; %d layers INT8, want %d", n3, len(e3.int8.use), len(e.int8.use))
	}
	t.Setenv(EnvInt8Reduce, "1")
	e5, _ := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
	n5 := 0
	for _, q := range e5.int8.use {
		if q.x8 != nil {
			n5++
		}
	}
	if n5 != 5 {
		t.Errorf("%s=1: expand_i8u2 runs %d layers, want 5", EnvInt8Reduce, n5)
	}
}
