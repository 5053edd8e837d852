package optimize

import (
	"fmt"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// qkvMergePass merges the float32 MatMul and kiln::FusedMatMul nodes that
// read the same input with constant 2-D weights (the Q, K and V
// projections of attention, a GLU's gate and up projections) and apply the
// same activation into one kiln::FusedMatMul with the weights (and biases,
// zeros where a node has none) concatenated along N, followed by a Split
// along the last axis that produces the original outputs: one larger GEMM
// instead of several that each read the input. It works in g and in its
// subgraphs, and runs after matmuladd so that the biases and activations
// are already fused, and after attention, which it does not disturb (the
// attention pattern starts at the projections' outputs).
type qkvMergePass struct{}

func (qkvMergePass) Name() string { return "qkvmerge" }

func (p qkvMergePass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (qkvMergePass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		type key struct {
			x   *ir.Value
			k   int
			act string
		}
		groups := map[key][]*ir.Node{}
		var keys []key
		for _, n := range g.Nodes {
			k, act, ok := projection(g, n)
			if !ok {
				continue
			}
			kk := key{n.Inputs[0], k, act}
			if groups[kk] == nil {
				keys = append(keys, kk)
			}
			groups[kk] = append(groups[kk], n)
		}
		nm := newNamer(g)
		drop := map[*ir.Node]bool{}
		var added []*ir.Node
		for _, kk := range keys {
			ns := groups[kk]
			if len(ns) < 2 {
				continue
			}
			mm, split := mergeProjections(g, nm, ns)
			for _, n := range ns {
				drop[n] = true
			}
			added = append(added, mm, split)
			names := make([]string, len(ns))
			for i, n := range ns {
				names[i] = n.String()
			}
			logf(log, "merged %s into %s and %s", strings.Join(names, ", "), mm, split)
		}
		removeNodes(g, drop)
		g.Nodes = append(g.Nodes, added...)
		return len(added) > 0, nil
	})
}

// projection reports whether n is a float32 MatMul or kiln::FusedMatMul of
// a non-constant input by a constant [K, N] weight (with, for FusedMatMul,
// an optional constant bias [N]); it returns K and a key of its activation.
func projection(g *ir.Graph, n *ir.Node) (k int, act string, ok bool) {
	fused := n.OpType == "FusedMatMul" && n.Domain == fusedDomain
	if !fused && !isOp(n, "MatMul") || len(n.Outputs) != 1 || n.Outputs[0] == nil {
		return 0, "", false
	}
	if len(n.Inputs) != 2 && !(fused && len(n.Inputs) == 3) {
		return 0, "", false
	}
	x, w := n.Inputs[0], n.Inputs[1]
	if x == nil || x.Type.DType != tensor.Float32 || isConst(g, x) || len(x.Type.Shape) < 1 || n.Outputs[0].Type.DType != tensor.Float32 {
		return 0, "", false
	}
	if !isConst(g, w) || w.Const.DType != tensor.Float32 || w.Const.Rank() != 2 {
		return 0, "", false
	}
	if b := n.Input(2); b != nil {
		if !isConst(g, b) || b.Const.DType != tensor.Float32 || b.Const.Rank() != 1 || b.Const.Shape[0] != w.Const.Shape[1] {
			return 0, "", false
		}
	}
	if fused {
		for name := range n.Attrs {
			if name != "activation" && name != "activation_params" {
				return 0, "", false // an attribute this pass does not know
			}
		}
		e, err := ops.ParseFusedMatMulAttrs(n, g.Opset())
		if err != nil {
			return 0, "", false
		}
		if e.Activation != "" {
			act = fmt.Sprint(e.Activation, e.P0, e.P1)
		}
	}
	return w.Const.Shape[0], act, true
}

// mergeProjections returns the FusedMatMul computing the projections ns at
// once and the Split that hands out their outputs.
func mergeProjections(g *ir.Graph, nm *namer, ns []*ir.Node) (*ir.Node, *ir.Node) {
	k := ns[0].Inputs[1].Const.Shape[0]
	total, hasBias := 0, false
	sizes := make([]int64, len(ns))
	for i, n := range ns {
		sizes[i] = int64(n.Inputs[1].Const.Shape[1])
		total += int(sizes[i])
		hasBias = hasBias || n.Input(2) != nil
	}
	w := tensor.New(tensor.Float32, k, total)
	wv := w.Float32s()
	var bias *tensor.Tensor
	if hasBias {
		bias = tensor.New(tensor.Float32, total)
	}
	off := 0
	for i, n := range ns {
		cols := int(sizes[i])
		src := n.Inputs[1].Const.Float32s()
		for r := 0; r < k; r++ {
			copy(wv[r*total+off:r*total+off+cols], src[r*cols:(r+1)*cols])
		}
		if b := n.Input(2); b != nil {
			copy(bias.Float32s()[off:off+cols], b.Const.Float32s())
		}
		off += cols
	}
	base := ns[0].Name + "_merged"
	in := []*ir.Value{ns[0].Inputs[0], addInit(g, nm, base+"_weight", w)}
	if hasBias {
		in = append(in, addInit(g, nm, base+"_bias", bias))
	}
	y := &ir.Value{Name: nm.name(base + "_output")}
	mm := &ir.Node{Name: nm.name(base), Inputs: in, Outputs: []*ir.Value{y}, Attrs: map[string]*ir.Attr{}}
	toFused(g, mm, "FusedMatMul")
	for name, a := range ns[0].Attrs {
		mm.Attrs[name] = a
	}
	y.Producer = mm
	split := &ir.Node{Name: nm.name(base + "_split"), OpType: "Split", Inputs: []*ir.Value{y},
		Attrs: map[string]*ir.Attr{"axis": ir.IntAttr("axis", int64(len(in[0].Type.Shape)-1))}}
	if g.Opset() >= 13 {
		st := tensor.New(tensor.Int64, len(sizes))
		copy(st.Int64s(), sizes)
		split.Inputs = append(split.Inputs, addInit(g, nm, base+"_split_sizes", st))
	} else {
		split.Attrs["split"] = ir.IntsAttr("split", sizes...)
	}
	for _, n := range ns {
		o := n.Outputs[0]
		o.Producer = split
		split.Outputs = append(split.Outputs, o)
	}
	return mm, split
}

func init() { Register(qkvMergePass{}) }
