package gpuexec

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
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
