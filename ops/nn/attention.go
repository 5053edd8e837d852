package nn

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// mhaOp is kiln::MultiHeadAttention: scaled dot-product attention over the
// heads of a packed projection, read and written in the layout the
// projections use, without the Split, Reshapes and Transposes around
// kiln::Attention:
//
//	QKV  [B, S, 3*H*D]  the last axis is [Q | K | V], each H heads of D
//	Mask [.., S] (optional) added to the scores, broadcast to [B, H, S, S]
//	Y    [B, S, H*D]    head h at columns h*D..(h+1)*D
//	Y[b, i, h] = Softmax_j(Q[b,i,h] . K[b,j,h] * scale + Mask[b,h,i,j]) V[b,j,h]
//
// Attributes num_heads (H, required) and scale (default 1/sqrt(D)).
// Float32 only; optimize's mha pass writes it for CPU builds. Its Run is
// the reference (plain loops, float64 softmax sums); the CPU registry
// (device/cpu/kernels) runs it per (batch, head) and block of query rows,
// the scores of a block in a cache-sized tile, never a whole [S, S]
// matrix.
type mhaOp struct {
	heads int
	scale float32
	// scaleSet: the node gives scale (else 1/sqrt(D)).
	scaleSet bool
}

func prepareMHA(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseMultiHeadAttentionAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &mhaOp{heads: int(a.NumHeads), scale: a.Scale, scaleSet: a.ScaleSet}, nil
}

func (k *mhaOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	const op = "MultiHeadAttention"
	if err := needValues(op, in, 1); err != nil {
		return nil, err
	}
	for _, v := range in {
		if v != nil && v.Type.DType != tensor.Undefined && v.Type.DType != tensor.Float32 {
			return nil, badInput("%s of %v, want float32", op, v.Type.DType)
		}
	}
	s := in[0].Type.Shape
	if s == nil {
		return []ir.Type{{DType: tensor.Float32}}, nil
	}
	if len(s) != 3 {
		return nil, badInput("%s input has shape %v, want [batch, seq, 3*heads*head_size]", op, s)
	}
	c := s[2]
	if c.Known() && (c.Val == 0 || c.Val%int64(3*k.heads) != 0) {
		return nil, badInput("%s input's last dimension %d is not 3 x %d heads x a head size", op, c.Val, k.heads)
	}
	out := ir.Shape{s[0], s[1], ir.Dim{Val: -1}}
	if c.Known() {
		out[2] = ir.D(c.Val / 3)
	}
	return []ir.Type{{DType: tensor.Float32, Shape: out}}, nil
}

func (k *mhaOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "MultiHeadAttention"
	if err := needInputs(op, in, 1); err != nil {
		return nil, err
	}
	x, mask := in[0], input(in, 1)
	for _, t := range []*tensor.Tensor{x, mask} {
		if t != nil && t.DType != tensor.Float32 {
			return nil, badInput("%s of %v, want float32", op, t.DType)
		}
	}
	if x.Rank() != 3 {
		return nil, badInput("%s input has shape %v, want [batch, seq, 3*heads*head_size]", op, x.Shape)
	}
	b, s, c := x.Shape[0], x.Shape[1], x.Shape[2]
	h := k.heads
	if c == 0 || c%(3*h) != 0 {
		return nil, badInput("%s input's last dimension %d is not 3 x %d heads x a head size", op, c, h)
	}
	hd := c / 3
	d := hd / h
	scale := k.scale
	if !k.scaleSet {
		scale = float32(1 / math.Sqrt(float64(d)))
	}
	full := []int{b, h, s, s}
	var mstr []int
	if mask != nil {
		if !ops.BroadcastsTo(mask.Shape, full) {
			return nil, badInput("%s mask of shape %v does not broadcast to the scores [%d %d %d %d]", op, mask.Shape, b, h, s, s)
		}
		mstr = ops.BroadcastStrides(mask.Shape, full)
	}
	y, err := newOut(env, tensor.Float32, []int{b, s, hd})
	if err != nil {
		return nil, err
	}
	// the reference: per batch, head and query row, the scores, their
	// softmax (float64 sums) and the weighted sum of the values
	xv, yv := x.Float32s(), y.Float32s()
	p := make([]float64, s)
	for bi := range b {
		for hh := range h {
			for i := range s {
				q := xv[(bi*s+i)*c+hh*d:][:d]
				mx := math.Inf(-1)
				for j := range s {
					kj := xv[(bi*s+j)*c+hd+hh*d:][:d]
					var dot float32
					for t := range d {
						dot += q[t] * kj[t]
					}
					v := float64(dot * scale)
					if mask != nil {
						v += float64(mask.Float32s()[bi*mstr[0]+hh*mstr[1]+i*mstr[2]+j*mstr[3]])
					}
					p[j] = v
					mx = max(mx, v)
				}
				var sum float64
				for j := range s {
					p[j] = math.Exp(p[j] - mx)
					sum += p[j]
				}
				out := yv[(bi*s+i)*hd+hh*d:][:d]
				for t := range out {
					var acc float64
					for j := range s {
						acc += p[j] * float64(xv[(bi*s+j)*c+2*hd+hh*d+t])
					}
					out[t] = float32(acc / sum)
				}
			}
		}
	}
	return env.One(y), nil
}

func init() {
	ops.Register(ops.Def{Domain: FusedDomain, Type: "MultiHeadAttention", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseMultiHeadAttentionAttrs(n, opset) }, Prepare: prepareMHA})
}
