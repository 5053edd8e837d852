package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// The tests in this file need a CUDA GPU and skip without one.

// Tolerances of float32 on the GPU (no TF32) against the CPU's float32.
const rtol, atol = 1e-3, 1e-4

func needGPU(t testing.TB) {
	t.Helper()
	fp, err := cuda.Probe(cuda.Options{})
	if fp.GPUName == "" {
		t.Skipf("needs a CUDA GPU: %v", err)
	}
}

// configs are the ways to run: with cuDNN and cuBLASLt, and with kiln's
// own kernels only.
var configs = []struct {
	name string
	opt  Options
}{
	{"libs", Options{SyncEachLayer: true}},
	{"kernels", Options{NoCUDNN: true, NoCUBLASLt: true, SyncEachLayer: true}},
}

func summarize(layers []Layer) string {
	count := map[string]int{}
	for _, l := range layers {
		impl := l.Impl
		if i := strings.Index(impl, " ("); i > 0 {
			impl = impl[:i]
		}
		count[l.Op+"="+impl]++
	}
	var parts []string
	for k, v := range count {
		parts = append(parts, fmt.Sprintf("%s x%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// TestModelsOnGPU runs the reference models on the GPU and compares every
// output with kiln's CPU engine, three runs each: the first launches every
// layer, the second captures a CUDA graph, the third replays it.
func TestModelsOnGPU(t *testing.T) {
	needGPU(t)
	cases := []struct {
		model string
		batch int // 0: the model's test inputs
	}{
		{"resnet_mini", 1}, {"resnet_mini", 4},
		{"mobilenet_v2", 1}, {"mobilenet_v2", 3},
		{"squeezenet1_1", 2},
		{"bert_mini", 0},
		{"yolo_tiny", 0}, {"yolo_tiny", 2},
	}
	for _, tc := range cases {
		for _, cfg := range configs {
			t.Run(fmt.Sprintf("%s/batch%d/%s", tc.model, tc.batch, cfg.name), func(t *testing.T) {
				path := modelPath(t, tc.model)
				in := testInputs(t, tc.model)
				if tc.batch > 0 {
					in = randomImages(t, tc.model, tc.batch, uint64(tc.batch))
				}
				want := cpuRun(t, path, in)
				g := optimizedGraph(t, path, in)
				e, err := NewEngine(g, cfg.opt)
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
				for run := 0; run < 3; run++ {
					got, err := c.Run(context.Background(), in)
					if err != nil {
						t.Fatalf("run %d: %v", run, err)
					}
					for name, w := range want {
						gv, ok := got[name]
						if !ok {
							t.Fatalf("run %d: no output %q", run, name)
						}
						d := compareFloat32(t, fmt.Sprintf("run %d %s", run, name), gv, w, rtol, atol)
						if run == 2 {
							t.Logf("%s: largest difference %.3g (graph replay %v)", name, d, c.Graphed())
						}
					}
				}
				if !c.Graphed() {
					t.Errorf("the context does not replay a CUDA graph after 3 runs")
				}
			})
		}
	}
}

// minCosine is the rule for FP16 on the GPU: every output's cosine
// similarity with the CPU's float32 output at least 0.999.
const minCosine = 0.999

// cosine returns the cosine similarity of two tensors of float values (any
// float type) and the relative L2 error |a-b|/|b|.
func cosine(a, b *tensor.Tensor) (cos, rel float64) {
	var ab, aa, bb, dd float64
	for i := range b.Len() {
		x, y := a.Float(i), b.Float(i)
		ab += x * y
		aa += x * x
		bb += y * y
		dd += (x - y) * (x - y)
	}
	if aa == 0 && bb == 0 {
		return 1, 0
	}
	return ab / math.Sqrt(aa*bb), math.Sqrt(dd / bb)
}

// TestModelsFP16OnGPU runs the reference models in half precision (cuDNN
// and cuBLASLt on tensor cores, and with kiln's kernels only) and requires
// a cosine similarity of at least 0.999 with kiln's CPU float32 output for
// every output, three runs each (eager, capture, replay).
func TestModelsFP16OnGPU(t *testing.T) {
	needGPU(t)
	cases := []struct {
		model string
		batch int // 0: the model's test inputs
	}{
		{"resnet_mini", 1}, {"resnet_mini", 4},
		{"mobilenet_v2", 1}, {"mobilenet_v2", 3},
		{"squeezenet1_1", 2},
		{"bert_mini", 0},
		{"yolo_tiny", 0}, {"yolo_tiny", 2},
	}
	for _, tc := range cases {
		for _, cfg := range configs {
			t.Run(fmt.Sprintf("%s/batch%d/%s", tc.model, tc.batch, cfg.name), func(t *testing.T) {
				path := modelPath(t, tc.model)
				in := testInputs(t, tc.model)
				if tc.batch > 0 {
					in = randomImages(t, tc.model, tc.batch, uint64(tc.batch)+100)
				}
				want := cpuRun(t, path, in)
				opt := cfg.opt
				opt.FP16 = true
				e, err := NewEngine(optimizedGraph(t, path, in), opt)
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
				for run := 0; run < 3; run++ {
					got, err := c.Run(context.Background(), in)
					if err != nil {
						t.Fatalf("run %d: %v", run, err)
					}
					for name, w := range want {
						gv, ok := got[name]
						if !ok {
							t.Fatalf("run %d: no output %q", run, name)
						}
						if gv.DType != tensor.Float32 || !sameDims(gv.Shape, w.Shape) {
							t.Fatalf("run %d: output %q is %v%v, want %v%v", run, name, gv.DType, gv.Shape, w.DType, w.Shape)
						}
						cos, rel := cosine(gv, w)
						if !(cos >= minCosine) {
							t.Errorf("run %d %s: cosine similarity %.6f < %g (relative L2 error %.3g)", run, name, cos, minCosine, rel)
						}
						if run == 2 {
							t.Logf("fp16 %s: cosine %.6f, relative L2 error %.3g (graph replay %v)", name, cos, rel, c.Graphed())
						}
					}
				}
			})
		}
	}
}

// TestLayersFP16OnGPU compares every intermediate value of the half
// engine with the CPU engine's float32 values by cosine similarity and
// logs the lowest (a debugging aid: errors accumulate, so it only fails
// when a final output does, in TestModelsFP16OnGPU). A value whose cosine
// is undefined (one side all zeros, e.g. float32 values under half's
// smallest subnormal) is logged with its magnitudes instead.
func TestLayersFP16OnGPU(t *testing.T) {
	needGPU(t)
	for _, model := range []string{"resnet_mini", "mobilenet_v2", "bert_mini", "yolo_tiny"} {
		t.Run(model, func(t *testing.T) {
			path := modelPath(t, model)
			in := testInputs(t, model)
			ce, err := engine.New(optimizedGraph(t, path, in))
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]*tensor.Tensor{}
			var order []string
			if _, err := ce.RunObserved(context.Background(), in, func(v *ir.Value, x *tensor.Tensor) {
				want[v.Name] = x.Clone()
				order = append(order, v.Name)
			}); err != nil {
				t.Fatal(err)
			}
			e, err := NewEngine(optimizedGraph(t, path, in), Options{FP16: true, KeepValues: true, NoGraphs: true, SyncEachLayer: true})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			c, err := e.NewContext()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			checked, worst, worstName := 0, 1.0, ""
			for _, name := range order {
				w := want[name]
				if w.DType != tensor.Float32 {
					continue
				}
				got, err := c.Value(name)
				if err != nil || got.Len() != w.Len() {
					continue // folded or aliased away
				}
				checked++
				cos, _ := cosine(got, w)
				if cos < worst {
					worst, worstName = cos, name
				}
				if cos != cos {
					// one side is all zeros: e.g. float32 values under half's
					// smallest subnormal (6e-8), which half rounds to 0
					var bad, badCPU int
					var maxG, maxC float64
					for i := range w.Len() {
						g, x := got.Float(i), w.Float(i)
						if g-g != 0 {
							bad++
						}
						if x-x != 0 {
							badCPU++
						}
						maxG, maxC = max(maxG, math.Abs(g)), max(maxC, math.Abs(x))
					}
					t.Logf("%q %v: %d non-finite on the GPU, %d on the CPU, of %d; largest magnitude %.3g on the GPU, %.3g on the CPU", name, w.Shape, bad, badCPU, w.Len(), maxG, maxC)
				}
			}
			t.Logf("%d intermediate values, lowest cosine similarity %.6f at %q", checked, worst, worstName)
		})
	}
}

// TestContextsConcurrently runs two contexts of one engine from two
// goroutines on different inputs.
func TestContextsConcurrently(t *testing.T) {
	needGPU(t)
	path := modelPath(t, "resnet_mini")
	ins := []map[string]*tensor.Tensor{randomImages(t, "resnet_mini", 2, 11), randomImages(t, "resnet_mini", 2, 12)}
	g := optimizedGraph(t, path, ins[0])
	e, err := NewEngine(g, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var wg sync.WaitGroup
	results := make([][]map[string]*tensor.Tensor, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := e.NewContext()
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			for range 5 {
				out, err := c.Run(context.Background(), ins[i])
				if err != nil {
					errs[i] = err
					return
				}
				results[i] = append(results[i], out)
			}
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		want := cpuRun(t, path, ins[i])
		for _, out := range results[i] {
			for n, w := range want {
				compareFloat32(t, fmt.Sprintf("context %d %s", i, n), out[n], w, rtol, atol)
			}
		}
	}
}

// TestGPUErrors checks the errors of a GPU engine: the memory limit, bad
// inputs, closing.
func TestGPUErrors(t *testing.T) {
	needGPU(t)
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 1, 3)
	if _, err := NewEngine(optimizedGraph(t, path, in), Options{MemoryLimit: 1 << 20}); !errors.Is(err, ErrMemoryLimit) {
		t.Errorf("1 MiB limit: error %v, want ErrMemoryLimit", err)
	}
	e, err := NewEngine(optimizedGraph(t, path, in), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(context.Background(), map[string]*tensor.Tensor{}); !errors.Is(err, ErrInput) {
		t.Errorf("no inputs: error %v, want ErrInput", err)
	}
	if _, err := c.Run(context.Background(), randomImages(t, "resnet_mini", 2, 3)); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "built for") {
		t.Errorf("batch 2 for an engine of batch 1: error %v, want ErrInput", err)
	}
	if err := e.Close(); err == nil {
		t.Errorf("Close with an open context succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(context.Background(), in); !errors.Is(err, ErrClosed) {
		t.Errorf("closed context: error %v, want ErrClosed", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.NewContext(); !errors.Is(err, ErrClosed) {
		t.Errorf("closed engine: error %v, want ErrClosed", err)
	}
}

// TestOpsOnGPU runs small graphs of ops and attributes the reference
// models do not exercise, against the CPU engine.
func TestOpsOnGPU(t *testing.T) {
	needGPU(t)
	f := func(v ...int) []ir.Dim {
		var d []ir.Dim
		for _, x := range v {
			d = append(d, ir.D(int64(x)))
		}
		return d
	}
	r := rand.New(rand.NewPCG(1, 2))
	rnd := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64())
		}
		return x
	}
	tests := []struct {
		name  string
		build func(b *ir.Builder) *ir.Value
		in    map[string]*tensor.Tensor
	}{
		{"AveragePool pads count_include_pad", func(b *ir.Builder) *ir.Value {
			x := b.Input("x", tensor.Float32, f(2, 3, 9, 9)...)
			return b.Op("AveragePool", []*ir.Value{x}, ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1), ir.IntAttr("count_include_pad", 1))
		}, map[string]*tensor.Tensor{"x": rnd(2, 3, 9, 9)}},
		{"AveragePool exclude pad", func(b *ir.Builder) *ir.Value {
			x := b.Input("x", tensor.Float32, f(2, 3, 9, 9)...)
			return b.Op("AveragePool", []*ir.Value{x}, ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1))
		}, map[string]*tensor.Tensor{"x": rnd(2, 3, 9, 9)}},
		{"Conv SAME_UPPER stride 2 dilated", func(b *ir.Builder) *ir.Value {
			x := b.Input("x", tensor.Float32, f(1, 4, 10, 11)...)
			w := b.Const("w", rnd(6, 2, 3, 3))
			return b.Op("Conv", []*ir.Value{x, w}, ir.StringAttr("auto_pad", "SAME_UPPER"), ir.IntsAttr("strides", 2, 2), ir.IntAttr("group", 2))
		}, map[string]*tensor.Tensor{"x": rnd(1, 4, 10, 11)}},
		{"Conv asymmetric pads", func(b *ir.Builder) *ir.Value {
			x := b.Input("x", tensor.Float32, f(1, 3, 8, 8)...)
			w := b.Const("w", rnd(5, 3, 2, 2))
			bias := b.Const("b", rnd(5))
			return b.Op("Conv", []*ir.Value{x, w, bias}, ir.IntsAttr("pads", 0, 1, 1, 0), ir.IntsAttr("dilations", 2, 1))
		}, map[string]*tensor.Tensor{"x": rnd(1, 3, 8, 8)}},
		{"Gemm transA alpha beta C[M,N]", func(b *ir.Builder) *ir.Value {
			a := b.Input("a", tensor.Float32, f(7, 5)...)
			w := b.Const("w", rnd(7, 9))
			c := b.Const("c", rnd(5, 9))
			return b.Op("Gemm", []*ir.Value{a, w, c}, ir.IntAttr("transA", 1), ir.FloatAttr("alpha", 0.5), ir.FloatAttr("beta", 2))
		}, map[string]*tensor.Tensor{"a": rnd(7, 5)}},
		{"MatMul batched both", func(b *ir.Builder) *ir.Value {
			a := b.Input("a", tensor.Float32, f(2, 3, 17, 33)...)
			c := b.Input("b", tensor.Float32, f(2, 3, 33, 19)...)
			return b.Op("MatMul", []*ir.Value{a, c})
		}, map[string]*tensor.Tensor{"a": rnd(2, 3, 17, 33), "b": rnd(2, 3, 33, 19)}},
		{"MatMul 2-D large", func(b *ir.Builder) *ir.Value {
			a := b.Input("a", tensor.Float32, f(70, 300)...)
			return b.Op("MatMul", []*ir.Value{a, b.Const("w", rnd(300, 130))})
		}, map[string]*tensor.Tensor{"a": rnd(70, 300)}},
		{"Softmax Sigmoid Clip Transpose", func(b *ir.Builder) *ir.Value {
			x := b.Input("x", tensor.Float32, f(3, 4, 50)...)
			y := b.Op("Softmax", []*ir.Value{x}, ir.IntAttr("axis", -1))
			y = b.Op("Transpose", []*ir.Value{y}, ir.IntsAttr("perm", 2, 0, 1))
			y = b.Op("Sigmoid", []*ir.Value{b.Op("Mul", []*ir.Value{y, b.Const("k", tensor.FromFloat32([]float32{30}))})})
			return b.Op("Clip", []*ir.Value{y, b.Const("lo", tensor.FromFloat32([]float32{0.55})), b.Const("hi", tensor.FromFloat32([]float32{0.9}))})
		}, map[string]*tensor.Tensor{"x": rnd(3, 4, 50)}},
		{"Attention odd sizes, broadcast mask", func(b *ir.Builder) *ir.Value {
			q := b.Input("q", tensor.Float32, f(2, 3, 37, 24)...)
			k := b.Input("k", tensor.Float32, f(2, 3, 24, 50)...)
			v := b.Input("v", tensor.Float32, f(2, 3, 50, 40)...)
			m := b.Input("m", tensor.Float32, f(2, 1, 1, 50)...)
			return b.Op("Attention", []*ir.Value{q, k, v, m}, ir.FloatAttr("scale", 0.2))
		}, map[string]*tensor.Tensor{"q": rnd(2, 3, 37, 24), "k": rnd(2, 3, 24, 50), "v": rnd(2, 3, 50, 40), "m": rnd(2, 1, 1, 50)}},
		{"Attention one query row, 3-D", func(b *ir.Builder) *ir.Value {
			q := b.Input("q", tensor.Float32, f(4, 1, 16)...)
			k := b.Input("k", tensor.Float32, f(4, 16, 70)...)
			v := b.Input("v", tensor.Float32, f(4, 70, 8)...)
			return b.Op("Attention", []*ir.Value{q, k, v}, ir.FloatAttr("scale", 0.25))
		}, map[string]*tensor.Tensor{"q": rnd(4, 1, 16), "k": rnd(4, 16, 70), "v": rnd(4, 70, 8)}},
		{"Attention tensor cores (fp16), S 100 T 80 D 64, broadcast mask", func(b *ir.Builder) *ir.Value {
			q := b.Input("q", tensor.Float32, f(2, 3, 100, 64)...)
			k := b.Input("k", tensor.Float32, f(2, 3, 64, 80)...)
			v := b.Input("v", tensor.Float32, f(2, 3, 80, 64)...)
			m := b.Input("m", tensor.Float32, f(2, 1, 1, 80)...)
			return b.Op("Attention", []*ir.Value{q, k, v, m}, ir.FloatAttr("scale", 0.125))
		}, map[string]*tensor.Tensor{"q": rnd(2, 3, 100, 64), "k": rnd(2, 3, 64, 80), "v": rnd(2, 3, 80, 64), "m": rnd(2, 1, 1, 80)}},
		{"Attention tensor cores (fp16) in place: QKV split, head transposes", func(b *ir.Builder) *ir.Value {
			x := b.Input("x", tensor.Float32, f(2, 70, 192)...)
			m := b.Input("m", tensor.Float32, f(2, 1, 1, 70)...)
			qkv := b.OpN("Split", 3, []*ir.Value{x, b.Const("sp", tensor.FromInt64([]int64{64, 64, 64}, 3))}, ir.IntAttr("axis", -1))
			heads := b.Const("hs", tensor.FromInt64([]int64{2, 70, 2, 32}, 4))
			q := b.Op("Transpose", []*ir.Value{b.Op("Reshape", []*ir.Value{qkv[0], heads})}, ir.IntsAttr("perm", 0, 2, 1, 3))
			k := b.Op("Transpose", []*ir.Value{b.Op("Reshape", []*ir.Value{qkv[1], heads})}, ir.IntsAttr("perm", 0, 2, 3, 1))
			v := b.Op("Transpose", []*ir.Value{b.Op("Reshape", []*ir.Value{qkv[2], heads})}, ir.IntsAttr("perm", 0, 2, 1, 3))
			y := b.Op("Attention", []*ir.Value{q, k, v, m}, ir.FloatAttr("scale", 0.17))
			y = b.Op("Transpose", []*ir.Value{y}, ir.IntsAttr("perm", 0, 2, 1, 3))
			return b.Op("Reshape", []*ir.Value{y, b.Const("os", tensor.FromInt64([]int64{2, 70, 64}, 3))})
		}, map[string]*tensor.Tensor{"x": rnd(2, 70, 192), "m": rnd(2, 1, 1, 70)}},
		{"FusedMatMul bias ReLU (cuBLASLt epilogue)", func(b *ir.Builder) *ir.Value {
			a := b.Input("a", tensor.Float32, f(3, 20, 48)...)
			return b.Op("FusedMatMul", []*ir.Value{a, b.Const("w", rnd(48, 72)), b.Const("bias", rnd(72))}, ir.StringAttr("activation", "Relu"))
		}, map[string]*tensor.Tensor{"a": rnd(3, 20, 48)}},
		{"Gemm transB bias (cuBLASLt epilogue)", func(b *ir.Builder) *ir.Value {
			a := b.Input("a", tensor.Float32, f(9, 40)...)
			return b.Op("Gemm", []*ir.Value{a, b.Const("w", rnd(24, 40)), b.Const("c", rnd(24))}, ir.IntAttr("transB", 1))
		}, map[string]*tensor.Tensor{"a": rnd(9, 40)}},
		{"Concat axis 1 and Div broadcast", func(b *ir.Builder) *ir.Value {
			x := b.Input("x", tensor.Float32, f(2, 3, 4)...)
			y := b.Input("y", tensor.Float32, f(2, 5, 4)...)
			cat := b.Op("Concat", []*ir.Value{x, y, x}, ir.IntAttr("axis", 1))
			return b.Op("Div", []*ir.Value{cat, b.Const("d", rnd(1, 4))})
		}, map[string]*tensor.Tensor{"x": rnd(2, 3, 4), "y": rnd(2, 5, 4)}},
	}
	opsConfigs := append(configs[:len(configs):len(configs)], struct {
		name string
		opt  Options
	}{"fp16", Options{FP16: true, SyncEachLayer: true}})
	for _, tt := range tests {
		for _, cfg := range opsConfigs {
			t.Run(tt.name+"/"+cfg.name, func(t *testing.T) {
				mk := func() *ir.Graph {
					// the same constants in the CPU's graph and the GPU's
					r = rand.New(rand.NewPCG(3, 4))
					b := ir.NewBuilder("g", 17)
					b.Output(tt.build(b), "out")
					g := b.Graph()
					for _, n := range g.Nodes {
						if n.OpType == "Attention" || n.OpType == "FusedMatMul" {
							n.Domain = "kiln"
						}
					}
					if _, err := ops.InferGraph(g); err != nil {
						t.Fatal(err)
					}
					return g
				}
				ce, err := engine.New(mk())
				if err != nil {
					t.Fatal(err)
				}
				want, err := ce.Run(context.Background(), tt.in)
				if err != nil {
					t.Fatal(err)
				}
				e, err := NewEngine(mk(), cfg.opt)
				if err != nil {
					t.Fatal(err)
				}
				defer e.Close()
				c, err := e.NewContext()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				for run := 0; run < 3; run++ {
					got, err := c.Run(context.Background(), tt.in)
					if err != nil {
						t.Fatal(err)
					}
					if cfg.opt.FP16 {
						if cos, rel := cosine(got["out"], want["out"]); !(cos >= minCosine) {
							t.Errorf("run %d: fp16 cosine similarity %.6f < %g (relative L2 error %.3g)", run, cos, minCosine, rel)
						}
						continue
					}
					compareFloat32(t, fmt.Sprintf("run %d", run), got["out"], want["out"], rtol, atol)
				}
			})
		}
	}
}

// TestGPUTiming times the CNN models on the GPU (graph replay, with and
// without cuDNN/cuBLASLt, and without graphs) and on the CPU; it runs
// only with KILN_GPU_TIMING=1 and writes a table to $KILN_GPU_TIMING_OUT.
func TestGPUTiming(t *testing.T) {
	if os.Getenv("KILN_GPU_TIMING") != "1" {
		t.Skip("set KILN_GPU_TIMING=1 to time the models")
	}
	needGPU(t)
	fp, _ := cuda.Probe(cuda.Options{})
	var rows []string
	rows = append(rows, "GPU: "+fp.String(), "",
		"| model | input | GPU libs+graph ms | GPU libs, no graph ms | GPU own kernels+graph ms | GPU fp16 libs+graph ms | CPU ms | CPU/GPU |",
		"| --- | --- | --- | --- | --- | --- | --- | --- |")
	median := func(n int, f func()) float64 {
		var d []float64
		for range n {
			s := time.Now()
			f()
			d = append(d, float64(time.Since(s).Microseconds())/1000)
		}
		sort.Float64s(d)
		return d[len(d)/2]
	}
	for _, mb := range []struct {
		model string
		batch int // 0: the test inputs
	}{{"resnet_mini", 1}, {"resnet_mini", 32}, {"mobilenet_v2", 1}, {"mobilenet_v2", 32}, {"squeezenet1_1", 1}, {"squeezenet1_1", 32}, {"bert_mini", 0}, {"yolo_tiny", 1}, {"yolo_tiny", 32}} {
		model, batch := mb.model, mb.batch
		{
			path := modelPath(t, model)
			in := testInputs(t, model)
			if batch > 0 {
				in = randomImages(t, model, batch, 5)
			}
			gpu := func(opt Options) float64 {
				e, err := NewEngine(optimizedGraph(t, path, in), opt)
				if err != nil {
					t.Fatal(err)
				}
				defer e.Close()
				c, err := e.NewContext()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				for range 5 {
					if _, err := c.Run(context.Background(), in); err != nil {
						t.Fatal(err)
					}
				}
				return median(50, func() {
					if _, err := c.Run(context.Background(), in); err != nil {
						t.Fatal(err)
					}
				})
			}
			libs := gpu(Options{})
			eager := gpu(Options{NoGraphs: true})
			own := gpu(Options{NoCUDNN: true, NoCUBLASLt: true})
			half := gpu(Options{FP16: true})
			m := loadCPU(t, path)
			for range 2 {
				m(in)
			}
			cpu := median(5, func() { m(in) })
			var shapes []string
			for n, x := range in {
				shapes = append(shapes, n+" "+tensor.ShapeString(x.Shape))
			}
			sort.Strings(shapes)
			shape := strings.Join(shapes, ", ")
			rows = append(rows, fmt.Sprintf("| %s | %s | %.3f | %.3f | %.3f | %.3f | %.2f | %.1f |", model, shape, libs, eager, own, half, cpu, cpu/libs))
		}
	}
	table := strings.Join(rows, "\n") + "\n"
	t.Log("\n" + table)
	if p := os.Getenv("KILN_GPU_TIMING_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// TestLayersOnGPU compares every intermediate value of the optimized
// models with the CPU engine running the same optimized graph, and names
// the first node whose output differs (a debugging aid for the end-to-end
// tests above).
func TestLayersOnGPU(t *testing.T) {
	needGPU(t)
	for _, model := range []string{"resnet_mini", "mobilenet_v2", "bert_mini", "yolo_tiny"} {
		for _, cfg := range configs {
			t.Run(model+"/"+cfg.name, func(t *testing.T) {
				path := modelPath(t, model)
				in := testInputs(t, model)
				if model != "bert_mini" {
					in = randomImages(t, model, 2, 9)
				}
				cg := optimizedGraph(t, path, in)
				ce, err := engine.New(cg)
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]*tensor.Tensor{}
				var order []string
				if _, err := ce.RunObserved(context.Background(), in, func(v *ir.Value, x *tensor.Tensor) {
					want[v.Name] = x.Clone()
					order = append(order, v.Name)
				}); err != nil {
					t.Fatal(err)
				}
				opt := cfg.opt
				opt.KeepValues, opt.NoGraphs, opt.SyncEachLayer = true, true, true
				e, err := NewEngine(optimizedGraph(t, path, in), opt)
				if err != nil {
					t.Fatal(err)
				}
				defer e.Close()
				c, err := e.NewContext()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Run(context.Background(), in); err != nil {
					t.Fatal(err)
				}
				checked := 0
				for _, name := range order {
					w := want[name]
					if w.DType != tensor.Float32 {
						continue
					}
					got, err := c.Value(name)
					if err != nil {
						continue // folded or aliased away
					}
					checked++
					if d, bad := worstDiff(got, w); bad > 0 {
						t.Fatalf("first differing value %q (%d elements off, largest difference %g, shape %v); layers: %v", name, bad, d, w.Shape, e.Layers())
					}
				}
				t.Logf("%d intermediate values match", checked)
			})
		}
	}
}

// worstDiff returns the largest difference and the number of elements
// outside the tolerance.
func worstDiff(got, want *tensor.Tensor) (float64, int) {
	if len(got.Data) != len(want.Data) {
		return 0, len(want.Float32s()) + 1
	}
	g, w := got.Float32s(), want.Float32s()
	worst, bad := 0.0, 0
	for i := range w {
		d := float64(g[i]) - float64(w[i])
		if d < 0 {
			d = -d
		}
		ad := float64(w[i])
		if ad < 0 {
			ad = -ad
		}
		if d != d || d > atol+rtol*ad {
			bad++
		}
		if d > worst || d != d {
			worst = d
		}
	}
	return worst, bad
}
