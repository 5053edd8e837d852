package gpuexec

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
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

// maxPoolI8Host is maxpool_nhwc8_f16_i8 on the host: x [n, h, w, c] half
// bits, MaxPool of kh x kw windows (stride s, pad p, no dilation) to [n,
// oh, ow, c], each output f2i8(max * inv) as the kernel computes it (the
// max of the float32 values of the halves, times inv in float32, rounded
// to nearest even and saturated to ±127; -127 for an empty window).
func maxPoolI8Host(x []uint16, n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw int, inv float32) []int8 {
	y := make([]int8, n*oh*ow*c)
	for b := range n {
		for oy := range oh {
			for ox := range ow {
				for ch := range c {
					acc := float32(math.Inf(-1))
					for ky := range kh {
						iy := oy*sh - ph + ky
						if iy < 0 || iy >= h {
							continue
						}
						for kx := range kw {
							ix := ox*sw - pw + kx
							if ix < 0 || ix >= w {
								continue
							}
							acc = max(acc, tensor.HalfToFloat32(x[((b*h+iy)*w+ix)*c+ch]))
						}
					}
					y[((b*oh+oy)*ow+ox)*c+ch] = quantI8(acc * inv)
				}
			}
		}
	}
	return y
}

// quantI8 is f2i8 (device/cuda/kernels/op_quant.cu): round to nearest even,
// saturated to ±127.
func quantI8(v float32) int8 {
	return int8(max(-127, min(127, math.RoundToEven(float64(v)))))
}

// TestMaxPoolI8Host checks, on the host, the property maxpool_nhwc8_f16_i8
// rests on: MaxPool then quantizing gives the same bytes as quantizing
// each value then MaxPool (what the readers computed before from the half
// pool's output), on values with ties, negatives, saturation on both
// sides and padding at the borders, and that maxPoolI8Host is that value.
func TestMaxPoolI8Host(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n, c, h, w = 2, 16, 11, 9
	x := make([]uint16, n*h*w*c)
	for i := range x {
		var v float32
		switch r.IntN(4) {
		case 0:
			v = float32(r.NormFloat64() * 10) // past ±127/20: saturates
		case 1:
			v = float32(r.IntN(9)-4) / 40 // exact ties at inv 20: k/2
		default:
			v = float32(r.NormFloat64())
		}
		x[i] = tensor.Float32ToHalf(v)
	}
	const inv = 20
	for _, k := range []struct{ kh, kw, s, p int }{{3, 3, 2, 1}, {2, 2, 2, 0}, {3, 2, 1, 1}} {
		oh, ow := (h+2*k.p-k.kh)/k.s+1, (w+2*k.p-k.kw)/k.s+1
		got := maxPoolI8Host(x, n, c, h, w, oh, ow, k.kh, k.kw, k.s, k.s, k.p, k.p, inv)
		saturated, ties := 0, 0
		for b := range n {
			for oy := range oh {
				for ox := range ow {
					for ch := range c {
						// quantize each value, then the max of the bytes
						want, any := int8(-127), false
						var half float32 // the half MaxPool's output, then quantized
						for ky := range k.kh {
							for kx := range k.kw {
								iy, ix := oy*k.s-k.p+ky, ox*k.s-k.p+kx
								if iy < 0 || iy >= h || ix < 0 || ix >= w {
									continue
								}
								v := tensor.HalfToFloat32(x[((b*h+iy)*w+ix)*c+ch])
								if q := quantI8(v * inv); !any || q > want {
									want = q
								}
								if !any || v > half {
									half = v
								}
								any = true
							}
						}
						g := got[((b*oh+oy)*ow+ox)*c+ch]
						if g != want || any && quantI8(tensor.HalfToFloat32(tensor.Float32ToHalf(half))*inv) != g {
							t.Fatalf("window %+v: output (%d, %d, %d, %d) = %d, quantized then pooled %d", k, b, oy, ox, ch, g, want)
						}
						if g == 127 || g == -127 {
							saturated++
						}
						if f := half * inv; f != float32(math.Trunc(float64(f))) && f*2 == float32(math.Trunc(float64(f*2))) {
							ties++
						}
					}
				}
			}
		}
		if saturated == 0 || ties == 0 {
			t.Errorf("window %+v: %d saturated outputs, %d ties: the values do not test the rounding", k, saturated, ties)
		}
	}
}

// stemGraph is resnetGraph with the stem: the image [batch, 3, 4 hw, 4
// hw], then the bottleneck stages at hw x hw, optimized (the residual
// adds and ReLUs fused into the convolutions), shapes inferred.
func stemGraph(t *testing.T, batch, stages, hw int) *ir.Graph {
	t.Helper()
	g := resnetGraph(rand.New(rand.NewPCG(9, 10)), batch, stages, hw, true)
	if err := optimize.Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// stemScales are INT8 scales as the builder hands them for g: every
// convolution but the stem (the INT8 rule keeps a convolution reading the
// image in float) gets its input's scale, and every value its own.
func stemScales(g *ir.Graph) map[string]float32 {
	scales := map[string]float32{}
	for _, n := range g.Nodes {
		if strings.Contains(n.OpType, "Conv") && !slices.Contains(g.Inputs, n.Input(0)) {
			scales[n.Name] = 0.05
		}
		for _, v := range n.Outputs {
			scales[Int8ValueKey(v.Name)] = 0.05
		}
	}
	return scales
}

// poolStep returns the index of g's MaxPool step in e.
func poolStep(t *testing.T, e *Engine) int {
	t.Helper()
	for i, s := range e.prog.steps {
		if s.node.OpType == "MaxPool" {
			return i
		}
	}
	t.Fatal("no MaxPool step")
	return -1
}

// callsOf counts c's calls of step i.
func callsOf(c *Context, i int) []call {
	var out []call
	for _, k := range c.calls {
		if k.step == i {
			out = append(out, k)
		}
	}
	return out
}

// TestInt8PoolFake builds the stem, its MaxPool and the first two stages
// (16x16 and 8x8, batch 1: 256 and 64 rows) as an untuned chained INT8 engine against the
// fake libraries (compute 9.0), with the MaxPool writing INT8
// (KILN_CUDA_INT8_POOL=1): the MaxPool runs maxpool_nhwc8_f16_i8 at the
// scale of its readers' input (layer1.0's conv1, cuDNN's INT8 graph, and
// its downsample, expand_i8u2 without ReLU), both read it in 8 bits (one
// call each: no quantizing pass), the stem stays half; eager, captured and
// replayed runs. With a reader back in FP16 the half pool runs again;
// with =0 (and by default, until a GPU has run it) nothing changes: the
// half pool and both quantizing passes. Tuned with the chains, the pool
// writes INT8 when INT8 wins and stays half when FP16 does.
func TestInt8PoolFake(t *testing.T) {
	dir := fakeLibs(t)
	if !strings.Contains(cuda.KernelSource(), "void "+poolI8Kernel+"(") {
		t.Fatalf("%s is not in the kernel sources", poolI8Kernel)
	}
	g := stemGraph(t, 1, 2, 16)
	scales := stemScales(g)
	i8xLoadHook = func(e *Engine, st *i8xState) error {
		st.fn, st.dq, st.sms = e.int8.fns["int8"], e.int8.fns["int8"], 132
		return nil
	}
	t.Cleanup(func() { i8xLoadHook = nil })
	for _, k := range []string{EnvInt8Expand, EnvInt8Chain, EnvInt8All} {
		t.Setenv(k, "")
	}
	t.Setenv(EnvUnverified, "1")
	t.Setenv(EnvInt8Pool, "1")
	in := map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, 1, 3, 64, 64)}

	e, c := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
	ip := poolStep(t, e)
	ps := e.prog.steps[ip]
	p := e.int8.pool[ip]
	if p == nil || len(e.int8.pool) != 1 {
		t.Fatalf("the MaxPool does not write INT8 (%d pools planned)", len(e.int8.pool))
	}
	l := e.launchesOf(ip)
	old := ps.launches[0]
	if len(l) != 1 || l[0].kernel != poolI8Kernel || len(l[0].args) != 17 || l[0].args[2].kind != argF32 || l[0].args[2].f != 20 {
		t.Fatalf("the MaxPool launches %+v, want %s at 1/0.05", l, poolI8Kernel)
	}
	for k, a := range l[0].args {
		o := k
		if k >= 3 {
			o = k - 1
		}
		if k != 2 && a != old.args[o] {
			t.Errorf("argument %d: %+v, want pool2d_nhwc8_f16's %d, %+v", k, a, o, old.args[o])
		}
	}
	if l[0].grid != old.grid || l[0].block != old.block {
		t.Errorf("grid %v block %v, want %v %v (8 channels a thread, as pool2d_nhwc8_f16)", l[0].grid, l[0].block, old.grid, old.block)
	}
	if k := callsOf(c, ip); len(k) != 1 || k[0].fn != e.funcs[poolI8Kernel] {
		t.Errorf("the MaxPool makes %d calls, want 1 of %s", len(k), poolI8Kernel)
	}
	var cudnn, x8 int
	for _, j := range p.readers {
		q, cb := e.int8.use[j], e.prog.steps[j].conv
		if q == nil || !q.in8 || cb.c != 64 || cb.h != 16 {
			t.Errorf("reader %s: %+v", e.prog.steps[j].name(), q)
			continue
		}
		if q.x8 != nil {
			x8++
			if !q.x8.noRelu || !q.out8 || q.x8.sx != 0.05 {
				t.Errorf("the downsample %s: no ReLU %v, output in 8 bits %v, x scale %g", q.name, q.x8.noRelu, q.out8, q.x8.sx)
			}
		} else {
			cudnn++
		}
		if k := callsOf(c, j); len(k) != 1 {
			t.Errorf("reader %s makes %d calls, want 1 (no quantizing pass)", q.name, len(k))
		}
		if tac := e.int8Tactic(j); !strings.Contains(tac, "input in 8 bits") && !strings.Contains(tac, "input and residual in 8 bits") {
			t.Errorf("reader %s: tactic %q", q.name, tac)
		}
	}
	if cudnn != 1 || x8 != 1 {
		t.Errorf("readers: %d cuDNN INT8 graphs, %d expand_i8u2, want 1 and 1 (conv1 64 -> 64, the downsample 64 -> 256)", cudnn, x8)
	}
	// each layer's Impl says what it runs: the MaxPool its kernel, each
	// expand_i8u2 layer its epilogue (the expanding 1x1s
	// bias+residual+ReLU, the reducing one bias+ReLU, the downsample bias)
	epis := map[string]int{}
	for i, ly := range e.Layers() {
		switch q := e.int8.use[i]; {
		case ly.Op == "MaxPool":
			if ly.Impl != poolI8Kernel || !strings.Contains(ly.Tactic, poolI8Kernel) {
				t.Errorf("MaxPool: impl %q, tactic %q", ly.Impl, ly.Tactic)
			}
		case q != nil && q.x8 != nil:
			cc := e.prog.steps[i].conv
			want := "bias+residual+ReLU"
			if cc.z == nil && cc.relu {
				want = "bias+ReLU"
			} else if cc.z == nil {
				want = "bias"
			}
			epis[want]++
			if !strings.HasSuffix(ly.Impl, "expand_i8u2 ("+want+" epilogue)") || !strings.Contains(ly.Tactic, ", "+want) {
				t.Errorf("%s: impl %q, tactic %q; want the %s epilogue", ly.Node, ly.Impl, ly.Tactic, want)
			}
		}
	}
	if epis["bias+residual+ReLU"] != 3 || epis["bias+ReLU"] != 1 || epis["bias"] != 1 {
		t.Errorf("expand_i8u2 layers by epilogue: %v, want 3 expanding (the 16x16 stage's; the 8x8 stage has 64 rows), 1 reducing (256 -> 128 at 16x16), 1 downsample", epis)
	}
	// the stem: float (no input scale), half, not quantized
	for i, s := range e.prog.steps {
		if s.conv != nil && slices.Contains(g.Inputs, s.node.Input(0)) && e.int8.use[i] != nil {
			t.Errorf("the stem %s runs quantized", s.node.Name)
		}
	}
	for range 3 { // eagerly, captured, replayed
		if _, err := c.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	// a reader back in FP16 (as tuning's FP16 way leaves it): the half pool
	q0 := e.int8.use[p.readers[0]]
	delete(e.int8.use, p.readers[0])
	if l := e.launchesOf(ip); l[0].kernel != "pool2d_nhwc8_f16" {
		t.Errorf("with a reader in FP16 the MaxPool launches %s", l[0].kernel)
	}
	e.int8.use[p.readers[0]] = q0

	// off: the half pool, both readers quantize
	for _, v := range []string{"0", ""} {
		t.Setenv(EnvInt8Pool, v)
		if v == "" {
			t.Setenv(EnvUnverified, "") // the default: not yet run on a GPU
		}
		e0, c0 := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
		i0 := poolStep(t, e0)
		if len(e0.int8.pool) != 0 || e0.launchesOf(i0)[0].kernel != "pool2d_nhwc8_f16" {
			t.Errorf("%s=%q: the MaxPool writes INT8", EnvInt8Pool, v)
		}
		rs, _ := e0.readers(i0, e0.prog.steps[i0].launches[0].args[0].ref)
		if len(rs) != 2 {
			t.Fatalf("%s=%q: %d readers of the MaxPool", EnvInt8Pool, v, len(rs))
		}
		for _, j := range rs {
			q := e0.int8.use[j]
			if q == nil || q.in8 || len(callsOf(c0, j)) != 2 {
				t.Errorf("%s=%q: reader %s: %+v, %d calls, want its quantizing pass and the layer", EnvInt8Pool, v, e0.prog.steps[j].name(), q, len(callsOf(c0, j)))
			}
		}
		if _, err := c0.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}

	// tuned with the chains: INT8 wins (the fake's times tie: the first
	// way), the pool writes INT8; FP16 wins, it stays half
	t.Setenv(EnvUnverified, "1")
	t.Setenv(EnvInt8Pool, "1")
	t.Cleanup(func() { chainTimeHook = nil })
	for _, win := range []string{"int8", "fp16"} {
		chainTimeHook = func(way string, d time.Duration) time.Duration {
			if way == win {
				return time.Microsecond
			}
			return time.Millisecond
		}
		cache, err := tactic.Open(filepath.Join(t.TempDir(), "timing.json"))
		if err != nil {
			t.Fatal(err)
		}
		et, ct := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tune: true, TimingCache: cache, CacheDevice: device.Fingerprint{"gpu": "fake"}})
		if et.chainChoice() != win {
			t.Fatalf("tuned: choice %q, want %q", et.chainChoice(), win)
		}
		it := poolStep(t, et)
		k := callsOf(ct, it)
		writes8 := len(k) == 1 && k[0].fn == et.funcs[poolI8Kernel] && et.launchesOf(it)[0].kernel == poolI8Kernel
		if writes8 != (win == "int8") {
			t.Errorf("tuned, %s chosen: the MaxPool writes INT8 %v", win, writes8)
		}
		if _, err := ct.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
}

// globalPoolI8Host is global_avgpool_nhwc_i8 on the host: x [n, hw, c]
// INT8 at scale s -> [n, c] half bits, the int sum of each channel, times
// s, over hw, in float32 as the kernel computes it.
func globalPoolI8Host(x []int8, n, hw, c int, s float32) []uint16 {
	y := make([]uint16, n*c)
	for b := range n {
		for ch := range c {
			sum := int32(0)
			for p := range hw {
				sum += int32(x[(b*hw+p)*c+ch])
			}
			v := float32(sum) * s
			y[b*c+ch] = tensor.Float32ToHalf(v / float32(hw))
		}
	}
	return y
}

// TestInt8GlobalPoolFake builds the stem, its MaxPool and one stage at
// 16x16 (batch 1: the last block's expanding 1x1 fits expand_i8u2) as the
// untuned chained INT8 engine with the pooling reading INT8
// (KILN_CUDA_INT8_GPOOL=1): the last expand_i8u2 writes its output in 8
// bits into the value's storage (one call: no widening pass) and the
// GlobalAveragePool runs global_avgpool_nhwc_i8 at that output's scale,
// with global_pool_nhwc_f16's other arguments; with the producer not
// writing 8 bits the half pooling runs; =0 and the default (not yet run on
// a GPU) keep the widening and the half pooling. Eager, captured and
// replayed runs.
func TestInt8GlobalPoolFake(t *testing.T) {
	dir := fakeLibs(t)
	g := stemGraph(t, 1, 1, 16)
	scales := stemScales(g)
	i8xLoadHook = func(e *Engine, st *i8xState) error {
		st.fn, st.dq, st.sms = e.int8.fns["int8"], e.int8.fns["int8"], 132
		return nil
	}
	t.Cleanup(func() { i8xLoadHook = nil })
	for _, k := range []string{EnvInt8Expand, EnvInt8Chain, EnvInt8All, EnvInt8Pool, EnvUnverified} {
		t.Setenv(k, "")
	}
	in := map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, 1, 3, 64, 64)}
	gpStep := func(e *Engine) int {
		for i, s := range e.prog.steps {
			if s.node.OpType == "GlobalAveragePool" {
				return i
			}
		}
		t.Fatal("no GlobalAveragePool step")
		return -1
	}
	for _, v := range []string{"1", "0", ""} {
		t.Setenv(EnvInt8GPool, v)
		e, c := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
		ig := gpStep(e)
		x := e.prog.steps[ig].launches[0].args[1].ref
		pi := -1
		for i, q := range e.int8.use {
			if q.x8 != nil && e.prog.steps[i].conv.y == x {
				pi = i
			}
		}
		if pi < 0 {
			t.Fatalf("%s=%q: the pooling's input is not written by expand_i8u2", EnvInt8GPool, v)
		}
		q := e.int8.use[pi]
		l := e.launchesOf(ig)
		old := e.prog.steps[ig].launches[0]
		calls := len(callsOf(c, pi))
		if v == "1" {
			if !q.out8 || calls != 1 || e.int8.gpool[ig] == nil || e.int8.gpool[ig].producer != pi {
				t.Errorf("the last expand_i8u2 %s: output in 8 bits %v, %d calls; want true, 1 (no widening)", q.name, q.out8, calls)
			}
			if len(l) != 1 || l[0].kernel != gpoolI8Kernel || len(l[0].args) != 6 || l[0].args[2].kind != argF32 || l[0].args[2].f != q.x8.sy ||
				l[0].args[0] != old.args[0] || l[0].args[1] != old.args[1] || l[0].args[3] != old.args[2] || l[0].args[4] != old.args[3] ||
				l[0].args[5] != old.args[4] || l[0].grid != old.grid || l[0].block != old.block {
				t.Errorf("the pooling launches %+v, want %s at the scale %g with %+v's arguments", l, gpoolI8Kernel, q.x8.sy, old)
			}
			for _, ly := range e.Layers() {
				if ly.Op == "GlobalAveragePool" && ly.Impl != gpoolI8Kernel {
					t.Errorf("GlobalAveragePool: impl %q", ly.Impl)
				}
			}
			// the producer writing half again: the half pooling
			q.out8 = false
			if e.launchesOf(ig)[0].kernel != "global_pool_nhwc_f16" {
				t.Errorf("with the producer writing half the pooling launches %s", e.launchesOf(ig)[0].kernel)
			}
			q.out8 = true
		} else if q.out8 || calls != 2 || len(e.int8.gpool) != 0 || l[0].kernel != "global_pool_nhwc_f16" {
			t.Errorf("%s=%q: the last expand_i8u2 writes 8 bits %v, %d calls (want the kernel and the widening), the pooling %s", EnvInt8GPool, v, q.out8, calls, l[0].kernel)
		}
		for range 3 {
			if _, err := c.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
		}
	}
}
