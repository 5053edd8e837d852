package gpuexec

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// variedImages returns batch images [batch, 3, h, w] of varied kinds, so
// that a classifier's top-1 is not decided by one repeated pattern: per
// image one of Gaussian noise of a random scale and offset, smooth
// patterns (a few random sinusoids per channel), gradients with noise, and
// blocks of constant color with noise.
func variedImages(r *rand.Rand, batch, h, w int) *tensor.Tensor {
	x := tensor.New(tensor.Float32, batch, 3, h, w)
	v := x.Float32s()
	for b := range batch {
		kind := r.IntN(4)
		scale, offset := 0.5+r.Float64()*1.5, r.Float64()-0.5
		for c := range 3 {
			fx, fy, ph := r.Float64()*0.3, r.Float64()*0.3, r.Float64()*6.28
			gx, gy := r.Float64()*2-1, r.Float64()*2-1
			bs := 8 + r.IntN(48)
			colors := make([]float64, 64)
			for i := range colors {
				colors[i] = r.NormFloat64()
			}
			for y := range h {
				for xx := range w {
					var val float64
					switch kind {
					case 0:
						val = r.NormFloat64()*scale + offset
					case 1:
						val = scale*math.Sin(fx*float64(xx)+fy*float64(y)+ph) + 0.2*r.NormFloat64()
					case 2:
						val = scale*(gx*float64(xx)/float64(w)+gy*float64(y)/float64(h)) + 0.3*r.NormFloat64()
					default:
						val = colors[(y/bs*7+xx/bs)%64]*scale + 0.2*r.NormFloat64()
					}
					v[((b*3+c)*h+y)*w+xx] = float32(val)
				}
			}
		}
	}
	return x
}

// int8Rule returns the input scale of each convolution the INT8 rule
// quantizes in g (the optimized graph an engine runs, of the model at
// path), as kiln build --device cuda --int8 hands them (builtInt8Scales:
// the builder's calibration on kiln's CPU engine on batches, with the
// calibrator $KILN_INT8_CALIB: entropy by default, minmax, percentile),
// without the values' own scales (those are for the 8-bit chains).
func int8Rule(t *testing.T, path string, g *ir.Graph, batches []map[string]*tensor.Tensor) map[string]float32 {
	t.Helper()
	scales := convScales(builtInt8Scales(t, graphAt(t, path, batches[0], 0), g, batches, os.Getenv("KILN_INT8_CALIB")))
	t.Logf("calibration %q; %d convolutions get input scales", os.Getenv("KILN_INT8_CALIB"), len(scales))
	return scales
}

// TestInt8OnGPU is stage 2 of the INT8 work of issue 11 on the GPU: a
// ResNet ($KILN_GPU_BENCH/resnet50 when set, else resnet_mini) calibrated
// with kiln's entropy calibrator on varied generated images, built as an
// INT8 engine (tuned: each quantized convolution's INT8 engines timed
// against its FP16 tactics, one timing cache for the FP16 and INT8
// engines), and compared with the float32 engine on
// $KILN_INT8_IMAGES (default 1024) other varied images, batch
// $KILN_INT8_BATCH (default 256): top-1 agreement (the issue asks 99%),
// also the FP16 engine's. Then the device time of the FP16 and the INT8
// engine at that batch (CUDA graph replay, median of 30) and their ratio,
// how the convolutions ran, and the build times. Without a GPU it skips.
func TestInt8OnGPU(t *testing.T) {
	needGPU(t)
	name, path := "resnet_mini", ""
	if dir := os.Getenv("KILN_GPU_BENCH"); dir != "" {
		if p := filepath.Join(dir, "resnet50", "model.onnx"); fileExists(p) {
			name, path = "resnet50", p
		}
	}
	if path == "" {
		path = modelPath(t, "resnet_mini")
	}
	batch, images := 256, 1024
	if v, err := strconv.Atoi(os.Getenv("KILN_INT8_BATCH")); err == nil && v > 0 {
		batch = v
	}
	if v, err := strconv.Atoi(os.Getenv("KILN_INT8_IMAGES")); err == nil && v > 0 {
		images = v
	}
	var inName string
	var hw []int
	if name == "resnet50" {
		inName, hw = "input", []int{224, 224}
	} else {
		for n, x := range testInputs(t, name) {
			inName, hw = n, x.Shape[2:]
		}
	}
	r := rand.New(rand.NewPCG(21, 22))
	in := map[string]*tensor.Tensor{inName: variedImages(r, batch, hw[0], hw[1])}
	g := optimizedGraph(t, path, in)
	// calibration: 4 batches of 16 other images, on the CPU
	calibIn := map[string]*tensor.Tensor{inName: variedImages(r, 16, hw[0], hw[1])}
	cg := optimizedGraph(t, path, calibIn)
	var batches []map[string]*tensor.Tensor
	for range 4 {
		batches = append(batches, map[string]*tensor.Tensor{inName: variedImages(r, 16, hw[0], hw[1])})
	}
	start := time.Now()
	scales := int8Rule(t, path, cg, batches)
	t.Logf("calibration on the CPU: %v", time.Since(start).Round(time.Millisecond))
	if len(scales) == 0 {
		t.Fatal("the INT8 rule quantized no convolution")
	}
	fp, _ := cuda.Probe(cuda.Options{})
	cachePath := filepath.Join(t.TempDir(), "timing.json")
	cache, err := tactic.Open(cachePath)
	if err != nil {
		t.Fatal(err)
	}
	cfp := device.Fingerprint{"gpu": fp.String()}
	type built struct {
		e *Engine
		c *Context
	}
	make_ := func(label string, o Options) built {
		start := time.Now()
		e, err := NewEngine(g, o)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		c, err := e.NewContext()
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		t.Logf("%s engine built in %.1f s (%d timings measured)", label, time.Since(start).Seconds(), e.Measured())
		return built{e, c}
	}
	f32 := make_("fp32", Options{})
	fp16 := make_("fp16", Options{FP16: true, Tune: true, TimingCache: cache, CacheDevice: cfp})
	i8 := make_("int8", Options{FP16: true, Int8: scales, Tune: true, TimingCache: cache, CacheDevice: cfp})
	// the same choices with 8-bit values between quantized layers
	// (KILN_CUDA_INT8_CHAIN=1), applied without timing
	t.Setenv(EnvInt8Chain, "1")
	ch := make_("int8 chained", Options{FP16: true, Int8: scales, Tactics: i8.e.Tactics()})
	// every quantized layer in INT8 (the heuristics' first engine, untuned)
	// with the chains: what an all-INT8 network costs with cuDNN
	t.Setenv(EnvInt8All, "1")
	all8 := make_("int8 all untuned chained", Options{FP16: true, Int8: scales})
	os.Unsetenv(EnvInt8All)
	os.Unsetenv(EnvInt8Chain)
	for label, b := range map[string]built{"int8 chained": ch, "int8 all untuned chained": all8} {
		chained := 0
		for _, q := range b.e.int8.use {
			if q.out8 {
				chained++
			}
		}
		t.Logf("%s: %d of %d quantized layers write 8 bits for the next", label, chained, len(b.e.int8.use))
	}
	engines := map[string]built{"fp32": f32, "fp16": fp16, "int8": i8, "int8 chained": ch, "int8 all untuned chained": all8}
	labels := []string{"fp16", "int8", "int8 chained", "int8 all untuned chained"}
	defer func() {
		for _, b := range engines {
			b.c.Close()
			b.e.Close()
		}
	}()
	// top-1 agreement with float32
	agree := map[string]int{}
	total := 0
	var outName string
	for b := 0; b < images; b += batch {
		x := map[string]*tensor.Tensor{inName: variedImages(r, batch, hw[0], hw[1])}
		outs := map[string]map[string]*tensor.Tensor{}
		for label, e := range engines {
			out, err := e.c.Run(context.Background(), x)
			if err != nil {
				t.Fatalf("%s: %v", label, err)
			}
			outs[label] = out
		}
		if outName == "" {
			for n := range outs["fp32"] {
				outName = n
			}
		}
		ref := outs["fp32"][outName]
		classes := ref.Len() / batch
		for _, label := range labels {
			got := outs[label][outName]
			for i := range batch {
				if argmax(got, i*classes, classes) == argmax(ref, i*classes, classes) {
					agree[label]++
				}
			}
			if cos, rel := cosine(got, ref); b == 0 {
				t.Logf("%s against fp32, first batch: cosine %.6f, relative L2 %.4f", label, cos, rel)
			}
		}
		total += batch
	}
	for _, label := range labels {
		t.Logf("%s: top-1 agreement with fp32 on %d varied images: %.2f%%", label, total, 100*float64(agree[label])/float64(total))
	}
	for _, label := range labels[1:3] {
		if pct := 100 * float64(agree[label]) / float64(total); pct < 99 {
			t.Errorf("%s top-1 agreement with fp32 %.2f%%, the issue asks at least 99%%", label, pct)
		}
	}
	// device times at this batch, and how the convolutions ran
	times := map[string]float64{}
	for _, label := range labels {
		b := engines[label]
		if _, err := b.c.DeviceTimes(5); err != nil {
			t.Fatal(err)
		}
		ms, err := b.c.DeviceTimes(30)
		if err != nil {
			t.Fatal(err)
		}
		sort.Float64s(ms)
		times[label] = ms[len(ms)/2]
		count := map[string]int{}
		for _, l := range b.e.Layers() {
			if strings.Contains(l.Op, "Conv") {
				tac := l.Tactic
				if i := strings.Index(tac, " eng"); i > 0 {
					tac = tac[:i]
				}
				if i := strings.Index(tac, " ("); i > 0 {
					tac = tac[:i]
				}
				count[l.Precision+" "+tac]++
			}
		}
		var how []string
		for k, v := range count {
			how = append(how, fmt.Sprintf("%dx %s", v, k))
		}
		sort.Strings(how)
		t.Logf("%s: %.3f ms at batch %d (%.0f img/s); convolutions: %s", label, times[label], batch, float64(batch)/times[label]*1e3, strings.Join(how, ", "))
	}
	t.Logf("%s batch %d on %s: int8 %.3f ms, int8 chained %.3f ms, fp16 %.3f ms: int8 is %.2fx fp16, chained %.2fx (issue 11 asks 1.6x)",
		name, batch, fp.GPUName, times["int8"], times["int8 chained"], times["fp16"], times["fp16"]/times["int8"], times["fp16"]/times["int8 chained"])
	// the slowest INT8 layers
	var ls []Layer
	for _, l := range i8.e.Layers() {
		if l.Time > 0 {
			ls = append(ls, l)
		}
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Time > ls[j].Time })
	var s []string
	for _, l := range ls[:min(10, len(ls))] {
		s = append(s, fmt.Sprintf("%s %.1f us %s (%s)", l.Node, float64(l.Time)/1e3, l.Precision, l.Tactic))
	}
	t.Logf("int8 engine, slowest layers: %s", strings.Join(s, "; "))
	// what tuning measured, per convolution signature: the best FP16, INT8
	// and FP8 implementation (the timing cache's entries)
	if err := cache.Save(); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + tuningTable(t, cachePath, i8.e))
	// the 1x1 layers tuning gave to cuBLASLt's FP8 products (op_conv1x1_q.go)
	logFP8Products(t, fp16.e, i8.e)
}

// tuningTable reads the timing cache at path and tabulates, for each
// convolution signature of e (with how many layers have it), the best
// time of its FP16 implementations, its INT8 and its FP8 graphs, and the
// sums over the layers: FP16 only, each layer's best, INT8 where measured.
func tuningTable(t *testing.T, path string, e *Engine) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Entries []struct {
			Layer, Tactic string
			NS            int64
		}
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	best := map[string]map[string]int64{} // sig -> family -> ns
	for _, x := range f.Entries {
		fam := "fp16"
		switch {
		case strings.HasPrefix(x.Tactic, "cudnn-int8"):
			fam = "int8"
		case strings.HasPrefix(x.Tactic, "cudnn-fp8"), strings.HasPrefix(x.Tactic, "cublaslt-fp8"): // FP8 graphs and products
			fam = "fp8"
		}
		if best[x.Layer] == nil {
			best[x.Layer] = map[string]int64{}
		}
		if v, ok := best[x.Layer][fam]; !ok || x.NS < v {
			best[x.Layer][fam] = x.NS
		}
	}
	count := map[string]int{}
	var sigs []string
	for _, s := range e.prog.steps {
		if s.conv == nil {
			continue
		}
		sig := convSig(s, true)
		if count[sig] == 0 {
			sigs = append(sigs, sig)
		}
		count[sig]++
	}
	us := func(ns int64) string {
		if ns == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(ns)/1e3)
	}
	rows := []string{"| convolution (signature) | layers | fp16 best us | int8 us | fp8 us |", "| --- | --- | --- | --- | --- |"}
	var fp16, mixed int64
	for _, sig := range sigs {
		m := best[sig]
		rows = append(rows, fmt.Sprintf("| %s | %d | %s | %s | %s |", strings.TrimPrefix(sig, "cuda conv "), count[sig], us(m["fp16"]), us(m["int8"]), us(m["fp8"])))
		n := int64(count[sig])
		fp16 += n * m["fp16"]
		b := m["fp16"]
		for _, k := range []string{"int8", "fp8"} {
			if v, ok := m[k]; ok && v < b {
				b = v
			}
		}
		mixed += n * b
	}
	rows = append(rows, fmt.Sprintf("\nsum over the convolutions as timed alone: fp16 %.3f ms, each layer's best of fp16/int8/fp8 %.3f ms (%.2fx)",
		float64(fp16)/1e6, float64(mixed)/1e6, float64(fp16)/float64(max(mixed, 1))))
	return strings.Join(rows, "\n")
}

// argmax is the index of the largest of n values of x from off.
func argmax(x *tensor.Tensor, off, n int) int {
	best := 0
	for i := 1; i < n; i++ {
		if x.Float(off+i) > x.Float(off+best) {
			best = i
		}
	}
	return best
}

// TestQuantizeKernelsOnGPU runs quantize_nhwc_i8 and quantize_nhwc_f8 on
// random halves (C 3, 16, 24 and 64; the input at an aligned and a
// misaligned address, so both of the kernel's paths run) and compares every
// byte with the host's quantization of the same values (INT8: round to
// nearest even, ±127; FP8: cuda.EncodeFP8). Without a GPU it skips.
func TestQuantizeKernelsOnGPU(t *testing.T) {
	needGPU(t)
	drv, err := cuda.OpenDriver(cuda.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := drv.Device(0)
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ctx, err := drv.RetainPrimaryContext(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer drv.ReleasePrimaryContext(dev)
	if err := drv.SetCurrent(ctx); err != nil {
		t.Fatal(err)
	}
	major, minor, err := drv.ComputeCapability(dev)
	if err != nil {
		t.Fatal(err)
	}
	_, img, err := KernelImage(cuda.Options{}, major, minor)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := drv.ModuleLoadData(img)
	if err != nil {
		t.Fatal(err)
	}
	defer drv.ModuleUnload(mod)
	r := rand.New(rand.NewPCG(5, 6))
	const rows = 1000
	for _, kind := range quantKinds {
		fn, err := drv.ModuleFunction(mod, quantKernels[kind])
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []int{3, 16, 24, 64} {
			for _, shift := range []int{0, 2} { // bytes past an aligned address
				cp := cuda.QuantChannels(c)
				vals := make([]float32, rows*c)
				host := make([]byte, shift+2*len(vals))
				for i := range vals {
					vals[i] = float32(r.NormFloat64() * 3)
					h := tensor.Float32ToHalf(vals[i])
					host[shift+2*i], host[shift+2*i+1] = byte(h), byte(h>>8)
					vals[i] = tensor.HalfToFloat32(h)
				}
				x, err := drv.MemAlloc(len(host))
				if err != nil {
					t.Fatal(err)
				}
				y, err := drv.MemAlloc(rows * cp)
				if err != nil {
					t.Fatal(err)
				}
				if err := drv.MemcpyHtoD(x, host); err != nil {
					t.Fatal(err)
				}
				const inv = 20
				args := cuda.NewKernelArgs(6)
				args.SetPtr(0, y)
				args.SetPtr(1, x+cuda.DevicePtr(shift))
				args.SetFloat32(2, inv)
				args.SetInt64(3, rows)
				args.SetInt32(4, int32(c))
				args.SetInt32(5, int32(cp))
				grid, block := grid1D(int64(rows * cp / 8))
				err = drv.Launch(fn, grid, block, 0, cuda.Stream{}, args)
				if err == nil {
					err = drv.Synchronize()
				}
				args.Free()
				got := make([]byte, rows*cp)
				if err == nil {
					err = drv.MemcpyDtoH(got, y)
				}
				drv.MemFree(x)
				drv.MemFree(y)
				if err != nil {
					t.Fatalf("%s C %d shift %d: %v", kind, c, shift, err)
				}
				bad := 0
				for row := range rows {
					for ch := range cp {
						var want byte
						if ch < c {
							v := vals[row*c+ch] * inv
							if kind == "int8" {
								want = byte(int8(max(-127, min(127, math.RoundToEven(float64(v))))))
							} else {
								want = cuda.EncodeFP8(v)
							}
						}
						if g := got[row*cp+ch]; g != want {
							if bad < 3 {
								t.Errorf("%s C %d shift %d: row %d channel %d: %#x, want %#x (x %g)", kind, c, shift, row, ch, g, want, vals[row*c+min(ch, c-1)])
							}
							bad++
						}
					}
				}
				if bad == 0 {
					t.Logf("%s C %d (padded to %d), input shift %d: all %d bytes match", kind, c, cp, shift, rows*cp)
				}
			}
		}
	}
}
