package gpuexec_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda/gpuexec"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

func init() { gpuexec.SetBuilderInt8(builderInt8) }

// captureCUDA is a device named "cuda" that runs graphs on kiln's CPU
// engine and keeps the options of its last compilation: what the builder
// hands the CUDA executor, without a GPU or the fake libraries.
type captureCUDA struct {
	mu   sync.Mutex
	last device.ExecOptions
}

func (*captureCUDA) Name() string { return "cuda" }

func (*captureCUDA) Fingerprint() (device.Fingerprint, error) {
	return device.Fingerprint{"device": "cuda (captured on the CPU)"}, nil
}

func (d *captureCUDA) Compile(g *ir.Graph, o device.ExecOptions) (device.Program, error) {
	d.mu.Lock()
	d.last = o
	d.mu.Unlock()
	e, err := engine.New(g)
	if err != nil {
		return nil, err
	}
	return cpuProgram{e}, nil
}

type cpuProgram struct{ e *engine.Engine }

func (p cpuProgram) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return p.e.Run(ctx, in)
}
func (cpuProgram) Close() error             { return nil }
func (cpuProgram) Blobs() map[string][]byte { return nil }

// builderInt8 is gpuexec's builderInt8 (int8helpers_test.go): model built
// with --int8 for captureCUDA, calibrated on batches written as
// --calib-data (test_data_set_N/input_0.pb; one input), method as
// --calib-method, untimed; the options the device got.
func builderInt8(t testing.TB, model []byte, batches []map[string]*tensor.Tensor, method string) map[string]float32 {
	t.Helper()
	dir := t.TempDir()
	for i, b := range batches {
		if len(b) != 1 {
			t.Fatalf("builderInt8 writes batches of one input, not %d", len(b))
		}
		sub := filepath.Join(dir, fmt.Sprintf("test_data_set_%d", i))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, x := range b {
			if err := os.WriteFile(filepath.Join(sub, "input_0.pb"), onnx.TensorToProto(name, x).Marshal(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := &captureCUDA{}
	set := device.Set{d}
	for _, x := range devices.All() {
		if x.Name() != "cuda" {
			set = append(set, x)
		}
	}
	res, err := build.BuildBytes(context.Background(), "int8", model, build.Options{Device: "cuda", Devices: set, Precision: build.INT8,
		CalibData: dir, CalibMethod: method, NoTiming: true})
	if err != nil {
		t.Fatal(err)
	}
	res.Close()
	if d.last.Precision != build.INT8 {
		t.Fatalf("the device compiled in %q", d.last.Precision)
	}
	return d.last.Int8Scales
}

// TestInt8ExpandBuildFake is kiln build --device cuda --int8 of two ResNet
// stages (bottleneckBody's first two: seven bottlenecks, here at 32x32 and
// batch 1, each stage's first block's residual from a downsample, the last
// block's output read by the pooling) against the fake libraries, with the
// 8-bit chains and expand_i8u2 (KILN_CUDA_INT8_CHAIN=1,
// KILN_CUDA_INT8_EXPAND=1, every quantized convolution in INT8:
// KILN_CUDA_INT8_ALL=1), untimed, and the plan loaded and run as a user
// does: the builder hands the value scales of the downsamples' outputs and
// the last output (the plan's section keeps them), so all seven expanding
// 1x1s run expand_i8u2, each stage's first reading its residual (the
// downsample's output) in 8 bits, the last widening its output for the
// pooling; and so do the second stage's four reducing 1x1s (128 outputs;
// the first stage's have 64), without a residual, reading and writing 8
// bits (the tactic the plan recorded rebuilds them), and the first stage's
// stride-1 downsample (bias, no ReLU). Before the builder
// handed value scales, only the blocks after each stage's first ran it.
func TestInt8ExpandBuildFake(t *testing.T) {
	fakeCUDA(t)
	layers := gpuexec.FakeExpandI8u(t)
	t.Setenv(gpuexec.EnvInt8All, "1")
	t.Setenv(gpuexec.EnvInt8Chain, "1")
	t.Setenv(gpuexec.EnvInt8Expand, "1")
	t.Setenv(gpuexec.EnvInt8GPool, "0")                                  // the last output widened for the pooling (reading INT8 instead: TestInt8GlobalPoolFake)
	g := gpuexec.BottleneckBodyAt(rand.New(rand.NewPCG(7, 8)), 1, 2, 32) // 1,024 and 256 rows: expand_i8u2's 128-row tiles fit
	var last string
	var down, downConv, expand, reduce []string
	for _, n := range g.Nodes {
		if n.OpType == "Add" { // the residual adds: the expanding 1x1 and the residual
			expand = append(expand, n.Inputs[0].Producer.Name)
			if p := n.Inputs[1].Producer; p != nil && p.OpType == "Conv" {
				down, downConv = append(down, n.Inputs[1].Name), append(downConv, p.Name)
			}
		}
		if n.OpType == "Relu" { // a reducing 1x1 (1x1 weights) with 128 outputs or more, then ReLU
			if p := n.Inputs[0].Producer; p != nil && p.OpType == "Conv" {
				if sh := p.Inputs[1].Const.Shape; sh[2] == 1 && sh[0] >= 128 {
					reduce = append(reduce, p.Name)
				}
			}
		}
		if n.OpType == "GlobalAveragePool" {
			last = n.Inputs[0].Name
		}
	}
	if len(expand) != 7 || len(reduce) != 4 || len(down) != 2 || last == "" {
		t.Fatalf("the body's expanding 1x1s %v, reducing 1x1s with 128 outputs %v, downsample outputs %q, last output %q", expand, reduce, down, last)
	}
	res, _ := buildCUDA(t, "bottlenecks", marshalGraph(t, g), build.Options{Precision: build.INT8, CalibBatches: 1, NoTiming: true},
		"INT8 on cuda: ", "3 values their own")
	var sec struct {
		Scales map[string]float32 `json:"scales"`
	}
	var blob []byte
	for _, b := range res.Blobs {
		if strings.HasSuffix(b.Name, "cuda.int8") {
			blob = b.Data
		}
	}
	if err := json.Unmarshal(blob, &sec); err != nil {
		t.Fatalf("the plan's cuda.int8 section: %v", err)
	}
	var values []string
	for k := range sec.Scales {
		if name, ok := strings.CutPrefix(k, gpuexec.Int8ValueKey("")); ok {
			values = append(values, name)
		}
	}
	if want := slices.Sorted(slices.Values(append(slices.Clone(down), last))); !slices.Equal(slices.Sorted(slices.Values(values)), want) {
		t.Errorf("the plan keeps value scales for %v, want %v", values, want)
	}
	m := loadPlan(t, res)
	if _, err := m.Run(context.Background(), map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, 1, 64, 32, 32)}); err != nil {
		t.Fatal(err)
	}
	got := layers()
	names := make([]string, len(got))
	for i, l := range got {
		names[i] = l.Name
	}
	// the first stage's downsample is stride 1 (bias only): it runs it too
	down1 := downConv[0]
	if want := slices.Sorted(slices.Values(append(slices.Clone(expand), append(reduce, down1)...))); !slices.Equal(slices.Sorted(slices.Values(names)), want) {
		t.Fatalf("the loaded plan runs expand_i8u2 on %v, want every expanding 1x1 %v, the reducing ones %v and the stride-1 downsample %s", names, expand, reduce, down1)
	}
	for _, l := range got {
		if l.Name == down1 { // reads the network's input (quantized), its output the residual's 8 bits
			if l.In8 || l.Resid8 || !l.Out8 {
				t.Errorf("downsample %s: input in 8 bits %v, residual %v, output %v; want false, false, true", l.Name, l.In8, l.Resid8, l.Out8)
			}
			continue
		}
		if slices.Contains(reduce, l.Name) {
			if !l.In8 || l.Resid8 || !l.Out8 {
				t.Errorf("reducing %s: input in 8 bits %v, residual %v, output %v; want true, false, true", l.Name, l.In8, l.Resid8, l.Out8)
			}
			continue
		}
		if want := l.Name != expand[len(expand)-1]; !l.In8 || !l.Resid8 || l.Out8 != want {
			t.Errorf("%s: input in 8 bits %v, residual %v, output %v; want true, true, %v", l.Name, l.In8, l.Resid8, l.Out8, want)
		}
	}
}

// marshalGraph returns g as an ONNX model.
func marshalGraph(t *testing.T, g *ir.Graph) []byte {
	t.Helper()
	m, err := onnx.FromGraph(g, "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

// TestInt8ChainTunedBuildFake is kiln build --device cuda --int8 as users
// run it (the builder's defaults: tactics timed, no variable set) of the
// same stage against the fake libraries (compute 9.0: the chains and
// expand_i8u2 on by default). The fake's events tie every engine, which
// keeps the tuned INT8 engine (tune.go, tuneChained): the plan's header
// gives every quantized convolution an INT8 tactic (cuDNN's INT8 graph or
// kiln-expand-i8u2), its int8 section records the chains, and the loaded
// plan runs the three expanding 1x1s (and the stride-1 downsample) as
// expand_i8u2 chained as the untuned engine does. A plan whose section lacks the record (written
// before the chains were on by default) loads too, without the chains:
// expand_i8u2 converts around itself.
func TestInt8ChainTunedBuildFake(t *testing.T) {
	fakeCUDA(t)
	layers := gpuexec.FakeExpandI8u(t)
	for _, k := range []string{gpuexec.EnvInt8All, gpuexec.EnvInt8Chain, gpuexec.EnvInt8Expand, gpuexec.EnvInt8Reduce, "KILN_CUDA_UNVERIFIED"} {
		t.Setenv(k, "")
	}
	g := gpuexec.BottleneckBodyAt(rand.New(rand.NewPCG(7, 8)), 1, 1, 16)
	convs := map[string]bool{}
	// the stride-1 downsample (bias only): by default cuDNN's INT8 graph
	// (expand_i8u2's form without ReLU has not run on a GPU yet)
	down := ""
	for _, n := range g.Nodes {
		if n.OpType == "Conv" {
			convs[n.Name] = true
		}
		if p := n.Inputs[len(n.Inputs)-1].Producer; n.OpType == "Add" && p != nil && p.OpType == "Conv" {
			down = p.Name
		}
	}
	res, _ := buildCUDA(t, "bottlenecks", marshalGraph(t, g), build.Options{Precision: build.INT8, CalibBatches: 1},
		"INT8 on cuda: ", "2 values their own")
	if len(res.Header.Tactics) == 0 {
		t.Fatal("the plan has no tactics")
	}
	quant := map[string]string{}
	for _, tt := range res.Header.Tactics[0] {
		if strings.HasPrefix(tt.Name, "cudnn-int8-graph:") || tt.Name == "kiln-expand-i8u2" {
			quant[tt.Layer] = tt.Name
		}
	}
	nx := 0
	for _, v := range quant {
		if v == "kiln-expand-i8u2" {
			nx++
		}
	}
	if len(quant) != len(convs) || nx != 3 || quant[down] == "kiln-expand-i8u2" {
		t.Errorf("the plan's INT8 tactics: %v (%d expand_i8u2), want every one of the %d convolutions, 3 expand_i8u2 (not the downsample %s)", quant, nx, len(convs), down)
	}
	var sec *plan.Blob
	for i := range res.Blobs {
		if strings.HasSuffix(res.Blobs[i].Name, "cuda.int8") {
			sec = &res.Blobs[i]
		}
	}
	if sec == nil || !strings.Contains(string(sec.Data), `"chain":true`) {
		t.Fatalf("the plan's cuda.int8 section does not record the chains: %v", sec)
	}
	in := map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, 1, 64, 16, 16)}
	check := func(what string, chained bool) {
		t.Helper()
		m := loadPlan(t, res)
		if _, err := m.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		got := slices.DeleteFunc(layers(), func(l gpuexec.ExpandLayer) bool {
			// the downsample reads the network's input, writes 8 bits for the residual when chained
			if l.Name == down && (l.In8 || l.Resid8 || l.Out8 != chained) {
				t.Errorf("%s: downsample %s: input, residual, output in 8 bits %v, %v, %v; want false, false, %v", what, l.Name, l.In8, l.Resid8, l.Out8, chained)
			}
			return l.Name == down
		})
		if len(got) != 3 {
			t.Fatalf("%s: expand_i8u2 runs %d layers with a residual, want 3", what, len(got))
		}
		for i, l := range got {
			want := [3]bool{chained, chained, chained && i < 2}
			if g := [3]bool{l.In8, l.Resid8, l.Out8}; g != want {
				t.Errorf("%s: %s: input, residual, output in 8 bits %v, want %v", what, l.Name, g, want)
			}
		}
	}
	check("the plan", true)
	// a plan from before the record: the section without "chain"
	var f map[string]json.RawMessage
	if err := json.Unmarshal(sec.Data, &f); err != nil {
		t.Fatal(err)
	}
	delete(f, "chain")
	old, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	sec.Data = old
	check("an older plan", false)
}
