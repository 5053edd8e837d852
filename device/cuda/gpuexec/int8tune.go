package gpuexec

import (
	"fmt"
	"slices"
	"time"

	"github.com/kilnai/kiln/device/cuda"
)

// Tuning an INT8 engine with the 8-bit chains on (int8chain.go).
//
// Timed one layer at a time against FP16, a quantized layer pays the
// passes the chains remove (quantizing its input, widening its output),
// so its neighbours pick FP16 and the chains break into conversions: on an
// H100 that made ResNet-50 0.75x FP16 where the untuned chained engine was
// 1.32x (device/cuda/NOTES.md). With the chains on, tune therefore
//
//  1. chooses each layer's FP16 tactic as for an FP16 engine (the INT8
//     plans are not its candidates);
//  2. makes every quantized layer INT8 at once (expand_i8u2 where it fits,
//     else cuDNN's INT8 graph) and applies the chains, which fixes what
//     each layer reads and writes in 8 bits;
//  3. builds, for each cuDNN INT8 layer, its graph as the chains run it
//     (8-bit output without the residual where it writes 8 bits) with the
//     heuristics' engines (int8Candidates, within int8MaxWorkspace), and
//     times them with the layer's 8-bit input and output (no quantizing
//     or widening pass): the timing cache files these times under the
//     layer's signature plus chainSig, apart from unchained times;
//  4. times the whole engine three ways, replayed as a CUDA graph: INT8
//     chained with the tuned engines, INT8 chained with the engines the
//     untuned engine runs, and the FP16 choices, and keeps the fastest
//     (ties to the earlier), so the engine is never slower, as measured,
//     than the untuned chained engine or FP16.
//
// The choice is recorded in the tactics (Quant on the quantized layers
// when INT8 won, none when FP16 did) and the plan's int8 section records
// that the chains were on (int8File.Chain), so a loaded plan runs the same
// engine without timing.

// chainTuner is what tune hands tuneChained.
type chainTuner struct {
	fp16    map[int]candidate // each tuned step's FP16 choice (applies it)
	renew   func() error      // a new tuning context (after the workspace grew)
	screen  func(step int) (time.Duration, error)
	measure func(steps ...int) (time.Duration, error)
}

// chainTimeHook, when a test sets it, replaces the engine's time measured
// each way (the fake libraries' events all measure the same).
var chainTimeHook func(way string, d time.Duration) time.Duration

// chainSig is what the signature of a layer timed as chained adds: what
// it reads and writes in 8 bits.
func chainSig(q *int8Conv) string {
	z8 := q.x8 != nil && q.x8.z8
	return fmt.Sprintf(" int8-chain in8=%v z8=%v out8=%v", q.in8, z8, q.out8)
}

// chainChoice is the engine-level decision of tuneChained, for tests and
// kiln inspect's log: "int8", "int8-first" (the untuned engines) or "fp16".
func (e *Engine) chainChoice() string { return e.int8.choice }

// tuneChained is steps 2-4 above; step 1 was tune's loop, whose choices
// ct.fp16 applies. On return the quantized steps run as chosen; the INT8
// plans no step runs stay in e.int8.spare for finishInt8 to free.
func (e *Engine) tuneChained(ct chainTuner) error {
	d := e.dnn
	if d == nil {
		return nil
	}
	h, err := d.Create()
	if err != nil {
		return err
	}
	defer d.Destroy(h)
	// 2. every quantized layer INT8, chained
	pick := map[int]*int8Conv{}
	var steps []int
	for i, qs := range e.int8.spare {
		if _, ok := ct.fp16[i]; !ok || len(qs) == 0 {
			continue
		}
		q := qs[0]
		if q.x8 != nil {
			q.x8.timing = false // timed as the chains will run it: its flags below
		}
		pick[i] = q
		steps = append(steps, i)
	}
	if len(steps) == 0 {
		return nil
	}
	slices.Sort(steps)
	toInt8 := func(i int) {
		delete(e.convs, i)
		delete(e.fused, i)
		delete(e.graphs, i)
		delete(e.conv1x1.use, i)
		delete(e.conv1x1.epi, i)
		e.int8.use[i] = pick[i]
	}
	toFP16 := func() error {
		for _, i := range steps {
			delete(e.int8.use, i)
			if err := ct.fp16[i].apply(); err != nil {
				return err
			}
		}
		return nil
	}
	for _, i := range steps {
		toInt8(i)
	}
	e.chainInt8(d, h)
	// 3. each cuDNN layer's engines as chained; on a reducing 1x1 that
	// expand_i8u2 runs (no residual), cuDNN's INT8 graph too, reading and
	// writing what expand_i8u2 does
	alt := map[*int8Conv]*cuda.GraphConv{} // the graph as chained with its candidates, beside q.g
	g0 := map[*int8Conv]*cuda.GraphConv{}  // q.g as the chains made it
	also := map[int]*int8Conv{}            // a reducing 1x1's cuDNN plan beside expand_i8u2
	for _, i := range steps {
		q := pick[i]
		if q.x8 != nil && q.x8.noz {
			if q = e.reduceAlt(d, h, i, q); q == nil {
				continue
			}
			also[i] = q
		}
		if q.x8 == nil && q.lt == nil && !q.scaled {
			if g := e.chainedGraph(d, h, i, q); g != nil {
				alt[q], g0[q] = g, q.g
			}
		}
	}
	defer func() { // the graph of each plan that it does not run
		for q, g := range alt {
			if q.g == g {
				g0[q].Destroy()
			} else {
				g.Destroy()
			}
		}
	}()
	e.ws = max(e.ws, e.int8Workspace(true))
	for _, g := range alt {
		for _, a := range g.Candidates {
			e.ws = max(e.ws, a.Workspace)
		}
	}
	if err := ct.renew(); err != nil {
		return err
	}
	tuned := map[int]candidate{}
	first := map[int]candidate{}
	for _, i := range steps {
		s := e.prog.steps[i]
		sig := convSig(s, s.half)
		var cands []candidate
		for _, q := range []*int8Conv{pick[i], also[i]} {
			if q == nil {
				continue
			}
			if q.x8 != nil {
				cands = append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplKernel, Quant: q.x8.quant()}, apply: func() error {
					e.int8.use[i] = q
					return nil
				}})
				continue
			}
			// the engine the chains built first (the untuned engine's),
			// then the chained graph's (another graph object: apply swaps)
			gq := q.g
			id0 := gq.Engine().ID
			cands = append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplCUDNN, Graph: id0, Quant: q.quant()}, apply: func() error {
				e.int8.use[i], q.g = q, gq
				return gq.Use(id0)
			}})
			if g := alt[q]; g != nil {
				for _, a := range g.Candidates {
					if a.ID == id0 {
						continue
					}
					cands = append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplCUDNN, Graph: a.ID, Quant: q.quant()}, apply: func() error {
						e.int8.use[i], q.g = q, g
						return g.Use(a.ID)
					}})
				}
			}
		}
		best, n, err := chooseStepHook(cands, i, s.name(), s.node.OpType, sig+chainSig(pick[i]), e.opt.TimingCache, e.opt.CacheDevice, ct.screen, ct.measure)
		if err != nil { // no INT8 engine of this layer runs chained: FP16
			e.int8.choice = "fp16"
			return toFP16()
		}
		e.measured += n
		if err := cands[best].apply(); err != nil {
			return err
		}
		tuned[i], first[i] = cands[best], cands[0]
		if e.int8.firstNS == nil {
			e.int8.firstNS = map[string]int64{}
		}
		e.int8.firstNS[s.node.Name] = cands[0].t.NS
	}
	// 4. the engine: INT8 tuned, INT8 untuned, FP16
	all := make([]int, len(e.prog.steps))
	for i := range all {
		all[i] = i
	}
	type way struct {
		name string
		set  func() error
		d    time.Duration
		err  error
	}
	useAll := func(m map[int]candidate) func() error {
		return func() error {
			for _, i := range steps {
				toInt8(i)
				if err := m[i].apply(); err != nil {
					return err
				}
			}
			return nil
		}
	}
	ways := []*way{{name: "int8", set: useAll(tuned)}, {name: "int8-first", set: useAll(first)}, {name: "fp16", set: toFP16}}
	var win *way
	for _, w := range ways {
		if w.err = w.set(); w.err == nil {
			w.d, w.err = ct.measure(all...)
		}
		if chainTimeHook != nil && w.err == nil {
			w.d = chainTimeHook(w.name, w.d)
		}
		if w.err == nil && (win == nil || w.d < win.d) {
			win = w
		}
	}
	if win == nil {
		return fmt.Errorf("tuning the INT8 engine: %w", ways[0].err)
	}
	if err := win.set(); err != nil {
		return err
	}
	e.int8.choice = win.name
	e.int8.times = [3]time.Duration{ways[0].d, ways[1].d, ways[2].d}
	if win.name == "fp16" {
		return nil
	}
	m := tuned
	if win.name == "int8-first" {
		m = first
	}
	for _, i := range steps {
		name := e.prog.steps[i].node.Name
		e.tactics[name], e.cached[name] = m[i].t, m[i].cached
	}
	return nil
}

// chainedGraph builds step i's INT8 graph as the chains run q (its output
// in 8 bits without the residual where q writes 8 bits; q's scale and bias
// already divided by the next scale) with the heuristics' engines, or
// returns nil.
func (e *Engine) chainedGraph(d *cuda.CUDNN, h cuda.CUDNNHandle, i int, q *int8Conv) *cuda.GraphConv {
	ca := e.prog.steps[i].conv
	out := cuda.DataHalf
	if q.out8 {
		out = cuda.DataInt8
	}
	p := cuda.ConvParams{N: ca.n, C: q.cp, H: ca.h, W: ca.wd, M: ca.m, KH: ca.kh, KW: ca.kw, PadH: ca.ph, PadW: ca.pw,
		StrideH: ca.sh, StrideW: ca.sw, DilH: ca.dh, DilW: ca.dw, Group: 1, NHWC: true}
	o := cuda.GraphConvOptions{Bias: true, Residual: ca.z != nil && !q.out8, ReLU: ca.relu, MaxWorkspace: int8MaxWorkspace,
		MaxCandidates: int8Candidates, MaxRuntimeCompiled: int8Compiled,
		Quant: cuda.GraphQuant{In: cuda.DataInt8, Out: out, Scale: true}}
	if graphConvOn(e.opt) {
		o.MaxRuntimeCompiled = int8Candidates
	}
	g, err := d.NewGraphConv(h, p, ca.oh, ca.ow, o)
	if err != nil {
		return nil
	}
	return g
}

// reduceAlt plans step i, a reducing 1x1 that x (expand_i8u2, no residual)
// runs chained, as cuDNN's INT8 graph reading and writing what x does (its
// output in 8 bits at x's output scale where x writes 8 bits), kept in
// e.int8.spare (finishInt8 frees it unless it runs); nil where it cannot.
func (e *Engine) reduceAlt(d *cuda.CUDNN, h cuda.CUDNNHandle, i int, x *int8Conv) *int8Conv {
	e.int8.first = true
	q, err := e.newInt8Conv(d, h, i, "int8", "")
	e.int8.first = false
	if err != nil {
		return nil
	}
	if x.in8 && q.cp != q.c {
		e.freeInt8(q)
		return nil
	}
	if x.out8 {
		e.int8.use[i] = q
		ok := e.chainOut(d, h, i, x.x8.sy)
		e.int8.use[i] = x
		if !ok {
			e.freeInt8(q)
			return nil
		}
	}
	q.in8 = x.in8
	e.int8.spare[i] = append(e.int8.spare[i], q)
	return q
}
