package nn

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// gemmOp is ONNX Gemm: Y = alpha*op(A)*op(B) + beta*C, with C (optional
// from opset 11) broadcast to [M, N]. Its Run is the reference: plain loops
// (gemmPlain) in every type, the half types in float32. The fast kernel is
// the CPU registry's cpu.Gemm (device/cpu/kernels/gemm.go, on cpu.Sgemm).
type gemmOp struct {
	transA, transB bool
	alpha, beta    float32
}

func prepareGemm(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseGemmAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	// before opset 7, C is broadcast whatever a.Broadcast says
	return &gemmOp{transA: a.TransA, transB: a.TransB, alpha: a.Alpha, beta: a.Beta}, nil
}

func gemmAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseGemmAttrs(n, opset) }

func (k *gemmOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("Gemm", in, 2); err != nil {
		return nil, err
	}
	as, bs := in[0].Type.Shape, in[1].Type.Shape
	if (as != nil && len(as) != 2) || (bs != nil && len(bs) != 2) {
		return nil, badInput("Gemm of shapes %v and %v, want matrices", as, bs)
	}
	m, n := ir.U(), ir.U()
	if as != nil {
		m = as[0]
		if k.transA {
			m = as[1]
		}
	}
	if bs != nil {
		n = bs[1]
		if k.transB {
			n = bs[0]
		}
	}
	if as != nil && bs != nil {
		ka, kb := as[1], bs[0]
		if k.transA {
			ka = as[0]
		}
		if k.transB {
			kb = bs[1]
		}
		if ka.Known() && kb.Known() && ka.Val != kb.Val {
			return nil, badInput("Gemm of %v and %v (transA=%v, transB=%v): inner dims differ", as, bs, k.transA, k.transB)
		}
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: ir.Shape{m, n}}}, nil
}

func (k *gemmOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("Gemm", in, 2); err != nil {
		return nil, err
	}
	a, b, c := in[0], in[1], input(in, 2)
	if a.DType != b.DType || (c != nil && c.DType != a.DType) {
		return nil, badInput("Gemm of %v and %v", a.DType, b.DType)
	}
	if a.Rank() != 2 || b.Rank() != 2 {
		return nil, badInput("Gemm of shapes %v and %v, want matrices", a.Shape, b.Shape)
	}
	m, ka := a.Shape[0], a.Shape[1]
	if k.transA {
		m, ka = ka, m
	}
	kb, n := b.Shape[0], b.Shape[1]
	if k.transB {
		kb, n = n, kb
	}
	if ka != kb {
		return nil, badInput("Gemm of %v and %v (transA=%v, transB=%v): inner dims differ", a.Shape, b.Shape, k.transA, k.transB)
	}
	out := []int{m, n}
	if c != nil && k.beta != 0 {
		if c.Rank() > 2 {
			return nil, badInput("Gemm C has shape %v, want at most 2 dims", c.Shape)
		}
		if !broadcastsTo(c.Shape, m, n) {
			return nil, badInput("Gemm C of shape %v does not broadcast to %v", c.Shape, []int{m, n})
		}
	} else {
		c = nil
	}
	y, err := newOut(env, a.DType, out)
	if err != nil {
		return nil, err
	}
	switch a.DType {
	case tensor.Float32:
		runGemm(k, m, n, ka, a.Float32s(), b.Float32s(), cOf[float32](c), c, y.Float32s())
	case tensor.Float64:
		runGemm(k, m, n, ka, a.Float64s(), b.Float64s(), cOf[float64](c), c, y.Float64s())
	case tensor.Int32:
		runGemm(k, m, n, ka, a.Int32s(), b.Int32s(), cOf[int32](c), c, y.Int32s())
	case tensor.Int64:
		runGemm(k, m, n, ka, a.Int64s(), b.Int64s(), cOf[int64](c), c, y.Int64s())
	case tensor.Uint32:
		runGemm(k, m, n, ka, a.Uint32s(), b.Uint32s(), cOf[uint32](c), c, y.Uint32s())
	case tensor.Uint64:
		runGemm(k, m, n, ka, a.Uint64s(), b.Uint64s(), cOf[uint64](c), c, y.Uint64s())
	case tensor.Float16, tensor.BFloat16:
		var cf []float32
		if c != nil {
			cf = toFloat32(c)
		}
		yf := make([]float32, m*n)
		runGemm(k, m, n, ka, toFloat32(a), toFloat32(b), cf, c, yf)
		return one(fromFloat32(a.DType, out, yf))
	default:
		return nil, badInput("Gemm of %v", a.DType)
	}
	return env.One(y), nil
}

// broadcastsTo reports whether a shape of at most 2 dimensions broadcasts
// to [m, n] (unidirectionally: the result is [m, n]).
func broadcastsTo(s []int, m, n int) bool {
	want := [2]int{m, n}
	for i, d := range s {
		if w := want[2-len(s)+i]; d != w && d != 1 {
			return false
		}
	}
	return true
}

// cOf returns the elements of an optional tensor.
func cOf[T any](t *tensor.Tensor) []T {
	if t == nil {
		return nil
	}
	return elems[T](t)
}

// runGemm fills y with C broadcast to [m, n] (when given) and accumulates
// alpha*op(A)*op(B) into it.
func runGemm[T ops.Number](k *gemmOp, m, n, kk int, a, b, cv []T, c *tensor.Tensor, y []T) {
	beta := T(0)
	if c != nil {
		cr, cc := 1, 1
		switch c.Rank() {
		case 1:
			cc = c.Shape[0]
		case 2:
			cr, cc = c.Shape[0], c.Shape[1]
		}
		for i := 0; i < m; i++ {
			row := y[i*n : (i+1)*n]
			src := cv[(i%cr)*cc : (i%cr)*cc+cc]
			if cc == n {
				copy(row, src)
			} else {
				for j := range row {
					row[j] = src[0]
				}
			}
		}
		beta = convertScalar[T](k.beta)
	}
	lda, ldb := kk, n
	if k.transA {
		lda = m
	}
	if k.transB {
		ldb = kk
	}
	gemmPlain(k.transA, k.transB, m, n, kk, convertScalar[T](k.alpha), a, max(lda, 1), b, max(ldb, 1), beta, y, n)
}

// convertScalar converts a float attribute to T (truncating for integers).
func convertScalar[T ops.Number](v float32) T {
	var z T
	switch any(z).(type) {
	case float32:
		return T(v)
	case float64:
		return T(float64(v))
	}
	return T(int64(v))
}

func init() {
	ops.Register(ops.Def{Type: "Gemm", Attrs: gemmAttrs, Prepare: prepareGemm})
}
