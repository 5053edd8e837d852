package optimize

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// bnFoldPass folds an inference BatchNormalization into the Conv (or
// kiln::FusedConv without epilogue) or the Gemm that feeds it and nothing
// else, when the weights and the normalization's parameters are float32
// constants: with s = scale/sqrt(var+eps), W' = W*s per output channel and
// B' = (B-mean)*s + bias. It works in g and in its subgraphs.
type bnFoldPass struct{}

func (bnFoldPass) Name() string { return "bnfold" }

func (p bnFoldPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (bnFoldPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		nm := newNamer(g)
		drop := map[*ir.Node]bool{}
		for _, bn := range g.Nodes {
			if !isOp(bn, "BatchNormalization") || drop[bn] || len(bn.Inputs) != 5 || len(bn.Outputs) == 0 {
				continue
			}
			u := usesOf(g)
			a, err := ops.ParseBatchNormAttrs(bn, g.Opset())
			if err != nil || !bnInference(bn, a, u) {
				continue
			}
			x := bn.Inputs[0]
			p := x.Producer
			if p == nil || drop[p] || u.only(x) != bn || !inGraph(g, p) || len(p.Outputs) != 1 {
				continue
			}
			s, shift, ok := bnAffine(g, bn, a.Epsilon)
			if !ok {
				continue
			}
			var folded bool
			switch {
			case isConvNoEpilogue(p):
				folded = foldIntoConv(g, nm, p, s, shift)
			case isOp(p, "Gemm"):
				folded = foldIntoGemm(g, nm, p, s, shift)
			}
			if !folded {
				continue
			}
			out := bn.Outputs[0]
			p.Outputs[0] = out
			out.Producer = p
			drop[bn] = true
			logf(log, "folded %s into %s", bn, p)
		}
		removeNodes(g, drop)
		return len(drop) > 0, nil
	})
}

// bnInference reports whether bn, of attributes a, normalizes with its
// stored statistics (not in training mode, as the kernel reads it: see
// ops.BatchNormAttrs) and nothing reads its training outputs. spatial=0
// before opset 9 needs no check: the kernel takes parameters of shape [C]
// (the only ones bnAffine folds) per channel whatever it says.
func bnInference(bn *ir.Node, a ops.BatchNormAttrs, u *usage) bool {
	if a.Training {
		return false
	}
	for _, o := range bn.Outputs[1:] {
		if o != nil && u.used(o) {
			return false
		}
	}
	return true
}

// bnAffine returns, per channel, the factor s and the shift -mean*s + bias
// of bn (of epsilon eps), whose parameters must be float32 constants of one
// shape [C].
func bnAffine(g *ir.Graph, bn *ir.Node, epsilon float32) (s, shift []float64, ok bool) {
	var p [4][]float32
	for i := range p {
		v := bn.Inputs[i+1]
		if !isConst(g, v) || v.Const.DType != tensor.Float32 || v.Const.Rank() != 1 {
			return nil, nil, false
		}
		p[i] = v.Const.Float32s()
		if len(p[i]) != len(p[0]) {
			return nil, nil, false
		}
	}
	eps := float64(epsilon)
	scale, bias, mean, vr := p[0], p[1], p[2], p[3]
	s = make([]float64, len(scale))
	shift = make([]float64, len(scale))
	for c := range scale {
		s[c] = float64(scale[c]) / math.Sqrt(float64(vr[c])+eps)
		shift[c] = float64(bias[c]) - float64(mean[c])*s[c]
	}
	return s, shift, true
}

// isConvNoEpilogue reports whether n is a Conv, or a kiln::FusedConv that
// adds and applies nothing after its bias.
func isConvNoEpilogue(n *ir.Node) bool {
	if isOp(n, "Conv") {
		return true
	}
	if n.OpType != "FusedConv" || n.Domain != fusedDomain {
		return false
	}
	a, err := ops.ParseFusedConvAttrs(n, 0) // kiln's op: no opset
	return err == nil && n.Input(3) == nil && a.Activation == ""
}

// foldIntoConv rewrites conv's weights and bias (as new initializers, since
// others may share the old ones).
func foldIntoConv(g *ir.Graph, nm *namer, conv *ir.Node, s, shift []float64) bool {
	w := conv.Input(1)
	if !isConst(g, w) || w.Const.DType != tensor.Float32 || w.Const.Rank() < 3 || w.Const.Shape[0] != len(s) {
		return false
	}
	b := conv.Input(2)
	if b != nil && (!isConst(g, b) || b.Const.DType != tensor.Float32 || b.Const.Len() != len(s)) {
		return false
	}
	nw := w.Const.Clone()
	wv := nw.Float32s()
	per := len(wv) / len(s)
	for m := range s {
		row := wv[m*per : (m+1)*per]
		for i := range row {
			row[i] = float32(float64(row[i]) * s[m])
		}
	}
	nb := tensor.New(tensor.Float32, len(s))
	for m := range s {
		old := 0.0
		if b != nil {
			old = float64(b.Const.Float32s()[m])
		}
		nb.Float32s()[m] = float32(old*s[m] + shift[m])
	}
	ins := []*ir.Value{conv.Inputs[0], addInit(g, nm, w.Name+"_bnfolded", nw), addInit(g, nm, conv.Name+"_bias_bnfolded", nb)}
	conv.Inputs = append(ins, conv.Inputs[min(3, len(conv.Inputs)):]...)
	return true
}

// foldIntoGemm folds into a Gemm with a constant float32 B and a C that is
// absent or a constant of shape [N] or [1, N]; the normalized channel is
// the Gemm's column.
func foldIntoGemm(g *ir.Graph, nm *namer, gemm *ir.Node, s, shift []float64) bool {
	b := gemm.Input(1)
	if !isConst(g, b) || b.Const.DType != tensor.Float32 || b.Const.Rank() != 2 {
		return false
	}
	a, err := ops.ParseGemmAttrs(gemm, g.Opset())
	if err != nil {
		return false
	}
	transB := a.TransB
	k, n := b.Const.Shape[0], b.Const.Shape[1]
	if transB {
		k, n = n, k
	}
	if n != len(s) {
		return false
	}
	alpha, beta := float64(a.Alpha), float64(a.Beta)
	c := gemm.Input(2)
	var cv []float32
	if c != nil {
		if !isConst(g, c) || c.Const.DType != tensor.Float32 || c.Const.Len() != n || c.Const.Rank() < 1 || c.Const.Shape[c.Const.Rank()-1] != n {
			return false
		}
		cv = c.Const.Float32s()
	}
	nb := b.Const.Clone()
	bv := nb.Float32s()
	for i := 0; i < k; i++ {
		for j := 0; j < n; j++ {
			idx := i*n + j
			if transB {
				idx = j*k + i
			}
			bv[idx] = float32(float64(bv[idx]) * alpha * s[j])
		}
	}
	nc := tensor.New(tensor.Float32, n)
	for j := range s {
		old := 0.0
		if cv != nil {
			old = beta * float64(cv[j])
		}
		nc.Float32s()[j] = float32(old*s[j] + shift[j])
	}
	gemm.Inputs = []*ir.Value{gemm.Inputs[0], addInit(g, nm, b.Name+"_bnfolded", nb), addInit(g, nm, gemm.Name+"_bias_bnfolded", nc)}
	if gemm.Attrs == nil {
		gemm.Attrs = map[string]*ir.Attr{}
	}
	gemm.Attrs["alpha"] = ir.FloatAttr("alpha", 1)
	gemm.Attrs["beta"] = ir.FloatAttr("beta", 1)
	return true
}

func init() { Register(bnFoldPass{}) }
