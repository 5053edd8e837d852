package optimize

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// transposePass removes Transposes that do nothing and merges chains:
//
//	Transpose(x, perm = identity)          -> x
//	Transpose(Transpose(x, p1), p2)        -> Transpose(x, p1[p2[i]]), or x
//	                                          when that perm is the identity
//
// The inner Transpose stays while something else reads it (dce drops it
// otherwise). A Transpose of a constant is constfold's: it evaluates it.
// It works in g and in its subgraphs.
type transposePass struct{}

func (transposePass) Name() string { return "transpose" }

func (p transposePass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (transposePass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		drop := map[*ir.Node]bool{}
		changed := false
		for _, n := range g.Nodes {
			if drop[n] || !isOp(n, "Transpose") || len(n.Inputs) != 1 || len(n.Outputs) != 1 || n.Inputs[0] == nil {
				continue
			}
			perm, ok := transposePerm(n)
			if !ok {
				continue
			}
			in := n.Inputs[0]
			if p := in.Producer; isOp(p, "Transpose") && !drop[p] && inGraph(g, p) && len(p.Inputs) == 1 && p.Inputs[0] != nil {
				if inner, ok := transposePerm(p); ok && len(inner) == len(perm) {
					composed := make([]int64, len(perm))
					for i, j := range perm {
						composed[i] = inner[j]
					}
					logf(log, "%s of %s as one transpose, perm %v", n, p, composed)
					n.Inputs[0], in, perm = p.Inputs[0], p.Inputs[0], composed
					n.Attrs["perm"] = ir.IntsAttr("perm", composed...)
					changed = true
				}
			}
			if isIdentityPerm(perm) && bypass(g, usesOf(g), n, in, n.Outputs[0], drop) {
				logf(log, "removed %s, an identity permutation", n)
				changed = true
			}
		}
		removeNodes(g, drop)
		return changed, nil
	})
}

// transposePerm returns the permutation n applies, reading the rank from
// its input's shape when perm is absent (reversal); ok is false when it is
// not a valid permutation or the rank is unknown.
func transposePerm(n *ir.Node) ([]int64, bool) {
	a, err := ops.ParseTransposeAttrs(n, 0) // the same at every opset
	if err != nil {
		return nil, false
	}
	perm := a.Perm
	if perm == nil {
		s := n.Inputs[0].Type.Shape
		if s == nil {
			return nil, false
		}
		perm = make([]int64, len(s))
		for i := range perm {
			perm[i] = int64(len(s) - 1 - i)
		}
	}
	if s := n.Inputs[0].Type.Shape; s != nil && len(s) != len(perm) {
		return nil, false
	}
	return perm, true
}

func isIdentityPerm(perm []int64) bool {
	for i, p := range perm {
		if p != int64(i) {
			return false
		}
	}
	return true
}

func init() { Register(transposePass{}) }
