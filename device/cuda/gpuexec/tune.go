package gpuexec

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/tactic"
)

// Implementations a Tactic names.
const (
	ImplCUDNN    = "cudnn"    // a cuDNN forward convolution algorithm
	ImplCUBLASLt = "cublaslt" // a cuBLASLt heuristic result
	ImplKernel   = "kernel"   // kiln's own kernels
)

// tacticsBlob is the plan section in which plans written before kiln kept
// the GPU's choices in the plan header held them (Tactics.Marshal); a
// load still reads it when the header has no choices (planTactics).
const tacticsBlob = "cuda.tactics"

// Tuning measurements: warm-up runs, then the median of timed runs.
const (
	tuneWarmup = 3
	tuneRuns   = 7
	// A candidate whose one run without a CUDA graph takes more than
	// screenFactor times the best time so far plus screenMargin (launch
	// costs that a graph does not pay) is not timed further.
	screenFactor = 4
	screenMargin = 50 * time.Microsecond
)

// Tactic is the implementation chosen for one convolution or matrix
// product.
type Tactic struct {
	// Sig is the signature of the layer it was chosen for (shapes,
	// precision, epilogue): it applies only to a layer with the same one.
	Sig  string `json:"sig"`
	Impl string `json:"impl"` // ImplCUDNN, ImplCUBLASLt or ImplKernel
	// Algo is cuDNN's cudnnConvolutionFwdAlgo_t, or the rank of the
	// cuBLASLt heuristic result (0: the first).
	Algo int  `json:"algo"`
	Math int  `json:"math,omitempty"` // cuDNN: its cudnnMathType_t
	Epi  bool `json:"epi,omitempty"`  // cuBLASLt: bias (and ReLU) in its epilogue
	// Fused: cuDNN's fused call (bias, residual and ReLU with the
	// convolution, cudnnConvolutionBiasActivationForward) of an NHWC layer.
	Fused bool `json:"fused,omitempty"`
	// Graph is the ID of a cuDNN graph API engine configuration (an NHWC
	// layer's conv + bias + residual + ReLU as one operation graph):
	// cuda.GraphEngine.ID, meaningful for the same cuDNN and GPU only.
	Graph string `json:"graph,omitempty"`
	// Quant is "int8" or "fp8" (or "int8-scaled", "fp8-scaled") for a
	// graph engine of the layer quantized (int8.go), "fp8-lt" or
	// "fp8-lt-fast" for an FP8 cuBLASLt product (Impl cublaslt, Algo its
	// candidate; op_conv1x1_q.go).
	Quant string `json:"quant,omitempty"`
	// Cfg, for a cuBLASLt configuration that tuning enumerated (not one of
	// the heuristic's results), is its description (cuda.LtConfig.String):
	// its identity, planned again from it (LtMatmul.AddConfig); Algo is
	// then 0.
	Cfg string `json:"cfg,omitempty"`
	// NS is the time measured (or read from the timing cache), in ns.
	NS int64 `json:"ns,omitempty"`
}

// name is the tactic's key in the timing cache and its name in a plan's
// header (device.Tactic.Tactic): every field but Sig and NS, which
// ParseTactic reads back. For the tactics tuning makes it is exact:
// ParseTactic(t.name()) is t without Sig and NS (an FP8 product's Epi is
// always set; an enumerated configuration's Algo is 0).
func (t Tactic) name() string {
	switch t.Impl {
	case ImplCUDNN:
		if t.Quant != "" {
			return "cudnn-" + t.Quant + "-graph:" + t.Graph
		}
		if t.Graph != "" {
			return "cudnn-graph:" + t.Graph
		}
		if t.Fused {
			return fmt.Sprintf("cudnn-fused:algo=%d,math=%d", t.Algo, t.Math)
		}
		return fmt.Sprintf("cudnn:algo=%d,math=%d", t.Algo, t.Math)
	case ImplCUBLASLt:
		if t.Quant != "" { // an FP8 product of a quantized 1x1 convolution (op_conv1x1_q.go)
			return fmt.Sprintf("cublaslt-%s:%d", t.Quant, t.Algo)
		}
		if t.Cfg != "" { // an enumerated configuration: by its description
			if t.Epi {
				return "cublaslt-epilogue:cfg=" + t.Cfg
			}
			return "cublaslt:cfg=" + t.Cfg
		}
		if t.Epi {
			return fmt.Sprintf("cublaslt-epilogue:%d", t.Algo)
		}
		return fmt.Sprintf("cublaslt:%d", t.Algo)
	}
	if t.Impl == ImplKernel && t.Quant == quantI8x { // op_conv1x1_i8x.go
		return i8xName
	}
	if t.Impl == ImplKernel && t.Quant == quantC3 { // op_conv3_i8x.go
		return c3Name
	}
	return t.Impl
}

// ParseTactic reads a tactic's name (Tactic.name) back: the tactic
// without its Sig and NS. An error (wrapping ErrGraph) says what is wrong
// with a name this kiln does not make.
func ParseTactic(s string) (Tactic, error) {
	head, arg, _ := strings.Cut(s, ":")
	var t Tactic
	bad := func(why string) (Tactic, error) {
		return Tactic{}, fmt.Errorf("%w: tactic %q: %s", ErrGraph, s, why)
	}
	switch {
	case s == ImplKernel:
		t.Impl = ImplKernel
	case s == i8xName: // op_conv1x1_i8x.go
		t.Impl, t.Quant = ImplKernel, quantI8x
	case s == c3Name: // op_conv3_i8x.go
		t.Impl, t.Quant = ImplKernel, quantC3
	case head == "cudnn" || head == "cudnn-fused":
		t.Impl, t.Fused = ImplCUDNN, head == "cudnn-fused"
		a, m, ok := strings.Cut(arg, ",")
		av, aok := strings.CutPrefix(a, "algo=")
		mv, mok := strings.CutPrefix(m, "math=")
		var err1, err2 error
		t.Algo, err1 = strconv.Atoi(av)
		t.Math, err2 = strconv.Atoi(mv)
		if !ok || !aok || !mok || err1 != nil || err2 != nil || t.Algo < 0 || t.Math < 0 {
			return bad("want algo=N,math=M")
		}
	case head == "cudnn-graph":
		t.Impl, t.Graph = ImplCUDNN, arg
	case strings.HasPrefix(head, "cudnn-") && strings.HasSuffix(head, "-graph"):
		t.Impl, t.Graph = ImplCUDNN, arg
		t.Quant = strings.TrimSuffix(strings.TrimPrefix(head, "cudnn-"), "-graph")
		if _, _, ok := quantVariant(t.Quant); !ok {
			return bad("unknown quantization " + strconv.Quote(t.Quant))
		}
	case head == "cublaslt" || head == "cublaslt-epilogue":
		t.Impl, t.Epi = ImplCUBLASLt, head == "cublaslt-epilogue"
		if cfg, ok := strings.CutPrefix(arg, "cfg="); ok {
			if cfg == "" {
				return bad("an empty configuration")
			}
			t.Cfg = cfg
		} else if n, err := strconv.Atoi(arg); err == nil && n >= 0 {
			t.Algo = n
		} else {
			return bad("want the heuristic's rank or cfg=<configuration>")
		}
	case strings.HasPrefix(head, "cublaslt-"): // an FP8 product (op_conv1x1_q.go)
		t.Impl, t.Epi, t.Quant = ImplCUBLASLt, true, strings.TrimPrefix(head, "cublaslt-")
		if t.Quant != quantLtFP8 && t.Quant != quantLtFP8Fast {
			return bad("unknown FP8 product " + strconv.Quote(t.Quant))
		}
		n, err := strconv.Atoi(arg)
		if err != nil || n < 0 {
			return bad("want the candidate's rank")
		}
		t.Algo = n
	default:
		return bad("unknown implementation")
	}
	if (t.Impl == ImplCUDNN && t.Quant != "" || head == "cudnn-graph") && t.Graph == "" {
		return bad("no engine configuration")
	}
	if t.name() != s { // e.g. "cudnn:algo=01,math=1": not how kiln names it
		return bad(fmt.Sprintf("kiln names it %q", t.name()))
	}
	return t, nil
}

// Tactics are the choices of a tuned engine, by layer (node) name.
type Tactics map[string]Tactic

// tacticsFile is the JSON form of Tactics in a plan.
type tacticsFile struct {
	Format  string  `json:"format"`
	Version int     `json:"version"`
	Layers  Tactics `json:"layers"`
}

const (
	tacticsFormat  = "kiln-cuda-tactics"
	tacticsVersion = 1
)

// Marshal encodes t as an older plan's "cuda.tactics" section held it
// (tests write such plans; new plans keep the choices in the header).
func (t Tactics) Marshal() []byte {
	b, _ := json.Marshal(tacticsFile{Format: tacticsFormat, Version: tacticsVersion, Layers: t})
	return b
}

// ParseTactics decodes what Tactics.Marshal wrote; an error wraps ErrGraph.
func ParseTactics(b []byte) (Tactics, error) {
	var f tacticsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %s blob: %v", ErrGraph, tacticsBlob, err)
	}
	if f.Format != tacticsFormat || f.Version != tacticsVersion {
		return nil, fmt.Errorf("%w: %s blob: format %q version %d, want %q version %d", ErrGraph, tacticsBlob, f.Format, f.Version, tacticsFormat, tacticsVersion)
	}
	for n, t := range f.Layers {
		if t.Sig == "" || (t.Impl != ImplCUDNN && t.Impl != ImplCUBLASLt && t.Impl != ImplKernel) {
			return nil, fmt.Errorf("%w: %s blob: layer %q: signature %q, implementation %q", ErrGraph, tacticsBlob, n, t.Sig, t.Impl)
		}
	}
	if f.Layers == nil {
		f.Layers = Tactics{}
	}
	return f.Layers, nil
}

func precisionName(half bool) string {
	if half {
		return "fp16"
	}
	return "fp32"
}

// convSig is the signature of a convolution step.
func convSig(s step, half bool) string {
	cc := s.conv
	sig := fmt.Sprintf("cuda conv x=%dx%dx%dx%d w=%dx%dx%d pad=%d,%d stride=%d,%d dil=%d,%d group=%d post=%s %s",
		cc.n, cc.c, cc.h, cc.wd, cc.m, cc.kh, cc.kw, cc.ph, cc.pw, cc.sh, cc.sw, cc.dh, cc.dw, cc.group, cc.post.kernel, precisionName(half))
	if cc.nhwc {
		sig += fmt.Sprintf(" nhwc bias=%v residual=%v relu=%v", cc.fusable, cc.z != nil, cc.relu)
	}
	return sig
}

// gemmSig is the signature of a matrix product step.
func gemmSig(s step, half bool) string {
	gc := s.gemm
	return fmt.Sprintf("cuda gemm m=%d n=%d k=%d transB=%v post=%s bias=%v act=%d %s",
		gc.m, gc.n, gc.k, gc.transB, gc.post.kernel, gc.bias != nil, gc.act.code, precisionName(half))
}

// ltEnumerateAll makes tuning time, for every matrix product, the cuBLASLt
// configurations that cuda.MatmulOptions.Enumerate adds to the
// heuristic's results; without it only builds at --opt-level 3 and above
// (Options.GraphConv: the wider search) do. KILN_LT_ENUMERATE=1 turns it
// on, tests too.
var ltEnumerateAll = envSwitch("KILN_LT_ENUMERATE", false)

// ltEnumerate reports whether the products' cuBLASLt plans enumerate
// configurations: only while tuning (a plan's enumerated choice is
// planned again from its Tactic.Cfg).
func (e *Engine) ltEnumerate() bool {
	return e.opt.Tune && (e.opt.GraphConv || ltEnumerateAll)
}

// ltTactic is the Tactic of mm's candidate j for a layer of signature sig:
// the heuristic's results by their rank (Algo), an enumerated
// configuration by its description (Cfg; Algo 0, as its name has no rank).
func ltTactic(sig string, mm *cuda.LtMatmul, j int, epi bool) Tactic {
	if mm.Candidates[j].Index >= 0 {
		return Tactic{Sig: sig, Impl: ImplCUBLASLt, Algo: j, Epi: epi}
	}
	return Tactic{Sig: sig, Impl: ImplCUBLASLt, Epi: epi, Cfg: mm.Config(j)}
}

// ltRank is the index in mm's candidates of the one t names: by its
// description for an enumerated configuration, else its rank.
func ltRank(mm *cuda.LtMatmul, t Tactic) int {
	if t.Cfg != "" {
		if j := slices.Index(mm.Configs, t.Cfg); j >= 0 {
			return j
		}
		return len(mm.Candidates)
	}
	return t.Algo
}

// candidate is one way to run a step while tuning.
type candidate struct {
	t      Tactic
	apply  func() error
	cached bool // t.NS came from the timing cache
}

// stepTimer is the GPU's tactic.Timer of one step's candidates: each to
// time is applied, then, once a candidate that ran is known (from the
// cache or timed before it), screened with one run without a CUDA graph,
// then timed (measure: replayed as a CUDA graph between two events, the
// median). A candidate whose screen run takes more than screenFactor times
// the fastest known plus screenMargin is not timed further: its screen
// time is its time (stored in the cache, never the fastest). A candidate
// that fails to apply or run is skipped with the reason.
type stepTimer struct {
	cands   []candidate
	step    int
	screen  func(step int) (time.Duration, error)
	measure func(steps ...int) (time.Duration, error)
	timed   map[int]bool // the candidates Time was asked for (not from the cache)
}

// Name: the GPU's times are filed with no timer name (Cache.Lookup's).
func (st *stepTimer) Name() string { return "" }

func (st *stepTimer) Time(_ context.Context, todo []int, known []time.Duration) ([]tactic.Result, error) {
	st.timed = make(map[int]bool, len(todo))
	res := make([]tactic.Result, len(todo))
	var best time.Duration // the fastest candidate so far, in their order (0: none ran)
	faster := func(d time.Duration) {
		if best == 0 || d < best {
			best = d
		}
	}
	k := 0
	for j := range st.cands {
		if k == len(todo) || todo[k] != j {
			if known[j] > 0 {
				faster(known[j])
			}
			continue
		}
		st.timed[j] = true
		r := &res[k]
		k++
		if err := st.cands[j].apply(); err != nil {
			r.Err = err
			continue
		}
		// A screen first: one run without a CUDA graph. A candidate far
		// slower than the best so far (cuDNN's grouped convolutions can
		// loop over the groups, thousands of launches) is not captured,
		// instantiated and timed: that took mobilenet_v2's build from 1 s
		// to 80 s.
		if best > 0 {
			q, err := st.screen(st.step)
			if err != nil {
				r.Err = err
				continue
			}
			if q > screenFactor*best+screenMargin {
				r.Time = q
				continue
			}
		}
		d, err := st.measure(st.step)
		if err != nil {
			r.Err = err // this algorithm does not run here: not a candidate
			continue
		}
		r.Time = d
		faster(d)
	}
	return res, nil
}

// chooseStep chooses among cands, step i's candidates (the layer's first
// choice first), through tactic.Choose with the step's timer (stepTimer)
// and the timing cache (nil: none) under fingerprint fp: the fastest that
// ran, ties to the earlier. It sets each candidate's NS (0: it did not
// run) and cached (its time came from the cache), and returns the chosen
// one's index and how many candidates were measured; the error wraps
// tactic.ErrNoCandidate when none ran. The candidate chosen is not
// applied.
func chooseStep(cands []candidate, i int, name, op, sig string, cache *tactic.Cache, fp device.Fingerprint, screen func(int) (time.Duration, error), measure func(...int) (time.Duration, error)) (best, measured int, err error) {
	names := make([]string, len(cands))
	for j := range cands {
		names[j] = cands[j].t.name()
	}
	timer := &stepTimer{cands: cands, step: i, screen: screen, measure: measure}
	ch, err := tactic.Choose(context.Background(), fp, cache, tactic.Layer{Name: name, Op: op, Sig: sig, Candidates: names}, timer, tactic.Rule{})
	if err != nil {
		return -1, 0, err
	}
	for j := range cands {
		cands[j].t.NS = int64(ch.Times[names[j]]) // 0: it did not run
		cands[j].cached = !timer.timed[j]
	}
	return ch.Index, ch.Measured, nil
}

// chooseStepHook is chooseStep; a test replaces it to compare each choice
// with the tuner's former loop on the same measurements (checkChoices).
var chooseStepHook = chooseStep

// tune times, for each convolution and matrix product that a library
// planned, every algorithm the library offered within the workspace limit
// and kiln's own kernels, at the engine's shapes, in a context of its own,
// and keeps the fastest. Times come from the timing cache where it has
// them; what is measured is stored there. The context is current.
func (e *Engine) tune() error {
	ws := e.ws
	convs := slices.Collect(maps.Values(e.convs))
	for _, f := range e.fused {
		convs = append(convs, f.CUDNNConv)
	}
	for _, p := range e.spare {
		convs = append(convs, p.plain, fusedConv(p.fused))
		if p.graph != nil {
			for _, a := range p.graph.Candidates {
				ws = max(ws, a.Workspace)
			}
		}
	}
	for _, c := range convs {
		if c == nil {
			continue
		}
		for _, a := range c.Candidates {
			ws = max(ws, a.Workspace)
		}
	}
	for _, gs := range []map[int]*cuda.LtMatmul{e.gemms, e.gemmAlt} {
		for _, g := range gs {
			for _, a := range g.Candidates {
				ws = max(ws, a.Workspace)
			}
		}
	}
	e.ws = max(ws, e.int8Workspace(true))
	c, err := e.NewContext()
	if err != nil {
		return fmt.Errorf("tuning: %w", err)
	}
	defer func() { // the last context (tuneChained makes another)
		if c != nil {
			c.Close()
		}
	}()
	d := e.drv
	start, err := d.EventCreate(0)
	if err != nil {
		return err
	}
	defer d.EventDestroy(start)
	end, err := d.EventCreate(0)
	if err != nil {
		return err
	}
	defer d.EventDestroy(end)
	// measure times the calls of steps as contexts run them: replayed as a
	// CUDA graph (unless graphs are off), so that the host's launch cost,
	// which a graph does not pay, is not counted.
	// timeSteps times the calls of steps, replayed as a CUDA graph when
	// graph is set, warm runs then the median of runs.
	timeSteps := func(graph bool, warm, runs int, steps ...int) (time.Duration, error) {
		var calls []call
		for _, i := range steps {
			calls = append(calls, c.stepCalls(i)...)
		}
		defer func() { // a launch (and a captured graph) copies its arguments
			for _, k := range calls {
				if k.args != nil {
					k.args.Free()
				}
			}
		}()
		enqueue := func() error {
			for _, k := range calls {
				var err error
				if k.lib != nil {
					err = k.lib()
				} else {
					err = k.launch(d, c.stream)
				}
				if err != nil {
					return err
				}
			}
			return nil
		}
		launch := enqueue
		if graph {
			if err := d.BeginCapture(c.stream, cuda.CaptureModeThreadLocal); err == nil {
				qerr := enqueue()
				g, err := d.EndCapture(c.stream)
				if qerr != nil {
					if err == nil {
						d.GraphDestroy(g)
					}
					return 0, qerr
				}
				if err == nil {
					x, err := d.GraphInstantiate(g)
					d.GraphDestroy(g)
					if err == nil {
						defer d.GraphExecDestroy(x)
						launch = func() error { return d.GraphLaunch(x, c.stream) }
					}
				}
			}
		}
		ms := make([]float64, 0, runs)
		for r := range warm + runs {
			if err := d.EventRecord(start, c.stream); err != nil {
				return 0, err
			}
			if err := launch(); err != nil {
				d.StreamSynchronize(c.stream)
				return 0, err
			}
			if err := d.EventRecord(end, c.stream); err != nil {
				return 0, err
			}
			if err := d.EventSynchronize(end); err != nil {
				return 0, err
			}
			t, err := d.EventElapsed(start, end)
			if err != nil {
				return 0, err
			}
			if r >= warm {
				ms = append(ms, float64(t))
			}
		}
		slices.Sort(ms)
		return max(time.Duration(ms[len(ms)/2]*1e6), 1), nil
	}
	measure := func(steps ...int) (time.Duration, error) {
		return timeSteps(!e.opt.NoGraphs, tuneWarmup, tuneRuns, steps...)
	}
	screen := func(step int) (time.Duration, error) { return timeSteps(false, 1, 1, step) }
	type tuned struct {
		step  int
		cands []candidate
		best  int
		conv  *cuda.CUDNNConv
		fused *cuda.CUDNNFusedConv
		graph *cuda.GraphConv
		mm    *cuda.LtMatmul
	}
	var done []tuned
	for i, s := range e.prog.steps {
		var sig string
		var cands []candidate
		conv, mm := e.convs[i], e.gemms[i]
		fc := e.fused[i]
		firstFused := fc != nil
		gc := e.graphs[i]
		if sp, ok := e.spare[i]; ok {
			conv, fc, gc = cmp.Or(conv, sp.plain), cmp.Or(fc, sp.fused), cmp.Or(gc, sp.graph)
			delete(e.spare, i)
		}
		if (conv != nil || fc != nil || gc != nil || e.has1x1(i) || e.hasInt8(i)) && s.conv != nil {
			sig = convSig(s, s.half)
			plainCands := func() {
				if conv == nil {
					return
				}
				for _, a := range conv.Candidates {
					cands = append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplCUDNN, Algo: a.Algo, Math: a.Math}, apply: func() error {
						e.convs[i] = conv
						delete(e.fused, i)
						delete(e.graphs, i)
						return conv.Use(a)
					}})
				}
			}
			fusedCands := func() {
				if fc == nil {
					return
				}
				for _, a := range fc.Candidates {
					cands = append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplCUDNN, Algo: a.Algo, Math: a.Math, Fused: true}, apply: func() error {
						e.fused[i] = fc
						delete(e.convs, i)
						delete(e.graphs, i)
						return fc.Use(a)
					}})
				}
			}
			if firstFused { // the plan's first choice first: the network is compared with it
				fusedCands()
				plainCands()
			} else {
				plainCands()
				fusedCands()
			}
			if gc != nil {
				for _, a := range gc.Candidates {
					cands = append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplCUDNN, Graph: a.ID}, apply: func() error {
						e.graphs[i] = gc
						delete(e.convs, i)
						delete(e.fused, i)
						return gc.Use(a.ID)
					}})
				}
			}
			cands = append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplKernel}, apply: func() error {
				delete(e.convs, i)
				delete(e.fused, i)
				delete(e.graphs, i)
				return nil
			}})
			cands = e.with1x1(i, sig, cands) // op_conv1x1.go: cuBLASLt products of 1x1 convolutions
			// int8.go: the layer in INT8 or FP8 (with the chains, timed
			// as chained after the FP16 choices: tuneChained)
			if !e.int8.chain {
				cands = e.withInt8(i, sig, cands)
			}
		} else if mm != nil && s.gemm != nil {
			sig = gemmSig(s, s.half)
			epi := e.gemmEpi[i]
			for j := range mm.Candidates {
				cands = append(cands, candidate{t: ltTactic(sig, mm, j, epi), apply: func() error {
					e.gemms[i], e.gemmEpi[i] = mm, epi
					return mm.UseCandidate(j)
				}})
			}
			if alt := e.gemmAlt[i]; alt != nil { // without the epilogue: post after
				for j := range alt.Candidates {
					cands = append(cands, candidate{t: ltTactic(sig, alt, j, false), apply: func() error {
						e.gemms[i], e.gemmEpi[i] = alt, false
						return alt.UseCandidate(j)
					}})
				}
			}
			cands = append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplKernel}, apply: func() error {
				delete(e.gemms, i)
				delete(e.gemmEpi, i)
				return nil
			}})
		} else {
			continue
		}
		best, n, err := chooseStepHook(cands, i, s.name(), s.node.OpType, sig, e.opt.TimingCache, e.opt.CacheDevice, screen, measure)
		if err != nil {
			return fmt.Errorf("tuning layer %s: %w", s.name(), err) // tactic.ErrNoCandidate: no implementation ran
		}
		e.measured += n
		if err := cands[best].apply(); err != nil {
			return fmt.Errorf("tuning layer %s: %w", s.name(), err)
		}
		e.tactics[s.node.Name] = cands[best].t
		e.cached[s.node.Name] = cands[best].cached
		done = append(done, tuned{i, cands, best, conv, fc, gc, mm})
	}
	// Layers timed alone can mislead (a warm cache, overlap with the next
	// layer): keep the choices only if the whole network, replayed, is not
	// slower than with the libraries' first choices.
	changed := false
	for _, t := range done {
		changed = changed || t.best != 0
	}
	if changed {
		all := make([]int, len(e.prog.steps))
		for i := range all {
			all[i] = i
		}
		tunedTime, terr := measure(all...)
		for _, t := range done {
			if err := t.cands[0].apply(); err != nil {
				return err
			}
		}
		firstTime, ferr := measure(all...)
		if terr == nil && (ferr != nil || tactic.Keeps(tunedTime, firstTime, 0)) {
			for _, t := range done {
				if err := t.cands[t.best].apply(); err != nil {
					return err
				}
			}
		} else {
			e.reverted = true
			for _, t := range done {
				name := e.prog.steps[t.step].node.Name
				e.tactics[name], e.cached[name] = t.cands[0].t, t.cands[0].cached
			}
		}
	}
	if e.int8.chain {
		fp16 := map[int]candidate{}
		for _, t := range done {
			if e.reverted {
				fp16[t.step] = t.cands[0]
			} else {
				fp16[t.step] = t.cands[t.best]
			}
		}
		renew := func() error {
			c.Close()
			var err error
			if c, err = e.NewContext(); err != nil {
				return fmt.Errorf("tuning: %w", err)
			}
			return nil
		}
		if err := e.tuneChained(chainTuner{fp16: fp16, renew: renew, screen: screen, measure: measure}); err != nil {
			return err
		}
	}
	for _, t := range done { // the library plans of layers that chose kiln's kernels
		if e.convs[t.step] != t.conv {
			t.conv.Destroy() // nil-safe
		}
		if e.fused[t.step] != t.fused {
			t.fused.Destroy()
		}
		if t.graph != nil {
			if e.graphs[t.step] == t.graph {
				t.graph.Keep(t.graph.Engine().ID) // frees the other candidates' plans
			} else {
				t.graph.Destroy()
			}
		}
		if e.gemms[t.step] != t.mm {
			t.mm.Destroy()
		}
		if alt := e.gemmAlt[t.step]; alt != nil && e.gemms[t.step] != alt {
			alt.Destroy()
		}
		delete(e.gemmAlt, t.step)
	}
	// The device time of every other layer, for kiln inspect: timed as the
	// candidates were, nothing to choose (and no signature to cache by).
	chosen := map[int]bool{}
	for _, t := range done {
		chosen[t.step] = true
	}
	for i, s := range e.prog.steps {
		if chosen[i] || synthetic(s) || (len(s.launches) == 0 && s.conv == nil && s.gemm == nil) {
			continue
		}
		if d, err := measure(i); err == nil {
			e.stepNS[i] = d
		}
	}
	// Only what the chosen algorithms need is allocated by later contexts.
	e.ws = 0
	for _, c := range e.convs {
		e.ws = max(e.ws, c.Workspace)
	}
	for _, c := range e.fused {
		e.ws = max(e.ws, c.Workspace)
	}
	for _, c := range e.graphs {
		e.ws = max(e.ws, c.Engine().Workspace)
	}
	for _, g := range e.gemms {
		e.ws = max(e.ws, g.Workspace)
	}
	e.finish1x1()
	e.finishInt8()
	return nil
}

// Tactics returns the implementation chosen for each convolution and
// matrix product, by node name: those timed (Options.Tune) and those
// applied from Options.Tactics. Other layers run as planned by default.
func (e *Engine) Tactics() Tactics {
	out := make(Tactics, len(e.tactics))
	for k, v := range e.tactics {
		out[k] = v
	}
	return out
}

// Measured returns how many (layer, implementation) timings the engine
// measured while tuning, not counting those read from the timing cache.
func (e *Engine) Measured() int { return e.measured }

// useConvTactic applies a recorded choice to a planned convolution: it
// reports whether t names one of conv's candidates (then in use).
func useConvTactic(conv *cuda.CUDNNConv, t Tactic) bool {
	for _, a := range conv.Candidates {
		if a.Algo == t.Algo && a.Math == t.Math {
			return conv.Use(a) == nil
		}
	}
	return false
}
