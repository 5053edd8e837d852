package optimize

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// skipLayerNormPass turns a float32 LayerNormalization over the last axis
// (ONNX or kiln::, its Mean and InvStdDev outputs unused) into
// kiln::SkipLayerNormalization, together with the Add before it when that
// adds two tensors of the same shape (a transformer's residual): one pass
// over each row instead of an Add, then a LayerNormalization that also
// computes statistics nobody reads. When the Add's output has other readers
// the fused node gives it as its second output. It works in g and in its
// subgraphs; only the CPU runs kiln::SkipLayerNormalization (DevicePass).
type skipLayerNormPass struct{}

func (skipLayerNormPass) Name() string { return "skiplayernorm" }

func (skipLayerNormPass) Devices() []string { return []string{"cpu"} }

func (p skipLayerNormPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (skipLayerNormPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		u := usesOf(g)
		drop := map[*ir.Node]bool{}
		changed := false
		for _, n := range g.Nodes {
			if drop[n] {
				continue
			}
			la, ok := plainLayerNorm(u, n, g.Opset())
			if !ok {
				continue
			}
			x := n.Inputs[0]
			ins := []*ir.Value{x, nil, n.Inputs[1], n.Input(2)}
			outs := []*ir.Value{n.Outputs[0]}
			what := ""
			if add := x.Producer; isOp(add, "Add") && !drop[add] && inGraph(g, add) && sameAdd(add) {
				ins[0], ins[1] = add.Inputs[0], add.Inputs[1]
				if u.only(x) != n {
					outs = append(outs, x) // the sum, read elsewhere too
				}
				drop[add] = true
				what = " with the residual " + add.String()
			}
			eps := la.Epsilon
			if ins[3] == nil {
				ins = ins[:3]
			}
			toFused(g, n, "SkipLayerNormalization")
			n.Inputs, n.Outputs = ins, outs
			n.Attrs = map[string]*ir.Attr{"epsilon": ir.FloatAttr("epsilon", eps)}
			for _, o := range outs {
				o.Producer = n
			}
			changed = true
			logf(log, "%s: LayerNormalization%s as kiln::SkipLayerNormalization", n.Name, what)
		}
		removeNodes(g, drop)
		return changed, nil
	})
}

// plainLayerNorm reports whether n is a float32 LayerNormalization (ONNX or
// kiln::) over the last axis with float32 statistics (stash_type 1, the
// default), a Scale (and Bias, if any) of the last dimension's known
// length, and Mean and InvStdDev outputs that nothing reads.
// It returns n's attributes (not ok when they do not parse).
func plainLayerNorm(u *usage, n *ir.Node, opset int64) (a ops.LayerNormAttrs, ok bool) {
	if n == nil || n.OpType != "LayerNormalization" || !(n.Domain == "" || n.Domain == "ai.onnx" || n.Domain == fusedDomain) {
		return a, false
	}
	if len(n.Inputs) < 2 || len(n.Inputs) > 3 || len(n.Outputs) == 0 || n.Outputs[0] == nil {
		return a, false
	}
	for _, o := range n.Outputs[1:] {
		if o != nil && u.used(o) {
			return a, false
		}
	}
	x := n.Inputs[0]
	if x == nil || x.Type.DType != tensor.Float32 || len(x.Type.Shape) == 0 {
		return a, false
	}
	r := int64(len(x.Type.Shape))
	a, err := ops.ParseLayerNormAttrs(n, opset)
	if err != nil { // the kernel refuses it
		return a, false
	}
	if ax := a.Axis; ax != -1 && ax != r-1 {
		return a, false
	}
	if a.StashType != tensor.Float32 {
		return a, false // statistics asked for in another precision
	}
	d := x.Type.Shape[r-1]
	if !d.Known() {
		return a, false
	}
	for _, v := range n.Inputs[1:] {
		if v == nil {
			continue
		}
		if v.Type.DType != tensor.Float32 || len(v.Type.Shape) != 1 || !v.Type.Shape[0].Equal(d) {
			return a, false
		}
	}
	return a, n.Inputs[1] != nil
}

// sameAdd reports whether add is a float32 Add of two tensors of the
// output's shape (no broadcasting).
func sameAdd(add *ir.Node) bool {
	if len(add.Inputs) != 2 || len(add.Outputs) != 1 || add.Outputs[0] == nil {
		return false
	}
	s := add.Outputs[0].Type.Shape
	if s == nil {
		return false
	}
	for _, v := range add.Inputs {
		if v == nil || v.Type.DType != tensor.Float32 || len(v.Type.Shape) != len(s) {
			return false
		}
		for i, d := range v.Type.Shape {
			if !d.Equal(s[i]) {
				return false
			}
		}
	}
	return true
}

func init() { Register(skipLayerNormPass{}) }
