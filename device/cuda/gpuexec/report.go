package gpuexec

import (
	"fmt"
	"strings"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// cudnnAlgoNames are cuDNN's cudnnConvolutionFwdAlgo_t values without
// their CUDNN_CONVOLUTION_FWD_ALGO_ prefix.
var cudnnAlgoNames = []string{"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT", "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"}

// cudnnMathNames are cuDNN's cudnnMathType_t values.
var cudnnMathNames = []string{"default math", "tensor-op math", "tensor-op math with conversion", "FMA math"}

func nameOf(names []string, i int) string {
	if i >= 0 && i < len(names) {
		return names[i]
	}
	return fmt.Sprintf("#%d", i)
}

// cudnnTactic names a cuDNN algorithm as kiln inspect shows it:
// "cudnn IMPLICIT_PRECOMP_GEMM (algo 1, FMA math)".
func cudnnTactic(algo, math int) string {
	return fmt.Sprintf("cudnn %s (algo %d, %s)", nameOf(cudnnAlgoNames, algo), algo, nameOf(cudnnMathNames, math))
}

// inPlace says how a node that launches nothing (c.skip) is computed.
func (c *compiler) inPlace(n *ir.Node) string {
	for ln, p := range c.embedLN {
		if p.gather == n || p.add1 == n {
			return "embedding, computed by LayerNormalization " + ln.Name
		}
	}
	for cast, p := range c.maskAffine {
		if p.sub == n || p.mul == n {
			return "mask arithmetic, computed by Cast " + cast.Name
		}
	}
	for ln, add := range c.lnAdd {
		if add == n {
			return "fused into LayerNormalization " + ln.Name
		}
	}
	for att, t := range c.attOut {
		if t == n {
			return "written in place by attention " + att.Name
		}
	}
	return "none: read in place through strides"
}

// stepPrecision is the precision step s computes in: that of its first
// float input (else output) as the engine stores it; "" without float data.
func (e *Engine) stepPrecision(s step) string {
	if p := e.quantPrecision(s.node.Name); p != "" {
		return p
	}
	for _, vs := range [][]*ir.Value{s.node.Inputs, s.node.Outputs} {
		for _, v := range vs {
			if v == nil {
				continue
			}
			switch dtypeOf(v) {
			case tensor.Float32:
				return precisionName(s.half)
			case tensor.Float16:
				return "fp16"
			case tensor.Float64:
				return "fp64"
			}
		}
	}
	return ""
}

// stepTactic describes how step i runs: the library call with its
// algorithm and the epilogue kernel after it, or kiln's kernels.
func (e *Engine) stepTactic(i int) string {
	s := e.prog.steps[i]
	var parts []string
	launches := e.launchesOf(i)
	switch {
	case e.int8.use[i] != nil:
		parts = append(parts, e.int8Tactic(i))
		launches = nil
	case e.conv1x1.use[i] != nil:
		var how string
		how, launches = e.conv1x1Tactic(i)
		parts = append(parts, how)
	case e.graphs[i] != nil:
		parts = append(parts, "cudnn nhwc graph "+s.conv.graphEpilogue()+" "+e.graphs[i].Engine().ID)
		launches = nil
	case e.fused[i] != nil:
		parts = append(parts, "cudnn nhwc fused "+s.conv.fusedEpilogue()+" "+strings.TrimPrefix(cudnnTactic(e.fused[i].Algo, e.fused[i].Math), "cudnn "))
		launches = nil
	case e.convs[i] != nil && s.conv.nhwc:
		parts = append(parts, "cudnn nhwc "+strings.TrimPrefix(cudnnTactic(e.convs[i].Algo, e.convs[i].Math), "cudnn "))
		launches = nil
		if s.conv.post.kernel != "" {
			launches = []launch{s.conv.post}
		}
	case e.convs[i] != nil:
		parts = append(parts, cudnnTactic(e.convs[i].Algo, e.convs[i].Math))
		launches = nil
		if s.conv.post.kernel != "" {
			launches = []launch{s.conv.post}
		}
	case e.gemms[i] != nil:
		mm := e.gemms[i]
		rank := 0
		if t, ok := e.tactics[s.node.Name]; ok && t.Impl == ImplCUBLASLt {
			rank = ltRank(mm, t)
		}
		lt := fmt.Sprintf("cublaslt heuristic #%d of %d", rank, len(mm.Candidates))
		if rank < len(mm.Candidates) {
			a := mm.Candidates[rank] // a split-K variant names the heuristic result it splits
			lt = fmt.Sprintf("cublaslt heuristic #%d of %d", a.Index, len(mm.Candidates))
			if a.ID >= 0 {
				lt = fmt.Sprintf("cublaslt algo %d (heuristic #%d of %d)", a.ID, a.Index, len(mm.Candidates))
			}
			if a.Index < 0 { // enumerated (tune.go)
				lt = "cublaslt " + mm.CandidateString(rank)
			}
			if sp := mm.Splits[rank]; sp.Parts > 1 {
				lt += fmt.Sprintf(", split-K %d", sp.Parts)
			}
		}
		launches = nil
		switch {
		case e.gemmEpi[i] && s.gemm.act.code == actRelu:
			lt += ", bias+ReLU epilogue"
		case e.gemmEpi[i]:
			lt += ", bias epilogue"
		case s.gemm.post.kernel != "":
			launches = []launch{s.gemm.post}
		}
		parts = append(parts, lt)
	}
	seen := map[string]bool{}
	for _, l := range launches {
		if !seen[l.kernel] {
			seen[l.kernel] = true
			parts = append(parts, l.kernel)
		}
	}
	if len(parts) == 0 {
		if s.inPlace != "" {
			return s.inPlace
		}
		return "none: an alias of its input"
	}
	return strings.Join(parts, " + ")
}

// stepWorkspace is the library workspace step i needs, in bytes.
func (e *Engine) stepWorkspace(i int) int64 {
	if q := e.int8.use[i]; q != nil {
		return int64(q.workspace(false))
	}
	if m := e.conv1x1.use[i]; m != nil {
		return int64(m.Workspace)
	}
	if c := e.convs[i]; c != nil {
		return int64(c.Workspace)
	}
	if c := e.fused[i]; c != nil {
		return int64(c.Workspace)
	}
	if c := e.graphs[i]; c != nil {
		return int64(c.Engine().Workspace)
	}
	if m := e.gemms[i]; m != nil {
		return int64(m.Workspace)
	}
	return 0
}

// stepTime is the device time of step i measured while tuning (the chosen
// tactic's, or for other layers the step's own), and whether it came from
// the timing cache; 0 when nothing was timed.
func (e *Engine) stepTime(i int) (time.Duration, bool) {
	name := e.prog.steps[i].node.Name
	if t, ok := e.tactics[name]; ok && t.NS > 0 {
		return time.Duration(t.NS), e.cached[name]
	}
	return e.stepNS[i], false
}

// synthetic reports whether s is a step of no graph node (the float32 <->
// half conversions of the graph's inputs and outputs).
func synthetic(s step) bool { return len(s.node.Outputs) == 0 }

// memory is the device memory of the engine and of each of its contexts.
func (e *Engine) memory() device.Memory {
	return device.Memory{WeightBytes: e.WeightBytes(), ArenaBytes: e.ArenaBytes(), WorkspaceBytes: int64(e.ws)}
}

// layerRuns lists how each node of g runs in e, in g's order: the nodes e
// runs as e planned them, the others (their outputs constant at e's shapes,
// or removed by the folding that those shapes allow) as folded.
func (e *Engine) layerRuns(g *ir.Graph) []device.LayerRun {
	byName := map[string]device.LayerRun{}
	for i, s := range e.prog.steps {
		if synthetic(s) {
			continue
		}
		t, cached := e.stepTime(i)
		r := device.LayerRun{Name: s.node.Name, Tactic: e.stepTactic(i), Precision: e.stepPrecision(s),
			Time: t, Cached: cached, Workspace: e.stepWorkspace(i)}
		if c, ok := e.tactics[s.node.Name]; ok { // chosen (timed or applied): the plan keeps it
			r.Choice, r.Sig = c.name(), c.Sig
		}
		byName[s.node.Name] = r
	}
	var out []device.LayerRun
	for _, n := range g.Nodes {
		if r, ok := byName[n.Name]; ok {
			out = append(out, r)
		} else if n.Name != "" {
			out = append(out, device.LayerRun{Name: n.Name, Tactic: "none: folded at the build's shapes"})
		}
	}
	return out
}
