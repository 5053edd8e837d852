package gpuexec

import (
	"context"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// The INT8 tests' shared helpers: the scales kiln build hands the
// executor (the GPU tests take them from the builder, not from a
// calibration of their own), the check of tactics applied from a plan,
// and what the external tests (int8build_test.go) need of expand_i8u2.

// builderInt8 is set by int8build_test.go (package gpuexec_test, which may
// import the builder: this package may not) to what kiln build --device
// cuda --int8 hands the executor for the ONNX model (device.ExecOptions.
// Int8Scales: each quantized convolution's input scale by node name, the
// values' own under Int8ValueKey), calibrated with method ("": entropy) on
// batches, built without a GPU.
var builderInt8 func(t testing.TB, model []byte, batches []map[string]*tensor.Tensor, method string) map[string]float32

// SetBuilderInt8 sets builderInt8 (from int8build_test.go's init).
func SetBuilderInt8(f func(t testing.TB, model []byte, batches []map[string]*tensor.Tensor, method string) map[string]float32) {
	builderInt8 = f
}

// builtInt8Scales returns the INT8 scales kiln build --device cuda --int8
// hands the executor for src (the model before optimization, its inputs
// at the calibration batches' shapes), calibrated on batches with method
// ("": entropy), through the builder (builderInt8). Every key must name a
// node or, under Int8ValueKey, a value of g (the optimized graph the
// test's engine runs): the builder's optimized graph and the test's must
// name them alike, else the test fails here rather than silently running
// layers without their scales.
func builtInt8Scales(t testing.TB, src, g *ir.Graph, batches []map[string]*tensor.Tensor, method string) map[string]float32 {
	t.Helper()
	if builderInt8 == nil {
		t.Fatal("builderInt8 is not set (int8build_test.go's init)")
	}
	m, err := onnx.FromGraph(src, "kiln")
	if err != nil {
		t.Fatal(err)
	}
	scales := builderInt8(t, m.Marshal(), batches, method)
	nodes, values := map[string]bool{}, map[string]bool{}
	for _, n := range g.Nodes {
		nodes[n.Name] = true
		for _, v := range n.Outputs {
			if v != nil {
				values[v.Name] = true
			}
		}
	}
	for _, v := range g.Inputs {
		values[v.Name] = true
	}
	var missing []string
	convs := 0
	for k := range scales {
		if name, ok := strings.CutPrefix(k, Int8ValueKey("")); ok {
			if !values[name] {
				missing = append(missing, k)
			}
		} else if convs++; !nodes[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Fatalf("the builder's INT8 scales name %d layers or values the test's graph lacks: %v", len(missing), missing)
	}
	t.Logf("kiln build's INT8 scales: %d convolutions' input scales, %d values'", convs, len(scales)-convs)
	return scales
}

// convScales returns scales without the values' own (Int8ValueKey): the
// convolutions' input scales alone.
func convScales(scales map[string]float32) map[string]float32 {
	out := map[string]float32{}
	for k, s := range scales {
		if !strings.HasPrefix(k, Int8ValueKey("")) {
			out[k] = s
		}
	}
	return out
}

// checkApplied builds g again against the fake libraries with the tactics
// a tuned engine picked applied (Options.Tactics, no timing): nothing is
// measured, the tactics are picked's, want steps run quantized the way
// is says (expand_i8u2, an FP8 product), and the engine runs on in.
func checkApplied(t *testing.T, dir string, g *ir.Graph, scales map[string]float32, picked Tactics, in map[string]*tensor.Tensor,
	what string, is func(*int8Conv) bool, want int) {
	t.Helper()
	ea, ca := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tactics: picked})
	if ea.Measured() != 0 || !reflect.DeepEqual(ea.Tactics(), picked) {
		t.Errorf("applied: measured %d, tactics equal %v", ea.Measured(), reflect.DeepEqual(ea.Tactics(), picked))
	}
	n := 0
	for _, q := range ea.int8.use {
		if is(q) {
			n++
		}
	}
	if n != want {
		t.Errorf("applied: %d layers %s, want %d", n, what, want)
	}
	if _, err := ca.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
}

// ExpandLayer is a layer an engine runs as expand_i8u2: its node, and
// whether it reads its input and residual and writes its output in 8 bits.
type ExpandLayer struct {
	Name              string
	In8, Resid8, Out8 bool
}

// FakeExpandI8u replaces expand_i8u2's module with the quantizing kernel
// for the rest of the test (the fake libraries have no sm_90a module;
// nothing is computed) and returns a function giving the layers the last
// engine that loaded the module runs as expand_i8u2, in step order (the
// engine must still be open).
func FakeExpandI8u(t *testing.T) func() []ExpandLayer {
	var last *Engine
	i8xLoadHook = func(e *Engine, st *i8xState) error {
		last = e
		st.fn, st.dq, st.sms = e.int8.fns["int8"], e.int8.fns["int8"], 132
		return nil
	}
	t.Cleanup(func() { i8xLoadHook = nil })
	return func() []ExpandLayer {
		if last == nil {
			return nil
		}
		var out []ExpandLayer
		for i := range last.prog.steps {
			if q := last.int8.use[i]; q != nil && q.x8 != nil {
				out = append(out, ExpandLayer{q.name, q.in8, q.x8.z8, q.out8})
			}
		}
		return out
	}
}

// BottleneckBodyAt is bottleneckBodyAt (op_conv1x1_i8x_gpu_test.go) for
// the external tests.
var BottleneckBodyAt = bottleneckBodyAt

// TestBuiltInt8Scales runs, without a GPU, what the INT8 GPU tests do to
// get their scales (builtInt8Scales: kiln build --device cuda --int8 through
// the builder, every key checked against the test's own optimized graph):
// on resnet_mini (int8Rule's models) every convolution but the first
// (3 input channels) gets an input scale and no value its own; on four
// bottleneck stages (TestInt8ExpandOnGPU's body, small) every convolution
// gets one, and the values are exactly the four downsamples' outputs and
// the last block's output.
func TestBuiltInt8Scales(t *testing.T) {
	body := func(batch int) *ir.Graph { return bottleneckBodyAt(rand.New(rand.NewPCG(7, 8)), batch, 4, 16) }
	for _, tt := range []struct {
		name         string
		src, g       func(t *testing.T, in map[string]*tensor.Tensor) *ir.Graph
		in           func() map[string]*tensor.Tensor
		convs, first int // convolutions in g; those without an input scale
		values       func(g *ir.Graph) []string
	}{
		{"resnet_mini",
			func(t *testing.T, in map[string]*tensor.Tensor) *ir.Graph {
				return graphAt(t, modelPath(t, "resnet_mini"), in, 0)
			},
			func(t *testing.T, in map[string]*tensor.Tensor) *ir.Graph {
				return optimizedGraph(t, modelPath(t, "resnet_mini"), in)
			},
			func() map[string]*tensor.Tensor { return testInputs(t, "resnet_mini") },
			-1, 1, func(*ir.Graph) []string { return nil }},
		{"bottleneck stages",
			func(t *testing.T, in map[string]*tensor.Tensor) *ir.Graph { return body(2) },
			func(t *testing.T, in map[string]*tensor.Tensor) *ir.Graph {
				g := body(2)
				if err := optimize.Run(g, 2, nil); err != nil {
					t.Fatal(err)
				}
				return g
			},
			func() map[string]*tensor.Tensor {
				return map[string]*tensor.Tensor{"input": variedMaps(rand.New(rand.NewPCG(1, 2)), 2, 64, 16, 16)}
			},
			16*3 + 4, 0, func(g *ir.Graph) []string {
				var out []string
				for _, n := range g.Nodes {
					if n.OpType == "FusedConv" && n.Input(3) != nil && n.Input(3).Producer != nil &&
						n.Input(3).Producer.OpType == "FusedConv" && n.Input(3).Producer.Input(3) == nil {
						out = append(out, n.Input(3).Name) // a downsample's output
					}
					if n.OpType == "GlobalAveragePool" {
						out = append(out, n.Input(0).Name)
					}
				}
				return out
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in()
			g := tt.g(t, in)
			scales := builtInt8Scales(t, tt.src(t, in), g, []map[string]*tensor.Tensor{in}, "")
			convs := 0
			for _, n := range g.Nodes {
				if strings.Contains(n.OpType, "Conv") {
					convs++
				}
			}
			if tt.convs >= 0 && convs != tt.convs {
				t.Fatalf("%d convolutions in the graph, want %d", convs, tt.convs)
			}
			if n := len(convScales(scales)); n != convs-tt.first {
				t.Errorf("%d of %d convolutions get input scales, want %d", n, convs, convs-tt.first)
			}
			var values []string
			for k, s := range scales {
				if !(s > 0) {
					t.Errorf("%s: scale %g", k, s)
				}
				if name, ok := strings.CutPrefix(k, Int8ValueKey("")); ok {
					values = append(values, name)
				}
			}
			slices.Sort(values)
			want := tt.values(g)
			slices.Sort(want)
			if !slices.Equal(values, want) {
				t.Errorf("value scales for %v, want %v", values, want)
			}
		})
	}
}

// agreement is how engines' logits compare with float32's on the CPU
// (evalAgainstCPU).
type agreement struct {
	top1   map[string]int     // inputs whose top-1 class is float32's, by label
	relSum map[string]float64 // the relative L2 errors of the logits, summed over the batches, by label
	total  int                // inputs
}

// pct is label's top-1 agreement with float32 in percent.
func (a agreement) pct(label string) float64 { return 100 * float64(a.top1[label]) / float64(a.total) }

// evalAgainstCPU runs batches of gen(batch) (input in), up to images
// inputs, through the float32 CPU engine ref and each label's context in
// ctxs, and counts the inputs whose top-1 class agrees with float32's and
// sums the logits' relative L2 errors. For the first batch it logs the
// CPU's time and, by label, the cosine and relative L2 of the logits to
// float32's and the cosine of their differences from the batch mean
// (centeredCosine); each, when not nil, gets that centered cosine for
// every label and batch (b: the batch's first input).
func evalAgainstCPU(t *testing.T, ref *engine.Engine, in string, gen func(int) *tensor.Tensor, batch, images int,
	labels []string, ctxs map[string]*Context, each func(label string, b int, ccos float64)) agreement {
	t.Helper()
	a := agreement{top1: map[string]int{}, relSum: map[string]float64{}}
	for b := 0; b < images; b += batch {
		x := map[string]*tensor.Tensor{in: gen(batch)}
		st := time.Now()
		want, err := ref.Run(context.Background(), x)
		if err != nil {
			t.Fatal(err)
		}
		if b == 0 {
			t.Logf("float32 CPU reference: %.1f s a batch of %d", time.Since(st).Seconds(), batch)
		}
		var outName string
		for n := range want {
			outName = n
		}
		wt := want[outName]
		classes := wt.Len() / batch
		for _, label := range labels {
			out, err := ctxs[label].Run(context.Background(), x)
			if err != nil {
				t.Fatalf("%s: %v", label, err)
			}
			got := out[outName]
			for i := range batch {
				if argmax(got, i*classes, classes) == argmax(wt, i*classes, classes) {
					a.top1[label]++
				}
			}
			cos, rel := cosine(got, wt)
			a.relSum[label] += rel
			ccos := centeredCosine(got, wt, batch, classes)
			if each != nil {
				each(label, b, ccos)
			}
			if b == 0 {
				t.Logf("%s against float32 (CPU), first batch: cosine %.6f, relative L2 %.4f; differences from the batch mean: cosine %.4f", label, cos, rel, ccos)
			}
		}
		a.total += batch
	}
	return a
}
