package gpuexec

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
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

// layoutNets are small convolutional graphs for the layout pass, written
// with ir.Builder: input "x" [batch, 3, 16, 16].
//
//   - chain: Conv 3->8 3x3, Relu, MaxPool 2x2/2, Conv 8->16 3x3, Flatten,
//     Gemm -> "y" (the conv->relu->pool->conv->flatten->gemm);
//   - residual: a stem Conv 3->16 + Relu, a block of two 3x3 convolutions
//     whose output is added to the stem's (Add, Relu: also the output
//     "feat"), AveragePool 3x3/1 counting the pads, a 1x1 Conv 16->32 of
//     stride 2, Clip(0, 6), then GlobalAveragePool + GlobalMaxPool added,
//     Flatten, Gemm -> "y";
//   - narrow: Conv 3->6 (6 output channels: not tensor-core sized, NCHW),
//     Relu, Conv 6->8 -> "y";
//   - fire: SqueezeNet's fire module: a stem Conv 3->16 + Relu, a 1x1
//     squeeze to 8, 1x1 and 3x3 expansions to 16 each concatenated along
//     the channels, a Conv 32->16, GlobalAveragePool, Flatten, Gemm -> "y".
var layoutNets = []string{"chain", "residual", "narrow", "fire"}

func layoutNet(t testing.TB, name string) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(11, 5))
	randT := func(scale float64, shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64() * scale)
		}
		return x
	}
	b := ir.NewBuilder(name, 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(3), ir.D(16), ir.D(16))
	conv := func(in *ir.Value, cin, cout, k, s int64) *ir.Value {
		p := k / 2
		return b.Op("Conv", []*ir.Value{in, b.Const("", randT(0.5/float64(k), int(cout), int(cin), int(k), int(k))), b.Const("", randT(0.1, int(cout)))},
			ir.IntsAttr("kernel_shape", k, k), ir.IntsAttr("strides", s, s), ir.IntsAttr("pads", p, p, p, p))
	}
	relu := func(v *ir.Value) *ir.Value { return b.Op("Relu", []*ir.Value{v}) }
	gemm := func(v *ir.Value, k int) *ir.Value {
		f := b.Op("Flatten", []*ir.Value{v}, ir.IntAttr("axis", 1))
		return b.Op("Gemm", []*ir.Value{f, b.Const("", randT(0.05, 10, k)), b.Const("", randT(0.1, 10))}, ir.IntAttr("transB", 1))
	}
	switch name {
	case "chain":
		p := b.Op("MaxPool", []*ir.Value{relu(conv(x, 3, 8, 3, 1))}, ir.IntsAttr("kernel_shape", 2, 2), ir.IntsAttr("strides", 2, 2))
		b.Output(gemm(conv(p, 8, 16, 3, 1), 16*8*8), "y")
	case "residual":
		stem := relu(conv(x, 3, 16, 3, 1))
		blk := conv(relu(conv(stem, 16, 16, 3, 1)), 16, 16, 3, 1)
		feat := relu(b.Op("Add", []*ir.Value{blk, stem}))
		avg := b.Op("AveragePool", []*ir.Value{feat}, ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("pads", 1, 1, 1, 1),
			ir.IntAttr("count_include_pad", 1))
		down := b.Op("Clip", []*ir.Value{conv(avg, 16, 32, 1, 2), b.Const("", tensor.FromFloat32([]float32{0})), b.Const("", tensor.FromFloat32([]float32{6}))})
		pooled := b.Op("Add", []*ir.Value{b.Op("GlobalAveragePool", []*ir.Value{down}), b.Op("GlobalMaxPool", []*ir.Value{down})})
		b.Output(gemm(pooled, 32), "y")
		b.Output(feat, "feat")
	case "fire":
		sq := relu(conv(relu(conv(x, 3, 16, 3, 1)), 16, 8, 1, 1))
		cat := b.Op("Concat", []*ir.Value{relu(conv(sq, 8, 16, 1, 1)), relu(conv(sq, 8, 16, 3, 1))}, ir.IntAttr("axis", 1))
		b.Output(gemm(b.Op("GlobalAveragePool", []*ir.Value{conv(cat, 32, 16, 3, 1)}), 16), "y")
	case "narrow":
		b.Output(conv(relu(conv(x, 3, 6, 3, 1)), 6, 8, 3, 1), "y")
	default:
		t.Fatalf("no net %q", name)
	}
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

// layoutModel writes net name to a file and returns its path and inputs of
// the given batch.
func layoutModel(t testing.TB, name string, batch int) (string, map[string]*tensor.Tensor) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".onnx")
	if err := os.WriteFile(path, layoutNet(t, name), 0o644); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(batch), 1))
	x := tensor.New(tensor.Float32, batch, 3, 16, 16)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(r.NormFloat64())
	}
	return path, map[string]*tensor.Tensor{"x": x}
}

// rawGraph loads a model with the inputs' shapes, shapes inferred, not
// optimized.
func rawGraph(t testing.TB, path string, in map[string]*tensor.Tensor) *ir.Graph {
	t.Helper()
	return graphAt(t, path, in, 0)
}

// transposes lists the program's layout transposes in order: "value to
// NHWC, before <next node>".
func transposes(p *program) []string {
	var out []string
	for i, s := range p.steps {
		if s.node.OpType != "Transpose" || len(s.node.Outputs) != 0 {
			continue
		}
		next := "the end"
		for _, n := range p.steps[i+1:] {
			if len(n.node.Outputs) > 0 {
				next = n.node.OpType
				break
			}
			if n.node.OpType == "Cast" {
				next = "output cast"
				break
			}
		}
		_, dir, _ := strings.Cut(s.node.Name, " to ")
		out = append(out, dir+" before "+next)
	}
	return out
}

// TestLayoutTransposes compiles the layout nets (no GPU needed) in half
// precision and checks where the layout pass puts transposes and which
// kernels run NHWC; float32, Options.NCHW and KeepValues stay NCHW.
func TestLayoutTransposes(t *testing.T) {
	cases := []struct {
		net       string
		optimized bool
		want      []string // the transposes, in order
		kernels   []string // kernels the half program must launch
	}{
		// one transpose in (the input's conversion to half writes NHWC),
		// one before Flatten
		{"chain", false, []string{"NCHW before Flatten"}, []string{"cast_f32_f16_nhwc", "conv2d_nhwc_f16", "pool2d_nhwc8_f16", "transpose_tiles_b16"}},
		{"chain", true, []string{"NCHW before Flatten"}, []string{"cast_f32_f16_nhwc", "conv2d_nhwc_f16", "pool2d_nhwc8_f16"}},
		// global pooling reads NHWC and gives N x C x 1 x 1: only the
		// input and the "feat" output are transposed
		{"residual", false, []string{"NCHW before output cast"}, []string{"cast_f32_f16_nhwc", "pool2d_nhwc8_f16", "global_pool_nhwc_f16", "chan_epilogue_vec_f16"}},
		{"residual", true, []string{"NCHW before output cast"}, []string{"cast_f32_f16_nhwc", "pool2d_nhwc8_f16", "global_pool_nhwc_f16"}},
		// Concat along the channels of NHWC values: no transpose at all
		{"fire", false, nil, []string{"cast_f32_f16_nhwc", "copy_rows_b16", "global_pool_nhwc_f16"}},
		{"fire", true, nil, []string{"cast_f32_f16_nhwc", "copy_rows_b16", "global_pool_nhwc_f16"}},
		{"narrow", false, nil, []string{"conv2d_f16"}},
		{"narrow", true, nil, []string{"conv2d_f16"}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/optimized=%v", tc.net, tc.optimized), func(t *testing.T) {
			path, in := layoutModel(t, tc.net, 2)
			g := rawGraph(t, path, in)
			if tc.optimized {
				g = optimizedGraph(t, path, in)
			}
			p, err := compile(g, false, true)
			if err != nil {
				t.Fatal(err)
			}
			if got := transposes(p); !slices.Equal(got, tc.want) {
				t.Errorf("transposes %q, want %q", got, tc.want)
			}
			for _, k := range tc.kernels {
				if !p.kernels[k] {
					t.Errorf("the half program does not launch %s (it launches %v)", k, slices.Sorted(maps.Keys(p.kernels)))
				}
			}
			checkProgram(t, p)
			nhwcConvs := 0
			for _, s := range p.steps {
				if s.conv != nil && s.conv.nhwc {
					nhwcConvs++
				}
			}
			if (nhwcConvs > 0) != p.kernels["cast_f32_f16_nhwc"] {
				t.Errorf("%d convolutions run NHWC", nhwcConvs)
			}
			// Float32, Options.NCHW and KeepValues: NCHW, and the same
			// program as without the layout pass.
			for _, o := range []struct {
				name             string
				keep, half, nchw bool
			}{{"fp32", false, false, false}, {"fp16 nchw", false, true, true}, {"fp16 keep", true, true, false}} {
				q, err := compileLayout(g, o.keep, o.half, true, o.nchw)
				if err != nil {
					t.Fatal(err)
				}
				if got := transposes(q); len(got) != 0 {
					t.Errorf("%s: transposes %q", o.name, got)
				}
				for k := range q.kernels {
					if strings.Contains(k, "nhwc") || strings.HasPrefix(k, "transpose_tiles") {
						t.Errorf("%s launches %s", o.name, k)
					}
				}
				if o.nchw {
					continue
				}
				// compiling twice gives the same program (nothing random)
				q2, err := compileLayout(g, o.keep, o.half, true, true)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(q.steps, q2.steps) || !slices.Equal(q.weights, q2.weights) {
					t.Errorf("%s: the program differs from the one compiled with NCHW forced", o.name)
				}
			}
		})
	}
}

// TestLayoutModelsFP32Unchanged compiles the reference models in float32
// with and without NCHW forced: the layout pass changes nothing.
func TestLayoutModelsFP32Unchanged(t *testing.T) {
	for _, name := range []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "yolo_tiny"} {
		t.Run(name, func(t *testing.T) {
			g := optimizedGraph(t, modelPath(t, name), testInputs(t, name))
			a, err := compileLayout(g, false, false, true, false)
			if err != nil {
				t.Fatal(err)
			}
			b, err := compileLayout(g, false, false, true, true)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a.steps, b.steps) || !slices.Equal(a.weights, b.weights) || a.arena != b.arena {
				t.Error("the float32 program depends on the layout option")
			}
			h, err := compile(g, false, true)
			if err != nil {
				t.Fatal(err)
			}
			checkProgram(t, h)
			t.Logf("%s fp16: transposes %q", name, transposes(h))
		})
	}
}

// TestLayoutFake builds resnet_mini in half on the fake libraries: the
// convolutions run NHWC through cuDNN's fused call by default, tuning
// times the fused and the plain NHWC calls and kiln's NHWC kernel, and the
// chosen tactics, applied to a new engine (as a plan's blob is), give the
// same layers.
func TestLayoutFake(t *testing.T) {
	dir := fakeLibs(t)
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 2, 1)
	g := optimizedGraph(t, path, in)
	tactics := func(e *Engine) map[string]string {
		out := map[string]string{}
		for _, l := range e.Layers() {
			if l.Op == "kiln::FusedConv" {
				out[l.Node] = l.Tactic
			}
		}
		return out
	}
	e, c := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true})
	for n, tac := range tactics(e) {
		if !strings.HasPrefix(tac, "cudnn nhwc fused bias") {
			t.Errorf("%s runs as %q", n, tac)
		}
	}
	if _, err := c.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	nchw, _ := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, NCHW: true})
	for n, tac := range tactics(nchw) {
		if !strings.HasPrefix(tac, "cudnn WINOGRAD (algo 6") || !strings.HasSuffix(tac, "chan_epilogue_f16") && !strings.HasSuffix(tac, "chan_epilogue_plane_f16") {
			t.Errorf("NCHW: %s runs as %q", n, tac)
		}
	}
	t.Setenv(EnvNCHW, "1")
	env, _ := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true})
	if !reflect.DeepEqual(tactics(env), tactics(nchw)) {
		t.Errorf("%s=1 runs as %v", EnvNCHW, tactics(env))
	}
	t.Setenv(EnvNCHW, "")

	tuned, tc := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Tune: true})
	if _, err := tc.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	var fused, plain, kernel int
	for n, tt := range tuned.Tactics() {
		switch {
		case tt.Impl == ImplCUDNN && tt.Fused:
			fused++
		case tt.Impl == ImplCUDNN:
			plain++
		case tt.Impl == ImplKernel:
			kernel++
		}
		if !strings.Contains(tt.Sig, " nhwc ") && strings.HasPrefix(tt.Sig, "cuda conv") {
			t.Errorf("%s: signature %q", n, tt.Sig)
		}
	}
	t.Logf("tuned: %d fused, %d plain, %d kernel; %d timings", fused, plain, kernel, tuned.Measured())
	if fused+plain+kernel == 0 || tuned.Measured() == 0 {
		t.Errorf("tuning chose %d convolutions and measured %d", fused+plain+kernel, tuned.Measured())
	}
	// The tactics, as a plan keeps them, applied without timing.
	parsed, err := ParseTactics(tuned.Tactics().Marshal())
	if err != nil {
		t.Fatal(err)
	}
	applied, ac := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Tactics: parsed})
	if !reflect.DeepEqual(tactics(applied), tactics(tuned)) {
		t.Errorf("applied tactics run as\n%v\ntuned ones as\n%v", tactics(applied), tactics(tuned))
	}
	if _, err := ac.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	// Each tactic forced, one at a time: fused, plain (epilogue after) and
	// kiln's NHWC kernel.
	for _, want := range []struct {
		t      Tactic
		prefix string
	}{
		{Tactic{Impl: ImplCUDNN, Algo: 6, Math: 1, Fused: true}, "cudnn nhwc fused"},
		{Tactic{Impl: ImplCUDNN, Algo: 6, Math: 1}, "cudnn nhwc WINOGRAD (algo 6, tensor-op math) + chan_epilogue_vec_f16"},
		{Tactic{Impl: ImplKernel}, "conv2d_nhwc_f16"},
		// a graph engine that does not build here (the fake has no
		// backend API; a plan from another cuDNN): the default runs
		{Tactic{Impl: ImplCUDNN, Graph: "eng0_k1=2"}, "cudnn nhwc fused"},
	} {
		forced := Tactics{}
		for n, tt := range tuned.Tactics() {
			if strings.HasPrefix(tt.Sig, "cuda conv") && strings.Contains(tt.Sig, "relu=true") {
				f := want.t
				f.Sig = tt.Sig
				forced[n] = f
			}
		}
		fe, fc := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Tactics: forced})
		for n, tac := range tactics(fe) {
			if _, ok := forced[n]; ok && !strings.HasPrefix(tac, want.prefix) {
				t.Errorf("forced %s: %s runs as %q", want.t.name(), n, tac)
			}
		}
		if _, err := fc.Run(context.Background(), in); err != nil {
			t.Errorf("forced %s: %v", want.t.name(), err)
		}
		for n, tt := range fe.Tactics() {
			if want.t.Graph != "" && tt.Graph != "" {
				t.Errorf("%s keeps the stale graph tactic %q", n, tt.name())
			}
		}
	}
}

// TestLayoutCompilePlanFake builds resnet_mini in half through the
// device's Compiler with tuning on, as kiln build --device cuda --fp16
// does: the plan's layer report shows the NHWC tactics.
func TestLayoutCompilePlanFake(t *testing.T) {
	dir := fakeLibs(t)
	t.Setenv(cuda.EnvLibPath, dir)
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 2, 1)
	g := optimizedGraph(t, path, in)
	prog, err := compilePlan(g, device.ExecOptions{Precision: "fp16", Tune: true})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	rep, err := device.ParseLayerReport(prog.(*planProgram).Blobs()[device.LayersBlob])
	if err != nil {
		t.Fatal(err)
	}
	nhwc := 0
	for _, l := range rep.Layers {
		if strings.HasPrefix(l.Tactic, "cudnn nhwc") || strings.HasPrefix(l.Tactic, "conv2d_nhwc") {
			nhwc++
		}
	}
	if nhwc == 0 {
		t.Errorf("no layer of the plan runs NHWC: %+v", rep.Layers)
	}
	if _, err := prog.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
}

// TestLayoutOnGPU builds the layout nets and resnet_mini in half through
// the device's Compiler with tuning on (kiln build --device cuda --fp16's
// defaults) and directly with kiln's kernels only (the NHWC convolution,
// pooling and transpose kernels), and compares every output with the CPU
// engine's float32 (cosine >= minCosine).
func TestLayoutOnGPU(t *testing.T) {
	needGPU(t)
	type model struct {
		name  string
		path  string
		in    map[string]*tensor.Tensor
		batch int
	}
	var models []model
	for _, n := range layoutNets {
		for _, batch := range []int{1, 5} {
			p, in := layoutModel(t, n, batch)
			models = append(models, model{n, p, in, batch})
		}
	}
	for _, batch := range []int{1, 8} {
		models = append(models, model{"resnet_mini", modelPath(t, "resnet_mini"), randomImages(t, "resnet_mini", batch, 21), batch})
	}
	for _, m := range models {
		want := cpuRun(t, m.path, m.in)
		check := func(t *testing.T, got map[string]*tensor.Tensor) {
			for name, w := range want {
				g, ok := got[name]
				if !ok || g.DType != tensor.Float32 || !sameDims(g.Shape, w.Shape) {
					t.Fatalf("output %q: %v", name, g)
				}
				cos, rel := cosine(g, w)
				if !(cos >= minCosine) {
					t.Errorf("%s: cosine %.6f < %g (relative L2 error %.3g)", name, cos, minCosine, rel)
				} else {
					t.Logf("%s: cosine %.6f, relative L2 error %.3g", name, cos, rel)
				}
			}
		}
		t.Run(fmt.Sprintf("%s/batch%d/build", m.name, m.batch), func(t *testing.T) {
			g := optimizedGraph(t, m.path, m.in)
			prog, err := compilePlan(g, device.ExecOptions{Precision: "fp16", Tune: true})
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			if rep, err := device.ParseLayerReport(prog.(*planProgram).Blobs()[device.LayersBlob]); err == nil {
				var tac []string
				for _, l := range rep.Layers {
					tac = append(tac, l.Name+": "+l.Tactic)
				}
				t.Logf("tactics: %s", strings.Join(tac, "; "))
			}
			for range 3 { // launched, captured, replayed
				got, err := prog.Run(context.Background(), m.in)
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
			{"kernels", Options{FP16: true, NoCUDNN: true, NoCUBLASLt: true, SyncEachLayer: true}},
			{"plain-nhwc", Options{FP16: true, SyncEachLayer: true, plainNHWC: true}},
			{"graph-tuned", Options{FP16: true, Tune: true, GraphConv: true}},
		} {
			if cfg.name == "graph-tuned" && (m.name != "residual" || m.batch != 5) {
				continue // seconds of runtime compilation per layer: one net here, TestLayoutBenchOnGPU times ResNet
			}
			t.Run(fmt.Sprintf("%s/batch%d/%s", m.name, m.batch, cfg.name), func(t *testing.T) {
				g := optimizedGraph(t, m.path, m.in)
				opt := cfg.opt
				e, err := NewEngine(g, opt)
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
				for range 3 {
					got, err := c.Run(context.Background(), m.in)
					if err != nil {
						t.Fatal(err)
					}
					check(t, got)
				}
			})
		}
	}
}

// TestLayoutBenchOnGPU times a ResNet in half at batch 256 (the model
// $KILN_GPU_BENCH/resnet50, else resnet_mini): NCHW forced against the
// NHWC default, each untuned and tuned (the device time of the layers, a
// CUDA graph replay, median of 30), and logs how the convolutions ran.
// Set KILN_LAYOUT_BENCH=1 to run it (it takes a minute or two on an H100);
// $KILN_LAYOUT_BENCH_BATCHES lists the batches ("256,1" by default) and
// $KILN_LAYOUT_BENCH_OUT receives the tables.
func TestLayoutBenchOnGPU(t *testing.T) {
	if os.Getenv("KILN_LAYOUT_BENCH") == "" {
		t.Skip("set KILN_LAYOUT_BENCH=1 to time NCHW against NHWC at batch 256")
	}
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
	var tables []string
	for _, bs := range strings.Split(cmp.Or(os.Getenv("KILN_LAYOUT_BENCH_BATCHES"), "256,1"), ",") {
		batch, err := strconv.Atoi(strings.TrimSpace(bs))
		if err != nil || batch < 1 {
			t.Fatalf("KILN_LAYOUT_BENCH_BATCHES: %q is not a batch size", bs)
		}
		tables = append(tables, benchLayouts(t, name, path, batch))
	}
	table := strings.Join(tables, "\n")
	t.Log("\n" + table)
	if p := os.Getenv("KILN_LAYOUT_BENCH_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// benchLayouts times one model at one batch in the layouts and returns the
// table.
func benchLayouts(t *testing.T, name, path string, batch int) string {
	var in map[string]*tensor.Tensor
	if name == "resnet50" {
		in = benchInputs("resnet50", batch, rand.New(rand.NewPCG(1, 2)))
	} else {
		in = randomImages(t, name, batch, 3)
	}
	g := optimizedGraph(t, path, in)
	rows := []string{fmt.Sprintf("%s FP16 batch %d, device time of the layers (CUDA graph replay, median of 30)", name, batch), "",
		"| layout | tuning | ms | img/s | convolutions run as |", "| --- | --- | --- | --- | --- |"}
	var ref map[string]*tensor.Tensor
	// the tuned configurations share a timing cache: the graph engines'
	// run measures only those
	fp, _ := cuda.Probe(cuda.Options{})
	cache, cfp := tactic.New(), device.Fingerprint{"gpu": fp.String()}
	for _, cfg := range []struct {
		name string
		opt  Options
	}{
		{"NCHW", Options{FP16: true, NCHW: true}},
		{"NCHW", Options{FP16: true, NCHW: true, Tune: true}},
		{"NHWC", Options{FP16: true}},
		{"NHWC", Options{FP16: true, Tune: true}},
		{"NHWC + cuDNN graph engines", Options{FP16: true, Tune: true, GraphConv: true}},
	} {
		if cfg.opt.Tune {
			cfg.opt.TimingCache, cfg.opt.CacheDevice = cache, cfp
		}
		start := time.Now()
		e, err := NewEngine(g, cfg.opt)
		if err != nil {
			t.Fatal(err)
		}
		build := time.Since(start)
		c, err := e.NewContext()
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]*tensor.Tensor
		for range 3 {
			if out, err = c.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
		}
		if ref == nil {
			ref = out
		} else {
			for n, w := range ref {
				if cos, rel := cosine(out[n], w); !(cos >= minCosine) {
					t.Errorf("%s tune=%v: %s against NCHW untuned: cosine %.6f (relative L2 %.3g)", cfg.name, cfg.opt.Tune, n, cos, rel)
				}
			}
		}
		if _, err := c.DeviceTimes(5); err != nil {
			t.Fatal(err)
		}
		ms, err := c.DeviceTimes(30)
		if err != nil {
			t.Fatal(err)
		}
		sort.Float64s(ms)
		med := ms[len(ms)/2]
		count := map[string]int{}
		for _, l := range e.Layers() {
			if strings.Contains(l.Op, "Conv") {
				tac := l.Tactic
				if i := strings.Index(tac, " ("); i > 0 {
					tac = tac[:i]
				}
				count[tac]++
			}
		}
		var how []string
		for k, v := range count {
			how = append(how, fmt.Sprintf("%dx %s", v, k))
		}
		sort.Strings(how)
		rows = append(rows, fmt.Sprintf("| %s | %v | %.3f | %.0f | %s |", cfg.name, cfg.opt.Tune, med, float64(batch)/med*1e3, strings.Join(how, ", ")))
		t.Logf("%s (built in %.1f s, %d timings measured)", rows[len(rows)-1], build.Seconds(), e.Measured())
		if cfg.opt.Tune {
			var slow []Layer
			for _, l := range e.Layers() {
				if l.Time > 0 {
					slow = append(slow, l)
				}
			}
			sort.Slice(slow, func(i, j int) bool { return slow[i].Time > slow[j].Time })
			var s []string
			for _, l := range slow[:min(8, len(slow))] {
				s = append(s, fmt.Sprintf("%s %.1f us (%s)", l.Node, float64(l.Time)/1e3, l.Tactic))
			}
			t.Logf("%s tuned, slowest layers: %s", cfg.name, strings.Join(s, "; "))
		}
		c.Close()
		e.Close()
	}
	return strings.Join(rows, "\n") + "\n"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
