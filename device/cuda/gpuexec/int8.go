package gpuexec

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/tensor"
)

// INT8 convolutions (issue 11).
//
// An INT8 engine is a half (FP16) NHWC engine in which the convolutions
// the builder's INT8 rule quantized (Options.Int8: node name -> the scale
// of the layer's input, calibrated amax/127) get one more tactic: the
// input quantized to INT8 NHWC by quantize_nhwc_i8 (channels padded to 16,
// round to nearest even, saturated to ±127) into the context's workspace,
// then cuDNN's INT8 graph convolution with INT32 accumulation and, in the
// same operation graph, the per-channel scale (input scale times the
// channel's weight scale), the float32 bias, the half residual and ReLU,
// written as half. The weights are quantized per output channel when the
// engine is made (symmetric, max|w|/127), from the graph's float32 weights.
//
// The same layer in FP8 E4M3 (Hopper; float32 accumulation) is a second
// quantized variant: input scale amax/448 (the INT8 one times 127/448),
// weights per output channel with max|w|/448, quantize_nhwc_f8. Where
// cuDNN cannot fuse the epilogue into a quantized graph, the graph
// computes the scaled convolution alone, written as half, and the layer's
// epilogue kernel (chan_epilogue_f16) runs after it ("-scaled" variants).
//
// With the 8-bit chains on (int8chain.go: by default on compute 9.0),
// values between quantized layers stay in 8 bits; untuned, every quantized
// layer runs INT8 (expand_i8u2 where it fits, else the INT8 graph's first
// engine); tuned (kiln build), each layer's INT8 engines are timed as
// chained and the whole engine against FP16 (int8tune.go). Without the
// chains, tuned, the quantized candidates are timed per layer against the
// FP16 ones (cuDNN's legacy and graph calls, cuBLASLt's 1x1 products,
// kiln's kernels) and the fastest runs: "cudnn-int8-graph:ID" (or fp8,
// int8-scaled, fp8-scaled) in the timing cache, Tactic.Quant in the plan;
// untuned, a quantized layer with a kernel larger than 1x1 runs the INT8
// graph's first engine (1x1 ones stay FP16, measured faster on an H100
// with their quantizing pass). A layer cuDNN cannot run quantized stays in
// FP16, as do the layers the rule left in float.

// EnvInt8All names the environment variable that, set to 1, makes an
// untuned INT8 engine run its 1x1 quantized convolutions in INT8 too, set
// to 0 keeps them FP16; by default they are INT8 where the 8-bit chains
// (int8chain.go) are on.
const EnvInt8All = "KILN_CUDA_INT8_ALL"

// int8Blob is the plan section holding an INT8 engine's input scales.
const int8Blob = "cuda.int8"

// quantKernels quantize a half NHWC tensor to padded 8-bit NHWC, by
// kind.
var quantKernels = map[string]string{"int8": "quantize_nhwc_i8", "fp8": "quantize_nhwc_f8"}

// quantKinds are the quantized variants tuning times, in order.
var quantKinds = []string{"int8", "fp8"}

// quantVariant splits a Tactic.Quant ("int8", "fp8", "int8-scaled",
// "fp8-scaled") into the kind and whether the epilogue kernel runs after
// the graph; ok is false for anything else.
func quantVariant(q string) (kind string, scaled, ok bool) {
	kind, scaled = strings.CutSuffix(q, "-scaled")
	_, ok = quantKernels[kind]
	return kind, scaled, ok
}

// int8Candidates bounds the quantized graph engines built per layer and
// kind while tuning, and int8Compiled the runtime-compiled ones among them
// (on an H100 with cuDNN 9.14 every INT8 and FP8 engine is: 0.3-0.7 s to
// build each); --opt-level 3 and above (Options.GraphConv) build up to
// int8Candidates.
const (
	int8Candidates = 8
	int8Compiled   = 3
	// int8Workspace bounds an INT8 graph engine's workspace (NHWC needs
	// no layout conversion).
	int8MaxWorkspace = 256 << 20
)

// int8Conv is one convolution planned in INT8 or FP8.
type int8Conv struct {
	name           string
	kind           string // "int8" or "fp8"
	scaled         bool   // the graph is the scaled convolution alone: the epilogue kernel follows
	in8, out8      bool   // reads its input already in 8 bits; writes its output in 8 bits (int8chain.go)
	fn             cuda.Function
	g              *cuda.GraphConv
	w, scale, bias cuda.DevicePtr // 8-bit [M, KH, KW, CP] weights; float32 [M] scale and bias
	inv            float32        // 1 / the input's scale
	c, cp          int            // input channels, padded
	xq             int            // workspace bytes of the quantized input (256-byte aligned)
	mem            int64          // device bytes reserved for w, scale and bias
	lt             *ltQuant       // an FP8 cuBLASLt product instead of g (op_conv1x1_q.go)
	x8             *i8xConv       // kiln's expand_i8u2 instead of g (op_conv1x1_i8x.go): scale holds alpha
	// want is the engine a plan recorded for the layer chained (its graph
	// writing 8 bits), when the graph writing half could not be built
	// from it: chainOut builds it (int8chain.go).
	want string
	// pend is the engine a plan recorded for a layer whose graph is not
	// built yet (g nil; planInt8 with the chains on): chainOut builds it
	// writing 8 bits where the chains take the layer, else resolveInt8
	// writing half, from gp and gopt. Building the half graph first, as
	// before, compiled each chained layer twice.
	pend string
	gp   cuda.ConvParams
	gopt cuda.GraphConvOptions
}

// quant is how q's tactic names it: "int8", "fp8", "int8-scaled", ...
func (q *int8Conv) quant() string {
	if q.scaled {
		return q.kind + "-scaled"
	}
	return q.kind
}

// int8State holds an engine's quantized convolutions.
type int8State struct {
	fns   map[string]cuda.Function // the quantizing kernels, by kind
	use   map[int]*int8Conv        // by step: run quantized
	spare map[int][]*int8Conv      // tuning: timed by tune
	x8    *i8xState                // expand_i8u2's module and maps (op_conv1x1_i8x.go)
	c3    *c3State                 // conv3_i8u2's modules and maps (op_conv3_i8x.go)
	pool  map[int]*poolI8          // by step: MaxPools writing INT8 for their readers (op_pool_i8.go)
	gpool map[int]*gpoolI8         // by step: GlobalAveragePools reading INT8 (op_pool_i8.go)
	// chain: tuning with the chains on (tune.go, tuneChained): each
	// layer's spare is one INT8 plan with the heuristics' first engine
	// (first, while planInt8 builds them), its engines built and timed as
	// the chains run it once the chains are known.
	chain, first bool
	// choice and times: tuneChained's decision ("int8", "int8-first",
	// "fp16") and the engine's times each way, in that order
	choice string
	times  [3]time.Duration
	// firstNS: each chained layer's time with the engine the untuned
	// engine runs (the first candidate), by node, as tuneChained timed it
	firstNS map[string]int64
	// lazy: newInt8Conv given an engine builds no graph (int8Conv.pend)
	lazy bool
}

// uploadInt8 copies b into a device allocation of its own, counted in the
// engine's memory limit and in q's memory (freed by freeInt8).
func (e *Engine) uploadInt8(q *int8Conv, b []byte) (cuda.DevicePtr, error) {
	if err := e.reserve(int64(len(b))); err != nil {
		return 0, err
	}
	q.mem += int64(len(b))
	ptr, err := e.drv.MemAlloc(len(b))
	if err != nil {
		return 0, err
	}
	return ptr, e.drv.MemcpyHtoD(ptr, b)
}

// free destroys q's graph and frees its memory; the context is current.
func (e *Engine) freeInt8(q *int8Conv) {
	if q == nil {
		return
	}
	q.g.Destroy()
	q.lt.destroy()
	for _, p := range []cuda.DevicePtr{q.w, q.scale, q.bias} {
		if p != 0 {
			e.drv.MemFree(p)
		}
	}
	e.unreserve(q.mem)
	q.g, q.w, q.scale, q.bias, q.mem = nil, 0, 0, 0, 0
}

// destroyInt8 frees every INT8 plan.
func (e *Engine) destroyInt8() {
	seen := map[*int8Conv]bool{}
	for _, q := range e.int8.all() {
		if !seen[q] {
			seen[q] = true
			e.freeInt8(q)
		}
	}
	e.destroyI8x()
	e.destroyC3() // op_conv3_i8x.go
	e.int8.use, e.int8.spare = nil, nil
}

// workspace is what q needs of a context's workspace: the quantized input,
// then the graph's workspace (the largest candidate's while tuning).
func (q *int8Conv) workspace(all bool) int {
	if q.x8 != nil {
		_, _, _, ws := q.i8xLayout()
		return ws
	}
	if q.lt != nil {
		return q.ltWorkspace(all)
	}
	if q.g == nil { // not built yet (pend): counted once it is
		if q.in8 {
			return 0
		}
		return q.xq
	}
	ws := q.g.Engine().Workspace
	if all {
		for _, a := range q.g.Candidates {
			ws = max(ws, a.Workspace)
		}
	}
	if q.in8 {
		return ws
	}
	return q.xq + ws
}

// all lists the plans in use and spare.
func (st *int8State) all() []*int8Conv {
	var out []*int8Conv
	for _, q := range st.use {
		out = append(out, q)
	}
	for _, qs := range st.spare {
		out = append(out, qs...)
	}
	return out
}

// int8Workspace is the workspace the quantized plans need: all candidates'
// while tuning (all), else the engines in use.
func (e *Engine) int8Workspace(all bool) int {
	ws := 0
	for _, q := range e.int8.all() {
		ws = max(ws, q.workspace(all))
	}
	return ws
}

// quantizeWeights quantizes float32 weights [M, C, KH, KW] per output
// channel (symmetric, scale max|w|/127, 1 for an all-zero channel) into
// INT8 [M, KH, KW, CP], the channels past C zero, and returns the scales.
func quantizeWeights(w []float32, m, c, kh, kw, cp int) ([]byte, []float32) {
	q := make([]byte, m*kh*kw*cp)
	scales := make([]float32, m)
	per := c * kh * kw
	for o := range m {
		row := w[o*per : (o+1)*per]
		var amax float64
		for _, v := range row {
			amax = max(amax, math.Abs(float64(v)))
		}
		s := float32(1)
		if amax > 0 && !math.IsInf(amax, 0) {
			s = float32(amax / 127)
		}
		scales[o] = s
		for ci := range c {
			for y := range kh {
				for x := range kw {
					v := math.RoundToEven(float64(row[(ci*kh+y)*kw+x] / s))
					q[((o*kh+y)*kw+x)*cp+ci] = byte(int8(max(-127, min(127, v))))
				}
			}
		}
	}
	return q, scales
}

// quantizeWeightsFP8 is quantizeWeights in FP8 E4M3: scale max|w|/448.
func quantizeWeightsFP8(w []float32, m, c, kh, kw, cp int) ([]byte, []float32) {
	q := make([]byte, m*kh*kw*cp)
	scales := make([]float32, m)
	per := c * kh * kw
	for o := range m {
		row := w[o*per : (o+1)*per]
		var amax float64
		for _, v := range row {
			amax = max(amax, math.Abs(float64(v)))
		}
		s := float32(1)
		if amax > 0 && !math.IsInf(amax, 0) {
			s = float32(amax / 448)
		}
		scales[o] = s
		for ci := range c {
			for y := range kh {
				for x := range kw {
					q[((o*kh+y)*kw+x)*cp+ci] = cuda.EncodeFP8(row[(ci*kh+y)*kw+x] / s)
				}
			}
		}
	}
	return q, scales
}

// planInt8 plans the quantized convolutions (Options.Int8) as INT8 cuDNN
// graphs: a step whose recorded tactic is INT8 runs so (its FP16 plans
// freed); with Options.Tune the INT8 candidates are kept for tune to time
// against the FP16 ones; untuned, the INT8 graph's first engine runs
// (layers with a kernel larger than 1x1). A layer whose INT8 graph cannot
// be made keeps its FP16 plans.
func (e *Engine) planInt8(o cuda.Options) {
	if len(e.opt.Int8) == 0 || !e.prog.half || e.opt.NoCUDNN {
		return
	}
	var steps []int
	for i, s := range e.prog.steps {
		if _, ok := e.opt.Int8[s.node.Name]; ok && s.conv != nil {
			steps = append(steps, i)
		}
	}
	if len(steps) == 0 {
		return
	}
	fns := map[string]cuda.Function{}
	for kind, k := range quantKernels {
		fn, err := e.drv.ModuleFunction(e.mod, k)
		if err != nil {
			return
		}
		fns[kind] = fn
	}
	var err error
	d := e.dnn
	if d == nil {
		if d, err = cuda.OpenCUDNN(o); err != nil {
			return
		}
	}
	h, err := d.Create()
	if err != nil {
		return
	}
	defer d.Destroy(h)
	for _, lazy := range []bool{true, false} {
		if e.planInt8Steps(o, d, h, fns, steps, lazy) {
			break
		}
		// a plan's layer whose graph builds neither from its engine nor
		// from the heuristics: plan again, each graph built at once (as
		// before the lazy graphs)
		e.destroyInt8()
	}
	e.ws = max(e.ws, e.int8Workspace(true))
	if e.dnn == nil && (len(e.int8.use) > 0 || len(e.int8.spare) > 0) {
		e.dnn = d // contexts make a cuDNN handle
	}
}

// planInt8Steps is planInt8's plan of the quantized steps, with the
// chains applied; with lazy, a plan's cuDNN layers build their graphs once
// the chains are known (int8Conv.pend, resolveInt8). It returns false
// when one of those graphs cannot be built (the FP16 plans of those
// layers still there).
func (e *Engine) planInt8Steps(o cuda.Options, d *cuda.CUDNN, h cuda.CUDNNHandle, fns map[string]cuda.Function, steps []int, lazy bool) bool {
	e.int8 = int8State{fns: fns, use: map[int]*int8Conv{}, spare: map[int][]*int8Conv{}, x8: &i8xState{copt: o}}
	var pending []int
	for _, i := range steps {
		s := e.prog.steps[i]
		t, ok := e.opt.Tactics[s.node.Name]
		ok = ok && t.Sig == convSig(s, s.half)
		switch {
		case ok && t.Quant != "" && lazy && t.Impl == ImplCUDNN && t.Graph != "" && !strings.HasSuffix(t.Quant, "-scaled") && e.int8Chains():
			// a plan's cuDNN layer with the chains: its graph is built
			// once the chains say what it writes (resolveInt8); its FP16
			// plans stay until then
			e.int8.lazy = true
			q, err := e.newInt8Conv(d, h, i, t.Quant, t.Graph)
			e.int8.lazy = false
			if err != nil {
				continue // stale: the step runs as planned in FP16
			}
			e.int8.use[i] = q
			e.tactics[s.node.Name] = t
			pending = append(pending, i)
		case ok && t.Quant != "":
			q, err := e.newQuantTactic(o, d, h, i, t) // op_conv1x1_q.go: FP8 products too
			if err != nil && t.Impl == ImplCUDNN && e.int8Chains() {
				// a chained layer's engine writes 8 bits (tuneChained): the
				// graph writing half may not build from it; chainOut does
				e.int8.first = true
				if q, err = e.newInt8Conv(d, h, i, t.Quant, ""); err == nil {
					q.want = t.Graph
				}
				e.int8.first = false
			}
			if err != nil {
				continue // stale: the step runs as planned in FP16
			}
			e.useInt8(i, q)
			e.tactics[s.node.Name] = t
		case ok:
			// another recorded choice: FP16 runs it
		case e.opt.Tune && e.int8Chains():
			// chained: one INT8 plan (expand_i8u2 where it fits, else
			// cuDNN's graph with the heuristics' first engine), its
			// engines timed as chained by tuneChained (tune.go)
			e.int8.chain = true
			if q := e.i8xSpare(i); q != nil { // op_conv1x1_i8x.go
				e.int8.spare[i] = append(e.int8.spare[i], q)
				continue
			}
			if q := e.c3Spare(i); q != nil { // op_conv3_i8x.go
				e.int8.spare[i] = append(e.int8.spare[i], q)
				continue
			}
			e.int8.first = true
			if q, err := e.newInt8Conv(d, h, i, "int8", ""); err == nil {
				e.int8.spare[i] = append(e.int8.spare[i], q)
			}
			e.int8.first = false
		case e.opt.Tune:
			for _, kind := range quantKinds {
				if q, err := e.newQuantConv(d, h, i, kind); err == nil {
					e.int8.spare[i] = append(e.int8.spare[i], q)
				}
			}
			e.int8.spare[i] = append(e.int8.spare[i], e.ltQuantSpares(o, i)...) // op_conv1x1_q.go
			if q := e.i8xSpare(i); q != nil {                                   // op_conv1x1_i8x.go
				e.int8.spare[i] = append(e.int8.spare[i], q)
			}
			if q := e.c3Spare(i); q != nil { // op_conv3_i8x.go
				e.int8.spare[i] = append(e.int8.spare[i], q)
			}
		case os.Getenv(EnvFP8All) == "1":
			e.useFP8All(o, d, h, i) // op_conv1x1_q.go
		case s.conv.kh*s.conv.kw == 1 && !e.int8All():
			// untuned without the chains, a 1x1 convolution stays FP16: on
			// an H100 cuDNN's INT8 graphs with the quantizing pass lost
			// every 1x1 layer of ResNet-50 to FP16 (device/cuda/NOTES.md)
		default:
			if q, err := e.newQuantConv(d, h, i, "int8"); err == nil {
				if q.g.Keep(q.g.Candidates[0].ID) == nil {
					e.useInt8(i, q)
				} else {
					e.freeInt8(q)
				}
			}
		}
	}
	e.chainInt8(d, h)
	return e.resolveInt8(d, h, pending)
}

// resolveInt8 builds the graph of each pending step (a plan's cuDNN
// layer, int8Conv.pend) that the chains did not build writing 8 bits,
// writing half: from the recorded engine, else the heuristics' first (the
// recorded one then want, as before); then frees the FP16 plans of all of
// them. It returns false, nothing freed, when a graph cannot be built.
func (e *Engine) resolveInt8(d *cuda.CUDNN, h cuda.CUDNNHandle, pending []int) bool {
	for _, i := range pending {
		q := e.int8.use[i]
		if q.g != nil {
			continue
		}
		cc := e.prog.steps[i].conv
		g, err := d.NewGraphConvFromID(h, q.gp, cc.oh, cc.ow, q.gopt, q.pend)
		if err != nil {
			o := q.gopt
			o.MaxCandidates = 1
			if g, err = d.NewGraphConv(h, q.gp, cc.oh, cc.ow, o); err != nil {
				return false
			}
			q.want = q.pend
		}
		q.g = g
	}
	for _, i := range pending {
		q := e.int8.use[i]
		q.pend = ""
		e.useInt8(i, q)
	}
	return true
}

// useInt8 makes step i run as q, freeing its FP16 library plans.
func (e *Engine) useInt8(i int, q *int8Conv) {
	e.dropCUDNN(i)
	if mm := e.conv1x1.use[i]; mm != nil {
		mm.Destroy()
		delete(e.conv1x1.use, i)
		delete(e.conv1x1.epi, i)
	}
	if p, ok := e.conv1x1.spare[i]; ok {
		p.destroy()
		delete(e.conv1x1.spare, i)
	}
	e.int8.use[i] = q
}

// newQuantConv plans step i quantized as kind ("int8", "fp8") from the
// heuristics: the whole layer as one graph, else (when the layer has an
// epilogue kernel) the scaled convolution followed by it.
func (e *Engine) newQuantConv(d *cuda.CUDNN, h cuda.CUDNNHandle, i int, kind string) (*int8Conv, error) {
	q, err := e.newInt8Conv(d, h, i, kind, "")
	if err != nil && e.prog.steps[i].conv.post.kernel != "" {
		return e.newInt8Conv(d, h, i, kind+"-scaled", "")
	}
	return q, err
}

// newInt8Conv quantizes step i's weights and builds its graph in the
// variant quant (Tactic.Quant): the engine id names (a plan's tactic), or
// the heuristics' candidates.
func (e *Engine) newInt8Conv(d *cuda.CUDNN, h cuda.CUDNNHandle, i int, quant, id string) (_ *int8Conv, err error) {
	s := e.prog.steps[i]
	cc := s.conv
	n := s.node
	sx := e.opt.Int8[n.Name]
	wv := input(n, 1)
	kind, scaled, ok := quantVariant(quant)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: quantized variant %q", ErrUnsupported, quant)
	case scaled && cc.post.kernel == "":
		return nil, fmt.Errorf("%w: %s: the layer has no epilogue kernel", ErrUnsupported, quant)
	case !cc.nhwc || !cc.fusable || cc.group != 1:
		return nil, fmt.Errorf("%w: INT8 needs an NHWC convolution of one group with bias, residual and ReLU or none", ErrUnsupported)
	case cc.m%4 != 0:
		return nil, fmt.Errorf("%w: INT8 needs a multiple of 4 output channels, not %d", ErrUnsupported, cc.m)
	case !(sx > 0) || math.IsInf(float64(sx), 0):
		return nil, fmt.Errorf("%w: input scale %g", ErrUnsupported, sx)
	case wv == nil || wv.Const == nil || wv.Const.DType != tensor.Float32 || wv.Const.Rank() != 4:
		return nil, fmt.Errorf("%w: INT8 needs constant float32 4-D weights", ErrUnsupported)
	}
	var bias []float32
	if b := input(n, 2); b != nil {
		if b.Const == nil || b.Const.DType != tensor.Float32 || len(b.Const.Float32s()) != cc.m {
			return nil, fmt.Errorf("%w: INT8 needs a constant float32 bias", ErrUnsupported)
		}
		bias = b.Const.Float32s()
	} else {
		bias = make([]float32, cc.m)
	}
	cp := cuda.QuantChannels(cc.c)
	in, wq, sw := cuda.DataInt8, []byte(nil), []float32(nil)
	if kind == "fp8" {
		in, sx = cuda.DataFP8, sx*127/448
		wq, sw = quantizeWeightsFP8(wv.Const.Float32s(), cc.m, cc.c, cc.kh, cc.kw, cp)
	} else {
		wq, sw = quantizeWeights(wv.Const.Float32s(), cc.m, cc.c, cc.kh, cc.kw, cp)
	}
	scale := make([]float32, cc.m)
	for m := range scale {
		scale[m] = sx * sw[m]
	}
	p := cuda.ConvParams{N: cc.n, C: cp, H: cc.h, W: cc.wd, M: cc.m, KH: cc.kh, KW: cc.kw, PadH: cc.ph, PadW: cc.pw,
		StrideH: cc.sh, StrideW: cc.sw, DilH: cc.dh, DilW: cc.dw, Group: 1, NHWC: true}
	go_ := cuda.GraphConvOptions{Bias: true, Residual: cc.z != nil, ReLU: cc.relu, MaxWorkspace: int8MaxWorkspace,
		MaxCandidates: int8Candidates, MaxRuntimeCompiled: int8Compiled,
		Quant: cuda.GraphQuant{In: in, Out: cuda.DataHalf, Scale: true}}
	if scaled {
		go_.Bias, go_.Residual, go_.ReLU = false, false, false
	}
	if graphConvOn(e.opt) {
		go_.MaxRuntimeCompiled = int8Candidates
	}
	var g *cuda.GraphConv
	switch {
	case id != "" && e.int8.lazy:
		// built later, writing 8 bits or half (int8Conv.pend)
	case id != "":
		g, err = d.NewGraphConvFromID(h, p, cc.oh, cc.ow, go_, id)
	default:
		if !e.opt.Tune || e.int8.first {
			go_.MaxCandidates = 1
		}
		g, err = d.NewGraphConv(h, p, cc.oh, cc.ow, go_)
	}
	if err != nil {
		return nil, err
	}
	q := &int8Conv{name: n.Name, kind: kind, scaled: scaled, fn: e.int8.fns[kind], g: g, inv: 1 / sx, c: cc.c, cp: cp}
	if g == nil {
		q.pend, q.gp, q.gopt = id, p, go_
	}
	defer func() {
		if err != nil {
			e.freeInt8(q)
		}
	}()
	q.xq = (cc.n*cc.h*cc.wd*cp + 255) / 256 * 256
	if q.w, err = e.uploadInt8(q, wq); err != nil {
		return nil, err
	}
	if q.scale, err = e.uploadInt8(q, float32Bytes(scale)); err != nil {
		return nil, err
	}
	if q.bias, err = e.uploadInt8(q, float32Bytes(bias)); err != nil {
		return nil, err
	}
	return q, nil
}

// float32Bytes is v's little-endian bytes.
func float32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		u := math.Float32bits(x)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}

// hasInt8 reports whether tune has quantized candidates to time for step i.
func (e *Engine) hasInt8(i int) bool {
	return len(e.int8.spare[i]) > 0
}

// withInt8 adds step i's INT8 candidates to its tuning candidates (after
// the others: a tie keeps FP16) and makes the others' apply stop running
// INT8.
func (e *Engine) withInt8(i int, sig string, cands []candidate) []candidate {
	qs := e.int8.spare[i]
	if len(qs) == 0 {
		return cands
	}
	for j := range cands {
		apply := cands[j].apply
		cands[j].apply = func() error {
			delete(e.int8.use, i)
			return apply()
		}
	}
	for _, q := range qs {
		if q.lt != nil { // op_conv1x1_q.go
			cands = e.withLtQuant(i, sig, q, cands)
			continue
		}
		if q.x8 != nil { // op_conv1x1_i8x.go
			cands = e.withI8x(i, sig, q, cands)
			continue
		}
		for _, a := range q.g.Candidates {
			cands = append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplCUDNN, Graph: a.ID, Quant: q.quant()}, apply: func() error {
				delete(e.convs, i)
				delete(e.fused, i)
				delete(e.graphs, i)
				delete(e.conv1x1.use, i)
				delete(e.conv1x1.epi, i)
				e.int8.use[i] = q
				return q.g.Use(a.ID)
			}})
		}
	}
	return cands
}

// finishInt8 frees, after tuning, the INT8 plans no step runs, keeps only
// the chosen engine of the others, and counts their workspace.
func (e *Engine) finishInt8() {
	for i, qs := range e.int8.spare {
		for _, q := range qs {
			if e.int8.use[i] == q {
				q.keep()
			} else {
				e.freeInt8(q)
			}
		}
		delete(e.int8.spare, i)
	}
	for _, q := range e.int8.use {
		if q.x8 != nil {
			q.x8.timing = false // the chains decide what it converts
		}
	}
	if e.dnn != nil && len(e.int8.use) > 1 {
		if h, err := e.dnn.Create(); err == nil {
			e.chainInt8(e.dnn, h)
			e.dnn.Destroy(h)
		}
	}
	e.ws = max(e.ws, e.int8Workspace(false))
}

// int8Calls are the calls of step i run quantized: quantize the input into
// the workspace, then the graph (its workspace after the quantized input),
// and the launches after them (the epilogue kernel of a scaled variant).
func (c *Context) int8Calls(i int, q *int8Conv) ([]call, []launch) {
	if q.x8 != nil && q.x8.c3 != nil { // op_conv3_i8x.go
		return c.c3Calls(i, q)
	}
	if q.x8 != nil {
		return c.i8xCalls(i, q)
	}
	if q.lt != nil {
		return c.ltQuantCalls(i, q)
	}
	e := c.e
	cc := e.prog.steps[i].conv
	x, y := c.addr(cc.x), c.addr(cc.y)
	var z cuda.DevicePtr
	if cc.z != nil && !q.scaled {
		z = c.addr(*cc.z)
	}
	xq, gws := c.ws, c.ws+cuda.DevicePtr(q.xq)
	if q.in8 { // the producer wrote it in 8 bits (int8chain.go)
		xq, gws = x, c.ws
	}
	rows := int64(cc.n) * int64(cc.h) * int64(cc.wd)
	per := int64(4) // channels a thread of the quantizing kernel takes
	if q.c == q.cp && q.c%8 == 0 {
		per = 8
	}
	grid, block := grid1D(rows * int64(q.cp) / per)
	args := cuda.NewKernelArgs(6)
	args.SetPtr(0, xq)
	args.SetPtr(1, x)
	args.SetFloat32(2, q.inv)
	args.SetInt64(3, rows)
	args.SetInt32(4, int32(q.c))
	args.SetInt32(5, int32(q.cp))
	calls := []call{
		{step: i, fn: q.fn, grid: grid, block: block, args: args},
		{step: i, lib: func() error { return q.g.ExecuteQuant(c.dnnH, xq, q.w, q.scale, q.bias, z, 0, y, gws) }},
	}
	if q.in8 {
		args.Free()
		calls = calls[1:]
	}
	if q.scaled {
		return calls, []launch{cc.post}
	}
	return calls, nil
}

// int8Tactic describes step i run quantized, as kiln inspect shows it.
func (e *Engine) int8Tactic(i int) string {
	q := e.int8.use[i]
	if q.x8 != nil && q.x8.c3 != nil { // op_conv3_i8x.go
		return e.c3Tactic(q)
	}
	if q.x8 != nil {
		return e.i8xTactic(i, q)
	}
	if q.lt != nil {
		return e.ltQuantTactic(i, q)
	}
	cc := e.prog.steps[i].conv
	if q.scaled {
		return fmt.Sprintf("%s + cudnn nhwc %s graph scale %s (input %d channels padded to %d) + %s", quantKernels[q.kind], q.kind,
			q.g.Engine().ID, q.c, q.cp, cc.post.kernel)
	}
	s := fmt.Sprintf("%s + cudnn nhwc %s graph scale+%s %s (input %d channels padded to %d)", quantKernels[q.kind], q.kind,
		cc.graphEpilogue(), q.g.Engine().ID, q.c, q.cp)
	if q.in8 {
		s = strings.TrimPrefix(s, quantKernels[q.kind]+" + ") + ", input in 8 bits"
	}
	if q.out8 {
		s += ", output in 8 bits"
	}
	return s
}

// int8Impl is Layer.Impl and Layer.Precision of step i run quantized.
func (e *Engine) int8Impl(i int) (string, string) {
	q := e.int8.use[i]
	if q.x8 != nil && q.x8.c3 != nil { // op_conv3_i8x.go
		return c3Impl(q), q.kind
	}
	if q.x8 != nil {
		return "kiln nhwc 1x1 int8 expand_i8u2 (" + q.x8.epilogue() + " epilogue)", q.kind
	}
	if q.lt != nil {
		return e.ltQuantImpl(i, q), q.kind
	}
	return "cudnn nhwc " + q.kind + " graph (" + q.g.Engine().ID + ")", q.kind
}

// quantPrecision is "int8" or "fp8" for the node of a step run quantized,
// else "".
func (e *Engine) quantPrecision(name string) string {
	for _, q := range e.int8.use {
		if q.name == name {
			return q.kind
		}
	}
	return ""
}

// int8File is the JSON form of the INT8 input scales in a plan.
type int8File struct {
	Format string             `json:"format"`
	Scales map[string]float32 `json:"scales"`
	// Chain records whether the engine was built with the 8-bit chains
	// (int8chain.go); a plan without it (written before the chains were on
	// by default) loads without them unless KILN_CUDA_INT8_CHAIN=1.
	Chain *bool `json:"chain,omitempty"`
}

const int8Format = "kiln-cuda-int8-v1"

// int8Options reads the INT8 input scales of a compilation: those the
// builder gives (o.Int8Scales), else a plan's section; it returns them,
// the section to store and, from a plan, whether its engine ran the
// chains (nil from the builder: int8Section adds the build's). Precision
// "int8" without scales is an error.
func int8Options(o device.ExecOptions) (map[string]float32, []byte, *bool, error) {
	if o.Precision != "int8" {
		return nil, nil, nil, nil
	}
	scales := o.Int8Scales
	var chain *bool
	if scales == nil {
		b, ok := o.Blobs[int8Blob]
		if !ok {
			return nil, nil, nil, fmt.Errorf("%w: an int8 program needs the input scales of its quantized convolutions (device.ExecOptions.Int8Scales, or the plan's %s section)", ErrGraph, int8Blob)
		}
		var f int8File
		if err := json.Unmarshal(b, &f); err != nil || f.Format != int8Format {
			return nil, nil, nil, fmt.Errorf("%w: the plan's %s section is not %s (%v)", ErrGraph, int8Blob, int8Format, err)
		}
		scales, chain = f.Scales, f.Chain
		if chain == nil { // a plan from before the chains were on by default
			chain = new(bool)
		}
	}
	for n, s := range scales {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return nil, nil, nil, fmt.Errorf("%w: INT8 input scale %g for layer %q", ErrGraph, s, n)
		}
	}
	var b []byte
	if o.Int8Scales == nil {
		b = int8Section(scales, chain)
	} else {
		b = int8Section(scales, nil)
	}
	return scales, b, chain, nil
}

// int8Section is the plan's section of the scales and the chains' record
// (nil: none).
func int8Section(scales map[string]float32, chain *bool) []byte {
	b, _ := json.Marshal(int8File{Format: int8Format, Scales: scales, Chain: chain}) // map keys sorted: a stable section
	return b
}
