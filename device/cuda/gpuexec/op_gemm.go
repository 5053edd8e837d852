package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// gemmCall is a row-major product that cuBLASLt may run: Y[M,N] =
// A[M,K] B[K,N] (B transposed when transB: stored [N,K]), followed by post
// (bias and activation) in place when post.kernel is set.
type gemmCall struct {
	a, b, y ref
	m, n, k int
	transB  bool
	post    launch
	// bias and act are what post does: cuBLASLt's epilogue replaces post
	// when ltEpilogue says it can.
	bias *ref
	act  activation
	// resid, when set, is a matrix of Y's shape added to the product
	// (residualInto): through cuBLASLt's C (RunC) with its bias epilogue,
	// else by post (and by the launches' last kernel).
	resid *ref
}

// erfGELUEpilogue lets half-precision products apply the erf GELU (ONNX
// Gelu, kiln::Gelu without approximate) through cuBLASLt's GELU_BIAS
// epilogue, which computes the tanh form. The two differ by at most
// 4.8e-4 (at x = -2.7, where GELU is -0.0094), below the rounding of the
// half-precision input there (2.7 is stored within 1e-3); float32 engines
// keep the exact erf kernel. Tests turn it off to time the engine without.
var erfGELUEpilogue = true

// ltSplitK makes the products' cuBLASLt plans carry, besides the
// heuristic's results, their split-K variants (cuda.MatmulOptions.SplitK)
// for tuning to time. Off: on an H100 with cuBLASLt 13 tuning never kept
// one for BERT-base's batch-1 products (128 rows; the heuristic's own
// algorithm 66 was faster every time, device/cuda/NOTES.md), and they made
// tuning time five times as many candidates. Tests turn it on.
var ltSplitK = false

// ltEpilogue reports whether cuBLASLt's epilogue can add the step's bias
// and apply its activation, and which activation (relu, gelu) it uses:
// the bias must be a constant (its address is fixed when the product is
// planned) and the activation none, ReLU, the tanh GELU, or in half
// precision the erf GELU (erfGELUEpilogue).
func (gc *gemmCall) ltEpilogue(half bool) (relu, gelu, ok bool) {
	if gc.bias == nil || gc.bias.buf != bufWeights {
		return false, false, false
	}
	switch gc.act.code {
	case actNone:
		return false, false, true
	case actRelu:
		return true, false, true
	case actGeluTanh:
		return false, true, true
	case actGelu:
		if half && erfGELUEpilogue {
			return false, true, true
		}
	}
	return false, false, false
}

// gemmFits reports whether gemm_f32's grid can cover the product.
func gemmFits(batch, m, n int) error {
	if (m+15)/16 > 65535 || batch > 65535 || n <= 0 || m <= 0 {
		return fmt.Errorf("%w: a %d x %d product in a batch of %d", ErrUnsupported, m, n, batch)
	}
	return nil
}

// gemmLaunch is a launch of gemm_f32 or gemm_f16 (kernel).
func gemmLaunch(kernel string, y, a, b ref, cb *ref, batch, M, N, K int, sAb, sAm, sAk, sBb, sBk, sBn, sCm, sCn int64, alpha, beta float32, act activation) launch {
	return launch{kernel: kernel,
		grid:  cuda.Dim3{X: uint32((N + 15) / 16), Y: uint32((M + 15) / 16), Z: uint32(batch)},
		block: cuda.Dim3{X: 16, Y: 16, Z: 1},
		args: []arg{pArg(y), pArg(a), pArg(b), optArg(cb), iArg(M), iArg(N), iArg(K),
			lArg(sAb), lArg(sAm), lArg(sAk), lArg(sBb), lArg(sBk), lArg(sBn), lArg(sCm), lArg(sCn),
			fArg(alpha), fArg(beta), iArg(act.code), fArg(act.p0), fArg(act.p1)}}
}

func (c *compiler) gemm(s *step) error {
	n := s.node
	a, err := ops.ParseGemmAttrs(n, c.g.Opset()) // the CPU's rules (ops/nn); C broadcast at every opset
	if err != nil {
		return err
	}
	alpha, beta, transA, transB := a.Alpha, a.Beta, a.TransA, a.TransB
	ad, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	bd, err := c.dims(n.Inputs[1])
	if err != nil {
		return err
	}
	if len(ad) != 2 || len(bd) != 2 {
		return fmt.Errorf("%w: Gemm of %v and %v", ErrGraph, ad, bd)
	}
	M, K := ad[0], ad[1]
	sAm, sAk := int64(K), int64(1)
	if transA {
		M, K = ad[1], ad[0]
		sAm, sAk = 1, int64(M)
	}
	N := bd[1]
	sBk, sBn := int64(N), int64(1)
	if transB {
		N = bd[0]
		sBk, sBn = 1, int64(K)
	}
	ar, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	br, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	var cr *ref
	var sCm, sCn int64
	bias := false // C is a row vector [N]: cuBLASLt + the row epilogue can add it
	if cv := input(n, 2); cv != nil && beta != 0 {
		r, err := c.ref(cv)
		if err != nil {
			return err
		}
		cr = &r
		cd, err := c.dims(cv)
		if err != nil {
			return err
		}
		switch len(cd) {
		case 0:
		case 1:
			if cd[0] != 1 {
				sCn = 1
			}
			bias = cd[0] == N
		case 2:
			if cd[0] != 1 {
				sCm = int64(cd[1])
			}
			if cd[1] != 1 {
				sCn = 1
			}
			bias = cd[0] == 1 && cd[1] == N
		default:
			return fmt.Errorf("%w: Gemm C of shape %v", ErrGraph, cd)
		}
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	if err := gemmFits(1, M, N); err != nil {
		return err
	}
	s.launches = []launch{gemmLaunch(c.fk("gemm"), yr, ar, br, cr, 1, M, N, K, 0, sAm, sAk, 0, sBk, sBn, sCm, sCn, alpha, beta, activation{})}
	if !transA && alpha == 1 && (cr == nil || (bias && beta == 1)) {
		s.gemm = &gemmCall{a: ar, b: br, y: yr, m: M, n: N, k: K, transB: transB, bias: cr}
		if cr != nil {
			s.gemm.post = c.rowEpilogue(M, N, yr, cr, activation{code: actNone})
		}
	}
	return nil
}

func (c *compiler) matmul(s *step) error {
	n := s.node
	act := activation{}
	var err error
	if n.Domain == "kiln" {
		if act, err = fusedActivation(n); err != nil {
			return err
		}
	}
	ad, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	bd, err := c.dims(n.Inputs[1])
	if err != nil {
		return err
	}
	if len(ad) == 0 || len(bd) == 0 {
		return fmt.Errorf("%w: MatMul of a scalar", ErrGraph)
	}
	// 1-D operands: [K] is [1,K] for A and [K,1] for B.
	a2, b2 := ad, bd
	if len(a2) == 1 {
		a2 = []int{1, a2[0]}
	}
	if len(b2) == 1 {
		b2 = []int{b2[0], 1}
	}
	M, K, N := a2[len(a2)-2], a2[len(a2)-1], b2[len(b2)-1]
	if b2[len(b2)-2] != K {
		return fmt.Errorf("%w: MatMul of %v and %v", ErrGraph, ad, bd)
	}
	aBatch, bBatch := a2[:len(a2)-2], b2[:len(b2)-2]
	ar, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	br, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	var cr *ref
	if b := input(n, 2); b != nil && n.Domain == "kiln" {
		r, err := c.ref(b)
		if err != nil {
			return err
		}
		if c.size(b) != int64(N)*c.esize(tensor.Float32) {
			return fmt.Errorf("%w: bias %v for %d columns", ErrGraph, b.Type, N)
		}
		cr = &r
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	var batch int
	var sAb, sBb int64
	switch {
	case prod(bBatch) == 1:
		// B is one matrix: fold A's batch into its rows
		M *= int(prod(aBatch))
		batch = 1
	case sameDims(aBatch, bBatch):
		batch = int(prod(aBatch))
		sAb, sBb = int64(M)*int64(K), int64(K)*int64(N)
	case prod(aBatch) == 1:
		batch = int(prod(bBatch))
		sBb = int64(K) * int64(N)
	default:
		return fmt.Errorf("%w: MatMul broadcasting %v against %v", ErrUnsupported, ad, bd)
	}
	if err := gemmFits(batch, M, N); err != nil {
		return err
	}
	var sCn int64
	if cr != nil {
		sCn = 1
	}
	s.launches = []launch{gemmLaunch(c.fk("gemm"), yr, ar, br, cr, batch, M, N, K, sAb, int64(K), 1, sBb, int64(N), 1, 0, sCn, 1, 1, act)}
	if batch == 1 {
		s.gemm = &gemmCall{a: ar, b: br, y: yr, m: M, n: N, k: K, bias: cr, act: act}
		if cr != nil || act.code != actNone {
			s.gemm.post = c.rowEpilogue(M, N, yr, cr, act)
		}
	}
	return nil
}

// rowEpilogue is y = act(y + bias[col]) over an M x N matrix after a
// product: 8 halves a thread when N allows.
func (c *compiler) rowEpilogue(M, N int, yr ref, bias *ref, act activation) launch {
	total := int64(M) * int64(N)
	if c.half && N%8 == 0 && yr.off%16 == 0 && (bias == nil || bias.off%16 == 0) {
		return elemLaunch("row_epilogue_vec_f16", total/8, pArg(yr), optArg(bias), lArg(total), iArg(N), iArg(act.code), fArg(act.p0), fArg(act.p1))
	}
	return elemLaunch(c.fk("row_epilogue"), total, pArg(yr), optArg(bias), lArg(total), iArg(N), iArg(act.code), fArg(act.p0), fArg(act.p1))
}

func sameDims(a, b []int) bool {
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

// gemmKernels are the matrix products: cuBLASLt where it is there, else
// kiln's tiled kernel.
var gemmKernels = []kernelDef{
	{op: "Gemm", inputs: 2, types: float32Only, f32: []int{1, 2}, emit: (*compiler).gemm},
	{op: "MatMul", inputs: 2, types: float32Only, f32: []int{1}, emit: (*compiler).matmul},
	{domain: "kiln", op: "FusedMatMul", inputs: 2, types: float32Only, f32: []int{1, 2}, emit: (*compiler).matmul},
}
