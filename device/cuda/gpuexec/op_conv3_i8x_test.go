package gpuexec

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// TestC3TacticName pins conv3_i8u2's name in the timing cache and that
// ParseTactic reads it back.
func TestC3TacticName(t *testing.T) {
	tt := Tactic{Impl: ImplKernel, Quant: quantC3}
	if got := tt.name(); got != "kiln-conv3-i8u2" {
		t.Errorf("name %q", got)
	}
	back, err := ParseTactic("kiln-conv3-i8u2")
	if err != nil || back != tt {
		t.Errorf("ParseTactic = %+v, %v; want %+v", back, err, tt)
	}
	if q := (&i8xConv{}).quant(); q != quantI8x {
		t.Errorf("a 1x1's quant %q", q)
	}
}

// TestC3Weights checks the weights conv3_i8u2 reads: each of [m, 3, 3, c]
// is the ONNX weight w[o, ci, r, s] / sw[o] rounded (half to even) and
// clamped to [-127, 127], sw[o] = max|w[o]| / 127 (1 for a zero channel),
// and the bytes are those cuDNN's INT8 path quantizes to [M, KH, KW, C].
func TestC3Weights(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const m, c = 5, 64
	w := make([]float32, m*c*9)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	for i := range c * 9 { // channel 3 all zeros
		w[3*c*9+i] = 0
	}
	w[2*c*9+7] = 1e4 // channel 2: one large weight, the rest round to small codes
	got, sw := c3Weights(w, m, c)
	if len(got) != m*9*c || len(sw) != m {
		t.Fatalf("%d bytes, %d scales", len(got), len(sw))
	}
	for o := range m {
		amax := 0.0
		for i := range c * 9 {
			amax = max(amax, math.Abs(float64(w[o*c*9+i])))
		}
		want := float32(amax / 127)
		if amax == 0 {
			want = 1
		}
		if sw[o] != want {
			t.Errorf("channel %d: scale %g, want %g", o, sw[o], want)
		}
		for ci := range c {
			for tap := range 9 {
				v := math.RoundToEven(float64(w[(o*c+ci)*9+tap] / sw[o]))
				v = max(-127, min(127, v))
				if g := int8(got[(o*9+tap)*c+ci]); float64(g) != v {
					t.Fatalf("w[%d, %d, tap %d] = %d, want %g", o, ci, tap, g, v)
				}
			}
		}
	}
	ref, rs := quantizeWeights(w, m, c, 3, 3, c)
	if !bytes.Equal(ref, got) {
		t.Error("the bytes differ from quantizeWeights' [M, 3, 3, C]")
	}
	for o := range m {
		if rs[o] != sw[o] {
			t.Errorf("channel %d: scale %g, quantizeWeights' %g", o, sw[o], rs[o])
		}
	}
}

// argSlots reads a call's kernel arguments back (8-byte slots, as
// cuda.KernelArgs lays them out): the test's view of what a launch passes.
func argSlots(a *cuda.KernelArgs) []uint64 {
	v := (*struct {
		n     int
		slots unsafe.Pointer
		ptrs  unsafe.Pointer
	})(unsafe.Pointer(a))
	out := make([]uint64, v.n)
	for i := range out {
		out[i] = *(*uint64)(unsafe.Add(v.slots, 8*i))
	}
	return out
}

// fakeC3 replaces conv3_i8u2's modules with the quantizing kernel for the
// rest of the test (the fake libraries have no sm_90a module; nothing is
// computed), and expand_i8u2's too; it returns the builds loaded.
func fakeC3(t *testing.T) *[]string {
	var built []string
	c3LoadHook = func(e *Engine, name string, m *c3Mod) error {
		built = append(built, name)
		m.fn, m.dq, m.sms = e.int8.fns["int8"], e.int8.fns["int8"], 132
		return nil
	}
	i8xLoadHook = func(e *Engine, st *i8xState) error {
		st.fn, st.dq, st.sms = e.int8.fns["int8"], e.int8.fns["int8"], 132
		return nil
	}
	t.Cleanup(func() { c3LoadHook, i8xLoadHook = nil, nil })
	return &built
}

// bodyScales gives every convolution of g an input scale and every value
// one of its own (0.05).
func bodyScales(g *ir.Graph) map[string]float32 {
	scales := map[string]float32{}
	for _, n := range g.Nodes {
		if strings.Contains(n.OpType, "Conv") {
			scales[n.Name] = 0.05
		}
		for _, v := range n.Outputs {
			scales[Int8ValueKey(v.Name)] = 0.05
		}
	}
	return scales
}

// stepCalls returns c's calls of step i.
func stepCalls(c *Context, i int) []*call {
	var out []*call
	for j := range c.calls {
		if c.calls[j].step == i {
			out = append(out, &c.calls[j])
		}
	}
	return out
}

// TestInt8Conv3Fake builds ResNet-50's four bottleneck stages (at 16x16,
// batch 1) as an untuned INT8 engine with the chains, against the fake
// libraries (compute 9.0; the modules replaced, nothing computed): every
// one of the 16 3x3 convolutions runs conv3_i8u2 (the first stage's, 64
// output channels, as conv3_i8u2n64; the three stride-2 ones as the s2
// builds), reading its input and writing its output in 8 bits (one call:
// no quantizing or widening pass around it), its launch a persistent grid
// of 288 threads with K = 9C, N = Cout, the tile count and the output's
// extent; the maps one allocation a layer and context. The engine runs
// eagerly, captured and replayed, and in a second context. The switches:
// KILN_CUDA_INT8_CONV3=0 keeps it out, unset with KILN_CUDA_UNVERIFIED
// unset too it is out, KILN_CUDA_INT8_CONV3=1 alone brings it in. Tuned
// (the chains off), a timing cache that makes it the fastest gives it
// every 3x3 (converting what is half around them), and the tactics
// applied without timing (a saved plan) rebuild it.
func TestInt8Conv3Fake(t *testing.T) {
	dir := fakeLibs(t)
	g := bottleneckBodyAt(rand.New(rand.NewPCG(7, 8)), 1, 4, 16)
	if err := optimize.Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	scales := bodyScales(g)
	built := fakeC3(t)
	for _, k := range []string{EnvInt8Expand, EnvInt8Reduce, EnvInt8Chain, EnvInt8All, EnvInt8Conv3} {
		t.Setenv(k, "")
	}
	t.Setenv(EnvUnverified, "1")
	t.Setenv(EnvInt8Chain, "1")
	e, c := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
	n3, s2 := 0, 0
	for i, s := range e.prog.steps {
		cc := s.conv
		if cc == nil || cc.kh != 3 {
			continue
		}
		n3++
		q := e.int8.use[i]
		if q == nil || q.x8 == nil || q.x8.c3 == nil {
			t.Errorf("%s (%dx%d/%d, %d -> %d) does not run conv3_i8u2", s.node.Name, cc.h, cc.wd, cc.sh, cc.c, cc.m)
			continue
		}
		g3 := q.x8.c3
		want := "conv3_i8u2"
		if cc.m%128 != 0 {
			want += "n64"
		}
		if cc.sh == 2 {
			want += "s2"
			s2++
		}
		if g3.kernel != want || g3.stride != cc.sh || g3.n != 1 || g3.h != cc.h || g3.w != cc.wd || g3.c != cc.c || g3.oh != cc.oh || g3.ow != cc.ow {
			t.Errorf("%s: %+v, want %s", s.node.Name, *g3, want)
		}
		if q.x8.p != cc.oh*cc.ow || q.x8.k != 9*cc.c || q.x8.n != cc.m || !q.x8.noz || q.x8.noRelu || q.x8.hasz() != 0 {
			t.Errorf("%s: p %d k %d n %d, no residual %v, no ReLU %v", s.node.Name, q.x8.p, q.x8.k, q.x8.n, q.x8.noz, q.x8.noRelu)
		}
		if !q.in8 || !q.out8 {
			t.Errorf("%s: input in 8 bits %v, output %v; want both", s.node.Name, q.in8, q.out8)
		}
		if tt := e.Tactics()[s.node.Name]; tt.name() != c3Name {
			t.Errorf("%s: tactic %+v", s.node.Name, tt)
		}
		if tac := e.int8Tactic(i); !strings.HasPrefix(tac, "kiln "+want+" nhwc 3x3/") || !strings.HasSuffix(tac, "bias+ReLU, input in 8 bits, output in 8 bits") {
			t.Errorf("%s: tactic %q", s.node.Name, tac)
		}
		if impl, prec := e.int8Impl(i); !strings.Contains(impl, want) || prec != "int8" {
			t.Errorf("%s: impl %q %q", s.node.Name, impl, prec)
		}
		// 8 bits in and out: no workspace, the kernel alone
		if _, _, _, ws := q.i8xLayout(); ws != 0 {
			t.Errorf("%s: %d bytes of workspace", s.node.Name, ws)
		}
		ks := stepCalls(c, i)
		if len(ks) != 1 {
			t.Errorf("%s: %d calls, want 1", s.node.Name, len(ks))
			continue
		}
		k := ks[0]
		_, _, smem := cuda.Conv3I8Build(cc.m, cc.sh)
		tiles := cuda.Conv3I8Tiles(cc.oh*cc.ow, cc.m)
		if k.block.X != cuda.ExpandI8Threads || k.grid.X != uint32(min(tiles, 264)) || k.shmem != uint32(smem) || k.fn != g3.mod.fn {
			t.Errorf("%s: launch grid %+v block %+v shmem %d", s.node.Name, k.grid, k.block, k.shmem)
		}
		a := argSlots(k.args)
		m := e.int8.c3.maps[c][i]
		if len(a) != 10 || a[0] != uint64(m) || a[1] != uint64(q.scale) || a[2] != uint64(q.bias) || math.Float32frombits(uint32(a[3])) != 0 ||
			int32(a[4]) != 0 || int32(a[5]) != int32(9*cc.c) || int32(a[6]) != int32(cc.m) || int32(a[7]) != int32(tiles) ||
			int32(a[8]) != int32(cc.oh) || int32(a[9]) != int32(cc.ow) {
			t.Errorf("%s: arguments %v (maps %#x, alpha %#x, bias %#x, K %d, N %d, tiles %d, %dx%d)", s.node.Name, a, m, q.scale, q.bias, 9*cc.c, cc.m, tiles, cc.oh, cc.ow)
		}
	}
	if n3 != 16 || s2 != 3 {
		t.Errorf("%d 3x3s (%d of stride 2), want 16 (3)", n3, s2)
	}
	if b := strings.Join(slices.Sorted(slices.Values(*built)), " "); b != "conv3_i8u2 conv3_i8u2n64 conv3_i8u2s2" {
		t.Errorf("builds loaded %q, want each of conv3_i8u2, n64 (the first stage) and s2 (the stride-2 ones, 128 channels and more) once", b)
	}
	if n := len(e.int8.c3.maps[c]); n != 16 {
		t.Errorf("the context holds %d layers' maps, want 16", n)
	}
	in := map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, 1, 64, 16, 16)}
	for range 3 { // eagerly, captured, replayed
		if _, err := c.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	c2, err := e.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if a, b := e.int8.c3.maps[c], e.int8.c3.maps[c2]; len(a) != 16 || len(b) != 16 {
		t.Errorf("maps: %d and %d layers", len(a), len(b))
	}
	c2.Close()

	count := func(e *Engine) int {
		n := 0
		for _, q := range e.int8.use {
			if q.x8 != nil && q.x8.c3 != nil {
				n++
			}
		}
		return n
	}
	for _, sw := range []struct {
		conv3, unverified string
		want              int
	}{{"0", "1", 0}, {"", "", 0}, {"1", "", 16}, {"0", "", 0}} {
		t.Setenv(EnvInt8Conv3, sw.conv3)
		t.Setenv(EnvUnverified, sw.unverified)
		ex, _ := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
		if n := count(ex); n != sw.want {
			t.Errorf("%s=%q %s=%q: conv3_i8u2 runs %d layers, want %d", EnvInt8Conv3, sw.conv3, EnvUnverified, sw.unverified, n, sw.want)
		}
		for i, q := range ex.int8.use { // the 3x3s keep cuDNN's INT8 graph
			if cc := ex.prog.steps[i].conv; sw.want == 0 && cc.kh == 3 && (q.x8 != nil || q.g == nil) {
				t.Errorf("%s off: %s does not run cuDNN's INT8 graph", EnvInt8Conv3, q.name)
			}
		}
	}
	t.Setenv(EnvInt8Conv3, "")
	t.Setenv(EnvUnverified, "1")

	// Tuned (the chains off): a timing cache that makes conv3_i8u2 the
	// fastest gives it every 3x3, named kiln-conv3-i8u2 at 1 us, quantizing
	// its input and widening its output; the tactics applied without
	// timing (a plan loaded) rebuild it.
	t.Setenv(EnvInt8Chain, "0")
	fp := device.Fingerprint{"gpu": "fake"}
	cache, err := tactic.Open(filepath.Join(t.TempDir(), "timing.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for i, q := range e.int8.use {
		if q.x8 != nil && q.x8.c3 != nil {
			want[q.name] = true
			cache.Store(fp, convSig(e.prog.steps[i], true), c3Name, time.Microsecond)
		}
	}
	et, ct := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tune: true, TimingCache: cache, CacheDevice: fp})
	picked := et.Tactics()
	for name, tt := range picked {
		if got := tt.Quant == quantC3; got != want[name] || got && (tt.name() != c3Name || tt.NS != 1000) {
			t.Errorf("tuned: %s: tactic %+v (%s), conv3_i8u2 wanted %v", name, tt, tt.name(), want[name])
		}
	}
	for i, q := range et.int8.use {
		if q.x8 == nil || q.x8.c3 == nil {
			continue
		}
		if q.x8.timing || q.in8 || q.out8 {
			t.Errorf("tuned, no chains: %s timing %v, 8-bit input %v output %v", q.name, q.x8.timing, q.in8, q.out8)
		}
		x, _, y, ws := q.i8xLayout()
		cc := et.prog.steps[i].conv
		if xb := align256(cc.h * cc.wd * cc.c); x != 0 || y != xb || ws != xb+align256(cc.oh*cc.ow*cc.m) || et.ws < ws {
			t.Errorf("tuned: %s: layout x %d y %d ws %d (engine %d)", q.name, x, y, ws, et.ws)
		}
		ks := stepCalls(ct, i)
		if len(ks) != 3 { // quantize x, the kernel, widen y
			t.Errorf("tuned: %s makes %d calls, want 3", q.name, len(ks))
			continue
		}
		if a := argSlots(ks[0].args); len(a) != 6 || math.Float32frombits(uint32(a[2])) != 1/q.x8.sx || int64(a[3]) != int64(cc.h*cc.wd) || int32(a[4]) != int32(cc.c) {
			t.Errorf("tuned: %s: the quantizing pass's arguments %v", q.name, a)
		}
		if a := argSlots(ks[2].args); len(a) != 4 || math.Float32frombits(uint32(a[2])) != q.x8.sy || int64(a[3]) != int64(cc.oh*cc.ow*cc.m) {
			t.Errorf("tuned: %s: the widening's arguments %v", q.name, a)
		}
	}
	if _, err := ct.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	checkApplied(t, dir, g, scales, picked, in, "run conv3_i8u2", func(q *int8Conv) bool { return q.x8 != nil && q.x8.c3 != nil }, len(want))
}

// conv3Graph is a small graph of three 3x3 convolutions with ReLU: 32 ->
// 64 at 8x8 (32 input channels: not conv3_i8u2's), 64 -> 128 stride 2
// (conv3_i8u2s2), 128 -> 64 (conv3_i8u2n64), then a GlobalAveragePool.
func conv3Graph(t *testing.T) *ir.Graph {
	t.Helper()
	r := rand.New(rand.NewPCG(5, 6))
	b := ir.NewBuilder("conv3", 17)
	x := b.Input("input", tensor.Float32, ir.D(1), ir.D(32), ir.D(8), ir.D(8))
	for _, l := range []struct{ cin, cout, stride int }{{32, 64, 1}, {64, 128, 2}, {128, 64, 1}} {
		w := tensor.New(tensor.Float32, l.cout, l.cin, 3, 3)
		for i, v := 0, w.Float32s(); i < len(v); i++ {
			v[i] = float32(r.NormFloat64() * 0.1)
		}
		bias := tensor.New(tensor.Float32, l.cout)
		for i, v := 0, bias.Float32s(); i < len(v); i++ {
			v[i] = float32(r.NormFloat64() * 0.1)
		}
		x = b.Op("Relu", []*ir.Value{b.Op("Conv", []*ir.Value{x, b.Const("", w), b.Const("", bias)},
			ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("strides", int64(l.stride), int64(l.stride)), ir.IntsAttr("pads", 1, 1, 1, 1))})
	}
	b.Output(b.Op("GlobalAveragePool", []*ir.Value{x}), "pooled")
	g := b.Graph()
	if err := optimize.Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestInt8Conv3Scales checks, on conv3Graph with distinct scales, that the
// first layer (32 input channels) keeps cuDNN's INT8 graph and writes 8
// bits for the second, the second and third run conv3_i8u2 (s2 and n64),
// the second reading and writing 8 bits, the third reading 8 bits and
// widening its output for the pooling (KILN_CUDA_INT8_GPOOL=0; with the
// pooling reading INT8, one call); and, with the fake driver's memory
// readable (KILN_FAKE_IPC_ALLOC), what the device holds: alpha = sx sw / sy
// and bias / sy per output channel, the reordered weights, and the four
// maps EncodeConv3I8Maps makes of the input, weights and output addresses.
func TestInt8Conv3Scales(t *testing.T) {
	dir := fakeLibs(t)
	g := conv3Graph(t)
	var convs []*ir.Node
	for _, n := range g.Nodes {
		if strings.Contains(n.OpType, "Conv") {
			convs = append(convs, n)
		}
	}
	if len(convs) != 3 {
		t.Fatalf("%d convolutions", len(convs))
	}
	sx := []float32{0.04, 0.05, 0.06}
	const sout = 0.07
	scales := map[string]float32{Int8ValueKey(convs[2].Outputs[0].Name): sout}
	for k, n := range convs {
		scales[n.Name] = sx[k]
	}
	fakeC3(t)
	for _, k := range []string{EnvInt8Expand, EnvInt8Reduce, EnvInt8All, EnvInt8Conv3} {
		t.Setenv(k, "")
	}
	t.Setenv(EnvUnverified, "1")
	t.Setenv(EnvInt8Chain, "1")
	t.Setenv(EnvInt8GPool, "0")
	t.Setenv("KILN_FAKE_IPC_ALLOC", "1")
	e, c := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
	step := map[string]int{}
	for i, s := range e.prog.steps {
		step[s.node.Name] = i
	}
	q0, q1, q2 := e.int8.use[step[convs[0].Name]], e.int8.use[step[convs[1].Name]], e.int8.use[step[convs[2].Name]]
	if q0 == nil || q0.x8 != nil || q0.g == nil || !q0.out8 {
		t.Fatalf("the 32-channel layer: %+v, want cuDNN's INT8 graph writing 8 bits", q0)
	}
	if q1 == nil || q1.x8 == nil || q1.x8.c3 == nil || q1.x8.c3.kernel != "conv3_i8u2s2" || !q1.in8 || !q1.out8 {
		t.Fatalf("the stride-2 layer: %+v", q1)
	}
	if q2 == nil || q2.x8 == nil || q2.x8.c3 == nil || q2.x8.c3.kernel != "conv3_i8u2n64" || !q2.in8 || q2.out8 {
		t.Fatalf("the last layer: %+v", q2)
	}
	if q1.x8.sy != sx[2] || q2.x8.sy != sout || q1.x8.sx != sx[1] || q2.x8.sx != sx[2] {
		t.Errorf("scales: %g -> %g, %g -> %g", q1.x8.sx, q1.x8.sy, q2.x8.sx, q2.x8.sy)
	}
	if ks := stepCalls(c, step[convs[2].Name]); len(ks) != 2 || ks[1].block.X == cuda.ExpandI8Threads {
		t.Errorf("the last layer makes %d calls, want the kernel and the widening", len(ks))
	}
	read := func(p cuda.DevicePtr, n int) []byte {
		b := make([]byte, n)
		if err := e.drv.MemcpyDtoH(b, p); err != nil {
			t.Fatal(err)
		}
		return b
	}
	for k, q := range []*int8Conv{q1, q2} {
		n := convs[k+1]
		cc := e.prog.steps[step[n.Name]].conv
		wq, sw := c3Weights(input(n, 1).Const.Float32s(), cc.m, cc.c)
		if !bytes.Equal(read(q.w, len(wq)), wq) {
			t.Errorf("%s: the weights on the device differ", n.Name)
		}
		bias := input(n, 2).Const.Float32s()
		alpha, b := read(q.scale, 4*cc.m), read(q.bias, 4*cc.m)
		for o := range cc.m {
			ga := math.Float32frombits(binary.LittleEndian.Uint32(alpha[4*o:]))
			gb := math.Float32frombits(binary.LittleEndian.Uint32(b[4*o:]))
			if wa, wb := q.x8.sx*sw[o]/q.x8.sy, bias[o]/q.x8.sy; math.Abs(float64(ga-wa)) > 1e-6*math.Abs(float64(wa)) || math.Abs(float64(gb-wb)) > 1e-6*(math.Abs(float64(wb))+1e-6) {
				t.Fatalf("%s channel %d: alpha %g bias %g, want %g %g", n.Name, o, ga, gb, wa, wb)
			}
		}
		// the maps: x's im2col map at the input's storage (8 bits), w, z
		// (none: y) and y at the output's storage (the first) or the
		// workspace (the last, widened)
		i := step[n.Name]
		y := c.addr(cc.y)
		if k == 1 {
			_, _, yo, _ := q.i8xLayout()
			y = c.ws + cuda.DevicePtr(yo)
		}
		ms, err := e.drv.EncodeConv3I8Maps(c.addr(cc.x), q.w, 0, y, cc.n, cc.h, cc.wd, cc.c, cc.m, cc.sh)
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		for _, m := range ms {
			want = append(want, m[:]...)
		}
		if got := read(e.int8.c3.maps[c][i], len(want)); !bytes.Equal(got, want) {
			t.Errorf("%s: the maps on the device differ from EncodeConv3I8Maps'", n.Name)
		}
	}
	in := map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, 1, 32, 8, 8)}
	if _, err := c.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	// the pooling reading INT8: the last layer writes 8 bits, one call
	t.Setenv(EnvInt8GPool, "1")
	e2, c2 := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
	if q := e2.int8.use[step[convs[2].Name]]; q == nil || q.x8 == nil || q.x8.c3 == nil || !q.out8 || len(stepCalls(c2, step[convs[2].Name])) != 1 {
		t.Errorf("with the pooling reading INT8, the last layer: %+v", q)
	}
}

// TestInt8Conv3ChainTuneFake tunes two bottleneck stages (16x16, batch 2)
// with the chains on and conv3_i8u2 offered (KILN_CUDA_INT8_CONV3=1, the
// fake modules): every 3x3 is timed as chained with two INT8 candidates,
// conv3_i8u2 and cuDNN's INT8 graph reading and writing what it does
// (reduceAlt). A timing cache that makes conv3_i8u2 the fastest gives it
// every 3x3, with the untuned engine's 8-bit flags (input and output in 8
// bits), recorded as kiln-conv3-i8u2 at 1 us, and the plan applied without
// timing rebuilds it; one that makes cuDNN's graph the fastest gives the
// 3x3s cuDNN's INT8 graphs, reading and writing 8 bits the same.
func TestInt8Conv3ChainTuneFake(t *testing.T) {
	dir := fakeLibs(t)
	g := bottleneckBodyAt(rand.New(rand.NewPCG(7, 8)), 2, 2, 16)
	if err := optimize.Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	scales := bodyScales(g)
	fakeC3(t)
	for _, k := range []string{EnvInt8Expand, EnvUnverified, EnvInt8Chain, EnvInt8All, EnvInt8Reduce} {
		t.Setenv(k, "")
	}
	t.Setenv(EnvInt8Conv3, "1")
	is3 := func(e *Engine, name string) bool {
		cc := e.prog.steps[stepOf(e, name)].conv
		return cc != nil && cc.kh == 3
	}
	saved := chooseStepHook
	t.Cleanup(func() { chooseStepHook = saved })
	in := map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, 2, 64, 16, 16)}
	for _, preferC3 := range []bool{true, false} {
		seen := map[string]bool{}
		chooseStepHook = func(cands []candidate, i int, name, op, sig string, c *tactic.Cache, f device.Fingerprint, screen func(int) (time.Duration, error), measure func(...int) (time.Duration, error)) (int, int, error) {
			if strings.Contains(sig, " int8-chain ") {
				var c3, dnn *Tactic
				for k := range cands {
					switch tk := &cands[k].t; {
					case tk.Quant == quantC3:
						c3 = tk
					case tk.Impl == ImplCUDNN && tk.Quant == "int8":
						dnn = tk
					}
				}
				if c3 != nil {
					seen[name] = true
					if dnn == nil {
						t.Errorf("%s: conv3_i8u2 timed without cuDNN's INT8 graph", name)
					}
					pick := dnn
					if preferC3 {
						pick = c3
					}
					c.Store(f, sig, pick.name(), time.Microsecond)
				}
			}
			return saved(cands, i, name, op, sig, c, f, screen, measure)
		}
		fp := device.Fingerprint{"gpu": "fake"}
		cache, err := tactic.Open(filepath.Join(t.TempDir(), "timing.json"))
		if err != nil {
			t.Fatal(err)
		}
		et, ct := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tune: true, TimingCache: cache, CacheDevice: fp})
		if et.chainChoice() != "int8" {
			t.Fatalf("prefer conv3_i8u2 %v: the engine-level choice is %q", preferC3, et.chainChoice())
		}
		picked := et.Tactics()
		n3 := 0
		for i, s := range et.prog.steps {
			if s.conv == nil || s.conv.kh != 3 {
				continue
			}
			n3++
			name := s.node.Name
			q, tt := et.int8.use[i], picked[name]
			if !seen[s.name()] {
				t.Errorf("%s: conv3_i8u2 was not a chained candidate", name)
			}
			if q == nil || (q.x8 != nil && q.x8.c3 != nil) != preferC3 || !q.in8 || !q.out8 {
				t.Errorf("prefer conv3_i8u2 %v: %s runs %+v", preferC3, name, q)
				continue
			}
			if (tt.Quant == quantC3) != preferC3 || tt.NS != 1000 {
				t.Errorf("prefer conv3_i8u2 %v: %s: tactic %s (%+v)", preferC3, name, tt.name(), tt)
			}
			if !preferC3 && q.g.Engine().ID != tt.Graph {
				t.Errorf("%s runs engine %s, its tactic says %s", name, q.g.Engine().ID, tt.Graph)
			}
		}
		if n3 != 7 {
			t.Errorf("%d 3x3s, want 7", n3)
		}
		if _, err := ct.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		if preferC3 {
			chooseStepHook = saved
			checkApplied(t, dir, g, scales, picked, in, "run conv3_i8u2", func(q *int8Conv) bool { return q.x8 != nil && q.x8.c3 != nil }, 7)
			ea, _ := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tactics: picked})
			for i, q := range ea.int8.use {
				if is3(ea, q.name) && (q.x8 == nil || !q.in8 || !q.out8 || ea.int8.use[i] != q) {
					t.Errorf("applied: %s: %+v, want conv3_i8u2 reading and writing 8 bits", q.name, q)
				}
			}
		}
	}
}

// TestC3ModuleSource checks each build's module source: the build's kernel
// (its extra H and W parameters) and the widening kernel beside it, once
// each, and no other build's kernel.
func TestC3ModuleSource(t *testing.T) {
	for _, c := range []struct {
		cout, stride int
		name         string
	}{{64, 1, "conv3_i8u2n64"}, {128, 1, "conv3_i8u2"}, {256, 2, "conv3_i8u2s2"}, {64, 2, "conv3_i8u2n64s2"}} {
		src := cuda.Conv3I8ModuleSource(c.cout, c.stride)
		name, _, _ := cuda.Conv3I8Build(c.cout, c.stride)
		if name != c.name {
			t.Errorf("cout %d stride %d: build %s, want %s", c.cout, c.stride, name, c.name)
		}
		if strings.Count(src, " "+c.name+"(") != 1 || strings.Count(src, " "+cuda.DequantI8Kernel+"(") != 1 || !strings.Contains(src, "int H, int W)") {
			t.Errorf("%s: the module lacks its kernel, its H and W, or %s", c.name, cuda.DequantI8Kernel)
		}
		if strings.Contains(src, " "+cuda.ExpandI8Kernel+"(") {
			t.Errorf("%s: the module holds %s", c.name, cuda.ExpandI8Kernel)
		}
	}
}
