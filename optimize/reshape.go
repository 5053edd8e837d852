package optimize

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// reshapePass simplifies the ops that only change a tensor's shape
// (Reshape, Flatten, Squeeze, Unsqueeze), in g and in its subgraphs:
//
//   - one whose output has its input's shape (dimension by dimension, a
//     symbolic dimension matching only the same symbol) is removed;
//   - one reading another such op's output reads that op's input instead,
//     as one Reshape to a constant shape (the first then goes with dce);
//   - a Reshape whose target shape is computed at run time (Shape ->
//     Gather -> Unsqueeze -> Concat, as exporters write for a symbolic
//     batch) gets that shape as a constant, when inference knows each
//     element, so that the shape arithmetic goes with dce.
//
// A constant shape keeps symbolic dimensions right: an element is 0 (copy
// the input's dimension) only where the input has the same symbol at the
// same index, and -1 only where the original already had it or, for a
// merged chain, where every other dimension is a known positive size. It
// leaves a Reshape alone when that cannot be proved.
type reshapePass struct{}

func (reshapePass) Name() string { return "reshape" }

func (p reshapePass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (reshapePass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		nm := newNamer(g)
		drop := map[*ir.Node]bool{}
		nodes := map[*ir.Node]bool{}
		for _, n := range g.Nodes {
			nodes[n] = true
		}
		changed := false
		for _, n := range g.Nodes {
			if drop[n] || !isShapeOnly(n) || len(n.Outputs) != 1 || n.Outputs[0] == nil || len(n.Inputs) == 0 || n.Inputs[0] == nil {
				continue
			}
			x, y := n.Inputs[0], n.Outputs[0]
			if x.Type.DType == y.Type.DType && sameShape(x.Type.Shape, y.Type.Shape) && bypass(g, usesOf(g), n, x, y, drop) {
				logf(log, "removed %s: its output has its input's shape %v", n, x.Type.Shape)
				changed = true
				continue
			}
			if p := x.Producer; p != nil && nodes[p] && !drop[p] && isShapeOnly(p) && len(p.Inputs) > 0 && p.Inputs[0] != nil {
				if spec, ok := staticSpec(p.Inputs[0].Type.Shape, y.Type.Shape); ok {
					logf(log, "%s of %s as one Reshape to %v", n, p, spec)
					setReshape(g, nm, n, p.Inputs[0], spec)
					changed = true
					continue
				}
			}
			if isOp(n, "Reshape") && g.Opset() >= 5 && len(n.Inputs) == 2 && !isConst(g, n.Inputs[1]) {
				if spec, ok := runtimeSpec(g, n, nodes); ok {
					logf(log, "%s: shape computed at run time as the constant %v", n, spec)
					setReshape(g, nm, n, x, spec)
					changed = true
				}
			}
		}
		removeNodes(g, drop)
		return changed, nil
	})
}

// isShapeOnly reports whether n only reshapes its first input.
func isShapeOnly(n *ir.Node) bool {
	return isOp(n, "Reshape") || isOp(n, "Flatten") || isOp(n, "Squeeze") || isOp(n, "Unsqueeze")
}

// setReshape makes n a Reshape of x to the constant shape spec (allowzero
// 0: a 0 copies x's dimension).
func setReshape(g *ir.Graph, nm *namer, n *ir.Node, x *ir.Value, spec []int64) {
	n.OpType, n.Domain = "Reshape", ""
	if g.Opset() < 5 {
		n.Inputs = []*ir.Value{x}
		n.Attrs = map[string]*ir.Attr{"shape": ir.IntsAttr("shape", spec...)}
		return
	}
	t := tensor.New(tensor.Int64, len(spec))
	copy(t.Int64s(), spec)
	n.Inputs = []*ir.Value{x, addInit(g, nm, n.Name+"_shape", t)}
	n.Attrs = map[string]*ir.Attr{}
}

// staticSpec returns a Reshape target that turns a tensor of shape in into
// one of shape out: known sizes as they are, a symbolic size as 0 where in
// has the same symbol at the same index, and at most one other dimension
// as -1 when all the others are known positive sizes.
func staticSpec(in, out ir.Shape) ([]int64, bool) {
	if in == nil || out == nil {
		return nil, false
	}
	spec := make([]int64, len(out))
	open := -1
	for i, d := range out {
		switch {
		case d.Known() && d.Val > 0:
			spec[i] = d.Val
		case d.Known():
			return nil, false // a 0 would copy in's dimension
		case d.Symbolic() && i < len(in) && in[i].Symbolic() && in[i].Sym == d.Sym:
			spec[i] = 0
		case open >= 0:
			return nil, false
		default:
			open = i
		}
	}
	if open >= 0 {
		for i, d := range out {
			if i != open && !(d.Known() && d.Val > 0) {
				return nil, false
			}
		}
		spec[open] = -1
	}
	return spec, true
}

// specElem is one element of a Reshape target: a literal, or a dimension
// inference knows (a symbolic one stands for its run-time size).
type specElem struct {
	lit   int64
	dim   ir.Dim
	isLit bool
}

// specElems returns the elements of the integer vector v as inference
// knows them: from a constant, from a Concat (axis 0) of known parts, or
// from v's ShapeValue when each element is known or symbolic. Unlike the
// ShapeValue alone it keeps literal negative elements such as -1.
func specElems(g *ir.Graph, v *ir.Value, nodes map[*ir.Node]bool, depth int) ([]specElem, bool) {
	if v == nil || depth > 8 {
		return nil, false
	}
	if v.Const != nil {
		if !isConst(g, v) || !v.Const.DType.IsInt() || v.Const.Rank() > 1 {
			return nil, false
		}
		var out []specElem
		for _, x := range v.Const.Ints() {
			out = append(out, specElem{lit: x, isLit: true})
		}
		return out, true
	}
	if p := v.Producer; isOp(p, "Concat") && nodes[p] && len(p.Outputs) == 1 {
		if a, err := ops.ParseConcatAttrs(p, g.Opset()); err == nil && (a.Axis == 0 || a.Axis == -1) {
			var out []specElem
			ok := true
			for _, in := range p.Inputs {
				e, good := specElems(g, in, nodes, depth+1)
				if !good {
					ok = false
					break
				}
				out = append(out, e...)
			}
			if ok {
				return out, true
			}
		}
	}
	if v.ShapeValue == nil {
		return nil, false
	}
	out := make([]specElem, len(v.ShapeValue))
	for i, d := range v.ShapeValue {
		switch {
		case d.Known():
			out[i] = specElem{lit: d.Val, isLit: true}
		case d.Symbolic():
			out[i] = specElem{dim: d}
		default:
			return nil, false
		}
	}
	return out, true
}

// runtimeSpec returns a constant equal, at run time, to the target shape
// that Reshape n computes: each element as inference knows it, a symbolic
// one as 0 where n's input has that symbol at that index (allowzero 0).
func runtimeSpec(g *ir.Graph, n *ir.Node, nodes map[*ir.Node]bool) ([]int64, bool) {
	elems, ok := specElems(g, n.Inputs[1], nodes, 0)
	if !ok {
		return nil, false
	}
	if a, err := ops.ParseReshapeAttrs(n, g.Opset()); err != nil || a.AllowZero {
		return nil, false
	}
	in := n.Inputs[0].Type.Shape
	spec := make([]int64, len(elems))
	for i, e := range elems {
		switch {
		case e.isLit:
			spec[i] = e.lit
		case in != nil && i < len(in) && in[i].Symbolic() && in[i].Sym == e.dim.Sym:
			spec[i] = 0
		default:
			return nil, false
		}
	}
	return spec, true
}

func init() { Register(reshapePass{}) }
