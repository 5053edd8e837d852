package optimize

import "github.com/kilnai/kiln/ir"

// identityPass removes Identity nodes, in g and in its subgraphs.
type identityPass struct{}

func (identityPass) Name() string { return "identity" }

func (p identityPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (identityPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		u := usesOf(g)
		drop := map[*ir.Node]bool{}
		for _, n := range g.Nodes {
			if !isOp(n, "Identity") || len(n.Inputs) != 1 || len(n.Outputs) != 1 {
				continue
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

func init() { Register(identityPass{}) }
