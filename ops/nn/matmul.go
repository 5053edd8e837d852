package nn

import (
	"slices"
	"sync/atomic"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// MatMulPlan is a numpy matmul of A [..., m, k] by B [..., k, n] resolved
// to a list of 2-D products of M x K by K x N: product i reads A at
// AOff[i], B at BOff[i] and writes C at i*M*N. Out is C's shape. A plan is
// read only once made (MatMulPlanCache shares it).
type MatMulPlan struct {
	M, N, K    int
	AOff, BOff []int
	Out        []int
	// Fold: B is a single matrix and A's batch is contiguous, so all of A
	// is one (batch*m) x k matrix (M is batch*m, one product).
	Fold bool
}

// PlanMatMul checks the shapes of a numpy matmul (op names it in errors)
// and plans it.
func PlanMatMul(op string, as, bs []int) (*MatMulPlan, error) {
	if len(as) == 0 || len(bs) == 0 {
		return nil, badInput("%s of a scalar (%v x %v)", op, as, bs)
	}
	a2, b2 := as, bs
	if len(as) == 1 {
		a2 = []int{1, as[0]}
	}
	if len(bs) == 1 {
		b2 = []int{bs[0], 1}
	}
	p := &MatMulPlan{M: a2[len(a2)-2], K: a2[len(a2)-1], N: b2[len(b2)-1]}
	if b2[len(b2)-2] != p.K {
		return nil, badInput("%s of %v and %v: inner dims differ", op, as, bs)
	}
	ab, bb := a2[:len(a2)-2], b2[:len(b2)-2]
	batch, err := ops.BroadcastShape(ab, bb)
	if err != nil {
		return nil, badInput("%s of %v and %v: batch dims do not broadcast", op, as, bs)
	}
	out := append([]int{}, batch...)
	if len(as) > 1 {
		out = append(out, p.M)
	}
	if len(bs) > 1 {
		out = append(out, p.N)
	}
	if _, err := checkedNumel(out); err != nil {
		return nil, err
	}
	p.Out = out
	nb := tensor.NumElements(batch)
	if tensor.NumElements(bb) == 1 {
		p.Fold = true
		p.AOff = []int{0}
		p.BOff = []int{0}
		p.M *= nb
		return p, nil
	}
	p.AOff = make([]int, nb)
	p.BOff = make([]int, nb)
	sa := ops.BroadcastStrides(ab, batch)
	sb := ops.BroadcastStrides(bb, batch)
	coord := make([]int, len(batch))
	for i := 0; i < nb; i++ {
		oa, ob := 0, 0
		for d, c := range coord {
			oa += c * sa[d]
			ob += c * sb[d]
		}
		p.AOff[i], p.BOff[i] = oa*p.M*p.K, ob*p.K*p.N
		for d := len(coord) - 1; d >= 0; d-- {
			coord[d]++
			if coord[d] < batch[d] {
				break
			}
			coord[d] = 0
		}
	}
	return p, nil
}

// MatMulPlanCache holds the plan of the last shapes a MatMul-like node ran
// (a server runs one shape after another): planning allocates the plan,
// its offsets and output shape, several times per layer and run.
type MatMulPlanCache struct {
	p atomic.Pointer[matMulPlanEntry]
}

// matMulPlanEntry is PlanMatMul's plan for the shapes a and b; read only.
type matMulPlanEntry struct {
	a, b []int
	p    *MatMulPlan
}

// Get is PlanMatMul, reusing the plan of the last call when the shapes are
// the same: the plan is shared and must not be modified. It is safe for
// concurrent use.
func (c *MatMulPlanCache) Get(op string, as, bs []int) (*MatMulPlan, error) {
	if e := c.p.Load(); e != nil && slices.Equal(e.a, as) && slices.Equal(e.b, bs) {
		return e.p, nil
	}
	p, err := PlanMatMul(op, as, bs)
	if err != nil {
		return nil, err
	}
	c.p.Store(&matMulPlanEntry{a: slices.Clone(as), b: slices.Clone(bs), p: p})
	return p, nil
}

// Uniform returns the strides between consecutive products' A and B when
// they are constant (0 for a broadcast operand).
func (p *MatMulPlan) Uniform() (sa, sb int, ok bool) {
	if len(p.AOff) < 2 {
		return 0, 0, true
	}
	sa, sb = p.AOff[1]-p.AOff[0], p.BOff[1]-p.BOff[0]
	for i := 1; i < len(p.AOff); i++ {
		if p.AOff[i]-p.AOff[i-1] != sa || p.BOff[i]-p.BOff[i-1] != sb {
			return 0, 0, false
		}
	}
	return sa, sb, sa >= 0 && sb >= 0
}

// RunMatMul computes all products of the plan into c (every element: beta
// 0): float32 through cpu.Sgemm's paths, other types through the plain
// GEMM.
func RunMatMul[T ops.Number](p *MatMulPlan, a, b, c []T) {
	m, n, k := p.M, p.N, p.K
	nb := len(p.AOff)
	if af, ok := any(a).([]float32); ok && nb > 1 && k > 0 {
		if sa, sb, ok := p.Uniform(); ok {
			cpu.SgemmStridedBatched(false, false, m, n, k, 1, af, k, sa, any(b).([]float32), n, sb, 0, any(c).([]float32), n, m*n, nb)
			return
		}
	}
	one := func(i int) {
		gemm(false, false, m, n, k, 1, a[p.AOff[i]:], k, b[p.BOff[i]:], n, 0, c[i*m*n:], n)
	}
	if nb == 1 || m*n*k >= 1<<20 {
		for i := 0; i < nb; i++ {
			one(i)
		}
		return
	}
	grain := max(1, (1<<18)/max(1, m*n*k))
	cpu.ParallelFor(nb, grain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			one(i)
		}
	})
}

// inferMatMul infers the numpy matmul shape of symbolic shapes.
func inferMatMul(as, bs ir.Shape) (ir.Shape, error) {
	if as == nil || bs == nil {
		return nil, nil
	}
	if len(as) == 0 || len(bs) == 0 {
		return nil, badInput("MatMul of a scalar")
	}
	a2, b2 := as, bs
	if len(as) == 1 {
		a2 = ir.Shape{ir.D(1), as[0]}
	}
	if len(bs) == 1 {
		b2 = ir.Shape{bs[0], ir.D(1)}
	}
	ka, kb := a2[len(a2)-1], b2[len(b2)-2]
	if ka.Known() && kb.Known() && ka.Val != kb.Val {
		return nil, badInput("MatMul of %v and %v: inner dims differ", as, bs)
	}
	batch, err := ir.Broadcast(a2[:len(a2)-2], b2[:len(b2)-2])
	if err != nil {
		return nil, badInput("MatMul of %v and %v: %v", as, bs, err)
	}
	out := append(ir.Shape{}, batch...)
	if len(as) > 1 {
		out = append(out, a2[len(a2)-2])
	}
	if len(bs) > 1 {
		out = append(out, b2[len(b2)-1])
	}
	return out, nil
}

// matMulOp is ONNX MatMul with numpy semantics, the op's kernel for every
// type. The CPU registry (device/cpu/kernels, cpu.MatMul) runs the nodes
// whose B is a float32 constant of the graph, packing it once.
type matMulOp struct{}

func (matMulOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("MatMul", in, 2); err != nil {
		return nil, err
	}
	s, err := inferMatMul(in[0].Type.Shape, in[1].Type.Shape)
	if err != nil {
		return nil, err
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: s}}, nil
}

func (matMulOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("MatMul", in, 2); err != nil {
		return nil, err
	}
	a, b := in[0], in[1]
	if a.DType != b.DType {
		return nil, badInput("MatMul of %v and %v", a.DType, b.DType)
	}
	p, err := PlanMatMul("MatMul", a.Shape, b.Shape)
	if err != nil {
		return nil, err
	}
	y, err := newOut(env, a.DType, p.Out)
	if err != nil {
		return nil, err
	}
	switch a.DType {
	case tensor.Float32:
		RunMatMul(p, a.Float32s(), b.Float32s(), y.Float32s())
	case tensor.Float64:
		RunMatMul(p, a.Float64s(), b.Float64s(), y.Float64s())
	case tensor.Int32:
		RunMatMul(p, a.Int32s(), b.Int32s(), y.Int32s())
	case tensor.Int64:
		RunMatMul(p, a.Int64s(), b.Int64s(), y.Int64s())
	case tensor.Uint32:
		RunMatMul(p, a.Uint32s(), b.Uint32s(), y.Uint32s())
	case tensor.Uint64:
		RunMatMul(p, a.Uint64s(), b.Uint64s(), y.Uint64s())
	case tensor.Float16, tensor.BFloat16:
		yf := make([]float32, y.Len())
		RunMatMul(p, toFloat32(a), toFloat32(b), yf)
		return one(fromFloat32(a.DType, p.Out, yf))
	default:
		return nil, badInput("MatMul of %v", a.DType)
	}
	return []*tensor.Tensor{y}, nil
}

// one wraps a single output and its error.
func one(t *tensor.Tensor, err error) ([]*tensor.Tensor, error) {
	if err != nil {
		return nil, err
	}
	return []*tensor.Tensor{t}, nil
}

// matMulIntegerOp is ONNX MatMulInteger: an 8-bit matmul with zero points
// (scalar, per row of A or per column of B), accumulated in int32.
type matMulIntegerOp struct{}

func (matMulIntegerOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("MatMulInteger", in, 2); err != nil {
		return nil, err
	}
	s, err := inferMatMul(in[0].Type.Shape, in[1].Type.Shape)
	if err != nil {
		return nil, err
	}
	return []ir.Type{{DType: tensor.Int32, Shape: s}}, nil
}

// quantMatMul computes the int32 matmul of a and b with zero points
// subtracted.
func quantMatMul(op string, a, azp, b, bzp *tensor.Tensor) (*MatMulPlan, []int32, error) {
	if !is8bit(a.DType) || !is8bit(b.DType) {
		return nil, nil, badInput("%s of %v and %v, want int8 or uint8", op, a.DType, b.DType)
	}
	p, err := PlanMatMul(op, a.Shape, b.Shape)
	if err != nil {
		return nil, nil, err
	}
	m := 1
	if a.Rank() > 1 {
		m = a.Shape[a.Rank()-2]
	}
	n := 1
	if b.Rank() > 1 {
		n = b.Shape[b.Rank()-1]
	}
	az, err := zeroPoints(op, "a_zero_point", azp, a.DType, m)
	if err != nil {
		return nil, nil, err
	}
	bz, err := zeroPoints(op, "b_zero_point", bzp, b.DType, n)
	if err != nil {
		return nil, nil, err
	}
	ai := int32s(a, az, p.K)
	bi := int32s(b, nil, 1)
	if len(bz) == 1 {
		for i := range bi {
			bi[i] -= bz[0]
		}
	} else {
		for i := range bi {
			bi[i] -= bz[i%n]
		}
	}
	acc := make([]int32, tensor.NumElements(p.Out))
	RunMatMul(p, ai, bi, acc)
	return p, acc, nil
}

func (matMulIntegerOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("MatMulInteger", in, 2); err != nil {
		return nil, err
	}
	p, acc, err := quantMatMul("MatMulInteger", in[0], input(in, 2), in[1], input(in, 3))
	if err != nil {
		return nil, err
	}
	y, err := makeOut(tensor.Int32, p.Out)
	if err != nil {
		return nil, err
	}
	copy(y.Int32s(), acc)
	return []*tensor.Tensor{y}, nil
}

// qlinearMatMulOp is ONNX QLinearMatMul: a quantized matmul requantized to
// the output's scale and zero point.
type qlinearMatMulOp struct{}

func (qlinearMatMulOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("QLinearMatMul", in, 4); err != nil {
		return nil, err
	}
	s, err := inferMatMul(in[0].Type.Shape, in[3].Type.Shape)
	if err != nil {
		return nil, err
	}
	dt := in[0].Type.DType
	if zp := value(in, 7); zp != nil {
		dt = zp.Type.DType
	}
	return []ir.Type{{DType: dt, Shape: s}}, nil
}

func (qlinearMatMulOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "QLinearMatMul"
	if err := needInputs(op, in, 7); err != nil {
		return nil, err
	}
	a, b := in[0], in[3]
	p, acc, err := quantMatMul(op, a, input(in, 2), b, input(in, 5))
	if err != nil {
		return nil, err
	}
	m := 1
	if a.Rank() > 1 {
		m = a.Shape[a.Rank()-2]
	}
	n := 1
	if b.Rank() > 1 {
		n = b.Shape[b.Rank()-1]
	}
	as, err := scales(op, "a_scale", in[1], m)
	if err != nil {
		return nil, err
	}
	bs, err := scales(op, "b_scale", in[4], n)
	if err != nil {
		return nil, err
	}
	ys, err := scales(op, "y_scale", in[6], 1)
	if err != nil {
		return nil, err
	}
	ydt := a.DType
	if zp := input(in, 7); zp != nil {
		ydt = zp.DType
	}
	if !is8bit(ydt) {
		return nil, badInput("%s y_zero_point is %v, want int8 or uint8", op, ydt)
	}
	yz, err := zeroPoints(op, "y_zero_point", input(in, 7), ydt, 1)
	if err != nil {
		return nil, err
	}
	y, err := makeOut(ydt, p.Out)
	if err != nil {
		return nil, err
	}
	lo, hi := quantRange(ydt)
	for i, v := range acc {
		row, colIdx := (i/n)%m, i%n
		mult := as[min(row, len(as)-1)] * bs[min(colIdx, len(bs)-1)] / ys[0]
		q := roundHalfEven(float64(float32(v)*mult)) + float64(yz[0])
		storeQuant(y, i, min(hi, max(lo, q)))
	}
	return []*tensor.Tensor{y}, nil
}

func init() {
	ops.Register(ops.Def{Type: "MatMul", Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return matMulOp{}, nil }})
	ops.Register(ops.Def{Type: "MatMulInteger", Traits: ops.KeepFloat32, Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return matMulIntegerOp{}, nil }})
	ops.Register(ops.Def{Type: "QLinearMatMul", Traits: ops.KeepFloat32, Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return qlinearMatMulOp{}, nil }})
}
