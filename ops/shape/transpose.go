package shape

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// transposeOp is ONNX Transpose; a nil perm reverses the axes.
type transposeOp struct{ perm []int64 }

func prepareTranspose(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseTransposeAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &transposeOp{perm: a.Perm}, nil
}

// Def.Attrs of the ops of this file.
func transposeAttrs(n *ir.Node, opset int64) (any, error)  { return ops.ParseTransposeAttrs(n, opset) }
func depthSpaceAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseDepthSpaceAttrs(n, opset) }

// checkPerm validates perm for rank and returns it as ints.
func checkPerm(perm []int64, rank int) ([]int, error) {
	if len(perm) != rank {
		return nil, badInput("Transpose: perm %v for rank %d", perm, rank)
	}
	out := make([]int, rank)
	seen := make([]bool, rank)
	for i, p := range perm {
		if p < 0 || p >= int64(rank) || seen[p] {
			return nil, badInput("Transpose: %v is not a permutation", perm)
		}
		seen[p] = true
		out[i] = int(p)
	}
	return out, nil
}

func (k *transposeOp) permFor(rank int) ([]int, error) {
	if k.perm == nil {
		p := make([]int, rank)
		for i := range p {
			p[i] = rank - 1 - i
		}
		return p, nil
	}
	return checkPerm(k.perm, rank)
}

func (k *transposeOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("Transpose", in, 1); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[0].Type.DType}
	s := in[0].Type.Shape
	if s == nil {
		if k.perm != nil {
			t.Shape = unknownShape(len(k.perm))
		}
		return []ir.Type{t}, nil
	}
	p, err := k.permFor(len(s))
	if err != nil {
		return nil, err
	}
	t.Shape = make(ir.Shape, len(p))
	for i, a := range p {
		t.Shape[i] = s[a]
	}
	return []ir.Type{t}, nil
}

func (k *transposeOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData("Transpose", x); err != nil {
		return nil, err
	}
	p, err := k.permFor(x.Rank())
	if err != nil {
		return nil, err
	}
	y, err := transposeTensor(env, x, x.Shape, p)
	if err != nil {
		return nil, err
	}
	return env.One(y), nil
}

// transposeTensor returns x viewed with shape (same element count)
// transposed by perm, allocated with ops.NewOutput. When the permutation
// only moves unit axes the result shares x's storage.
func transposeTensor(env *ops.Env, x *tensor.Tensor, shape, perm []int) (*tensor.Tensor, error) {
	od := make([]int, len(perm))
	st := strides(shape)
	ss := make([]int, len(perm))
	last := -1
	identity := true
	for i, a := range perm {
		od[i] = shape[a]
		ss[i] = st[a]
		if shape[a] != 1 {
			if a < last {
				identity = false
			}
			last = a
		}
	}
	if identity {
		y, err := x.Reshape(od)
		if err != nil {
			return nil, badInput("Transpose: %v", err)
		}
		return y, nil
	}
	y, err := ops.NewOutput(env, x.DType, od)
	if err != nil {
		return nil, err
	}
	copyND(y, 0, strides(od), x, 0, ss, od)
	return y, nil
}

// depthSpaceOp is ONNX SpaceToDepth (toDepth) and DepthToSpace (DCR or CRD
// mode): a reshape to 6-D, a transpose and a reshape back.
type depthSpaceOp struct {
	toDepth bool
	block   int
	crd     bool
}

func prepareDepthSpace(toDepth bool) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseDepthSpaceAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		return &depthSpaceOp{toDepth: toDepth, block: a.BlockSize, crd: a.CRD}, nil
	}
}

func (k *depthSpaceOp) name() string {
	if k.toDepth {
		return "SpaceToDepth"
	}
	return "DepthToSpace"
}

func (k *depthSpaceOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need(k.name(), in, 1); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[0].Type.DType, Shape: unknownShape(4)}
	s := in[0].Type.Shape
	if s == nil {
		return []ir.Type{t}, nil
	}
	if len(s) != 4 {
		return nil, badInput("%s: input shape %v, want rank 4", k.name(), s)
	}
	b := ir.D(int64(k.block))
	bb := ir.D(int64(k.block * k.block))
	if k.toDepth {
		t.Shape = ir.Shape{s[0], ir.MulDims(s[1], bb), divDims(s[2:3], []ir.Dim{b}), divDims(s[3:4], []ir.Dim{b})}
	} else {
		t.Shape = ir.Shape{s[0], divDims(s[1:2], []ir.Dim{bb}), ir.MulDims(s[2], b), ir.MulDims(s[3], b)}
	}
	return []ir.Type{t}, nil
}

func (k *depthSpaceOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData(k.name(), x); err != nil {
		return nil, err
	}
	if x.Rank() != 4 {
		return nil, badInput("%s: input shape %v, want rank 4", k.name(), x.Shape)
	}
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	b := k.block
	var view, perm, out []int
	switch {
	case k.toDepth:
		if h%b != 0 || w%b != 0 {
			return nil, badInput("SpaceToDepth: %v is not divisible by blocksize %d", x.Shape, b)
		}
		view = []int{n, c, h / b, b, w / b, b}
		perm = []int{0, 3, 5, 1, 2, 4}
		out = []int{n, c * b * b, h / b, w / b}
	default:
		if c%(b*b) != 0 {
			return nil, badInput("DepthToSpace: %d channels are not divisible by blocksize² %d", c, b*b)
		}
		if k.crd {
			view = []int{n, c / (b * b), b, b, h, w}
			perm = []int{0, 1, 4, 2, 5, 3}
		} else {
			view = []int{n, b, b, c / (b * b), h, w}
			perm = []int{0, 3, 4, 1, 5, 2}
		}
		out = []int{n, c / (b * b), h * b, w * b}
	}
	y, err := transposeTensor(env, x, view, perm)
	if err != nil {
		return nil, err
	}
	if y, err = y.Reshape(out); err != nil {
		return nil, badInput("%s: %v", k.name(), err)
	}
	return env.One(y), nil
}

func init() {
	ops.Register(ops.Def{Type: "Transpose", Prepare: prepareTranspose, Attrs: transposeAttrs, Traits: ops.MayViewInput0 | ops.HasFloat16})
	ops.Register(ops.Def{Type: "SpaceToDepth", Prepare: prepareDepthSpace(true), Attrs: depthSpaceAttrs, Traits: ops.MayViewInput0 | ops.HasFloat16})
	ops.Register(ops.Def{Type: "DepthToSpace", Prepare: prepareDepthSpace(false), Attrs: depthSpaceAttrs, Traits: ops.MayViewInput0 | ops.HasFloat16})
}
