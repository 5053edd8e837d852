package gpuexec

import (
	"encoding/json"
	"fmt"
	"math"

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
// Tuned (kiln build), the INT8 candidates are timed against the FP16 ones
// (cuDNN's legacy and graph calls, cuBLASLt's 1x1 products, kiln's
// kernels) and the fastest runs: "cudnn-int8-graph:ID" in the timing cache,
// Tactic.Quant "int8" in the plan. Untuned, a quantized layer runs the INT8
// graph's first engine. A layer cuDNN cannot run in INT8 stays in FP16, as
// do the layers the rule left in float. Between layers the values stay
// half: each INT8 layer pays one quantizing pass over its input.

// int8Blob is the plan section holding an INT8 engine's input scales.
const int8Blob = "cuda.int8"

// int8Kernel quantizes a half NHWC tensor to padded INT8 NHWC.
const int8Kernel = "quantize_nhwc_i8"

// int8Candidates bounds the INT8 graph engines built per layer while
// tuning, and int8Compiled the runtime-compiled ones among them.
const (
	int8Candidates = 8
	int8Compiled   = 3
	// int8Workspace bounds an INT8 graph engine's workspace (NHWC needs
	// no layout conversion).
	int8MaxWorkspace = 256 << 20
)

// int8Conv is one convolution planned in INT8.
type int8Conv struct {
	name           string
	g              *cuda.GraphConv
	w, scale, bias cuda.DevicePtr // INT8 [M, KH, KW, CP] weights; float32 [M] scale and bias
	inv            float32        // 1 / the input's scale
	c, cp          int            // input channels, padded
	xq             int            // workspace bytes of the quantized input (256-byte aligned)
	mem            int64          // device bytes reserved for w, scale and bias
}

// int8State holds an engine's INT8 convolutions.
type int8State struct {
	fn    cuda.Function
	use   map[int]*int8Conv // by step: run in INT8
	spare map[int]*int8Conv // tuning: timed by tune
}

// free destroys q's graph and frees its memory; the context is current.
func (e *Engine) freeInt8(q *int8Conv) {
	if q == nil {
		return
	}
	q.g.Destroy()
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
	for _, m := range []map[int]*int8Conv{e.int8.use, e.int8.spare} {
		for _, q := range m {
			if !seen[q] {
				seen[q] = true
				e.freeInt8(q)
			}
		}
	}
	e.int8.use, e.int8.spare = nil, nil
}

// workspace is what q needs of a context's workspace: the quantized input,
// then the graph's workspace (the largest candidate's while tuning).
func (q *int8Conv) workspace(all bool) int {
	ws := q.g.Engine().Workspace
	if all {
		for _, a := range q.g.Candidates {
			ws = max(ws, a.Workspace)
		}
	}
	return q.xq + ws
}

// int8Workspace is the workspace the INT8 plans need: all candidates'
// while tuning (all), else the engines in use.
func (e *Engine) int8Workspace(all bool) int {
	ws := 0
	for _, m := range []map[int]*int8Conv{e.int8.use, e.int8.spare} {
		for _, q := range m {
			ws = max(ws, q.workspace(all))
		}
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

// planInt8 plans the quantized convolutions (Options.Int8) as INT8 cuDNN
// graphs: a step whose recorded tactic is INT8 runs so (its FP16 plans
// freed); with Options.Tune the INT8 candidates are kept for tune to time
// against the FP16 ones; untuned, the INT8 graph's first engine runs. A
// layer whose INT8 graph cannot be made keeps its FP16 plans.
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
	fn, err := e.drv.ModuleFunction(e.mod, int8Kernel)
	if err != nil {
		return
	}
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
	e.int8 = int8State{fn: fn, use: map[int]*int8Conv{}, spare: map[int]*int8Conv{}}
	for _, i := range steps {
		s := e.prog.steps[i]
		t, ok := e.opt.Tactics[s.node.Name]
		ok = ok && t.Sig == convSig(s, e.prog.half)
		switch {
		case ok && t.Quant == "int8":
			q, err := e.newInt8Conv(d, h, i, t.Graph)
			if err != nil {
				continue // stale: the step runs as planned in FP16
			}
			e.useInt8(i, q)
			e.tactics[s.node.Name] = t
		case ok:
			// another recorded choice: FP16 runs it
		case e.opt.Tune:
			if q, err := e.newInt8Conv(d, h, i, ""); err == nil {
				e.int8.spare[i] = q
			}
		default:
			if q, err := e.newInt8Conv(d, h, i, ""); err == nil {
				if q.g.Keep(q.g.Candidates[0].ID) == nil {
					e.useInt8(i, q)
				} else {
					e.freeInt8(q)
				}
			}
		}
	}
	e.ws = max(e.ws, e.int8Workspace(true))
	if e.dnn == nil && (len(e.int8.use) > 0 || len(e.int8.spare) > 0) {
		e.dnn = d // contexts make a cuDNN handle
	}
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

// newInt8Conv quantizes step i's weights and builds its INT8 graph: the
// engine id names (a plan's tactic), or the heuristics' candidates.
func (e *Engine) newInt8Conv(d *cuda.CUDNN, h cuda.CUDNNHandle, i int, id string) (_ *int8Conv, err error) {
	s := e.prog.steps[i]
	cc := s.conv
	n := s.node
	sx := e.opt.Int8[n.Name]
	wv := input(n, 1)
	switch {
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
	wq, sw := quantizeWeights(wv.Const.Float32s(), cc.m, cc.c, cc.kh, cc.kw, cp)
	scale := make([]float32, cc.m)
	for m := range scale {
		scale[m] = sx * sw[m]
	}
	p := cuda.ConvParams{N: cc.n, C: cp, H: cc.h, W: cc.wd, M: cc.m, KH: cc.kh, KW: cc.kw, PadH: cc.ph, PadW: cc.pw,
		StrideH: cc.sh, StrideW: cc.sw, DilH: cc.dh, DilW: cc.dw, Group: 1, NHWC: true}
	go_ := cuda.GraphConvOptions{Bias: true, Residual: cc.z != nil, ReLU: cc.relu, MaxWorkspace: int8MaxWorkspace,
		MaxCandidates: int8Candidates, MaxRuntimeCompiled: int8Compiled,
		Quant: cuda.GraphQuant{In: cuda.DataInt8, Out: cuda.DataHalf, Scale: true}}
	var g *cuda.GraphConv
	if id != "" {
		g, err = d.NewGraphConvFromID(h, p, cc.oh, cc.ow, go_, id)
	} else {
		if !e.opt.Tune {
			go_.MaxCandidates = 1
		}
		g, err = d.NewGraphConv(h, p, cc.oh, cc.ow, go_)
	}
	if err != nil {
		return nil, err
	}
	q := &int8Conv{name: n.Name, g: g, inv: 1 / sx, c: cc.c, cp: cp}
	defer func() {
		if err != nil {
			e.freeInt8(q)
		}
	}()
	q.xq = (cc.n*cc.h*cc.wd*cp + 255) / 256 * 256
	upload := func(b []byte) (cuda.DevicePtr, error) {
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
	if q.w, err = upload(wq); err != nil {
		return nil, err
	}
	if q.scale, err = upload(float32Bytes(scale)); err != nil {
		return nil, err
	}
	if q.bias, err = upload(float32Bytes(bias)); err != nil {
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

// hasInt8 reports whether tune has INT8 candidates to time for step i.
func (e *Engine) hasInt8(i int) bool {
	_, ok := e.int8.spare[i]
	return ok
}

// withInt8 adds step i's INT8 candidates to its tuning candidates (after
// the others: a tie keeps FP16) and makes the others' apply stop running
// INT8.
func (e *Engine) withInt8(i int, sig string, cands []candidate) []candidate {
	q, ok := e.int8.spare[i]
	if !ok {
		return cands
	}
	for j := range cands {
		apply := cands[j].apply
		cands[j].apply = func() error {
			delete(e.int8.use, i)
			return apply()
		}
	}
	for _, a := range q.g.Candidates {
		cands = append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplCUDNN, Graph: a.ID, Quant: "int8"}, apply: func() error {
			delete(e.convs, i)
			delete(e.fused, i)
			delete(e.graphs, i)
			delete(e.conv1x1.use, i)
			delete(e.conv1x1.epi, i)
			e.int8.use[i] = q
			return q.g.Use(a.ID)
		}})
	}
	return cands
}

// finishInt8 frees, after tuning, the INT8 plans no step runs, keeps only
// the chosen engine of the others, and counts their workspace.
func (e *Engine) finishInt8() {
	for i, q := range e.int8.spare {
		if e.int8.use[i] == q {
			q.g.Keep(q.g.Engine().ID)
		} else {
			e.freeInt8(q)
		}
		delete(e.int8.spare, i)
	}
	e.ws = max(e.ws, e.int8Workspace(false))
}

// int8Calls are the calls of step i run in INT8: quantize the input into
// the workspace, then the graph (its workspace after the quantized input).
func (c *Context) int8Calls(i int, q *int8Conv) []call {
	e := c.e
	cc := e.prog.steps[i].conv
	x, y := c.addr(cc.x), c.addr(cc.y)
	var z cuda.DevicePtr
	if cc.z != nil {
		z = c.addr(*cc.z)
	}
	xq, gws := c.ws, c.ws+cuda.DevicePtr(q.xq)
	rows := int64(cc.n) * int64(cc.h) * int64(cc.wd)
	grid, block := grid1D(rows * int64(q.cp/4))
	args := cuda.NewKernelArgs(6)
	args.SetPtr(0, xq)
	args.SetPtr(1, x)
	args.SetFloat32(2, q.inv)
	args.SetInt64(3, rows)
	args.SetInt32(4, int32(q.c))
	args.SetInt32(5, int32(q.cp))
	return []call{
		{step: i, fn: e.int8.fn, grid: grid, block: block, args: args},
		{step: i, lib: func() error { return q.g.ExecuteQuant(c.dnnH, xq, q.w, q.scale, q.bias, z, 0, y, gws) }},
	}
}

// int8Tactic describes step i run in INT8, as kiln inspect shows it.
func (e *Engine) int8Tactic(i int) string {
	q := e.int8.use[i]
	return fmt.Sprintf("%s + cudnn nhwc int8 graph %s %s (input %d channels padded to %d)", int8Kernel,
		e.prog.steps[i].conv.graphEpilogue(), q.g.Engine().ID, q.c, q.cp)
}

// int8Step reports whether the node of step s runs in INT8.
func (e *Engine) int8Step(name string) bool {
	for _, q := range e.int8.use {
		if q.name == name {
			return true
		}
	}
	return false
}

// int8File is the JSON form of the INT8 input scales in a plan.
type int8File struct {
	Format string             `json:"format"`
	Scales map[string]float32 `json:"scales"`
}

const int8Format = "kiln-cuda-int8-v1"

// int8Options reads the INT8 input scales of a compilation: those the
// builder gives (o.Int8Scales), else a plan's section; it returns them and
// the section to store. Precision "int8" without scales is an error.
func int8Options(o device.ExecOptions) (map[string]float32, []byte, error) {
	if o.Precision != "int8" {
		return nil, nil, nil
	}
	scales := o.Int8Scales
	if scales == nil {
		b, ok := o.Blobs[int8Blob]
		if !ok {
			return nil, nil, fmt.Errorf("%w: an int8 program needs the input scales of its quantized convolutions (device.ExecOptions.Int8Scales, or the plan's %s section)", ErrGraph, int8Blob)
		}
		var f int8File
		if err := json.Unmarshal(b, &f); err != nil || f.Format != int8Format {
			return nil, nil, fmt.Errorf("%w: the plan's %s section is not %s (%v)", ErrGraph, int8Blob, int8Format, err)
		}
		scales = f.Scales
	}
	for n, s := range scales {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return nil, nil, fmt.Errorf("%w: INT8 input scale %g for layer %q", ErrGraph, s, n)
		}
	}
	b, _ := json.Marshal(int8File{Format: int8Format, Scales: scales}) // map keys sorted: a stable section
	return scales, b, nil
}
