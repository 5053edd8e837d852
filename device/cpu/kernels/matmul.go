package kernels

import (
	"errors"
	"fmt"
	"sync"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/internal/fastmath"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/nn"
	"github.com/kilnai/kiln/tensor"
)

// MatMul with constant weights and kiln::FusedMatMul (ops/nn/matmul.go and
// fusedmatmul.go define the ops, their inference and reference kernels;
// ops/nn's MatMulPlan is the one broadcasting rule of both paths):
//
//   - cpu.FusedMatMul: Y = act(MatMul(A, B) + Bias) as one product's GEMM
//     with the bias and the activation applied to each block of C by the
//     goroutine that computed it (cpu.SgemmEpilogue), B packed once when
//     the graph holds it as a constant (cpu.SgemmPackedBias: the bias added
//     as C is stored). It is ops.Tactical: a product that takes the packed
//     GEMM path runs with each of cpu.Blockings() ("gemm", "gemm-mc..").
//   - cpu.MatMul: ONNX MatMul whose B is a constant of the graph (a layer's
//     weights): a float32 product of one 2-D B reads B packed once;
//     everything else is the reference's.
//
// Both list Float16: the float16 adapter prepares them on float32 stand-ins
// (constant weights widened once), as it prepared ops/nn's kernels.
var matMulKernels = []Def{
	{Name: "cpu.FusedMatMul", Domain: "kiln", Type: "FusedMatMul", Types: []tensor.DType{tensor.Float32, tensor.Float16},
		Prepare: prepareFusedMatMul},
	{Name: "cpu.MatMul", Type: "MatMul", Since: 1, Types: []tensor.DType{tensor.Float32, tensor.Float16},
		Check: checkConstB, Prepare: prepareMatMul},
}

// gemmTactic is the name of FusedMatMul's default tactic: cpu.Sgemm with
// its default cache blocking. The others are "gemm-" followed by a
// cpu.Blocking ("gemm-mc144-kc256-nc1024").
const gemmTactic = "gemm"

// blockingTactic names the tactic of a blocking.
func blockingTactic(b cpu.Blocking) string { return gemmTactic + "-" + b.String() }

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
func (c *constWeights) packed(p *nn.MatMulPlan, bm *tensor.Tensor) *cpu.PackedB {
	if c.w == nil || bm.DType != tensor.Float32 || len(p.AOff) != 1 || p.K == 0 || p.N == 0 || bm.Len() != c.w.Len() || bm.Len() != p.K*p.N {
		return nil
	}
	if &bm.Float32s()[0] != &c.w.Float32s()[0] {
		return nil
	}
	c.once.Do(func() { c.pb = cpu.PackB(p.K, p.N, c.w.Float32s(), p.N) })
	// held for as long as the plan: counted in every measurement (the
	// builder's workspace limit for tactics), like the direct
	// convolution's packed filters
	cpu.ScratchAdd(c.pb.Bytes())
	return c.pb
}

// checkConstB takes a MatMul whose B (input 1) is a float32 or float16
// constant of rank 2 or more with elements (float16 ones are widened by the
// float16 adapter before Prepare sees them).
func checkConstB(n *ir.Node, _ int64) error {
	if len(n.Inputs) < 2 || n.Inputs[1] == nil || n.Inputs[1].Const == nil {
		return errors.New("input 1 (B) is not a constant of the graph")
	}
	w := n.Inputs[1].Const
	if w.DType != tensor.Float32 && w.DType != tensor.Float16 {
		return fmt.Errorf("constant B is %v, not float32 or float16", w.DType)
	}
	if w.Rank() < 2 || w.Len() == 0 {
		return fmt.Errorf("constant B of shape %v is not a matrix with elements", w.Shape)
	}
	return nil
}

func prepareMatMul(n *ir.Node, opset int64) (ops.Kernel, error) {
	ref, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	w := constWeight(n)
	if w == nil {
		return ref, nil
	}
	k := &packedMatMul{Kernel: ref}
	k.cw.w = w
	return k, nil
}

// packedMatMul is the fast Run of MatMul with a constant float32 B: one
// float32 product reads B packed once; other products, and Infer, are the
// reference's.
type packedMatMul struct {
	ops.Kernel
	cw   constWeights
	plan nn.MatMulPlanCache
}

func (k *packedMatMul) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) == 2 && in[0] != nil && in[1] != nil && in[0].DType == tensor.Float32 && in[1].DType == tensor.Float32 {
		p, err := k.plan.Get("MatMul", in[0].Shape, in[1].Shape)
		if err != nil {
			return nil, err
		}
		if pb := k.cw.packed(p, in[1]); pb != nil {
			y, err := ops.NewOutput(env, tensor.Float32, p.Out)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
			}
			cpu.SgemmPacked(cpu.Blocking{}, p.M, in[0].Float32s(), p.K, pb, y.Float32s(), p.N, nil)
			return env.One(y), nil
		}
	}
	return k.Kernel.Run(env, in)
}

func prepareFusedMatMul(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseFusedMatMulAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	ref, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	k := &fusedMatMul{ref: ref, ep: a.EpilogueAttrs}
	k.cw.w = constWeight(n)
	return k, nil
}

// fusedMatMul is kiln::FusedMatMul's fast kernel: Infer is the
// reference's; Run computes float32 only, as the op does.
type fusedMatMul struct {
	ref ops.Kernel
	ep  ops.EpilogueAttrs
	// blk is the blocking SetTactic chose; nil runs the default path.
	blk *cpu.Blocking
	// cw is B when the graph holds it as a constant, packed once.
	cw constWeights
	// plan is the product's plan for the last shapes it ran.
	plan nn.MatMulPlanCache
}

var _ ops.Tactical = (*fusedMatMul)(nil)

func (k *fusedMatMul) Infer(in []*ir.Value) ([]ir.Type, error) { return k.ref.Infer(in) }

// Tactics returns "gemm" and one tactic per other candidate blocking when
// the shapes are known and the product takes the packed GEMM path (nil
// otherwise).
func (k *fusedMatMul) Tactics(in []*ir.Value) []string {
	if len(in) < 2 || in[0] == nil || in[1] == nil || in[0].Type.DType != tensor.Float32 {
		return nil
	}
	as, ok1 := concreteShape(in[0].Type.Shape)
	bs, ok2 := concreteShape(in[1].Type.Shape)
	if !ok1 || !ok2 {
		return nil
	}
	p, err := nn.PlanMatMul("FusedMatMul", as, bs)
	if err != nil || !cpu.PackedGemm(false, false, p.M, p.N, p.K) {
		return nil
	}
	names := []string{gemmTactic}
	for _, b := range cpu.Blockings()[1:] {
		names = append(names, blockingTactic(b))
	}
	return names
}

// concreteShape returns s's sizes when every one is known.
func concreteShape(s ir.Shape) ([]int, bool) {
	if s == nil {
		return nil, false
	}
	out := make([]int, len(s))
	for i, d := range s {
		if !d.Known() {
			return nil, false
		}
		out[i] = int(d.Val)
	}
	return out, true
}

// SetTactic selects "gemm" (the default path) or "gemm-" and a blocking.
func (k *fusedMatMul) SetTactic(name string) error {
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

func (k *fusedMatMul) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) < 2 || in[0] == nil || in[1] == nil {
		return k.ref.Run(env, in) // its error
	}
	a, bm := in[0], in[1]
	var b *tensor.Tensor
	if len(in) > 2 {
		b = in[2]
	}
	for _, t := range []*tensor.Tensor{a, bm, b} {
		if t != nil && t.DType != tensor.Float32 {
			return k.ref.Run(env, in) // its error
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
			return nil, fmt.Errorf("%w: FusedMatMul bias has shape %v for output %v", ops.ErrBadInput, b.Shape, y.Shape)
		}
		bv = b.Float32s()
	}
	pb := k.cw.packed(p, bm)
	if len(p.AOff) == 1 && (bv != nil || k.ep.Activation != "" || pb != nil) {
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
			if k.ep.Activation == "" {
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
		nn.RunMatMul(p, a.Float32s(), bm.Float32s(), yv)
	}
	if bv != nil {
		epilogueBias(k.ep, yv, bv, n)
		return env.One(y), nil
	}
	epilogueApply(k.ep, yv)
	return env.One(y), nil
}

// mmEpi is one FusedMatMul call's epilogue over the GEMM's blocks, pooled
// with the function handed to the GEMM (made once per mmEpi, so that a
// call allocates nothing).
type mmEpi struct {
	ep   ops.EpilogueAttrs
	y, b []float32
	n    int
	fn   func(i0, i1, j0, j1 int)
}

var mmEpis = sync.Pool{New: func() any {
	e := &mmEpi{}
	e.fn = e.apply
	return e
}}

func (e *mmEpi) apply(i0, i1, j0, j1 int) { epilogueBlock(e.ep, e.y, e.b, e.n, i0, i1, j0, j1) }

// epilogueBlock adds bias (nil: none) to the block y[i0:i1, j0:j1] of the
// matrix y with n columns and runs the activation over it, on the
// caller's goroutine.
func epilogueBlock(e ops.EpilogueAttrs, y, bias []float32, n, i0, i1, j0, j1 int) {
	for r := i0; r < i1; r++ {
		row := y[r*n+j0 : r*n+j1]
		if bias != nil {
			fastmath.ScaleAdd(row, row, 1, bias[j0:j1]) // y*1 + b rounds once, as y + b does
		}
		e.ApplySerial(row)
	}
}

// Grains of the epilogue's parallel loops (ops/nn's, which the
// convolutions share): the number of elements one goroutine takes at
// least, smaller for the activations that evaluate an exponential per
// element than for the ones that cost a compare or two.
const (
	epiCheapGrain = ops.ElemGrain
	epiExpGrain   = 1 << 12
)

func epilogueGrain(e ops.EpilogueAttrs) int {
	switch e.Activation {
	case "Sigmoid", "SiLU", "Gelu", "GeluTanh":
		return epiExpGrain
	}
	return epiCheapGrain
}

// epilogueApply runs the activation over y in place, split over
// cpu.ParallelFor.
func epilogueApply(e ops.EpilogueAttrs, y []float32) {
	if e.Activation == "" {
		return
	}
	cpu.ParallelFor(len(y), epilogueGrain(e), func(lo, hi int) { e.ApplySerial(y[lo:hi]) })
}

// epilogueBias adds bias (of length n) to every row of y (rows of length
// n) and runs the activation, in one pass split over rows with
// cpu.ParallelFor (one goroutine's pass without the closure, which would
// escape to the pool's workers).
func epilogueBias(e ops.EpilogueAttrs, y, bias []float32, n int) {
	if n == 0 {
		return
	}
	bs := bias[:n]
	rows := len(y) / n
	grain := max(1, min(epilogueGrain(e), epiCheapGrain/2)/n)
	if rows <= grain || cpu.Threads() == 1 {
		for r := range rows {
			row := y[r*n : (r+1)*n]
			fastmath.ScaleAdd(row, row, 1, bs)
			e.ApplySerial(row)
		}
		return
	}
	cpu.ParallelFor(rows, grain, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := y[r*n : (r+1)*n]
			fastmath.ScaleAdd(row, row, 1, bs)
			e.ApplySerial(row)
		}
	})
}

// runMatMulBlocked is nn.RunMatMul for float32 with the GEMM cache
// blocking bl.
func runMatMulBlocked(p *nn.MatMulPlan, bl cpu.Blocking, a, b, c []float32) {
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
