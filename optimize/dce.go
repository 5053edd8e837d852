package optimize

import "github.com/kilnai/kiln/ir"

// dcePass removes nodes none of whose outputs is read (by a node, a
// subgraph or the graph's outputs), in g and in its subgraphs, and the
// initializers nothing reads.
type dcePass struct{}

func (dcePass) Name() string { return "dce" }

func (p dcePass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (dcePass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		changed := false
		for {
			u := usesOf(g)
			drop := map[*ir.Node]bool{}
			for _, n := range g.Nodes {
				live := false
				for _, o := range n.Outputs {
					if o != nil && u.used(o) {
						live = true
					}
				}
				if !live {
					drop[n] = true
					logf(log, "removed unused %s", n)
				}
			}
			if len(drop) == 0 {
				break
			}
			removeNodes(g, drop)
			changed = true
		}
		u := usesOf(g)
		kept := g.Initializers[:0]
		n := 0
		for _, v := range g.Initializers {
			if u.used(v) {
				kept = append(kept, v)
			} else {
				n++
			}
		}
		for i := len(kept); i < len(g.Initializers); i++ {
			g.Initializers[i] = nil
		}
		g.Initializers = kept
		if n > 0 {
			logf(log, "removed %d unused initializers", n)
			changed = true
		}
		return changed, nil
	})
}

func init() { Register(dcePass{}) }
