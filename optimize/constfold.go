package optimize

import (
	"context"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// Bounds of constant folding: a node is evaluated ahead of time only when
// its inputs hold at most FoldMaxInput elements in all and each output at
// most FoldMaxOutput.
const (
	FoldMaxInput  = 1 << 24
	FoldMaxOutput = 1 << 22
)

// constFoldPass evaluates the nodes of the top-level graph whose inputs are
// all constants (initializers or folded values) with the ops kernels and
// turns their outputs into initializers. It leaves alone random
// (ops.NonDeterministic) kernels, nodes with subgraphs and outputs whose
// size is unknown or above FoldMaxOutput.
type constFoldPass struct{}

func (constFoldPass) Name() string { return "constfold" }

func (p constFoldPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (constFoldPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	drop := map[*ir.Node]bool{}
	opset := g.Opset()
	for _, n := range g.Nodes {
		if len(n.Subgraphs()) > 0 || !outputsFit(n) {
			continue
		}
		args := make([]*tensor.Tensor, len(n.Inputs))
		total, ok := 0, true
		for i, v := range n.Inputs {
			if v == nil {
				continue
			}
			if !isConst(g, v) {
				ok = false
				break
			}
			args[i] = v.Const
			total += v.Const.Len()
		}
		if !ok || total > FoldMaxInput {
			continue
		}
		k, err := ops.Prepare(n, opset)
		if err != nil {
			continue // the engine reports it, with its context
		}
		if _, nd := k.(ops.NonDeterministic); nd {
			continue
		}
		outs, err := k.Run(&ops.Env{Ctx: context.Background()}, args)
		if err != nil || len(outs) < len(n.Outputs) {
			continue // the error surfaces at run time
		}
		if materialize(g, n, outs) {
			drop[n] = true
			logf(log, "folded %s into %d constant(s)", n, len(outs))
		}
	}
	removeNodes(g, drop)
	return len(drop) > 0, nil
}

// outputsFit reports whether every output of n has a known shape of at
// most FoldMaxOutput elements.
func outputsFit(n *ir.Node) bool {
	for _, o := range n.Outputs {
		if o == nil {
			continue
		}
		dims, ok := o.Type.Shape.Ints()
		if !ok || tensor.CheckShape(dims) != nil || tensor.NumElements(dims) > FoldMaxOutput {
			return false
		}
	}
	return true
}

// materialize turns the outputs of n into initializers of g holding outs
// (the caller then drops n). It reports false, changing nothing, when an
// output has no tensor or not the type inferred for it.
func materialize(g *ir.Graph, n *ir.Node, outs []*tensor.Tensor) bool {
	for i, o := range n.Outputs {
		if o == nil {
			continue
		}
		t := outs[i]
		if t == nil || (o.Type.DType != tensor.Undefined && t.DType != o.Type.DType) {
			return false
		}
		if o.Type.Shape != nil && !o.Type.Shape.Matches(t.Shape) {
			return false
		}
	}
	for i, o := range n.Outputs {
		if o == nil {
			continue
		}
		o.Const, o.Type, o.Producer, o.ShapeValue = outs[i], ops.TypeOf(outs[i]), nil, nil
		g.Initializers = append(g.Initializers, o)
	}
	return true
}

func init() { Register(constFoldPass{}) }
