package gpuexec

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// epiGPU is a CUDA context on device 0 with kiln's kernels loaded, bound
// to the test's OS thread (the subtests run on it: no t.Run below).
type epiGPU struct {
	d   *cuda.Driver
	mod cuda.Module
	// at maps the refs of the launches run to device addresses (off is
	// added).
	at   map[ref]cuda.DevicePtr
	bufs []cuda.DevicePtr
}

func openEpiGPU(t *testing.T) *epiGPU {
	t.Helper()
	needGPU(t)
	d, err := cuda.OpenDriver(cuda.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := d.Device(0)
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	ctx, err := d.RetainPrimaryContext(dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetCurrent(ctx); err != nil {
		t.Fatal(err)
	}
	major, minor, err := d.ComputeCapability(dev)
	if err != nil {
		t.Fatal(err)
	}
	_, img, err := KernelImage(cuda.Options{}, major, minor)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := d.ModuleLoadData(img)
	if err != nil {
		t.Fatal(err)
	}
	g := &epiGPU{d: d, mod: mod, at: map[ref]cuda.DevicePtr{}}
	t.Cleanup(func() {
		g.free()
		d.ModuleUnload(mod)
		d.ReleasePrimaryContext(dev)
		runtime.UnlockOSThread()
	})
	return g
}

func (g *epiGPU) free() {
	for _, p := range g.bufs {
		g.d.MemFree(p)
	}
	g.bufs, g.at = nil, map[ref]cuda.DevicePtr{}
}

// put uploads b to a new buffer that r (whatever its off) then names: r.off
// bytes of padding come first.
func (g *epiGPU) put(t testing.TB, r ref, b []byte) {
	t.Helper()
	p, err := g.d.MemAlloc(int(r.off) + len(b) + 16)
	if err != nil {
		t.Fatal(err)
	}
	g.bufs = append(g.bufs, p)
	if err := g.d.MemcpyHtoD(p+cuda.DevicePtr(r.off), b); err != nil {
		t.Fatal(err)
	}
	base := r
	base.off = 0
	g.at[base] = p
}

func (g *epiGPU) get(t testing.TB, r ref, n int) []byte {
	t.Helper()
	out := make([]byte, n)
	if err := g.d.MemcpyDtoH(out, g.addr(r)); err != nil {
		t.Fatal(err)
	}
	return out
}

func (g *epiGPU) addr(r ref) cuda.DevicePtr {
	if r.buf == bufNil {
		return 0
	}
	base := r
	base.off = 0
	return g.at[base] + cuda.DevicePtr(r.off)
}

// run launches l times times on the default stream (not waiting).
func (g *epiGPU) run(t testing.TB, l launch, times int) {
	t.Helper()
	fn, err := g.d.ModuleFunction(g.mod, l.kernel)
	if err != nil {
		t.Fatalf("%s: %v", l.kernel, err)
	}
	args := cuda.NewKernelArgs(len(l.args))
	defer args.Free()
	for j, a := range l.args {
		switch a.kind {
		case argPtr:
			args.SetPtr(j, g.addr(a.ref))
		case argI32:
			args.SetInt32(j, int32(a.i))
		case argI64:
			args.SetInt64(j, a.i)
		case argF32:
			args.SetFloat32(j, a.f)
		}
	}
	for range times {
		if err := g.d.Launch(fn, l.grid, l.block, l.shmem, cuda.Stream{}, args); err != nil {
			t.Fatalf("%s: %v", l.kernel, err)
		}
	}
}

func (g *epiGPU) sync(t testing.TB) {
	t.Helper()
	if err := g.d.StreamSynchronize(cuda.Stream{}); err != nil {
		t.Fatal(err)
	}
}

// encodeEpi stores x as half or float32 (rounding x itself to half first,
// so that the host reference sees what the GPU reads).
func encodeEpi(x []float32, half bool) []byte {
	if half {
		b := make([]byte, 2*len(x))
		for i, v := range x {
			h := tensor.Float32ToHalf(v)
			binary.LittleEndian.PutUint16(b[2*i:], h)
			x[i] = tensor.HalfToFloat32(h)
		}
		return b
	}
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func decodeEpi(b []byte, half bool) []float32 {
	if half {
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = tensor.HalfToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return out
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// actHost is nn.cu's act_apply in float64.
func actHost(x float64, a activation) float64 {
	p0, p1 := float64(a.p0), float64(a.p1)
	switch a.code {
	case actRelu:
		return max(x, 0)
	case actSigmoid:
		return 1 / (1 + math.Exp(-x))
	case actSiLU:
		return x / (1 + math.Exp(-x))
	case actClip:
		return min(max(x, p0), p1)
	case actHardSwish:
		return x * max(0, min(1, x/6+0.5))
	case actLeakyRelu:
		if x < 0 {
			return p0 * x
		}
		return x
	case actHardSigmoid:
		return max(0, min(1, p0*x+p1))
	case actGelu:
		return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
	case actGeluTanh:
		return 0.5 * x * (1 + math.Tanh(0.7978845608028654*(x+0.044715*x*x*x)))
	case actTanh:
		return math.Tanh(x)
	}
	return x
}

// everyActivation is each activation act_apply knows, with parameters.
var everyActivation = []activation{
	{code: actNone}, {code: actRelu}, {code: actSigmoid}, {code: actSiLU}, {code: actClip, p0: -1, p1: 2},
	{code: actHardSwish}, {code: actLeakyRelu, p0: 0.1}, {code: actHardSigmoid, p0: 0.2, p1: 0.5},
	{code: actGelu}, {code: actGeluTanh}, {code: actTanh},
}

// epiClose reports whether got is want within the storage type's
// tolerance (half: as TestKernelsOnGPU, 4e-3 relative to max(1, |want|)).
func epiClose(got float32, want float64, half bool) bool {
	tol := 1e-5
	if half {
		tol = 4e-3
	}
	return math.Abs(float64(got)-want) <= tol*max(1, math.Abs(want))
}

func randomsIn(r *rand.Rand, n int, lo, hi float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return x
}

// TestEpilogueKernelsOnGPU runs the epilogue launches chanEpilogue picks
// (the vector kernel with M/8 = 2, 3 and 257 channel vectors, the plane
// kernel on planes of 2048 elements, aligned and not, the scalar kernel
// for odd M and small planes) with and without bias and residual, for every
// activation, in float32 and half, each as launched and with a small grid
// (many grid-stride steps), then the scalar row_epilogue and binary_flat
// and the vector unary and binary_flat kernels, and compares every element
// with the host's float64 reference of the same (half-rounded) inputs.
// Without a GPU it skips.
func TestEpilogueKernelsOnGPU(t *testing.T) {
	g := openEpiGPU(t)
	r := rand.New(rand.NewPCG(7, 8))
	shapes := []struct {
		n, m int
		hw   int64
		yOff int64 // elements past an aligned address (y and z)
		want string
	}{
		{37, 16, 1, 0, "chan_epilogue_vec"},
		{37, 24, 1, 0, "chan_epilogue_vec"},
		{5, 2056, 1, 0, "chan_epilogue_vec"},
		{37, 6, 1, 0, "chan_epilogue"},
		{3, 5, 2048, 0, "chan_epilogue_plane"},
		{3, 5, 49, 0, "chan_epilogue"},
		{3, 5, 64, 0, "chan_epilogue"},
		{3, 5, 2048, 1, "chan_epilogue_plane"}, // misaligned: the kernel's element-wise path
	}
	for _, half := range []bool{false, true} {
		c := &compiler{half: half}
		es := int64(4)
		if half {
			es = 2
		}
		for _, sh := range shapes {
			total := sh.n * sh.m * int(sh.hw)
			for ai, act := range everyActivation {
				withBias, withZ := ai%2 == 0, ai%3 != 1
				g.free()
				y0 := randomsIn(r, total, -4, 4)
				bias := randomsIn(r, sh.m, -1, 1)
				z := randomsIn(r, total, -2, 2)
				yr, zr, br := ref{buf: bufArena, id: 1, off: sh.yOff * es}, ref{buf: bufArena, id: 2, off: sh.yOff * es}, ref{buf: bufWeights}
				g.put(t, yr, encodeEpi(y0, half))
				g.put(t, zr, encodeEpi(z, half))
				g.put(t, br, encodeEpi(bias, half))
				var bp, zp *ref
				if withBias {
					bp = &br
				}
				if withZ {
					zp = &zr
				}
				l := c.chanEpilogue(yr, bp, zp, act, sh.n, sh.m, sh.hw)
				if want := c.fk(sh.want); l.kernel != want {
					t.Fatalf("n %d m %d hw %d: chanEpilogue picks %s, want %s", sh.n, sh.m, sh.hw, l.kernel, want)
				}
				if ai%2 == 1 {
					// a grid of 80 threads: many grid-stride steps,
					// the channel vector moving by 80 modulo M/width
					l.grid.X, l.block.X = 2, 40
				}
				g.run(t, l, 1)
				g.sync(t)
				got := decodeEpi(g.get(t, yr, total*int(es)), half)
				bad := 0
				for i := range got {
					v := float64(y0[i])
					if withBias {
						v += float64(bias[(int64(i)/sh.hw)%int64(sh.m)])
					}
					if withZ {
						v += float64(z[i])
					}
					if want := actHost(v, act); !epiClose(got[i], want, half) {
						if bad < 3 {
							t.Errorf("%s (n %d m %d hw %d, act %d, bias %v, z %v): y[%d] = %g, want %g", l.kernel, sh.n, sh.m, sh.hw, act.code, withBias, withZ, i, got[i], want)
						}
						bad++
					}
				}
				if bad > 0 {
					t.Errorf("%s: %d of %d elements differ", l.kernel, bad, total)
				}
			}
		}
		// unary_vec and binary_flat_vec, as op_elementwise.go launches them
		w := int64(c.vecWidth())
		const n = 37 * 16
		for _, act := range everyActivation {
			g.free()
			x := randomsIn(r, n, -4, 4)
			xr, yr := ref{buf: bufArena, id: 1}, ref{buf: bufArena, id: 2}
			g.put(t, xr, encodeEpi(x, half))
			g.put(t, yr, make([]byte, n*es))
			g.run(t, vecLaunch(c.fk("unary_vec"), n/w, 0, pArg(yr), pArg(xr), lArg(n), iArg(act.code), fArg(act.p0), fArg(act.p1)), 1)
			g.sync(t)
			got := decodeEpi(g.get(t, yr, n*int(es)), half)
			for i := range got {
				if want := actHost(float64(x[i]), act); !epiClose(got[i], want, half) {
					t.Errorf("unary_vec act %d: y[%d] = %g, want %g", act.code, i, got[i], want)
					break
				}
			}
		}
		// the scalar row_epilogue and binary_flat, their column tracked
		// across grid-stride steps (a grid of 3 x 64 threads)
		small := func(l launch) launch {
			l.grid.X, l.block.X = 3, 64
			return l
		}
		for _, act := range everyActivation {
			const rows, cols = 37, 13
			g.free()
			y0, bias := randomsIn(r, rows*cols, -4, 4), randomsIn(r, cols, -1, 1)
			yr, br := ref{buf: bufArena, id: 1}, ref{buf: bufWeights}
			g.put(t, yr, encodeEpi(y0, half))
			g.put(t, br, encodeEpi(bias, half))
			g.run(t, small(elemLaunch(c.fk("row_epilogue"), rows*cols, pArg(yr), pArg(br), lArg(rows*cols), iArg(cols), iArg(act.code), fArg(act.p0), fArg(act.p1))), 1)
			g.sync(t)
			got := decodeEpi(g.get(t, yr, rows*cols*int(es)), half)
			for i := range got {
				if want := actHost(float64(y0[i])+float64(bias[i%cols]), act); !epiClose(got[i], want, half) {
					t.Errorf("row_epilogue act %d: y[%d] = %g, want %g", act.code, i, got[i], want)
					break
				}
			}
		}
		for _, bn := range []int64{1, 12, 13, n} {
			for op := range 6 {
				g.free()
				a, b := randomsIn(r, n, -4, 4), randomsIn(r, int(bn), 0.5, 2.5)
				ar, br, yr := ref{buf: bufArena, id: 1}, ref{buf: bufArena, id: 2}, ref{buf: bufArena, id: 3}
				g.put(t, ar, encodeEpi(a, half))
				g.put(t, br, encodeEpi(b, half))
				g.put(t, yr, make([]byte, n*es))
				g.run(t, small(elemLaunch(c.fk("binary_flat"), n, pArg(yr), pArg(ar), pArg(br), lArg(n), lArg(bn), iArg(op))), 1)
				g.sync(t)
				got := decodeEpi(g.get(t, yr, n*int(es)), half)
				for i := range got {
					va, vb := float64(a[i]), float64(b[int64(i)%bn])
					want := [...]float64{va + vb, va - vb, va * vb, va / vb, max(va, vb), min(va, vb)}[op]
					if !epiClose(got[i], want, half) {
						t.Errorf("binary_flat op %d bn %d: y[%d] = %g, want %g", op, bn, i, got[i], want)
						break
					}
				}
			}
		}
		// binary_plane: 6 planes of 64 (vectors) and 49 elements, b[p % 3]
		for _, hw := range []int64{64, 49} {
			const planes, bm = 6, 3
			for op := range 6 {
				g.free()
				a, b := randomsIn(r, int(planes*hw), -4, 4), randomsIn(r, bm, 0.5, 2.5)
				ar, br, yr := ref{buf: bufArena, id: 1}, ref{buf: bufArena, id: 2}, ref{buf: bufArena, id: 3}
				g.put(t, ar, encodeEpi(a, half))
				g.put(t, br, encodeEpi(b, half))
				g.put(t, yr, make([]byte, planes*hw*es))
				l := planeLaunch(c.fk("binary_plane"), planes, hw, int(w), pArg(yr), pArg(ar), pArg(br), lArg(planes), lArg(hw), lArg(bm), iArg(op))
				if op%2 == 1 {
					l.grid.X = 4 // grid-stride over the planes
				}
				g.run(t, l, 1)
				g.sync(t)
				got := decodeEpi(g.get(t, yr, int(planes*hw*es)), half)
				for i := range got {
					va, vb := float64(a[i]), float64(b[(int64(i)/hw)%bm])
					want := [...]float64{va + vb, va - vb, va * vb, va / vb, max(va, vb), min(va, vb)}[op]
					if !epiClose(got[i], want, half) {
						t.Errorf("binary_plane op %d hw %d: y[%d] = %g, want %g", op, hw, i, got[i], want)
						break
					}
				}
			}
		}
		for _, bn := range []int64{1, 16, n} {
			for op := range 6 {
				g.free()
				a, b := randomsIn(r, n, -4, 4), randomsIn(r, int(bn), 0.5, 2.5)
				ar, br, yr := ref{buf: bufArena, id: 1}, ref{buf: bufArena, id: 2}, ref{buf: bufArena, id: 3}
				g.put(t, ar, encodeEpi(a, half))
				g.put(t, br, encodeEpi(b, half))
				g.put(t, yr, make([]byte, n*es))
				period := 0
				if bn > 1 {
					period = int(bn / w)
				}
				l := vecLaunch(c.fk("binary_flat_vec"), n/w, period, pArg(yr), pArg(ar), pArg(br), lArg(n), lArg(bn), iArg(op))
				if op%2 == 1 {
					l.grid.X, l.block.X = 1, 3 // 3 threads: b's vector moves by 3 modulo bn/width
				}
				g.run(t, l, 1)
				g.sync(t)
				got := decodeEpi(g.get(t, yr, n*int(es)), half)
				for i := range got {
					va, vb := float64(a[i]), float64(b[int64(i)%bn])
					want := [...]float64{va + vb, va - vb, va * vb, va / vb, max(va, vb), min(va, vb)}[op]
					if !epiClose(got[i], want, half) {
						t.Errorf("binary_flat_vec op %d bn %d: y[%d] = %g, want %g", op, bn, i, got[i], want)
						break
					}
				}
			}
		}
	}
}

// epiBenchRow is one epilogue of the timing table: n planes (NCHW) or
// pixels (NHWC: hw 1) of m channels.
type epiBenchRow struct {
	net, name string
	n, m      int
	hw        int64
	act       activation
	residual  bool
}

func epiBenchRows(batch int) []epiBenchRow {
	relu, silu := activation{code: actRelu}, activation{code: actSiLU}
	px := func(s int) int { return batch * s * s }
	return []epiBenchRow{
		{"ResNet-50", "56x56 -> 64, bias+ReLU", px(56), 64, 1, relu, false},
		{"ResNet-50", "56x56 -> 256, bias", px(56), 256, 1, activation{}, false},
		{"ResNet-50", "56x56 -> 256, bias+residual+ReLU", px(56), 256, 1, relu, true},
		{"ResNet-50", "28x28 -> 512, bias+residual+ReLU", px(28), 512, 1, relu, true},
		{"ResNet-50", "14x14 -> 1024, bias+residual+ReLU", px(14), 1024, 1, relu, true},
		{"ResNet-50", "7x7 -> 2048, bias+residual+ReLU", px(7), 2048, 1, relu, true},
		{"efficientnet", "112x112 -> 32, bias+SiLU (stem)", px(112), 32, 1, silu, false},
		{"efficientnet", "112x112 -> 96, bias+SiLU (expand)", px(112), 96, 1, silu, false},
		{"efficientnet", "56x56 -> 144, bias+SiLU", px(56), 144, 1, silu, false},
		{"efficientnet", "28x28 -> 240, bias+SiLU", px(28), 240, 1, silu, false},
		{"efficientnet", "14x14 -> 672, bias+SiLU", px(14), 672, 1, silu, false},
		{"efficientnet", "7x7 -> 1152, bias+SiLU", px(7), 1152, 1, silu, false},
		{"efficientnet", "112x112 x96 depthwise, bias+SiLU", batch, 96, 112 * 112, silu, false},
		{"efficientnet", "56x56 x144 depthwise, bias+SiLU", batch, 144, 56 * 56, silu, false},
		{"efficientnet", "14x14 x480 depthwise, bias+SiLU", batch, 480, 14 * 14, silu, false},
		{"efficientnet", "7x7 x1152 depthwise, bias+SiLU", batch, 1152, 7 * 7, silu, false},
	}
}

// TestEpilogueBenchOnGPU times, at batch 256 ($KILN_EPILOGUE_BENCH_BATCH),
// the epilogue after a plain convolution of ResNet-50's and
// efficientnet_b0-like layers in half: the scalar chan_epilogue_f16 as
// every launch site used it before against chanEpilogue's pick (CUDA
// events around 20 launches after 3 warm-ups, us per call), after
// checking that both give the same output (equal halves) from the same
// input. It also times unary and binary_flat against their vector forms
// on the largest tensor, and squeeze-and-excitation's channel scale (the
// general broadcasting binary kernel against binary_plane). It logs a table (also written to
// $KILN_EPILOGUE_BENCH_OUT). Set KILN_EPILOGUE_BENCH=1 to run it (under a
// minute on an H100).
func TestEpilogueBenchOnGPU(t *testing.T) {
	if os.Getenv("KILN_EPILOGUE_BENCH") == "" {
		t.Skip("set KILN_EPILOGUE_BENCH=1 to time the epilogue kernels, old and new")
	}
	g := openEpiGPU(t)
	batch, err := strconv.Atoi(cmp.Or(os.Getenv("KILN_EPILOGUE_BENCH_BATCH"), "256"))
	if err != nil || batch < 1 {
		t.Fatalf("KILN_EPILOGUE_BENCH_BATCH: %v", err)
	}
	fp, _ := cuda.Probe(cuda.Options{})
	c := &compiler{half: true}
	rows := epiBenchRows(batch)
	most := 0
	for _, row := range rows {
		most = max(most, row.n*row.m*int(row.hw))
	}
	// one random pattern, [-4, 4), for every tensor (a prefix of it)
	src := make([]byte, 2*most)
	s := uint64(0x9E3779B97F4A7C15)
	for i := 0; i < most; i++ {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		binary.LittleEndian.PutUint16(src[2*i:], tensor.Float32ToHalf(float32(s>>40)/float32(1<<21)-4))
	}
	start, err := g.d.EventCreate(0)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := g.d.EventCreate(0)
	defer g.d.EventDestroy(start)
	defer g.d.EventDestroy(end)
	const reps = 20
	// timeUS is the device time per launch of l, in us.
	timeUS := func(l launch) float64 {
		g.run(t, l, 3)
		g.d.EventRecord(start, cuda.Stream{})
		g.run(t, l, reps)
		g.d.EventRecord(end, cuda.Stream{})
		if err := g.d.EventSynchronize(end); err != nil {
			t.Fatal(err)
		}
		ms, err := g.d.EventElapsed(start, end)
		if err != nil {
			t.Fatal(err)
		}
		return float64(ms) * 1e3 / reps
	}
	lines := []string{fmt.Sprintf("Epilogue kernels after a plain convolution, FP16, batch %d, %s: device time per call in us (CUDA events, mean of %d launches)", batch, fp.GPUName, reps), "",
		"| net | layer | layout | elements | old: chan_epilogue_f16 | new kernel | new | speedup | new GB/s |",
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- |"}
	var sumOld, sumNew float64
	for _, row := range rows {
		total := row.n * row.m * int(row.hw)
		g.free()
		yr, zr, br := ref{buf: bufArena, id: 1}, ref{buf: bufArena, id: 2}, ref{buf: bufWeights}
		g.put(t, yr, src[:2*total])
		var zp *ref
		if row.residual {
			g.put(t, zr, src[2*(most-total):]) // another stretch of the pattern
			zp = &zr
		}
		g.put(t, br, src[4096:4096+2*row.m])
		old := elemLaunch("chan_epilogue_f16", int64(total), pArg(yr), pArg(br), optArg(zp), lArg(int64(total)),
			lArg(row.hw), iArg(row.m), iArg(row.act.code), fArg(row.act.p0), fArg(row.act.p1))
		nu := c.chanEpilogue(yr, &br, zp, row.act, row.n, row.m, row.hw)
		// the same output from the same input
		g.run(t, old, 1)
		g.sync(t)
		want := g.get(t, yr, 2*total)
		if err := g.d.MemcpyHtoD(g.addr(yr), src[:2*total]); err != nil {
			t.Fatal(err)
		}
		g.run(t, nu, 1)
		g.sync(t)
		got := g.get(t, yr, 2*total)
		diff := 0
		for i := 0; i < total; i++ {
			a, b := binary.LittleEndian.Uint16(got[2*i:]), binary.LittleEndian.Uint16(want[2*i:])
			if a != b && tensor.HalfToFloat32(a) != tensor.HalfToFloat32(b) { // +0 and -0 alike
				if diff < 3 {
					t.Errorf("%s: %s y[%d] = %g, chan_epilogue_f16 gives %g", row.name, nu.kernel, i, tensor.HalfToFloat32(a), tensor.HalfToFloat32(b))
				}
				diff++
			}
		}
		if diff > 0 {
			t.Errorf("%s: %d of %d elements differ", row.name, diff, total)
		}
		// in place: the values change from launch to launch, the traffic does not
		oldUS, newUS := timeUS(old), timeUS(nu)
		sumOld += oldUS
		sumNew += newUS
		bytes := 2 * 2 * float64(total)
		if row.residual {
			bytes += 2 * float64(total)
		}
		layout := "NHWC"
		if row.hw > 1 {
			layout = "NCHW"
		}
		lines = append(lines, fmt.Sprintf("| %s | %s | %s | %d | %.1f | %s | %.1f | %.2fx | %.0f |", row.net, row.name, layout, total, oldUS, nu.kernel, newUS, oldUS/newUS, bytes/newUS/1e3))
	}
	lines = append(lines, fmt.Sprintf("| all | | | | %.1f | | %.1f | %.2fx | |", sumOld, sumNew, sumOld/sumNew))
	// the flat elementwise kernels on the largest ResNet-50 tensor
	total := int64(rows[2].n * rows[2].m)
	g.free()
	ar, br, yr := ref{buf: bufArena, id: 1}, ref{buf: bufArena, id: 2}, ref{buf: bufArena, id: 3}
	g.put(t, ar, src[:2*total])
	g.put(t, br, src[2*(int64(most)-total):])
	g.put(t, yr, make([]byte, 2*total))
	lines = append(lines, "", fmt.Sprintf("Flat elementwise kernels over %d halves (us per call):", total), "",
		"| op | old kernel | old | new kernel | new | speedup |", "| --- | --- | --- | --- | --- | --- |")
	for _, k := range []struct {
		name     string
		old, new launch
	}{
		{"Sigmoid", elemLaunch("unary_f16", total, pArg(yr), pArg(ar), lArg(total), iArg(actSigmoid), fArg(0), fArg(0)),
			vecLaunch("unary_vec_f16", total/8, 0, pArg(yr), pArg(ar), lArg(total), iArg(actSigmoid), fArg(0), fArg(0))},
		{"Add, same shape", elemLaunch("binary_flat_f16", total, pArg(yr), pArg(ar), pArg(br), lArg(total), lArg(total), iArg(0)),
			vecLaunch("binary_flat_vec_f16", total/8, 0, pArg(yr), pArg(ar), pArg(br), lArg(total), lArg(total), iArg(0))},
		{"Mul by a [256] vector", elemLaunch("binary_flat_f16", total, pArg(yr), pArg(ar), pArg(br), lArg(total), lArg(256), iArg(2)),
			vecLaunch("binary_flat_vec_f16", total/8, 32, pArg(yr), pArg(ar), pArg(br), lArg(total), lArg(256), iArg(2))},
	} {
		g.run(t, k.old, 1)
		g.sync(t)
		want := g.get(t, yr, int(2*total))
		if err := g.d.MemcpyHtoD(g.addr(yr), make([]byte, 2*total)); err != nil {
			t.Fatal(err)
		}
		g.run(t, k.new, 1)
		g.sync(t)
		if got := g.get(t, yr, int(2*total)); string(got) != string(want) {
			t.Errorf("%s: %s and %s differ", k.name, k.old.kernel, k.new.kernel)
		}
		o, n := timeUS(k.old), timeUS(k.new)
		lines = append(lines, fmt.Sprintf("| %s | %s | %.1f | %s | %.1f | %.2fx |", k.name, k.old.kernel, o, k.new.kernel, n, o/n))
	}
	// squeeze-and-excitation's scale: an NCHW tensor times [N, C, 1, 1],
	// before through the general broadcasting kernel
	se := []int{batch, 32, 112, 112}
	if prod(se) <= int64(most) {
		total := prod(se)
		g.free()
		ar, br, yr, mr := ref{buf: bufArena, id: 1}, ref{buf: bufArena, id: 2}, ref{buf: bufArena, id: 3}, ref{buf: bufWeights, id: 9}
		g.put(t, ar, src[:2*total])
		g.put(t, br, src[8192:8192+2*batch*32])
		g.put(t, yr, make([]byte, 2*total))
		meta := []int64{4}
		for _, d := range se {
			meta = append(meta, int64(d))
		}
		for _, st := range [][]int{ops.BroadcastStrides(se, se), ops.BroadcastStrides([]int{batch, 32, 1, 1}, se)} {
			for _, v := range st {
				meta = append(meta, int64(v))
			}
		}
		mb := make([]byte, 8*len(meta))
		for i, v := range meta {
			binary.LittleEndian.PutUint64(mb[8*i:], uint64(v))
		}
		g.put(t, mr, mb)
		old := elemLaunch("binary_f16", total, pArg(yr), pArg(ar), pArg(br), pArg(mr), lArg(total), iArg(ewMul))
		planes := int64(batch * 32)
		nu := planeLaunch("binary_plane_f16", planes, 112*112, 8, pArg(yr), pArg(ar), pArg(br), lArg(planes), lArg(112*112), lArg(planes), iArg(ewMul))
		g.run(t, old, 1)
		g.sync(t)
		want := g.get(t, yr, int(2*total))
		if err := g.d.MemcpyHtoD(g.addr(yr), make([]byte, 2*total)); err != nil {
			t.Fatal(err)
		}
		g.run(t, nu, 1)
		g.sync(t)
		if got := g.get(t, yr, int(2*total)); string(got) != string(want) {
			t.Errorf("SE scale: binary_f16 and binary_plane_f16 differ")
		}
		o, n := timeUS(old), timeUS(nu)
		lines = append(lines, fmt.Sprintf("| Mul %v by [%d, 32, 1, 1] (SE scale) | binary_f16 | %.1f | binary_plane_f16 | %.1f | %.2fx |", se, batch, o, n, o/n))
	}
	table := strings.Join(lines, "\n")
	t.Log("\n" + table)
	if out := os.Getenv("KILN_EPILOGUE_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(table+"\n"), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// TestEpilogueModelsOnGPU runs yolo_tiny (LeakyRelu), mobilenet_v2
// (Clip) and resnet_mini on the GPU as a user would get them: in half
// through the device's Compiler with tuning (kiln build --device cuda
// --fp16's defaults), and as engines with the defaults untuned (half, and
// half with every NHWC convolution plain + epilogue, and float32), and
// requires each output's cosine similarity with kiln's CPU float32 output
// to be at least minCosine over three runs (launched, captured, replayed).
// The untuned half engines of yolo_tiny and mobilenet_v2, and every
// plain-NHWC one, must run some layers as a plain convolution followed by
// the vector or plane epilogue kernel.
func TestEpilogueModelsOnGPU(t *testing.T) {
	needGPU(t)
	for _, tc := range []struct {
		model string
		batch int
		epi   bool // activations cuDNN's fused call lacks: the untuned half engine runs the epilogue kernels
	}{{"yolo_tiny", 2, true}, {"mobilenet_v2", 3, true}, {"resnet_mini", 4, false}} {
		path := modelPath(t, tc.model)
		in := randomImages(t, tc.model, tc.batch, 31)
		want := cpuRun(t, path, in)
		check := func(t *testing.T, got map[string]*tensor.Tensor) {
			t.Helper()
			for name, w := range want {
				g, ok := got[name]
				if !ok || g.DType != tensor.Float32 || !sameDims(g.Shape, w.Shape) {
					t.Fatalf("output %q: %v", name, g)
				}
				if cos, rel := cosine(g, w); !(cos >= minCosine) {
					t.Errorf("%s: cosine %.6f < %g (relative L2 error %.3g)", name, cos, minCosine, rel)
				} else {
					t.Logf("%s: cosine %.6f, relative L2 error %.3g", name, cos, rel)
				}
			}
		}
		t.Run(tc.model+"/build", func(t *testing.T) {
			prog, err := compilePlan(optimizedGraph(t, path, in), device.ExecOptions{Precision: "fp16", Tune: true})
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			if rep, err := device.ParseLayerReport(prog.(*planProgram).Blobs()[device.LayersBlob]); err == nil {
				n := 0
				for _, l := range rep.Layers {
					if strings.Contains(l.Tactic, "+ chan_epilogue_") {
						n++
					}
				}
				t.Logf("%d of %d layers tuned to a plain convolution + epilogue kernel", n, len(rep.Layers))
			}
			for range 3 {
				got, err := prog.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				check(t, got)
			}
		})
		for _, cfg := range []struct {
			name string
			opt  Options
		}{
			{"fp16", Options{FP16: true}},
			{"fp16-plain-nhwc", Options{FP16: true, plainNHWC: true}},
			{"fp32", Options{}},
		} {
			t.Run(tc.model+"/"+cfg.name, func(t *testing.T) {
				e, err := NewEngine(optimizedGraph(t, path, in), cfg.opt)
				if err != nil {
					t.Fatal(err)
				}
				defer e.Close()
				vec, plane := epilogueTactics(e)
				t.Logf("%d layers with the vector epilogue, %d with the plane one", vec, plane)
				if (cfg.opt.plainNHWC || cfg.opt.FP16 && tc.epi) && vec+plane == 0 {
					t.Errorf("no layer runs a plain convolution + the new epilogue kernels: %s", summarize(e.Layers()))
				}
				c, err := e.NewContext()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				for range 3 {
					got, err := c.Run(context.Background(), in)
					if err != nil {
						t.Fatal(err)
					}
					check(t, got)
				}
			})
		}
	}
}
