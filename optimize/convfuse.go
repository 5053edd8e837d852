package optimize

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// fusedDomain is the domain of kiln's fused operators (ops/nn registers
// them: kiln::FusedConv and kiln::FusedMatMul).
const fusedDomain = "kiln"

// convFusePass turns float32 Conv nodes into kiln::FusedConv and fuses into
// them what follows: a residual Add of a tensor of the output's shape (added
// before the activation) and one activation (Relu, Clip, Sigmoid, SiLU as
// x*Sigmoid(x), HardSwish, LeakyRelu, HardSigmoid, Gelu), when the conv's output
// feeds nothing else. It works in g and in its subgraphs.
type convFusePass struct{}

func (convFusePass) Name() string { return "convfuse" }

func (p convFusePass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (convFusePass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		drop := map[*ir.Node]bool{}
		changed := false
		for _, n := range g.Nodes {
			if drop[n] || len(n.Outputs) != 1 || n.Outputs[0] == nil || n.Outputs[0].Type.DType != tensor.Float32 {
				continue
			}
			if isOp(n, "Conv") && len(n.Inputs) >= 2 && len(n.Inputs) <= 3 {
				if _, err := ops.ParseConvAttrs(n, g.Opset()); err != nil {
					continue // FusedConv would refuse them as Conv does
				}
				toFused(g, n, "FusedConv")
				changed = true
				logf(log, "%s: Conv as FusedConv", n.Name)
			}
			if n.OpType != "FusedConv" || n.Domain != fusedDomain {
				continue
			}
			for {
				u := usesOf(g)
				if what := fuseResidual(g, u, n, drop); what != "" {
					logf(log, "%s: fused %s", n.Name, what)
					changed = true
					continue
				}
				if what := fuseActivation(g, u, n, drop); what != "" {
					logf(log, "%s: fused %s", n.Name, what)
					changed = true
					continue
				}
				break
			}
		}
		removeNodes(g, drop)
		return changed, nil
	})
}

// toFused makes n the kiln op typ, keeping its attributes.
func toFused(g *ir.Graph, n *ir.Node, typ string) {
	n.OpType, n.Domain = typ, fusedDomain
	if n.Attrs == nil {
		n.Attrs = map[string]*ir.Attr{}
	}
	if g.Opsets == nil {
		g.Opsets = map[string]int64{}
	}
	if _, ok := g.Opsets[fusedDomain]; !ok {
		g.Opsets[fusedDomain] = 1
	}
}

// hasEpilogue reports whether fused node n already applies an activation
// (or has one that does not parse: it is left alone).
func hasEpilogue(n *ir.Node) bool {
	a, err := ops.ParseEpilogueAttrs(n)
	return err != nil || a.Activation != ""
}

// fuseResidual fuses an Add of conv's output and another tensor of the
// same shape into conv's residual input. It returns what it fused, or "".
func fuseResidual(g *ir.Graph, u *usage, conv *ir.Node, drop map[*ir.Node]bool) string {
	if hasEpilogue(conv) || conv.Input(3) != nil {
		return ""
	}
	out := conv.Outputs[0]
	add := u.only(out)
	if !isOp(add, "Add") || drop[add] || len(add.Inputs) != 2 || len(add.Outputs) != 1 {
		return ""
	}
	z := add.Inputs[0]
	if z == out {
		z = add.Inputs[1]
	}
	if z == nil || z == out || z.Type.DType != tensor.Float32 || !sameShape(z.Type.Shape, out.Type.Shape) {
		return ""
	}
	for len(conv.Inputs) < 3 {
		conv.Inputs = append(conv.Inputs, nil)
	}
	conv.Inputs = append(conv.Inputs[:3], z)
	replaceOutput(conv, add)
	drop[add] = true
	return "residual " + add.String()
}

// sameShape reports whether two shapes are certainly equal.
func sameShape(a, b ir.Shape) bool {
	if a == nil || b == nil || len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// replaceOutput makes n produce the output of next, which it absorbs.
func replaceOutput(n, next *ir.Node) {
	o := next.Outputs[0]
	n.Outputs[0] = o
	o.Producer = n
}

// fuseActivation fuses the activation that alone reads n's output (or a
// SiLU: Sigmoid(y) and Mul(y, Sigmoid(y))) into fused node n. It returns
// what it fused, or "".
func fuseActivation(g *ir.Graph, u *usage, n *ir.Node, drop map[*ir.Node]bool) string {
	if hasEpilogue(n) {
		return ""
	}
	out := n.Outputs[0]
	if act := u.only(out); act != nil && !drop[act] && len(act.Outputs) >= 1 && act.Input(0) == out {
		name, params, ok := activationOf(g, act)
		if !ok {
			return ""
		}
		for _, o := range act.Outputs[1:] {
			if o != nil && u.used(o) {
				return ""
			}
		}
		setActivation(n, name, params)
		replaceOutput(n, act)
		drop[act] = true
		return name + " " + act.String()
	}
	// SiLU: exactly two readers, Sigmoid(out) and Mul(out, Sigmoid(out))
	c := u.consumers[out]
	if len(c) != 2 || u.captured[out] || u.output[out] {
		return ""
	}
	sig, mul := c[0], c[1]
	if isOp(mul, "Sigmoid") {
		sig, mul = mul, sig
	}
	if !isOp(sig, "Sigmoid") || !isOp(mul, "Mul") || drop[sig] || drop[mul] || len(mul.Inputs) != 2 || len(sig.Outputs) != 1 {
		return ""
	}
	s := sig.Outputs[0]
	if u.only(s) != mul || !((mul.Inputs[0] == out && mul.Inputs[1] == s) || (mul.Inputs[0] == s && mul.Inputs[1] == out)) {
		return ""
	}
	setActivation(n, "SiLU", nil)
	replaceOutput(n, mul)
	drop[sig], drop[mul] = true, true
	return "SiLU " + sig.String() + " " + mul.String()
}

func setActivation(n *ir.Node, name string, params []float32) {
	n.Attrs["activation"] = ir.StringAttr("activation", name)
	if params != nil {
		n.Attrs["activation_params"] = &ir.Attr{Name: "activation_params", Type: ir.AttrFloats, Floats: params}
	}
}

// activationOf returns the fused activation name and parameters that act
// computes, if it is one a fused op can apply.
func activationOf(g *ir.Graph, act *ir.Node) (string, []float32, bool) {
	var a ops.ActivationAttrs
	switch {
	case act.OpType == "Gelu" && (act.Domain == fusedDomain || isOp(act, "Gelu")),
		isOp(act, "LeakyRelu"), isOp(act, "HardSigmoid"):
		var err error
		if a, err = ops.ParseActivationAttrs(act, g.Opset()); err != nil {
			return "", nil, false
		}
	}
	switch {
	case act.OpType == "Gelu" && (act.Domain == fusedDomain || isOp(act, "Gelu")):
		name := "Gelu"
		if a.Tanh {
			name = "GeluTanh"
		}
		return name, nil, len(act.Inputs) == 1
	case isOp(act, "Relu"), isOp(act, "Sigmoid"), isOp(act, "HardSwish"):
		return act.OpType, nil, len(act.Inputs) == 1
	case isOp(act, "LeakyRelu"):
		return "LeakyRelu", []float32{a.Alpha}, true
	case isOp(act, "HardSigmoid"):
		return "HardSigmoid", []float32{a.Alpha, a.Beta}, true
	case isOp(act, "Clip"):
		c, err := ops.ParseClipAttrs(act, g.Opset())
		if err != nil {
			return "", nil, false
		}
		lo, hi := c.Min, c.Max
		if !c.FromAttrs {
			for i, p := range []*float32{&lo, &hi} {
				v := act.Input(i + 1)
				if v == nil {
					continue
				}
				if !isConst(g, v) || v.Const.DType != tensor.Float32 || v.Const.Len() != 1 {
					return "", nil, false
				}
				*p = v.Const.Float32s()[0]
			}
		}
		if !(lo <= hi) {
			return "", nil, false
		}
		return "Clip", []float32{lo, hi}, true
	}
	return "", nil, false
}

func init() { Register(convFusePass{}) }
