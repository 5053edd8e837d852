package optimize

import "github.com/kilnai/kiln/ir"

// dropoutPass removes Dropout nodes, which are the identity at inference:
// those whose mask output is unused and that are not in training mode (a constant false
// or absent training_mode input), in g and in its subgraphs. Before opset
// 12 Dropout is always the identity at inference, as in the engine.
type dropoutPass struct{}

func (dropoutPass) Name() string { return "dropout" }

func (p dropoutPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (dropoutPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		u := usesOf(g)
		drop := map[*ir.Node]bool{}
		for _, n := range g.Nodes {
			if !isOp(n, "Dropout") || len(n.Inputs) == 0 || len(n.Outputs) == 0 {
				continue
			}
			if len(n.Outputs) > 1 && n.Outputs[1] != nil && u.used(n.Outputs[1]) {
				continue
			}
			if tm := n.Input(2); tm != nil {
				if !isConst(g, tm) || tm.Const.Len() != 1 || tm.Const.Float(0) != 0 {
					continue
				}
			}
			if bypass(g, u, n, n.Inputs[0], n.Outputs[0], drop) {
				logf(log, "removed %s", n)
				u = usesOf(g)
			}
		}
		removeNodes(g, drop)
		return len(drop) > 0, nil
	})
}

func init() { Register(dropoutPass{}) }
