package nn

import (
	"fmt"
	"sync"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/internal/fastmath"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// gemmTactic is the name of FusedMatMul's default tactic: cpu.Sgemm with
// its default cache blocking. The others are "gemm-" followed by a
// cpu.Blocking ("gemm-mc144-kc256-nc1024").
const gemmTactic = "gemm"

// fusedMatMulOp is kiln::FusedMatMul: Y = act(MatMul(A, B) + Bias), with
// the optional Bias (input 2) of shape [N] added along Y's last axis. It
// computes float32 only.
//
// It is ops.Tactical: products that take the packed GEMM path can run with
// each of cpu.Blockings().
type fusedMatMulOp struct {
	ep epilogue
	// blk is the blocking SetTactic chose; nil runs the default path.
	blk *cpu.Blocking
	// cw is B when the graph holds it as a constant, packed once.
	cw constWeights
	// plan is the product's plan for the last shapes it ran.
	plan MatMulPlanCache
}

var _ ops.Tactical = (*fusedMatMulOp)(nil)

func prepareFusedMatMul(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseFusedMatMulAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &fusedMatMulOp{ep: epilogueOf(a.EpilogueAttrs)}
	k.cw.w = constWeight(n)
	return k, nil
}

// constWeights is the B of a MatMul-like node when the graph holds it as
// a float32 constant: packed for the GEMM kernel once, the first time the
// node runs on it, instead of on every call. It is safe for concurrent
// runs.
type constWeights struct {
	w    *tensor.Tensor
	once sync.Once
	pb   *cpu.PackedB
}

// constWeight returns input 1 of n when it is a float32 constant of rank
// 2 or more with elements (else nil).
func constWeight(n *ir.Node) *tensor.Tensor {
	if len(n.Inputs) > 1 && n.Inputs[1] != nil {
		if w := n.Inputs[1].Const; w != nil && w.DType == tensor.Float32 && w.Rank() >= 2 && w.Len() > 0 {
			return w
		}
	}
	return nil
}

// packed returns B packed for the GEMM when bm is the node's constant
// weight and the plan is one product (else nil), packing it on first use.
func (c *constWeights) packed(p *MatMulPlan, bm *tensor.Tensor) *cpu.PackedB {
	if c.w == nil || bm.DType != tensor.Float32 || len(p.AOff) != 1 || p.K == 0 || p.N == 0 || bm.Len() != c.w.Len() || bm.Len() != p.K*p.N {
		return nil
	}
	if &bm.Float32s()[0] != &c.w.Float32s()[0] {
		return nil
	}
	c.once.Do(func() { c.pb = cpu.PackB(p.K, p.N, c.w.Float32s(), p.N) })
	// held for as long as the plan: counted in every measurement, like the
	// direct convolution's packed filters
	scratchAdd(c.pb.Bytes())
	return c.pb
}

func (k *fusedMatMulOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("FusedMatMul", in, 2); err != nil {
		return nil, err
	}
	if dt := in[0].Type.DType; dt != tensor.Undefined && dt != tensor.Float32 {
		return nil, badInput("FusedMatMul of %v, want float32", dt)
	}
	t, err := matMulOp{}.Infer(in[:2])
	if err != nil {
		return nil, err
	}
	if b := value(in, 2); b != nil && b.Type.Shape != nil && len(b.Type.Shape) != 1 {
		return nil, badInput("FusedMatMul bias has shape %v, want [N]", b.Type.Shape)
	}
	return t, nil
}

// blockingTactic names the tactic of a blocking.
func blockingTactic(b cpu.Blocking) string { return gemmTactic + "-" + b.String() }

// Tactics returns "gemm" and one tactic per other candidate blocking when
// the shapes are known and the product takes the packed GEMM path (nil
// otherwise).
func (k *fusedMatMulOp) Tactics(in []*ir.Value) []string {
	if len(in) < 2 || in[0] == nil || in[1] == nil || in[0].Type.DType != tensor.Float32 {
		return nil
	}
	as, ok1 := concrete(in[0].Type.Shape)
	bs, ok2 := concrete(in[1].Type.Shape)
	if !ok1 || !ok2 {
		return nil
	}
	p, err := PlanMatMul("FusedMatMul", as, bs)
	if err != nil || !cpu.PackedGemm(false, false, p.M, p.N, p.K) {
		return nil
	}
	names := []string{gemmTactic}
	for _, b := range cpu.Blockings()[1:] {
		names = append(names, blockingTactic(b))
	}
	return names
}

// SetTactic selects "gemm" (the default path) or "gemm-" and a blocking.
func (k *fusedMatMulOp) SetTactic(name string) error {
	if name == gemmTactic {
		k.blk = nil
		return nil
	}
	if len(name) > len(gemmTactic)+1 && name[:len(gemmTactic)+1] == gemmTactic+"-" {
		if b, err := cpu.ParseBlocking(name[len(gemmTactic)+1:]); err == nil {
			k.blk = &b
			return nil
		}
	}
	return fmt.Errorf("%w: FusedMatMul has no tactic %q (want %q or %q followed by a blocking such as %s)",
		ops.ErrBadAttr, name, gemmTactic, gemmTactic+"-", cpu.Blockings()[1])
}

func (k *fusedMatMulOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("FusedMatMul", in, 2); err != nil {
		return nil, err
	}
	a, bm, b := in[0], in[1], input(in, 2)
	for _, t := range []*tensor.Tensor{a, bm, b} {
		if t != nil && t.DType != tensor.Float32 {
			return nil, badInput("FusedMatMul of %v, want float32", t.DType)
		}
	}
	p, err := k.plan.Get("FusedMatMul", a.Shape, bm.Shape)
	if err != nil {
		return nil, err
	}
	y, err := ops.NewOutput(env, tensor.Float32, p.Out)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	yv := y.Float32s()
	var bv []float32
	n := 0
	if y.Rank() > 0 {
		n = y.Shape[y.Rank()-1]
	}
	if b != nil {
		if b.Rank() != 1 || b.Shape[0] != n {
			return nil, badInput("FusedMatMul bias has shape %v for output %v", b.Shape, y.Shape)
		}
		bv = b.Float32s()
	}
	pb := k.cw.packed(p, bm)
	if len(p.AOff) == 1 && (bv != nil || k.ep.act != ActNone || pb != nil) {
		// One product: the bias and the activation inside the GEMM's
		// blocks, on the goroutine that computed each, while it is in
		// that core's caches; constant weights packed once.
		var bl cpu.Blocking
		if k.blk != nil {
			bl = *k.blk
		}
		e := mmEpis.Get().(*mmEpi)
		e.ep, e.y, e.b, e.n = k.ep, yv, bv, p.N
		if pb != nil {
			// the bias added by the GEMM kernel as it stores C
			e.b = nil
			fn := e.fn
			if k.ep.act == ActNone {
				fn = nil
			}
			cpu.SgemmPackedBias(bl, p.M, a.Float32s(), p.K, pb, bv, yv, p.N, fn)
		} else {
			cpu.SgemmEpilogue(bl, p.M, p.N, p.K, a.Float32s(), p.K, bm.Float32s(), p.N, yv, p.N, e.fn)
		}
		e.y, e.b = nil, nil // drop the tensors
		mmEpis.Put(e)
		return env.One(y), nil
	}
	// Both paths overwrite all of y (beta 0), whatever it held.
	if k.blk != nil {
		runMatMulBlocked(p, *k.blk, a.Float32s(), bm.Float32s(), yv)
	} else {
		RunMatMul(p, a.Float32s(), bm.Float32s(), yv)
	}
	if bv != nil {
		k.ep.applyBias(yv, bv, n)
		return env.One(y), nil
	}
	k.ep.apply(yv)
	return env.One(y), nil
}

// mmEpi is one FusedMatMul call's epilogue over the GEMM's blocks, pooled
// with the function handed to the GEMM (made once per mmEpi, so that a
// call allocates nothing).
type mmEpi struct {
	ep   epilogue
	y, b []float32
	n    int
	fn   func(i0, i1, j0, j1 int)
}

var mmEpis = sync.Pool{New: func() any {
	e := &mmEpi{}
	e.fn = e.apply
	return e
}}

func (e *mmEpi) apply(i0, i1, j0, j1 int) { e.ep.applyBlock(e.y, e.b, e.n, i0, i1, j0, j1) }

// applyBlock adds bias (nil: none) to the block y[i0:i1, j0:j1] of the
// matrix y with n columns and runs the activation over it, on the
// caller's goroutine.
func (e epilogue) applyBlock(y, bias []float32, n, i0, i1, j0, j1 int) {
	for r := i0; r < i1; r++ {
		row := y[r*n+j0 : r*n+j1]
		if bias != nil {
			fastmath.ScaleAdd(row, row, 1, bias[j0:j1]) // y*1 + b rounds once, as y + b does
		}
		e.applySerial(row)
	}
}

// runMatMulBlocked is RunMatMul for float32 with the GEMM cache blocking
// bl.
func runMatMulBlocked(p *MatMulPlan, bl cpu.Blocking, a, b, c []float32) {
	m, n, k := p.M, p.N, p.K
	nb := len(p.AOff)
	switch {
	case m == 0 || n == 0:
		return
	case k == 0:
		clear(c)
		return
	}
	if nb > 1 {
		if sa, sb, ok := p.Uniform(); ok {
			cpu.SgemmStridedBatchedBlocked(bl, false, false, m, n, k, 1, a, k, sa, b, n, sb, 0, c, n, m*n, nb)
			return
		}
	}
	for i := 0; i < nb; i++ {
		cpu.SgemmBlocked(bl, false, false, m, n, k, 1, a[p.AOff[i]:], k, b[p.BOff[i]:], n, 0, c[i*m*n:], n)
	}
}

func init() {
	ops.Register(ops.Def{Domain: FusedDomain, Type: "FusedMatMul", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseFusedMatMulAttrs(n, opset) }, Prepare: prepareFusedMatMul})
}
