package gpuexec

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// bottleneckBody builds ResNet-50's body without the stem as a graph:
// input [batch, 64, 56, 56], the 16 bottleneck blocks of its four stages
// (1x1, 3x3 with the stride (v1.5), 1x1 expanding, residual and ReLU; a
// 1x1 downsample of the stride in each stage's first block), global average
// pooling and a 2048 -> 1000 classifier. Weights are random (He, the
// expanding 1x1 and the downsample scaled down so that 16 residual sums
// stay in range), biases small: a classifier whose top-1 moves with its
// input. stages < 4 keeps the first stages only.
func bottleneckBody(r *rand.Rand, batch, stages int) *ir.Graph {
	return bottleneckBodyAt(r, batch, stages, 56)
}

// bottleneckBodyAt is bottleneckBody on an input of hw x hw (56 in ResNet-50).
func bottleneckBodyAt(r *rand.Rand, batch, stages, hw int) *ir.Graph {
	return resnetGraph(r, batch, stages, hw, false)
}

// resnetGraph is bottleneckBodyAt, with stem ResNet-50's stem before it:
// the input [batch, 3, 4 hw, 4 hw], a 7x7/2 convolution to 64 channels
// (pad 3, bias) and ReLU, MaxPool 3x3/2 (pad 1) to 64 x hw x hw.
func resnetGraph(r *rand.Rand, batch, stages, hw int, stem bool) *ir.Graph {
	b := ir.NewBuilder("bottlenecks", 17)
	var x *ir.Value
	if !stem {
		x = b.Input("input", tensor.Float32, ir.D(int64(batch)), ir.D(64), ir.D(int64(hw)), ir.D(int64(hw)))
	}
	conv := func(in *ir.Value, cin, cout, k, stride int, gain float64) *ir.Value {
		w := tensor.New(tensor.Float32, cout, cin, k, k)
		wv := w.Float32s()
		sd := gain * math.Sqrt(2/float64(cin*k*k))
		for i := range wv {
			wv[i] = float32(r.NormFloat64() * sd)
		}
		bias := tensor.New(tensor.Float32, cout)
		for i, bv := 0, bias.Float32s(); i < cout; i++ {
			bv[i] = float32(0.05 * r.NormFloat64())
		}
		p := int64(k / 2)
		return b.Op("Conv", []*ir.Value{in, b.Const("", w), b.Const("", bias)},
			ir.IntsAttr("kernel_shape", int64(k), int64(k)), ir.IntsAttr("strides", int64(stride), int64(stride)),
			ir.IntsAttr("pads", p, p, p, p))
	}
	if stem {
		img := b.Input("input", tensor.Float32, ir.D(int64(batch)), ir.D(3), ir.D(int64(4*hw)), ir.D(int64(4*hw)))
		x = b.Op("MaxPool", []*ir.Value{b.Op("Relu", []*ir.Value{conv(img, 3, 64, 7, 2, 1)})},
			ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1))
	}
	in := 64
	for _, st := range []struct{ mid, out, blocks, stride int }{{64, 256, 3, 1}, {128, 512, 4, 2}, {256, 1024, 6, 2}, {512, 2048, 3, 2}}[:stages] {
		for blk := range st.blocks {
			stride := 1
			if blk == 0 {
				stride = st.stride
			}
			t1 := b.Op("Relu", []*ir.Value{conv(x, in, st.mid, 1, 1, 1)})
			t2 := b.Op("Relu", []*ir.Value{conv(t1, st.mid, st.mid, 3, stride, 1)})
			t3 := conv(t2, st.mid, st.out, 1, 1, 0.3)
			z := x
			if blk == 0 {
				z = conv(x, in, st.out, 1, stride, 0.5)
			}
			x = b.Op("Relu", []*ir.Value{b.Op("Add", []*ir.Value{t3, z})})
			in = st.out
		}
	}
	pooled := b.Op("Flatten", []*ir.Value{b.Op("GlobalAveragePool", []*ir.Value{x})}, ir.IntAttr("axis", 1))
	fc := tensor.New(tensor.Float32, 1000, in)
	for i, v := 0, fc.Float32s(); i < len(v); i++ {
		v[i] = float32(r.NormFloat64() * math.Sqrt(1.0/float64(in)))
	}
	fb := tensor.New(tensor.Float32, 1000)
	b.Output(b.Op("Gemm", []*ir.Value{pooled, b.Const("fc_w", fc), b.Const("fc_b", fb)}, ir.IntAttr("transB", 1)), "logits")
	return b.Graph()
}

// variedMaps is variedImages with c channels: per image one of noise,
// sinusoids, gradients and blocks, the channels' parameters random.
func variedMaps(r *rand.Rand, batch, c, h, w int) *tensor.Tensor {
	x := tensor.New(tensor.Float32, batch, c, h, w)
	v := x.Float32s()
	for b := range batch {
		kind := r.IntN(4)
		scale, offset := 0.5+r.Float64()*1.5, r.Float64()-0.5
		for ch := range c {
			fx, fy, ph := r.Float64()*0.3, r.Float64()*0.3, r.Float64()*6.28
			gx, gy := r.Float64()*2-1, r.Float64()*2-1
			bs := 4 + r.IntN(16)
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
					v[((b*c+ch)*h+y)*w+xx] = float32(val)
				}
			}
		}
	}
	return x
}

// TestInt8ExpandOnGPU is the INT8 executor with expand_i8u2 and the 8-bit
// chains through the residual blocks (op_conv1x1_i8x.go, int8chain.go) on
// an H100/H200: ResNet-50 ($KILN_MODELS/resnet50 or
// $KILN_GPU_BENCH/resnet50 when there, else the 16 bottleneck blocks of
// bottleneckBody), its INT8 scales those kiln build --device cuda --int8
// hands the executor (the builder's calibration on the CPU, the
// convolutions' input scales and the value scales of the downsamples' and
// the last block's outputs: builtInt8Scales), built as an untuned INT8 engine
// with every quantized convolution in INT8 (KILN_CUDA_INT8_ALL=1) and the
// chains (KILN_CUDA_INT8_CHAIN=1), expand_i8u2 on every expanding 1x1 it
// takes; its logits against the float32 CPU engine's on $KILN_INT8_IMAGES
// (default 512) varied inputs at batch $KILN_INT8_BATCH (default 256): top-1
// agreement at least 99% (int8_gpu_test.go's criterion; ResNet-50 on one
// batch unless KILN_INT8_IMAGES is set; for the random
// bottleneck body it is logged, and the check is that expand_i8u2's
// relative L2 error to float32 is within twice that of the same engine
// without it, plus 0.02). Then the device
// time at that batch of the INT8 engine, the same without expand_i8u2
// (KILN_CUDA_INT8_EXPAND=0) and the tuned FP16 engine, and their ratios.
// The 3x3s run cuDNN's INT8 graphs unless KILN_I8X_AB_CONV3=1: then the
// INT8 engine runs conv3_i8u2 on them (op_conv3_i8x.go) and the same
// engine with cuDNN's ("int8 no conv3") is built beside it, in the times
// and the per-layer table. Skips below compute 9.0.
func TestInt8ExpandOnGPU(t *testing.T) {
	needGPU(t)
	start := time.Now()
	fp, _ := cuda.Probe(cuda.Options{})
	if fp.ComputeMajor != 9 || fp.ComputeMinor != 0 {
		t.Skipf("expand_i8u2 needs compute 9.0, not %d.%d", fp.ComputeMajor, fp.ComputeMinor)
	}
	batch, images := 256, 512
	if v, err := strconv.Atoi(os.Getenv("KILN_INT8_BATCH")); err == nil && v > 0 {
		batch = v
	}
	if v, err := strconv.Atoi(os.Getenv("KILN_INT8_IMAGES")); err == nil && v > 0 {
		images = v
	}
	explicit := os.Getenv("KILN_INT8_IMAGES") != ""
	images = max(batch, images/batch*batch)
	r := rand.New(rand.NewPCG(31, 32))
	name, path := "bottleneck body", ""
	for _, env := range []string{"KILN_MODELS", "KILN_GPU_BENCH"} {
		if dir := os.Getenv(env); dir != "" {
			if p := filepath.Join(dir, "resnet50", "model.onnx"); fileExists(p) {
				name, path = "resnet50", p
				if !explicit {
					images = batch // one batch: the build and the CPU reference within 90 s
				}
				break
			}
		}
	}
	var inName string
	var chw [3]int
	var g, cg, src *ir.Graph // src: cg before optimization, what kiln build reads
	gen := func(n int) *tensor.Tensor { return variedMaps(r, n, chw[0], chw[1], chw[2]) }
	if path != "" {
		inName, chw = "input", [3]int{3, 224, 224}
		gen = func(n int) *tensor.Tensor { return variedImages(r, n, 224, 224) }
		g = optimizedGraph(t, path, map[string]*tensor.Tensor{inName: gen(batch)})
		cg = optimizedGraph(t, path, map[string]*tensor.Tensor{inName: gen(16)})
		src = graphAt(t, path, map[string]*tensor.Tensor{inName: gen(16)}, 0)
	} else {
		inName, chw = "input", [3]int{64, 56, 56}
		body := func(n int) *ir.Graph {
			g := bottleneckBody(rand.New(rand.NewPCG(7, 8)), n, 4) // the same weights at both batches
			if err := optimize.Run(g, 2, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			return g
		}
		g, cg = body(batch), body(16)
		src = bottleneckBody(rand.New(rand.NewPCG(7, 8)), 16, 4)
	}
	var batches []map[string]*tensor.Tensor
	for range 4 {
		batches = append(batches, map[string]*tensor.Tensor{inName: gen(16)})
	}
	// the scales kiln build --device cuda --int8 hands the executor (the
	// convolutions' input scales and the values' own), from the builder
	scales := builtInt8Scales(t, src, cg, batches, "")
	t.Logf("%s: calibrated on the CPU by the builder (%d scales) in %.1f s", name, len(scales), time.Since(start).Seconds())
	type built struct {
		e *Engine
		c *Context
	}
	var all []built
	defer func() {
		for _, b := range all {
			b.c.Close()
			b.e.Close()
		}
	}()
	make_ := func(label string, o Options, env map[string]string) built {
		for k, v := range env {
			t.Setenv(k, v)
		}
		defer func() {
			for k := range env {
				os.Unsetenv(k)
			}
		}()
		st := time.Now()
		e, err := NewEngine(g, o)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		c, err := e.NewContext()
		if err != nil {
			e.Close()
			t.Fatalf("%s: %v", label, err)
		}
		t.Logf("%s engine built in %.1f s", label, time.Since(st).Seconds())
		all = append(all, built{e, c})
		return built{e, c}
	}
	on := map[string]string{EnvInt8All: "1", EnvInt8Chain: "1", EnvInt8Expand: "1", EnvInt8Reduce: "1", EnvInt8Conv3: "0"}
	// KILN_I8X_AB_CONV3=1: the INT8 engine runs conv3_i8u2 on the 3x3s it
	// takes (op_conv3_i8x.go, not yet run in an engine: off otherwise),
	// and the same engine with cuDNN's INT8 graphs on them is built beside
	// it (~70 s more for ResNet-50)
	abConv3 := os.Getenv("KILN_I8X_AB_CONV3") == "1"
	if abConv3 {
		on[EnvInt8Conv3] = "1"
	}
	i8 := make_("int8 expand chained", Options{FP16: true, Int8: scales}, on)
	// what ran: the expanding layers, and the 8-bit values
	var x8, x8in, x8z, x8out, x8noz, chained, quantized int
	for i, q := range i8.e.int8.use {
		quantized++
		if q.out8 {
			chained++
		}
		if q.x8 != nil {
			x8++
			if q.in8 {
				x8in++
			}
			if q.x8.z8 {
				x8z++
			}
			if q.out8 {
				x8out++
			}
			if q.x8.noz {
				x8noz++
			}
			if x8 == 1 || q.x8.noz && x8noz == 1 {
				t.Logf("e.g. %s: %s", i8.e.prog.steps[i].node.Name, i8.e.int8Tactic(i))
			}
		}
	}
	t.Logf("int8 expand chained: %d quantized convolutions, %d write 8 bits; expand_i8u2 runs %d (input in 8 bits %d, residual %d, output %d; %d without a residual: the reducing 1x1s)",
		quantized, chained, x8, x8in, x8z, x8out, x8noz)
	if x8 == 0 {
		t.Errorf("no layer runs expand_i8u2 (module: %v)", i8.e.int8.x8.loadErr)
	}
	if abConv3 {
		var c3, c3in, c3out, c3s2 int
		for i, q := range i8.e.int8.use {
			if q.x8 == nil || q.x8.c3 == nil {
				continue
			}
			if c3++; c3 == 1 {
				t.Logf("e.g. %s: %s", i8.e.prog.steps[i].node.Name, i8.e.int8Tactic(i))
			}
			if q.in8 {
				c3in++
			}
			if q.out8 {
				c3out++
			}
			if q.x8.c3.stride == 2 {
				c3s2++
			}
		}
		t.Logf("int8 expand: conv3_i8u2 runs %d 3x3s (%d of stride 2; input in 8 bits %d, output %d)", c3, c3s2, c3in, c3out)
		if c3 == 0 {
			var errs []string
			if st := i8.e.int8.c3; st != nil {
				for n, m := range st.mods {
					errs = append(errs, fmt.Sprintf("%s: %v", n, m.err))
				}
			}
			t.Errorf("no layer runs conv3_i8u2 (builds: %v)", errs)
		}
	}
	for i, l := range i8.e.Layers() {
		if l.Op == "MaxPool" { // op_pool_i8.go: INT8 with KILN_CUDA_UNVERIFIED=1 (the test binary's)
			t.Logf("int8 expand: the MaxPool %s runs %s (INT8 out: %v)", l.Node, l.Impl, i8.e.int8.pool[i] != nil)
		}
	}
	fp16 := make_("fp16 tuned", Options{FP16: true, Tune: true}, nil)
	engines := map[string]built{"int8 expand": i8, "fp16": fp16}
	labels := []string{"int8 expand", "fp16"}
	// the same INT8 engine without expand_i8u2: the tactic's A/B, while the
	// test is under 50 s (cuDNN compiles each INT8 graph at build: 0.3-0.7 s)
	if time.Since(start) < 50*time.Second {
		off := map[string]string{EnvInt8All: "1", EnvInt8Chain: "1", EnvInt8Expand: "0", EnvInt8Conv3: on[EnvInt8Conv3]}
		engines["int8 no expand"] = make_("int8 chained without expand_i8u2", Options{FP16: true, Int8: scales}, off)
		labels = []string{"int8 expand", "int8 no expand", "fp16"}
	} else {
		t.Logf("%.0f s in: the engine without expand_i8u2 is left out", time.Since(start).Seconds())
	}
	// KILN_I8X_AB_REDUCE=1: also the same INT8 engine with expand_i8u2 on
	// the expanding 1x1s only (KILN_CUDA_INT8_REDUCE=0: the reducing 1x1s
	// cuDNN's INT8 graphs, as before they ran it; ~70 s more for ResNet-50)
	if os.Getenv("KILN_I8X_AB_REDUCE") == "1" {
		noReduce := map[string]string{EnvInt8All: "1", EnvInt8Chain: "1", EnvInt8Expand: "1", EnvInt8Reduce: "0", EnvInt8Conv3: on[EnvInt8Conv3]}
		engines["int8 no reduce"] = make_("int8 chained, expand_i8u2 without the reducing 1x1s", Options{FP16: true, Int8: scales}, noReduce)
		labels = append(labels, "int8 no reduce")
	}
	// KILN_I8X_AB_POOL=1: also the same INT8 engine with the stem's
	// MaxPool writing half (KILN_CUDA_INT8_POOL=0, op_pool_i8.go: the
	// readers of its output quantize it; ~70 s more for ResNet-50)
	if os.Getenv("KILN_I8X_AB_POOL") == "1" {
		pool16 := map[string]string{EnvInt8All: "1", EnvInt8Chain: "1", EnvInt8Expand: "1", EnvInt8Reduce: "1", EnvInt8Pool: "0", EnvInt8Conv3: on[EnvInt8Conv3]}
		engines["int8 pool16"] = make_("int8 chained, the MaxPool writing half", Options{FP16: true, Int8: scales}, pool16)
		labels = append(labels, "int8 pool16")
	}
	if abConv3 {
		noC3 := map[string]string{EnvInt8All: "1", EnvInt8Chain: "1", EnvInt8Expand: "1", EnvInt8Reduce: "1", EnvInt8Conv3: "0"}
		engines["int8 no conv3"] = make_("int8 chained, the 3x3s cuDNN's INT8 graphs", Options{FP16: true, Int8: scales}, noC3)
		labels = append(labels, "int8 no conv3")
	}
	// KILN_I8X_TUNE=1: also the INT8 engine tuned with the chains on
	// (expand_i8u2 timed as the chains run it, every other layer's INT8
	// against its FP16 tactics; a 70 s build for ResNet-50)
	if os.Getenv("KILN_I8X_TUNE") == "1" {
		engines["int8 tuned"] = make_("int8 tuned chained", Options{FP16: true, Int8: scales, Tune: true}, map[string]string{EnvInt8Chain: "1", EnvInt8Expand: "1", EnvInt8Conv3: on[EnvInt8Conv3]})
		labels = append(labels, "int8 tuned")
	}
	ref, err := engine.New(g.Clone())
	if err != nil {
		t.Fatal(err)
	}
	ctxs := map[string]*Context{}
	for _, l := range labels {
		ctxs[l] = engines[l].c
	}
	ev := evalAgainstCPU(t, ref, inName, gen, batch, images, labels, ctxs, func(label string, b int, ccos float64) {
		if name != "resnet50" && label == "int8 expand" && ccos < 0.7 {
			// not an accuracy criterion: the random body's logits share
			// one large component, so their differences between inputs
			// are compared; a kernel computing the wrong thing is near 0
			t.Errorf("int8 expand: cosine of the logits' differences from their batch mean to float32's %.4f (batch at %d)", ccos, b)
		}
	})
	pct, relSum, total := ev.pct, ev.relSum, ev.total
	for _, l := range labels {
		t.Logf("%s: top-1 agreement with float32 on %d varied inputs: %.2f%%", l, total, pct(l))
	}
	if name == "resnet50" {
		if p := pct("int8 expand"); p < 99 {
			t.Errorf("int8 expand top-1 agreement with float32 %.2f%%, the issue asks at least 99%%", p)
		}
	} else if _, ok := engines["int8 no expand"]; !ok {
		t.Logf("the bottleneck body's accuracy is checked against the engine without expand_i8u2, left out")
	} else if a, b := relSum["int8 expand"], relSum["int8 no expand"]; a > 2*b+0.02*float64(total/batch) {
		// the random body's margins are not a trained classifier's: the
		// check is against the same INT8 engine without the kernel, whose
		// residuals and block outputs stay half (the 8-bit residual stream
		// adds one rounding a block: more error, not twice as much; a
		// kernel that computes the wrong thing is off by ~1)
		t.Errorf("int8 expand: mean relative L2 to float32 %.4f, without expand_i8u2 %.4f", a/float64(total/batch), b/float64(total/batch))
	}
	times := map[string]float64{}
	for _, l := range labels {
		c := engines[l].c
		if _, err := c.DeviceTimes(5); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		ms, err := c.DeviceTimes(30)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		sort.Float64s(ms)
		times[l] = ms[len(ms)/2]
	}
	var rows []string
	for _, l := range labels {
		rows = append(rows, fmt.Sprintf("%s %.3f ms (%.0f img/s)", l, times[l], float64(batch)/times[l]*1e3))
	}
	t.Logf("%s batch %d on %s: %s; int8 expand is %.2fx fp16 (issue 11 asks 1.6x)",
		name, batch, fp.GPUName, strings.Join(rows, ", "), times["fp16"]/times["int8 expand"])
	if v, ok := times["int8 no expand"]; ok {
		t.Logf("int8 expand is %.2fx int8 without expand_i8u2", v/times["int8 expand"])
	}
	if v, ok := times["int8 pool16"]; ok {
		t.Logf("int8 expand is %.2fx the same with the MaxPool writing half (%.3f ms saved; NOTES' prediction 0.10-0.14)", v/times["int8 expand"], v-times["int8 expand"])
	}
	if v, ok := times["int8 no conv3"]; ok {
		t.Logf("int8 expand is %.2fx the same with cuDNN's INT8 graphs on the 3x3s (%.3f ms saved; NOTES' prediction -0.1 ms, from -0.5 to +0.3: parity likeliest); mean relative L2 to float32 %.4f with conv3_i8u2, %.4f without",
			v/times["int8 expand"], v-times["int8 expand"], relSum["int8 expand"]/float64(total/batch), relSum["int8 no conv3"]/float64(total/batch))
	}
	if v, ok := times["int8 no reduce"]; ok {
		t.Logf("int8 expand is %.2fx the same without expand_i8u2 on the reducing 1x1s", v/times["int8 expand"])
	}
	if v, ok := times["int8 tuned"]; ok {
		n := 0
		for _, q := range engines["int8 tuned"].e.int8.use {
			if q.x8 != nil {
				n++
			}
		}
		n3 := 0
		for _, q := range engines["int8 tuned"].e.int8.use {
			if q.x8 != nil && q.x8.c3 != nil {
				n3++
			}
		}
		t.Logf("int8 tuned chained: %.2fx fp16, expand_i8u2 chosen on %d layers (conv3_i8u2 on %d of them)", times["fp16"]/v, n, n3)
	}
	// where the time goes, layer by layer: each engine's calls timed
	// eagerly with an event pair around each (launch gaps not counted),
	// beside the INT8 engine's tactic
	t.Log("per layer at batch " + strconv.Itoa(batch) + ":\n" + layerTable(t, i8.e, labels, ctxs))
	// the slowest layers of the INT8 engine (untuned: no per-layer times),
	// by how they ran
	count := map[string]int{}
	for _, l := range i8.e.Layers() {
		if strings.Contains(l.Op, "Conv") {
			count[l.Precision+" "+l.Impl]++
		}
	}
	var how []string
	for k, v := range count {
		how = append(how, fmt.Sprintf("%dx %s", v, k))
	}
	sort.Strings(how)
	t.Logf("int8 expand: convolutions: %s; test %.1f s", strings.Join(how, ", "), time.Since(start).Seconds())
}

// centeredCosine is the cosine between a's and b's logits [batch, classes]
// less each class's mean over the batch: how alike their differences
// between inputs are.
func centeredCosine(a, b *tensor.Tensor, batch, classes int) float64 {
	center := func(x *tensor.Tensor) []float64 {
		v := make([]float64, batch*classes)
		for c := range classes {
			var m float64
			for i := range batch {
				m += x.Float(i*classes + c)
			}
			m /= float64(batch)
			for i := range batch {
				v[i*classes+c] = x.Float(i*classes+c) - m
			}
		}
		return v
	}
	x, y := center(a), center(b)
	var xy, xx, yy float64
	for i := range x {
		xy += x[i] * y[i]
		xx += x[i] * x[i]
		yy += y[i] * y[i]
	}
	return xy / math.Sqrt(xx*yy+1e-300)
}
