package optimize

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// layoutPass is kiln's layout choice. kiln's kernels compute convolutions
// and pooling in NCHW; a graph exported from an NHWC framework (TensorFlow,
// Keras) wraps every convolution in Transposes (NHWC -> NCHW before it,
// back after it) with layout-agnostic ops between them. The pass keeps the
// tensors in NCHW between such layers: it moves each Transpose below the
// elementwise op that reads it,
//
//	Relu(Transpose(x, p))                 -> Transpose(Relu(x), p)
//	Add(Transpose(a, p), Transpose(b, p)) -> Transpose(Add(a, b), p)
//	Mul(Transpose(x, p), c)               -> Transpose(Mul(x, c'), p)
//
// (c a constant, c' it permuted back), until it meets the opposite
// Transpose, which the transpose pass then cancels; what remains is one
// Transpose at each end of the NCHW region. It works in g and in its
// subgraphs, and moves a Transpose only when the op is its sole reader.
// The layout-agnostic ops are those with the traits ops.ElementwiseUnary
// (each element from the element at the same position; the Transpose of
// input 0 moves) and ops.ElementwiseBinary (multidirectional
// broadcasting), declared where the ops register.
type layoutPass struct{}

func (layoutPass) Name() string { return "layout" }

func (p layoutPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (layoutPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		changed := false
		nm := newNamer(g)
		var added []*ir.Node
		for _, n := range g.Nodes {
			if n.Domain != "" || len(n.Outputs) != 1 || n.Outputs[0] == nil {
				continue
			}
			u := usesOf(g)
			var t *ir.Node
			tr := ops.TraitsOf("", n.OpType)
			switch {
			case tr.Has(ops.ElementwiseUnary) && len(n.Inputs) >= 1:
				t = soleTranspose(g, u, n, n.Inputs[0])
				if t == nil {
					continue
				}
				n.Inputs[0] = t.Inputs[0]
			case tr.Has(ops.ElementwiseBinary) && len(n.Inputs) == 2:
				t = sinkBinary(g, u, nm, n)
				if t == nil {
					continue
				}
			default:
				continue
			}
			perm, _ := transposePerm(t)
			// n now computes in t's input layout; a new Transpose brings
			// its result back to the layout its readers expect.
			out := n.Outputs[0]
			mid := &ir.Value{Name: nm.name(out.Name + "_untransposed"), Type: ir.Type{DType: out.Type.DType}, Producer: n}
			n.Outputs[0] = mid
			nt := &ir.Node{Name: nm.name(t.Name + "_after_" + n.Name), OpType: "Transpose", Inputs: []*ir.Value{mid}, Outputs: []*ir.Value{out},
				Attrs: map[string]*ir.Attr{"perm": ir.IntsAttr("perm", perm...)}}
			out.Producer = nt
			added = append(added, nt)
			logf(log, "moved %s below %s", t, n)
			changed = true
		}
		if changed {
			g.Nodes = append(g.Nodes, added...)
			// The moved Transposes have no readers left: dce drops them.
		}
		return changed, nil
	})
}

// soleTranspose returns the Transpose producing v when n is its only
// reader and its perm is known.
func soleTranspose(g *ir.Graph, u *usage, n *ir.Node, v *ir.Value) *ir.Node {
	if v == nil {
		return nil
	}
	t := v.Producer
	if !isOp(t, "Transpose") || !inGraph(g, t) || len(t.Inputs) != 1 || t.Inputs[0] == nil || u.only(v) != n {
		return nil
	}
	if _, ok := transposePerm(t); !ok {
		return nil
	}
	return t
}

// sinkBinary rewires a binary elementwise node n whose inputs are two
// Transposes of one perm, or a Transpose and a constant, to read the
// untransposed operands, and returns the Transpose it moves (nil when it
// cannot).
func sinkBinary(g *ir.Graph, u *usage, nm *namer, n *ir.Node) *ir.Node {
	a, b := n.Inputs[0], n.Inputs[1]
	ta, tb := soleTranspose(g, u, n, a), soleTranspose(g, u, n, b)
	switch {
	case ta != nil && tb != nil:
		pa, _ := transposePerm(ta)
		pb, _ := transposePerm(tb)
		if !samePerm(pa, pb) {
			return nil
		}
		n.Inputs[0], n.Inputs[1] = ta.Inputs[0], tb.Inputs[0]
		return ta
	case ta != nil && isConst(g, b):
		c := unpermuteConst(b.Const, ta)
		if c == nil {
			return nil
		}
		n.Inputs[0], n.Inputs[1] = ta.Inputs[0], addInit(g, nm, b.Name+"_untransposed", c)
		return ta
	case tb != nil && isConst(g, a):
		c := unpermuteConst(a.Const, tb)
		if c == nil {
			return nil
		}
		n.Inputs[0], n.Inputs[1] = addInit(g, nm, a.Name+"_untransposed", c), tb.Inputs[0]
		return tb
	}
	return nil
}

func samePerm(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// unpermuteConst returns c as it broadcasts against the input of
// Transpose t instead of its output: c is first extended to t's rank
// (broadcasting aligns trailing axes), then its axes are permuted back. It
// returns nil when c has a higher rank than t's output.
func unpermuteConst(c *tensor.Tensor, t *ir.Node) *tensor.Tensor {
	perm, ok := transposePerm(t)
	if !ok || c == nil || c.DType == tensor.String || len(c.Shape) > len(perm) {
		return nil
	}
	r := len(perm)
	full := make([]int, r)
	for i := range full {
		full[i] = 1
	}
	copy(full[r-len(c.Shape):], c.Shape)
	// The output of t has axis i = input axis perm[i]; c' has axis perm[i]
	// = c's axis i.
	shape := make([]int, r)
	for i, p := range perm {
		shape[p] = full[i]
	}
	out, err := tensor.Make(c.DType, shape)
	if err != nil {
		return nil
	}
	es := c.DType.Size()
	n := c.Len()
	// Strides of c (in its extended shape) and of out.
	cs := strides(full)
	os := strides(shape)
	idx := make([]int, r)
	for k := 0; k < n; k++ {
		// idx is k's position in c's extended shape.
		rem := k
		for i := 0; i < r; i++ {
			idx[i] = rem / cs[i]
			rem %= cs[i]
		}
		o := 0
		for i, p := range perm {
			o += idx[i] * os[p]
		}
		copy(out.Data[o*es:(o+1)*es], c.Data[k*es:(k+1)*es])
	}
	return out
}

func strides(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= max(shape[i], 1)
	}
	return s
}

func init() { Register(layoutPass{}) }
