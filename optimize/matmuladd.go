package optimize

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// matMulAddPass fuses a float32 MatMul whose output feeds only an Add of a
// bias of shape [N] (N the output's last dimension) into kiln::FusedMatMul,
// and then the activation that alone reads it (as convfuse does). It works
// in g and in its subgraphs.
type matMulAddPass struct{}

func (matMulAddPass) Name() string { return "matmuladd" }

func (p matMulAddPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (matMulAddPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		drop := map[*ir.Node]bool{}
		changed := false
		for _, n := range g.Nodes {
			if drop[n] || len(n.Outputs) != 1 || n.Outputs[0] == nil || n.Outputs[0].Type.DType != tensor.Float32 {
				continue
			}
			if isOp(n, "MatMul") && len(n.Inputs) == 2 {
				u := usesOf(g)
				if add, bias := biasAdd(u, n, drop); add != nil {
					toFused(g, n, "FusedMatMul")
					n.Inputs = append(n.Inputs, bias)
					replaceOutput(n, add)
					drop[add] = true
					changed = true
					logf(log, "%s: fused bias %s", n.Name, add)
				}
			}
			if n.OpType != "FusedMatMul" || n.Domain != fusedDomain {
				continue
			}
			if what := fuseActivation(g, usesOf(g), n, drop); what != "" {
				changed = true
				logf(log, "%s: fused %s", n.Name, what)
			}
		}
		removeNodes(g, drop)
		return changed, nil
	})
}

// biasAdd returns the Add that alone reads mm's output and its other
// operand, when that is a float32 vector as long as the output's last
// dimension.
func biasAdd(u *usage, mm *ir.Node, drop map[*ir.Node]bool) (*ir.Node, *ir.Value) {
	out := mm.Outputs[0]
	add := u.only(out)
	if !isOp(add, "Add") || drop[add] || len(add.Inputs) != 2 || len(add.Outputs) != 1 {
		return nil, nil
	}
	b := add.Inputs[0]
	if b == out {
		b = add.Inputs[1]
	}
	s := out.Type.Shape
	if b == nil || b == out || b.Type.DType != tensor.Float32 || len(s) < 2 || len(b.Type.Shape) != 1 {
		return nil, nil
	}
	if n := s[len(s)-1]; !n.Known() || !b.Type.Shape[0].Equal(n) {
		return nil, nil
	}
	return add, b
}

func init() { Register(matMulAddPass{}) }
