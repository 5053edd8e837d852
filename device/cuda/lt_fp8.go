package cuda

import (
	"errors"
	"fmt"
	"unsafe"
)

// FP8 E4M3 products through cuBLASLt (issue 11).
//
// cuBLASLt multiplies FP8 matrices on compute capability 8.9 and later
// (Ada, Hopper) under rules its documentation lists, which NewMatmulFP8
// checks before asking the library (so a refusal names the rule):
//   - A and B are CUDA_R_8F_E4M3 (E5M2 is not used here), the compute type
//     CUBLAS_COMPUTE_32F and the scale type CUDA_R_32F;
//   - only the "TN" form: cuBLASLt's A transposed, its B not. Kiln's row-major
//     Y[M,N] = X[M,K] W[N,K]^T is exactly that with both operands
//     K-contiguous: cuBLASLt's A is W (column-major K x N, transposed), its B
//     is X (column-major K x M), its D is Y (column-major N x M);
//   - leading dimensions and pointers 16-byte aligned: K and N multiples of
//     16 here;
//   - with C in CUDA_R_16F, D is CUDA_R_16F or CUDA_R_8F_E4M3 and the bias
//     CUDA_R_16F (CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE): the combinations kiln
//     uses; C is always half (the residual of a convolution), which is also
//     what an FP8 D asks (C of the bias type), in a layout of its own since
//     D's type differs; C cannot be FP8, so a residual stays half;
//   - per-tensor scales through device pointers (float32):
//     CUBLASLT_MATMUL_DESC_A_SCALE_POINTER and B_SCALE_POINTER dequantize the
//     operands, D_SCALE_POINTER multiplies the result before its conversion
//     to an FP8 D (not allowed for a half D), AMAX_D_POINTER receives the
//     largest |result| before that scale (FP8 D only);
//   - the epilogues DEFAULT, RELU, BIAS, RELU_BIAS.
//
// So D = scaleD * epilogue(scaleA scaleB op(A) op(B) + C + bias): the
// residual C (beta = 1) is added before the bias and the activation, as
// for the half products.

// cuBLASLt enumerators of the FP8 products.
const (
	cudaR8FE4M3        = 28 // CUDA_R_8F_E4M3
	ltDescAScale       = 17 // CUBLASLT_MATMUL_DESC_A_SCALE_POINTER
	ltDescBScale       = 18 // CUBLASLT_MATMUL_DESC_B_SCALE_POINTER
	ltDescDScale       = 20 // CUBLASLT_MATMUL_DESC_D_SCALE_POINTER
	ltDescAmaxD        = 21 // CUBLASLT_MATMUL_DESC_AMAX_D_POINTER
	ltDescFastAccum    = 25 // CUBLASLT_MATMUL_DESC_FAST_ACCUM (int8_t)
	ltDescBiasDataType = 26 // CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE (int32)
	ltEpilogueReLU     = 2  // CUBLASLT_EPILOGUE_RELU
	ltEpilogueDefault  = 1  // CUBLASLT_EPILOGUE_DEFAULT
)

// ErrFP8Unsupported is wrapped by the errors of NewMatmulFP8 for a product
// that cuBLASLt's FP8 rules do not allow (see FP8MatmulOptions).
var ErrFP8Unsupported = errors.New("cuda: FP8 product not supported")

// FP8Capable reports whether a GPU of compute capability major.minor runs
// cuBLASLt's FP8 products (8.9 and later).
func FP8Capable(major, minor int) bool { return major > 8 || major == 8 && minor >= 9 }

// FP8MatmulOptions are the settings of NewMatmulFP8: the row-major product
// Y[M,N] = XScale WScale X[M,K] W[N,K]^T, both operands FP8 E4M3, then
// (+ C) (+ Bias) (ReLU), in float32, written as half or (OutFP8) as E4M3
// after multiplying by YScale.
type FP8MatmulOptions struct {
	// XScale and WScale are device pointers to one float32 each: the
	// dequantizing scales of X and W (a value is its FP8 code times the
	// scale). 0 means 1.
	XScale, WScale DevicePtr
	// Bias, when not 0, is a device vector of N half values added to every
	// row of Y.
	Bias DevicePtr
	// ReLU applies max(0, x) last.
	ReLU bool
	// Residual plans Y = X W^T + C (beta = 1), C a half matrix of Y's shape:
	// run it with RunC.
	Residual bool
	// OutFP8 writes Y in FP8 E4M3 (saturated to ±448), else half.
	OutFP8 bool
	// YScale, with OutFP8 only, is a device pointer to the float32 that
	// multiplies the result before its conversion (the next layer's
	// 1/scale); 0 means 1.
	YScale DevicePtr
	// Amax, with OutFP8 only, is a device pointer to a float32 that receives
	// max |result| before YScale (a calibration aid).
	Amax DevicePtr
	// FastAccum turns on Hopper's fast FP8 accumulation
	// (CUBLASLT_MATMUL_DESC_FAST_ACCUM): faster, with fewer bits kept in
	// the partial sums.
	FastAccum bool
}

// checkFP8 says why cuBLASLt's FP8 rules refuse the product m x n x k with
// o, or nil.
func checkFP8(m, n, k int, o FP8MatmulOptions) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %dx%dx%d: %s", ErrFP8Unsupported, m, n, k, fmt.Sprintf(format, a...))
	}
	switch {
	case m <= 0 || n <= 0 || k <= 0:
		return bad("every dimension must be positive")
	case k%16 != 0:
		return bad("K must be a multiple of 16 (16-byte aligned rows of X and W), not %d", k)
	case n%16 != 0:
		return bad("N must be a multiple of 16 (16-byte aligned rows of W and Y), not %d", n)
	case o.YScale != 0 && !o.OutFP8:
		return bad("a D scale (YScale) applies to an FP8 output only; cuBLASLt refuses it for a half D")
	case o.Amax != 0 && !o.OutFP8:
		return bad("AMAX_D (Amax) applies to an FP8 output only")
	}
	return nil
}

// NewMatmulFP8 plans the FP8 product o describes (see FP8MatmulOptions and
// the rules above) with the algorithms cuBLASLt's heuristics return within
// maxWorkspace bytes, in Candidates as for NewMatmulWith (the first in
// use). Run it with Run, or with RunC when planned with Residual: X is the
// product's "a", W its "b". It does not check the GPU: see FP8Capable.
func (b *CUBLASLt) NewMatmulFP8(h CUBLASLtHandle, m, n, k int, o FP8MatmulOptions, maxWorkspace int) (_ *LtMatmul, err error) {
	if err := checkFP8(m, n, k, o); err != nil {
		return nil, err
	}
	f, err := b.matmul()
	if err != nil {
		return nil, err
	}
	// Without the residual, an FP8 D gets no C (beta 0): cuBLASLt refuses
	// (CUBLAS_STATUS_INVALID_VALUE, measured on an H100) a C aliasing D
	// in another type.
	p := &LtMatmul{b: b, f: f, M: m, N: n, K: k, residual: o.Residual, cNull: o.OutFP8 && !o.Residual}
	defer func() {
		if err != nil {
			p.Destroy()
		}
	}()
	var desc, la, lb, lc, ly unsafe.Pointer
	if r := call(f.descCreate, uintptr(unsafe.Pointer(&desc)), cublasCompute32F, cudaR32F); r != 0 {
		return nil, b.err("cublasLtMatmulDescCreate", r)
	}
	p.desc = desc
	set := func(name string, attr int, v unsafe.Pointer, size int) error {
		if r := call(f.descSet, uintptr(p.desc), uintptr(attr), uintptr(v), uintptr(size)); r != 0 {
			return b.err("cublasLtMatmulDescSetAttribute("+name+")", r)
		}
		return nil
	}
	opT := int32(cublasOpT)
	if err := set("TRANSA", ltDescTransA, unsafe.Pointer(&opT), 4); err != nil {
		return nil, err
	}
	epi := int32(ltEpilogueDefault)
	switch {
	case o.Bias != 0 && o.ReLU:
		epi = ltEpilogueReLUBias
	case o.Bias != 0:
		epi = ltEpilogueBias
	case o.ReLU:
		epi = ltEpilogueReLU
	}
	if epi != ltEpilogueDefault {
		if err := set("EPILOGUE", ltDescEpilogue, unsafe.Pointer(&epi), 4); err != nil {
			return nil, err
		}
	}
	if o.Bias != 0 {
		bias, bt := uint64(o.Bias), int32(cudaR16F)
		if err := set("BIAS_POINTER", ltDescBiasPointer, unsafe.Pointer(&bias), 8); err != nil {
			return nil, err
		}
		if err := set("BIAS_DATA_TYPE", ltDescBiasDataType, unsafe.Pointer(&bt), 4); err != nil {
			return nil, err
		}
	}
	// cuBLASLt's A is W, its B is X.
	for _, s := range []struct {
		name string
		attr int
		ptr  DevicePtr
	}{{"A_SCALE_POINTER", ltDescAScale, o.WScale}, {"B_SCALE_POINTER", ltDescBScale, o.XScale},
		{"D_SCALE_POINTER", ltDescDScale, o.YScale}, {"AMAX_D_POINTER", ltDescAmaxD, o.Amax}} {
		if s.ptr == 0 {
			continue
		}
		v := uint64(s.ptr)
		if err := set(s.name, s.attr, unsafe.Pointer(&v), 8); err != nil {
			return nil, err
		}
	}
	if o.FastAccum {
		v := int8(1)
		if err := set("FAST_ACCUM", ltDescFastAccum, unsafe.Pointer(&v), 1); err != nil {
			return nil, err
		}
	}
	if r := call(f.layoutCreate, uintptr(unsafe.Pointer(&la)), cudaR8FE4M3, uintptr(k), uintptr(n), uintptr(k)); r != 0 {
		return nil, b.err("cublasLtMatrixLayoutCreate(A)", r)
	}
	p.la = la
	if r := call(f.layoutCreate, uintptr(unsafe.Pointer(&lb)), cudaR8FE4M3, uintptr(k), uintptr(m), uintptr(k)); r != 0 {
		return nil, b.err("cublasLtMatrixLayoutCreate(B)", r)
	}
	p.lb = lb
	if r := call(f.layoutCreate, uintptr(unsafe.Pointer(&lc)), cudaR16F, uintptr(n), uintptr(m), uintptr(n)); r != 0 {
		return nil, b.err("cublasLtMatrixLayoutCreate(C)", r)
	}
	p.lc = lc
	dt := uintptr(cudaR16F)
	if o.OutFP8 {
		dt = cudaR8FE4M3
	}
	if r := call(f.layoutCreate, uintptr(unsafe.Pointer(&ly)), dt, uintptr(n), uintptr(m), uintptr(n)); r != 0 {
		return nil, b.err("cublasLtMatrixLayoutCreate(D)", r)
	}
	p.ly = ly
	var pref unsafe.Pointer
	if r := call(f.prefCreate, uintptr(unsafe.Pointer(&pref))); r != 0 {
		return nil, b.err("cublasLtMatmulPreferenceCreate", r)
	}
	defer call(f.prefDestroy, uintptr(pref))
	ws := uint64(maxWorkspace)
	if r := call(f.prefSet, uintptr(pref), ltPrefMaxWorkspace, uintptr(unsafe.Pointer(&ws)), 8); r != 0 {
		return nil, b.err("cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)", r)
	}
	const req = ltHeuristicRequests
	all := make([]byte, req*ltHeuristicResultSize)
	var got int32
	if r := call(f.heuristic, uintptr(h.p), uintptr(p.desc), uintptr(p.la), uintptr(p.lb), uintptr(p.lc), uintptr(p.ly),
		uintptr(pref), req, uintptr(unsafe.Pointer(&all[0])), uintptr(unsafe.Pointer(&got))); r != 0 {
		return nil, b.err(fmt.Sprintf("cublasLtMatmulAlgoGetHeuristic(FP8 %dx%dx%d)", m, n, k), r)
	}
	p.keepHeuristic(f, all, int(got), maxWorkspace)
	if len(p.Candidates) == 0 {
		return nil, &Error{Call: "cublasLtMatmulAlgoGetHeuristic", Code: 15, Name: "CUBLAS_STATUS_NOT_SUPPORTED",
			Msg: fmt.Sprintf("no FP8 algorithm for %dx%dx%d within %d bytes of workspace", m, n, k, maxWorkspace)}
	}
	p.algo = cMalloc(64)
	if err := p.UseCandidate(0); err != nil {
		return nil, err
	}
	return p, nil
}
