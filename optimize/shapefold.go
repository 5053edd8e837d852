package optimize

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// shapeFoldPass replaces, in the top-level graph, the nodes whose outputs
// shape inference (ops.InferGraph) has already computed — a Const, or a
// fully known integer ShapeValue such as Shape of a static tensor — with
// initializers, so that Shape -> Gather -> Concat -> Reshape chains become
// constants (the dead producers go with dce).
type shapeFoldPass struct{}

func (shapeFoldPass) Name() string { return "shapefold" }

func (p shapeFoldPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (shapeFoldPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	drop := map[*ir.Node]bool{}
	for _, n := range g.Nodes {
		if len(n.Subgraphs()) > 0 || len(n.Outputs) == 0 {
			continue
		}
		outs := make([]*tensor.Tensor, len(n.Outputs))
		ok := true
		for i, o := range n.Outputs {
			if o == nil {
				continue
			}
			if outs[i] = knownValue(o); outs[i] == nil {
				ok = false
				break
			}
		}
		if ok && materialize(g, n, outs) {
			drop[n] = true
			logf(log, "replaced %s by its computed value", n)
		}
	}
	removeNodes(g, drop)
	return len(drop) > 0, nil
}

// knownValue returns v's contents when inference has computed them.
func knownValue(v *ir.Value) *tensor.Tensor {
	if v.Const != nil {
		return v.Const
	}
	sv := v.ShapeValue
	if sv == nil || (v.Type.DType != tensor.Int64 && v.Type.DType != tensor.Int32) {
		return nil
	}
	if s := v.Type.Shape; s != nil && !s.Matches([]int{len(sv)}) {
		return nil
	}
	t := tensor.New(v.Type.DType, len(sv))
	for i, d := range sv {
		if !d.Known() {
			return nil
		}
		t.SetFloat(i, float64(d.Val))
	}
	return t
}

func init() { Register(shapeFoldPass{}) }
