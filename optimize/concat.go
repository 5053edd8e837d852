package optimize

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// concatPass elides Concats that rebuild a tensor the graph already has,
// in g and in its subgraphs:
//
//   - Concat(x) -> x;
//   - a run of Concat inputs that are all the outputs of one Split, in
//     order, along the Concat's axis -> the Split's input;
//   - a run of Concat inputs that are Slices (step 1, constant bounds) of
//     one tensor along the Concat's axis, each starting where the previous
//     one ends, from 0 to the end -> that tensor.
//
// A Concat left with one input is then removed; the Splits and Slices go
// with dce when nothing else reads them.
type concatPass struct{}

func (concatPass) Name() string { return "concat" }

func (p concatPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (concatPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		nodes := map[*ir.Node]bool{}
		for _, n := range g.Nodes {
			nodes[n] = true
		}
		drop := map[*ir.Node]bool{}
		changed := false
		for _, n := range g.Nodes {
			if !isOp(n, "Concat") || len(n.Outputs) != 1 || n.Outputs[0] == nil || len(n.Inputs) == 0 {
				continue
			}
			if ins, what := elideRuns(g, n, nodes); what != "" {
				n.Inputs = ins
				changed = true
				logf(log, "%s: %s", n, what)
			}
			if len(n.Inputs) == 1 && bypass(g, usesOf(g), n, n.Inputs[0], n.Outputs[0], drop) {
				changed = true
				logf(log, "removed %s of one input", n)
			}
		}
		removeNodes(g, drop)
		return changed, nil
	})
}

// elideRuns returns the inputs of Concat n with each run of Split outputs
// or Slices that rebuilds a tensor replaced by that tensor, and what it
// did ("" when nothing).
func elideRuns(g *ir.Graph, n *ir.Node, nodes map[*ir.Node]bool) ([]*ir.Value, string) {
	out := n.Outputs[0]
	rank := len(out.Type.Shape)
	if out.Type.Shape == nil {
		return nil, ""
	}
	a, err := ops.ParseConcatAttrs(n, g.Opset()) // axis 1 by default before opset 4
	if err != nil {
		return nil, ""
	}
	axis := a.Axis
	if axis < 0 {
		axis += int64(rank)
	}
	if axis < 0 || axis >= int64(rank) {
		return nil, ""
	}
	var ins []*ir.Value
	what := ""
	for i := 0; i < len(n.Inputs); {
		if x, k := splitRun(g, n.Inputs[i:], axis, nodes); k > 0 {
			ins = append(ins, x)
			what += "the outputs of " + n.Inputs[i].Producer.String() + " as its input; "
			i += k
			continue
		}
		if x, k := sliceRun(g, n.Inputs[i:], axis, nodes); k > 0 {
			ins = append(ins, x)
			what += "slices of " + x.Name + " as the whole; "
			i += k
			continue
		}
		ins = append(ins, n.Inputs[i])
		i++
	}
	if what == "" {
		return nil, ""
	}
	return ins, what[:len(what)-2]
}

// splitRun reports whether vs starts with all the outputs, in order, of a
// Split along axis; it returns the Split's input and the run's length.
func splitRun(g *ir.Graph, vs []*ir.Value, axis int64, nodes map[*ir.Node]bool) (*ir.Value, int) {
	if vs[0] == nil {
		return nil, 0
	}
	s := vs[0].Producer
	if !isOp(s, "Split") || !nodes[s] || len(s.Inputs) == 0 || s.Inputs[0] == nil || len(s.Outputs) > len(vs) {
		return nil, 0
	}
	x := s.Inputs[0]
	if x.Type.Shape == nil || x.Type.DType != vs[0].Type.DType {
		return nil, 0
	}
	sa, err := ops.ParseSplitAttrs(s, g.Opset())
	if err != nil {
		return nil, 0
	}
	ax := sa.Axis
	if ax < 0 {
		ax += int64(len(x.Type.Shape))
	}
	if ax != axis {
		return nil, 0
	}
	for i, o := range s.Outputs {
		if o == nil || vs[i] != o {
			return nil, 0
		}
	}
	return x, len(s.Outputs)
}

// toEnd stands for a slice bound past the end of an axis of unknown size.
const toEnd = math.MaxInt64

// sliceRun reports whether vs starts with Slices of one tensor along axis
// that together cover it in order; it returns the tensor and the run's
// length.
func sliceRun(g *ir.Graph, vs []*ir.Value, axis int64, nodes map[*ir.Node]bool) (*ir.Value, int) {
	var x *ir.Value
	var next int64
	for i, v := range vs {
		sx, start, end, ok := sliceBounds(g, v, axis, nodes)
		if !ok || (x != nil && sx != x) || start != next {
			return nil, 0
		}
		if x == nil {
			if sx.Type.DType != v.Type.DType {
				return nil, 0
			}
			x = sx
		}
		if end == toEnd {
			if i == 0 {
				return nil, 0 // the whole tensor already: not a Concat's business
			}
			return x, i + 1
		}
		next = end
	}
	return nil, 0
}

// sliceBounds returns, when v is the output of a Slice along axis only with
// step 1 and constant bounds, its data input and the [start, end) it
// takes, normalized to the axis's size (end is toEnd when the slice runs to
// the end).
func sliceBounds(g *ir.Graph, v *ir.Value, axis int64, nodes map[*ir.Node]bool) (x *ir.Value, start, end int64, ok bool) {
	if v == nil {
		return nil, 0, 0, false
	}
	s := v.Producer
	if !isOp(s, "Slice") || !nodes[s] || len(s.Inputs) == 0 || s.Inputs[0] == nil || len(s.Outputs) != 1 {
		return nil, 0, 0, false
	}
	x = s.Inputs[0]
	shape := x.Type.Shape
	if shape == nil {
		return nil, 0, 0, false
	}
	rank := int64(len(shape))
	var starts, ends, axes, steps []int64
	sa, err := ops.ParseSliceAttrs(s, g.Opset())
	if err != nil {
		return nil, 0, 0, false
	}
	if sa.FromAttrs {
		starts, ends, axes = sa.Starts, sa.Ends, sa.Axes
	} else {
		for i, p := range []*[]int64{&starts, &ends, &axes, &steps} {
			in := s.Input(i + 1)
			if in == nil {
				continue
			}
			if !isConst(g, in) || !in.Const.DType.IsInt() || in.Const.Rank() != 1 {
				return nil, 0, 0, false
			}
			*p = in.Const.Ints()
		}
	}
	if len(starts) != 1 || len(ends) != 1 || len(axes) > 1 || len(steps) > 1 || (len(steps) == 1 && steps[0] != 1) {
		return nil, 0, 0, false
	}
	ax := int64(0)
	if len(axes) == 1 {
		ax = axes[0]
	}
	if ax < 0 {
		ax += rank
	}
	if ax != axis {
		return nil, 0, 0, false
	}
	start, end = starts[0], ends[0]
	if d := shape[ax]; d.Known() {
		norm := func(b int64) int64 {
			if b < 0 {
				b += d.Val
			}
			return min(max(b, 0), d.Val)
		}
		start, end = norm(start), norm(end)
		if end == d.Val {
			end = toEnd
		}
		return x, start, max(end, start), true
	}
	if start < 0 || end < 0 {
		return nil, 0, 0, false
	}
	if end >= math.MaxInt32 {
		end = toEnd
	}
	return x, start, max(end, start), true
}

func init() { Register(concatPass{}) }
