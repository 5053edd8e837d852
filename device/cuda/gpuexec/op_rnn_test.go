package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// rnnCase is one recurrent node of rnnCases: the op, its shapes (S steps,
// B batch items, I inputs, H hidden units) and attributes, which optional
// inputs it has and which outputs the graph reads.
type rnnCase struct {
	op          string // RNN, GRU, LSTM
	dir         string // forward, reverse, bidirectional
	layout      int
	S, B, I, H  int
	bias        bool
	lens        []int64 // sequence_lens (nil: none)
	lensInput   bool    // sequence_lens an int32 graph input, else an int64 constant
	h0, c0, p   bool    // initial_h, initial_c, peepholes
	clip        float32
	inputForget bool
	lbr         bool
	acts        []string
	alpha, beta []float32
	outs        []int // the outputs the graph reads (nil: all)
}

func (rc rnnCase) name() string {
	s := fmt.Sprintf("%s %s layout %d S%d B%d I%d H%d", rc.op, rc.dir, rc.layout, rc.S, rc.B, rc.I, rc.H)
	add := func(on bool, what string) {
		if on {
			s += " " + what
		}
	}
	add(rc.bias, "bias")
	add(rc.lens != nil, "sequence_lens")
	add(rc.h0, "initial_h")
	add(rc.c0, "initial_c")
	add(rc.p, "peepholes")
	add(rc.clip > 0, fmt.Sprintf("clip %g", rc.clip))
	add(rc.inputForget, "input_forget")
	add(rc.lbr, "linear_before_reset")
	add(rc.acts != nil, strings.Join(rc.acts, ","))
	add(rc.outs != nil, fmt.Sprintf("outputs %v", rc.outs))
	return s
}

// rnnTable is the cases TestRNNOnGPU checks: each attribute, every
// direction and layout, batch 1 and 7, hidden 1, 64 and 256, the optional
// inputs, any output omitted.
var rnnTable = []rnnCase{
	{op: "LSTM", dir: "forward", S: 5, B: 1, I: 3, H: 1},
	{op: "LSTM", dir: "forward", S: 6, B: 7, I: 40, H: 64, bias: true},
	{op: "LSTM", dir: "bidirectional", S: 12, B: 7, I: 96, H: 256, bias: true, lens: []int64{12, 1, 7, 12, 3, 9, 5}, lensInput: true},
	{op: "LSTM", dir: "reverse", layout: 1, S: 6, B: 7, I: 33, H: 64, bias: true, h0: true, c0: true, p: true, outs: []int{1, 2}},
	{op: "LSTM", dir: "forward", S: 7, B: 1, I: 64, H: 64, bias: true, clip: 0.5, inputForget: true, p: true},
	{op: "LSTM", dir: "bidirectional", layout: 1, S: 5, B: 7, I: 4, H: 1, lens: []int64{5, 2, 1, 4, 5, 3, 0}, h0: true, c0: true, outs: []int{0, 2}},
	{op: "LSTM", dir: "forward", S: 6, B: 7, I: 20, H: 64, bias: true, acts: []string{"Sigmoid", "Softsign", "Softplus"}},
	{op: "LSTM", dir: "bidirectional", S: 5, B: 1, I: 20, H: 64, bias: true, acts: []string{"HardSigmoid", "ScaledTanh", "Elu"},
		alpha: []float32{0.25, 0.9, 0.8, 0.3}, beta: []float32{0.45, 1.1}},
	{op: "LSTM", dir: "bidirectional", layout: 1, S: 7, B: 19, I: 48, H: 64, bias: true, p: true, h0: true,
		lens: []int64{7, 1, 2, 3, 4, 5, 6, 7, 7, 6, 5, 4, 3, 2, 1, 7, 7, 5, 3}},
	{op: "GRU", dir: "forward", S: 5, B: 1, I: 3, H: 1},
	{op: "GRU", dir: "bidirectional", S: 6, B: 9, I: 24, H: 64, bias: true, lbr: true, h0: true, lens: []int64{6, 5, 4, 3, 2, 1, 6, 6, 3}},
	{op: "GRU", dir: "bidirectional", S: 10, B: 7, I: 70, H: 256, bias: true, lens: []int64{10, 4, 1, 10, 7, 2, 9}},
	{op: "GRU", dir: "reverse", layout: 1, S: 6, B: 7, I: 30, H: 64, bias: true, h0: true, clip: 0.8, lbr: true},
	{op: "GRU", dir: "bidirectional", S: 6, B: 1, I: 16, H: 64, bias: true, lbr: true, lens: []int64{4}, outs: []int{1}},
	{op: "GRU", dir: "forward", layout: 1, S: 6, B: 7, I: 16, H: 64, bias: true, acts: []string{"HardSigmoid", "Affine"},
		alpha: []float32{0.3, 0.6}, beta: []float32{0.4, 0.1}},
	{op: "RNN", dir: "forward", S: 5, B: 1, I: 3, H: 1},
	{op: "RNN", dir: "bidirectional", S: 9, B: 7, I: 50, H: 256, bias: true, lens: []int64{9, 3, 8, 1, 9, 6, 2}, h0: true},
	{op: "RNN", dir: "reverse", layout: 1, S: 6, B: 7, I: 24, H: 64, bias: true, clip: 1.2, acts: []string{"Relu"}, outs: []int{0}},
	{op: "RNN", dir: "bidirectional", S: 6, B: 7, I: 12, H: 64, bias: true, acts: []string{"LeakyRelu", "ThresholdedRelu"},
		alpha: []float32{0.2, 0.05}},
	{op: "RNN", dir: "forward", S: 6, B: 1, I: 12, H: 64, acts: []string{"Softsign"}, h0: true},
	{op: "RNN", dir: "reverse", S: 6, B: 17, I: 12, H: 256, bias: true, lens: []int64{6, 1, 2, 3, 4, 5, 6, 6, 6, 5, 4, 3, 2, 1, 6, 6, 3}},
}

// opCase makes the graph of rc: X (and sequence_lens when lensInput) as
// graph inputs, the weights constants scaled to keep the gates out of
// saturation.
func (rc rnnCase) opCase(seed uint64) opCase {
	r := rand.New(rand.NewPCG(seed, 77))
	rnd := func(scale float64, shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64() * scale)
		}
		return x
	}
	gates := map[string]int{"RNN": 1, "GRU": 3, "LSTM": 4}[rc.op]
	dirs := 1
	if rc.dir == "bidirectional" {
		dirs = 2
	}
	xs := []int{rc.S, rc.B, rc.I}
	st := []int{dirs, rc.B, rc.H}
	if rc.layout == 1 {
		xs = []int{rc.B, rc.S, rc.I}
		st = []int{rc.B, dirs, rc.H}
	}
	in := []*tensor.Tensor{rnd(1, xs...)}
	var lensT *tensor.Tensor
	if rc.lens != nil {
		if rc.lensInput {
			lensT = tensor.New(tensor.Int32, rc.B)
			for i, v := range rc.lens {
				lensT.Int32s()[i] = int32(v)
			}
			in = append(in, lensT)
		} else {
			lensT = tensor.FromInt64(append([]int64{}, rc.lens...), rc.B)
		}
	}
	w := rnd(1/math.Sqrt(float64(max(rc.I, 1))), dirs, gates*rc.H, rc.I)
	rw := rnd(1/math.Sqrt(float64(rc.H)), dirs, gates*rc.H, rc.H)
	var b, h0, c0, p *tensor.Tensor
	if rc.bias {
		b = rnd(0.3, dirs, 2*gates*rc.H)
	}
	if rc.h0 {
		h0 = rnd(0.5, st...)
	}
	if rc.c0 {
		c0 = rnd(0.5, st...)
	}
	if rc.p {
		p = rnd(0.3, dirs, 3*rc.H)
	}
	attrs := []*ir.Attr{ir.IntAttr("hidden_size", int64(rc.H)), ir.StringAttr("direction", rc.dir), ir.IntAttr("layout", int64(rc.layout))}
	if rc.clip > 0 {
		attrs = append(attrs, ir.FloatAttr("clip", rc.clip))
	}
	if rc.inputForget {
		attrs = append(attrs, ir.IntAttr("input_forget", 1))
	}
	if rc.lbr {
		attrs = append(attrs, ir.IntAttr("linear_before_reset", 1))
	}
	if rc.acts != nil {
		attrs = append(attrs, &ir.Attr{Name: "activations", Type: ir.AttrStrings, Strings: rc.acts})
	}
	if rc.alpha != nil {
		attrs = append(attrs, &ir.Attr{Name: "activation_alpha", Type: ir.AttrFloats, Floats: rc.alpha})
	}
	if rc.beta != nil {
		attrs = append(attrs, &ir.Attr{Name: "activation_beta", Type: ir.AttrFloats, Floats: rc.beta})
	}
	nOut := 2
	if rc.op == "LSTM" {
		nOut = 3
	}
	return opCase{name: rc.name(), in: in, build: func(bd *ir.Builder, x []*ir.Value) []*ir.Value {
		opt := func(name string, t *tensor.Tensor) *ir.Value {
			if t == nil {
				return nil
			}
			return bd.Const(name, t)
		}
		var lv *ir.Value
		switch {
		case rc.lensInput:
			lv = x[1]
		case lensT != nil:
			lv = bd.Const("lens", lensT)
		}
		ins := []*ir.Value{x[0], bd.Const("w", w), bd.Const("r", rw), opt("b", b), lv, opt("h0", h0)}
		if rc.op == "LSTM" {
			ins = append(ins, opt("c0", c0), opt("p", p))
		}
		for len(ins) > 3 && ins[len(ins)-1] == nil {
			ins = ins[:len(ins)-1]
		}
		ys := bd.OpN(rc.op, nOut, ins, attrs...)
		if rc.outs == nil {
			return ys
		}
		var sel []*ir.Value
		for _, i := range rc.outs {
			sel = append(sel, ys[i])
		}
		return sel
	}}
}

// rnnOpCases are rnnTable's cases as opCases.
func rnnOpCases() []opCase {
	var cs []opCase
	for i, rc := range rnnTable {
		cs = append(cs, rc.opCase(uint64(100+i)))
	}
	return cs
}

// TestRNNCompile checks, without a GPU, what TestRNNOnGPU needs of each
// case of rnnTable: the CPU engine runs it, Supports accepts the node, and
// the compiler makes a program of known kernels within their buffers in
// float32 and float16, the input projections by the tiled kernel and the
// steps by the batch-tiled ones from batch rnnBatchTileFrom, the plain ones
// below it.
func TestRNNCompile(t *testing.T) {
	for i, tc := range rnnOpCases() {
		rc := rnnTable[i]
		t.Run(tc.name, func(t *testing.T) {
			g, in := opGraph(t, tc)
			ce, err := engine.New(g.Clone())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ce.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			for _, n := range g.Nodes {
				if err := Supports(n, g); err != nil {
					t.Fatalf("Supports(%s): %v", n.OpType, err)
				}
			}
			for _, half := range []bool{false, true} {
				p, err := compile(g, false, half)
				if err != nil {
					t.Fatalf("half %v: %v", half, err)
				}
				checkProgram(t, p)
				sfx := map[bool]string{false: "f32", true: "f16"}[half]
				if !p.kernels["rnn_proj_tiled_"+sfx] || p.kernels["rnn_proj_"+sfx] {
					t.Errorf("half %v: kernels %v, want rnn_proj_tiled_%s for the projections", half, p.kernels, sfx)
				}
				tiled := rc.B >= rnnBatchTileFrom
				for k := range p.kernels {
					if step := strings.Contains(k, "_step_") || strings.HasPrefix(k, "gru_gates_"); step && strings.Contains(k, "_bt_") != tiled {
						t.Errorf("half %v: kernel %s at batch %d, want the batch-tiled steps %v (from batch %d)", half, k, rc.B, tiled, rnnBatchTileFrom)
					}
				}
			}
		})
	}
}

// TestRNNActivationParams checks how parseRNN hands activation_alpha and
// activation_beta out: in order to the activations that take them, the
// second direction's after the first's, ONNX's defaults after they run
// out, as ops/nn's RNN does.
func TestRNNActivationParams(t *testing.T) {
	type act struct {
		id     int64
		al, be float32
	}
	tests := []struct {
		name        string
		op, dir     string
		acts        []string
		alpha, beta []float32
		want        []act // per direction, three each (unused ones tanh)
	}{
		{"defaults", "LSTM", "forward", nil, nil, nil, []act{{0, 0, 0}, {1, 0, 0}, {1, 0, 0}}},
		{"GRU HardSigmoid both directions from one list", "GRU", "bidirectional", []string{"HardSigmoid", "Tanh"}, []float32{0.3, 0.4}, nil,
			[]act{{9, 0.3, 0.5}, {1, 0, 0}, {1, 0, 0}, {9, 0.4, 0.5}, {1, 0, 0}, {1, 0, 0}}},
		{"LSTM mixed, alphas run out", "LSTM", "forward", []string{"LeakyRelu", "Affine", "Elu"}, []float32{0.2, 3}, []float32{0.7},
			[]act{{6, 0.2, 0}, {5, 3, 0.7}, {10, 1, 0}}},
		{"RNN ScaledTanh and ThresholdedRelu", "RNN", "bidirectional", []string{"scaledtanh", "ThresholdedRelu"}, nil, []float32{2},
			[]act{{8, 1, 2}, {1, 0, 0}, {1, 0, 0}, {7, 1, 0}, {1, 0, 0}, {1, 0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs := []*ir.Attr{ir.IntAttr("hidden_size", 2), ir.StringAttr("direction", tt.dir)}
			if tt.acts != nil {
				attrs = append(attrs, &ir.Attr{Name: "activations", Type: ir.AttrStrings, Strings: tt.acts})
			}
			if tt.alpha != nil {
				attrs = append(attrs, &ir.Attr{Name: "activation_alpha", Type: ir.AttrFloats, Floats: tt.alpha})
			}
			if tt.beta != nil {
				attrs = append(attrs, &ir.Attr{Name: "activation_beta", Type: ir.AttrFloats, Floats: tt.beta})
			}
			am := map[string]*ir.Attr{}
			for _, at := range attrs {
				am[at.Name] = at
			}
			r, err := parseRNN(&ir.Node{OpType: tt.op, Attrs: am}, 18)
			if err != nil {
				t.Fatal(err)
			}
			var got []act
			for d := 0; d < len(r.acts)/9; d++ {
				a := r.acts[9*d:]
				for k := range 3 {
					got = append(got, act{a[k], math.Float32frombits(uint32(a[3+k])), math.Float32frombits(uint32(a[6+k]))})
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("activations %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRNNRefuses checks what Supports leaves to the CPU, with the reason:
// types without kernels, and the activations with alpha and beta while
// they are marked unchecked (rnnParamActsUnchecked, set by each case) and
// KILN_CUDA_UNVERIFIED is not 1.
func TestRNNRefuses(t *testing.T) {
	f := func(dt tensor.DType, shape ...int) *tensor.Tensor { return tensor.New(dt, shape...) }
	tests := []struct {
		name       string
		dt         tensor.DType
		unverified string
		unchecked  bool // rnnParamActsUnchecked
		build      func(b *ir.Builder, x *ir.Value) *ir.Value
		want       string // "" accepted
	}{
		{"LSTM of float64", tensor.Float64, "1", false, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.OpN("LSTM", 3, []*ir.Value{x, b.Const("w", f(tensor.Float64, 1, 16, 2)), b.Const("r", f(tensor.Float64, 1, 16, 4))},
				ir.IntAttr("hidden_size", 4))[0]
		}, "LSTM of opset 17 computes input 0 of float32 on CUDA, not float64"},
		{"GRU of float16", tensor.Float16, "1", false, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.OpN("GRU", 2, []*ir.Value{x, b.Const("w", f(tensor.Float16, 1, 12, 2)), b.Const("r", f(tensor.Float16, 1, 12, 4))},
				ir.IntAttr("hidden_size", 4))[0]
		}, "GRU of opset 17 computes input 0 of float32 on CUDA, not float16"},
		{"RNN Affine unchecked", tensor.Float32, "", true, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.OpN("RNN", 2, []*ir.Value{x, b.Const("w", f(tensor.Float32, 1, 4, 2)), b.Const("r", f(tensor.Float32, 1, 4, 4))}, ir.IntAttr("hidden_size", 4),
				&ir.Attr{Name: "activations", Type: ir.AttrStrings, Strings: []string{"Affine"}}, &ir.Attr{Name: "activation_alpha", Type: ir.AttrFloats, Floats: []float32{0.5}})[0]
		}, "has not been checked on a GPU yet"},
		{"RNN Affine checked", tensor.Float32, "", false, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.OpN("RNN", 2, []*ir.Value{x, b.Const("w", f(tensor.Float32, 1, 4, 2)), b.Const("r", f(tensor.Float32, 1, 4, 4))}, ir.IntAttr("hidden_size", 4),
				&ir.Attr{Name: "activations", Type: ir.AttrStrings, Strings: []string{"Affine"}}, &ir.Attr{Name: "activation_alpha", Type: ir.AttrFloats, Floats: []float32{0.5}})[0]
		}, ""},
		{"RNN Affine unchecked with KILN_CUDA_UNVERIFIED=1", tensor.Float32, "1", true, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.OpN("RNN", 2, []*ir.Value{x, b.Const("w", f(tensor.Float32, 1, 4, 2)), b.Const("r", f(tensor.Float32, 1, 4, 4))}, ir.IntAttr("hidden_size", 4),
				&ir.Attr{Name: "activations", Type: ir.AttrStrings, Strings: []string{"Affine"}}, &ir.Attr{Name: "activation_alpha", Type: ir.AttrFloats, Floats: []float32{0.5}})[0]
		}, ""},
		{"LSTM defaults unverified unset", tensor.Float32, "", true, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.OpN("LSTM", 3, []*ir.Value{x, b.Const("w", f(tensor.Float32, 1, 16, 2)), b.Const("r", f(tensor.Float32, 1, 16, 4))},
				ir.IntAttr("hidden_size", 4))[0]
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvUnverified, tt.unverified)
			defer func(u bool) { rnnParamActsUnchecked = u }(rnnParamActsUnchecked)
			rnnParamActsUnchecked = tt.unchecked
			b := ir.NewBuilder("refuse", 17)
			y := tt.build(b, b.Input("x", tt.dt, ir.D(3), ir.D(1), ir.D(2)))
			b.Output(y, "y")
			g := b.Graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			err := Supports(y.Producer, g)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Supports(%s): %v, want it accepted", y.Producer.OpType, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, device.ErrUnsupported)):
				t.Errorf("Supports(%s): %v, want device.ErrUnsupported saying %q", y.Producer.OpType, err, tt.want)
			}
		})
	}
}

// rnnNodeSuite loads the ONNX node tests of LSTM, GRU and RNN
// (test_lstm_*, test_gru_*, test_rnn_*, test_simple_rnn_*) that the CPU
// engine passes, skipping without the suite.
func rnnNodeSuite(t *testing.T) []*nodeCase {
	t.Helper()
	var dirs []string
	for _, pat := range []string{"test_lstm_*", "test_gru_*", "test_rnn_*", "test_simple_rnn_*"} {
		m, _ := filepath.Glob(filepath.Join(nodeSuiteDir(), pat))
		dirs = append(dirs, m...)
	}
	if len(dirs) == 0 {
		t.Skipf("needs the ONNX node tests in %s (Debian's onnx test data, /usr/share/libonnx-testdata; or set KILN_NODE_DIR)", nodeSuiteDir())
	}
	tmp := t.TempDir()
	for _, d := range dirs {
		if err := os.Symlink(d, filepath.Join(tmp, filepath.Base(d))); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("KILN_NODE_DIR", tmp)
	cases := nodeSuite(t)
	if len(cases) != len(dirs) {
		t.Errorf("the CPU engine passes %d of the %d recurrent node tests", len(cases), len(dirs))
	}
	return cases
}

// TestRNNNodeSuitePartitioned partitions the recurrent node tests as a
// cuda build does (hostExec: Supports deciding, each device segment
// compiled by the GPU compiler at the test's shapes in float32 and
// float16, computed by the CPU engine): every one must be entirely on the
// GPU, and still pass.
func TestRNNNodeSuitePartitioned(t *testing.T) {
	cases := rnnNodeSuite(t)
	onGPU := 0
	for _, nc := range cases {
		prog, r, err := partitionGuarded(nc.g, &hostExec{})
		if err != nil {
			t.Errorf("%s: %v", nc.name, err)
			continue
		}
		out, err := prog.Run(context.Background(), nc.in)
		prog.Close()
		switch {
		case err != nil:
			t.Errorf("%s: %v", nc.name, err)
		case !nc.check(out):
			t.Errorf("%s: outputs differ", nc.name)
		case len(r.Fallbacks) > 0:
			t.Errorf("%s falls back: %q", nc.name, r.Lines())
		default:
			onGPU++
		}
	}
	t.Logf("recurrent node tests: %d of %d entirely on the GPU", onGPU, len(cases))
}
