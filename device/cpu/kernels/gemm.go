package kernels

import (
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// ONNX Gemm (ops/nn/gemm.go defines the op, its inference and a plain
// reference loop): cpu.Gemm runs Y = alpha*op(A)*op(B) + beta*C on
// cpu.Sgemm, Y first filled with C broadcast to [M, N] (beta applied by
// the GEMM). Float32 directly, float16 on float32 stand-ins inside the
// float16 adapter, bfloat16 widened to float32 and rounded back (as the
// op's own kernel did before the move). Anything else, and every input it
// does not take (the reference says why), is the reference's.
var gemmKernels = []Def{
	{Name: "cpu.Gemm", Type: "Gemm", Since: 1, Types: []tensor.DType{tensor.Float32, tensor.Float16, tensor.BFloat16},
		Prepare: prepareGemm},
}

func prepareGemm(n *ir.Node, opset int64) (ops.Kernel, error) {
	ref, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	a, err := ops.ParseGemmAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &gemmKernel{Kernel: ref, a: a}, nil
}

// gemmKernel is the fast Run of Gemm; Infer is the reference's.
type gemmKernel struct {
	ops.Kernel
	a ops.GemmAttrs
}

// gemmShape is one Gemm call's sizes: Y is [m, n], the inner dimension k;
// c is nil when C is absent or beta is 0 (C not read).
type gemmShape struct {
	m, n, k int
	c       *tensor.Tensor
}

// shape checks the inputs as the reference does; false sends the call to
// the reference (which returns the error).
func (g *gemmKernel) shape(in []*tensor.Tensor) (gemmShape, bool) {
	if len(in) < 2 || in[0] == nil || in[1] == nil {
		return gemmShape{}, false
	}
	a, b := in[0], in[1]
	var c *tensor.Tensor
	if len(in) > 2 {
		c = in[2]
	}
	if a.DType != b.DType || (c != nil && c.DType != a.DType) || a.Rank() != 2 || b.Rank() != 2 {
		return gemmShape{}, false
	}
	m, ka := a.Shape[0], a.Shape[1]
	if g.a.TransA {
		m, ka = ka, m
	}
	kb, n := b.Shape[0], b.Shape[1]
	if g.a.TransB {
		kb, n = n, kb
	}
	if ka != kb {
		return gemmShape{}, false
	}
	if c != nil && g.a.Beta != 0 {
		if c.Rank() > 2 || !gemmBroadcasts(c.Shape, m, n) {
			return gemmShape{}, false
		}
	} else {
		c = nil
	}
	return gemmShape{m: m, n: n, k: ka, c: c}, true
}

// gemmBroadcasts reports whether a shape of at most 2 dimensions
// broadcasts to [m, n] (unidirectionally).
func gemmBroadcasts(s []int, m, n int) bool {
	want := [2]int{m, n}
	for i, d := range s {
		if w := want[2-len(s)+i]; d != w && d != 1 {
			return false
		}
	}
	return true
}

func (g *gemmKernel) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	s, ok := g.shape(in)
	if !ok {
		return g.Kernel.Run(env, in)
	}
	switch dt := in[0].DType; dt {
	case tensor.Float32:
		y, err := ops.NewOutput(env, tensor.Float32, []int{s.m, s.n})
		if err != nil {
			return g.Kernel.Run(env, in)
		}
		var cv []float32
		if s.c != nil {
			cv = s.c.Float32s()
		}
		g.run(s, in[0].Float32s(), in[1].Float32s(), cv, y.Float32s())
		return env.One(y), nil
	case tensor.BFloat16:
		var cv []float32
		if s.c != nil {
			cv = s.c.ToFloat32()
		}
		yf := make([]float32, s.m*s.n)
		g.run(s, in[0].ToFloat32(), in[1].ToFloat32(), cv, yf)
		y, err := ops.NewOutput(env, tensor.BFloat16, []int{s.m, s.n})
		if err != nil {
			return g.Kernel.Run(env, in)
		}
		h := y.BHalfs()
		for i, v := range yf {
			h[i] = tensor.Float32ToBF16(v)
		}
		return env.One(y), nil
	}
	return g.Kernel.Run(env, in)
}

// run fills y ([m, n]) with C broadcast (when given) and accumulates
// alpha*op(A)*op(B) into it with cpu.Sgemm (beta on C); without C, y is
// only written.
func (g *gemmKernel) run(s gemmShape, a, b, cv, y []float32) {
	m, n, k := s.m, s.n, s.k
	if m == 0 || n == 0 {
		return
	}
	beta := float32(0)
	if s.c != nil {
		cr, cc := 1, 1
		switch s.c.Rank() {
		case 1:
			cc = s.c.Shape[0]
		case 2:
			cr, cc = s.c.Shape[0], s.c.Shape[1]
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
		beta = g.a.Beta
	}
	if k == 0 {
		if beta == 0 {
			clear(y[:m*n]) // y may hold anything
			return
		}
		for i := range y[:m*n] {
			y[i] *= beta
		}
		return
	}
	lda, ldb := k, n
	if g.a.TransA {
		lda = m
	}
	if g.a.TransB {
		ldb = k
	}
	cpu.Sgemm(g.a.TransA, g.a.TransB, m, n, k, g.a.Alpha, a, max(lda, 1), b, max(ldb, 1), beta, y, n)
}
