package cuda

import (
	"errors"
	"fmt"
	"unsafe"
)

// INT8 products through cuBLASLt (issue 11): 8-bit activations in and out
// of a 1x1 convolution, the whole block in 8 bits.
//
// cuBLASLt multiplies INT8 matrices on its IMMA kernels with
// CUBLAS_COMPUTE_32I; with the scale type CUDA_R_32F, A, B, C and D are all
// CUDA_R_8I (the result rounded and saturated to int8), and its
// documentation lists, for the regular (non-COL32) data ordering:
//   - only the "TN" form: cuBLASLt's A transposed, its B not. Kiln's
//     row-major Y[M,N] = X[M,K] W[N,K]^T is that form, as for the FP8
//     products (lt_fp8.go): cuBLASLt's A is W, its B is X, its D is Y
//     (column-major N x M);
//   - leading dimensions multiples of 4 and pointers 4-byte aligned (16
//     for speed): K and N multiples of 4 here (kiln's channels are padded
//     to 16, QuantChannels);
//   - the pointer modes HOST, DEVICE and ALPHA_DEVICE_VECTOR_BETA_HOST: alpha
//     a device vector of float32, one per row of cuBLASLt's D (per output
//     channel of kiln's Y), beta a host float32. That per-channel alpha is
//     where the weights' per-channel scales go;
//   - the bias of the BIAS / RELU_BIAS epilogues has the scale type (float32)
//     when C is CUDA_R_8I (BIAS_DATA_TYPE is left at its default).
//
// So D = sat(round(epilogue(alpha[n] * (A B)[n,m] + beta * C[n,m] + bias[n]))),
// which is a bottleneck block's last 1x1 convolution in 8 bits:
// alpha = sx*sw[n]/sy, beta = sz/sy (the residual's scale over y's), bias
// b/sy, ReLU. What cuBLASLt 13 accepts on a given GPU (how many heuristic
// results, or NOT_SUPPORTED) is measured by TestInt8BlockBenchOnGPU.

// cuBLASLt enumerators of the INT8 products.
const (
	cublasCompute32I       = 72 // CUBLAS_COMPUTE_32I
	cudaR8I                = 3  // CUDA_R_8I
	ltDescPointerMode      = 2  // CUBLASLT_MATMUL_DESC_POINTER_MODE (int32)
	ltPointerHost          = 0  // CUBLASLT_POINTER_MODE_HOST
	ltPointerAlphaVecBeta0 = 3  // CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO
	ltPointerAlphaVecBetaH = 4  // CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_HOST
)

// ErrInt8Unsupported is wrapped by the errors of NewMatmulInt8 for a
// product that cuBLASLt's INT8 rules do not allow (see Int8MatmulOptions).
var ErrInt8Unsupported = errors.New("cuda: INT8 product not supported")

// Int8Alpha says how an INT8 product is given alpha and beta
// (cublasLtPointerMode_t).
type Int8Alpha int

// The alpha modes of NewMatmulInt8.
const (
	// AlphaVectorBetaHost: alpha a device vector of N float32 (one per
	// output column of Y), beta a host float32
	// (ALPHA_DEVICE_VECTOR_BETA_HOST). The default.
	AlphaVectorBetaHost Int8Alpha = iota
	// AlphaVectorBetaZero: alpha a device vector, no C
	// (ALPHA_DEVICE_VECTOR_BETA_ZERO; not with Residual).
	AlphaVectorBetaZero
	// AlphaHost: one host alpha (Int8MatmulOptions.Alpha) and beta (HOST).
	AlphaHost
)

// String names the mode as cuBLASLt does.
func (a Int8Alpha) String() string {
	switch a {
	case AlphaVectorBetaHost:
		return "ALPHA_DEVICE_VECTOR_BETA_HOST"
	case AlphaVectorBetaZero:
		return "ALPHA_DEVICE_VECTOR_BETA_ZERO"
	case AlphaHost:
		return "HOST"
	}
	return fmt.Sprintf("alpha mode %d", int(a))
}

// pointerMode returns a's cublasLtPointerMode_t.
func (a Int8Alpha) pointerMode() int32 {
	switch a {
	case AlphaVectorBetaZero:
		return ltPointerAlphaVecBeta0
	case AlphaHost:
		return ltPointerHost
	}
	return ltPointerAlphaVecBetaH
}

// Int8MatmulOptions are the settings of NewMatmulInt8: the row-major
// product Y[M,N] = sat(round(act(alpha X[M,K] W[N,K]^T + beta C + Bias))),
// X, W, C and Y int8, accumulated in int32, scaled in float32.
type Int8MatmulOptions struct {
	// Alpha is how alpha is given (AlphaVectorBetaHost by default: a
	// device vector passed to Run).
	Alpha Int8Alpha
	// HostAlpha is alpha with AlphaHost (0 means 1).
	HostAlpha float32
	// Bias, when not 0, is a device vector of N float32 values added to
	// every row of Y (in Y's units: after alpha).
	Bias DevicePtr
	// ReLU applies max(0, x) last.
	ReLU bool
	// Residual adds Beta times C, an int8 matrix of Y's shape (Run's c).
	Residual bool
	// Beta multiplies C (with Residual): the residual's scale over Y's.
	Beta float32
}

// LtMatmulInt8 is a planned INT8 product (NewMatmulInt8): an LtMatmul
// (its Candidates, UseCandidate, Workspace) run with Run.
type LtMatmulInt8 struct {
	*LtMatmul
	o      Int8MatmulOptions
	scalar unsafe.Pointer // C memory: the host alpha and beta (float32 each)
}

// checkInt8 says why cuBLASLt's INT8 rules refuse the product m x n x k
// with o, or nil.
func checkInt8(m, n, k int, o Int8MatmulOptions) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %dx%dx%d: %s", ErrInt8Unsupported, m, n, k, fmt.Sprintf(format, a...))
	}
	switch {
	case m <= 0 || n <= 0 || k <= 0:
		return bad("every dimension must be positive")
	case k%4 != 0:
		return bad("K must be a multiple of 4 (IMMA's leading dimensions), not %d", k)
	case n%4 != 0:
		return bad("N must be a multiple of 4 (IMMA's leading dimensions), not %d", n)
	case o.Alpha < AlphaVectorBetaHost || o.Alpha > AlphaHost:
		return bad("unknown alpha mode %d", int(o.Alpha))
	case o.Residual && o.Alpha == AlphaVectorBetaZero:
		return bad("a residual needs beta: ALPHA_DEVICE_VECTOR_BETA_ZERO has none")
	case o.Residual && o.Beta == 0:
		return bad("a residual with beta 0")
	}
	return nil
}

// NewMatmulInt8 plans the INT8 product o describes (see
// Int8MatmulOptions and the rules above) with the algorithms cuBLASLt's
// heuristics return within maxWorkspace bytes, in Candidates (the first
// in use). Run it with Run. Free it with Destroy.
func (b *CUBLASLt) NewMatmulInt8(h CUBLASLtHandle, m, n, k int, o Int8MatmulOptions, maxWorkspace int) (_ *LtMatmulInt8, err error) {
	if err := checkInt8(m, n, k, o); err != nil {
		return nil, err
	}
	f, err := b.matmul()
	if err != nil {
		return nil, err
	}
	p := &LtMatmulInt8{LtMatmul: &LtMatmul{b: b, f: f, M: m, N: n, K: k, residual: o.Residual}, o: o, scalar: cMalloc(8)}
	defer func() {
		if err != nil {
			p.Destroy()
		}
	}()
	sc := unsafe.Slice((*float32)(p.scalar), 2)
	sc[0], sc[1] = 1, 0
	if o.Alpha == AlphaHost && o.HostAlpha != 0 {
		sc[0] = o.HostAlpha
	}
	if o.Residual {
		sc[1] = o.Beta
	}
	var desc, la, lb, ly unsafe.Pointer
	if r := call(f.descCreate, uintptr(unsafe.Pointer(&desc)), cublasCompute32I, cudaR32F); r != 0 {
		return nil, b.err("cublasLtMatmulDescCreate(CUBLAS_COMPUTE_32I, CUDA_R_32F)", r)
	}
	p.desc = desc
	set := func(name string, attr int, v unsafe.Pointer, size int) error {
		if r := call(f.descSet, uintptr(p.desc), uintptr(attr), uintptr(v), uintptr(size)); r != 0 {
			return b.err("cublasLtMatmulDescSetAttribute("+name+")", r)
		}
		return nil
	}
	pm := o.Alpha.pointerMode()
	if err := set("POINTER_MODE", ltDescPointerMode, unsafe.Pointer(&pm), 4); err != nil {
		return nil, err
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
		bias := uint64(o.Bias)
		if err := set("BIAS_POINTER", ltDescBiasPointer, unsafe.Pointer(&bias), 8); err != nil {
			return nil, err
		}
	}
	// cuBLASLt's A is W (column-major K x N, transposed), its B is X
	// (column-major K x M), C and D are Y (column-major N x M): all int8.
	if r := call(f.layoutCreate, uintptr(unsafe.Pointer(&la)), cudaR8I, uintptr(k), uintptr(n), uintptr(k)); r != 0 {
		return nil, b.err("cublasLtMatrixLayoutCreate(A)", r)
	}
	p.la = la
	if r := call(f.layoutCreate, uintptr(unsafe.Pointer(&lb)), cudaR8I, uintptr(k), uintptr(m), uintptr(k)); r != 0 {
		return nil, b.err("cublasLtMatrixLayoutCreate(B)", r)
	}
	p.lb = lb
	if r := call(f.layoutCreate, uintptr(unsafe.Pointer(&ly)), cudaR8I, uintptr(n), uintptr(m), uintptr(n)); r != 0 {
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
	if r := call(f.heuristic, uintptr(h.p), uintptr(p.desc), uintptr(p.la), uintptr(p.lb), uintptr(p.ly), uintptr(p.ly),
		uintptr(pref), req, uintptr(unsafe.Pointer(&all[0])), uintptr(unsafe.Pointer(&got))); r != 0 {
		return nil, b.err(fmt.Sprintf("cublasLtMatmulAlgoGetHeuristic(INT8 %dx%dx%d, %s)", m, n, k, o.Alpha), r)
	}
	p.keepHeuristic(f, all, int(got), maxWorkspace)
	if len(p.Candidates) == 0 {
		return nil, &Error{Call: "cublasLtMatmulAlgoGetHeuristic", Code: 15, Name: "CUBLAS_STATUS_NOT_SUPPORTED",
			Msg: fmt.Sprintf("no INT8 algorithm for %dx%dx%d (%s) within %d bytes of workspace", m, n, k, o.Alpha, maxWorkspace)}
	}
	p.algo = cMalloc(64)
	if err := p.UseCandidate(0); err != nil {
		return nil, err
	}
	return p, nil
}

// Run queues y = sat(round(act(alpha x w^T + beta c + bias))) on s: x the
// product's [M,K] int8 input, w the [N,K] int8 weights, alpha a device
// vector of N float32 (with the vector alpha modes; ignored with
// AlphaHost), c the int8 residual (with Residual; 0 otherwise), y the
// [M,N] int8 output.
func (p *LtMatmulInt8) Run(h CUBLASLtHandle, x, w, alpha, c, y, workspace DevicePtr, wsSize int, s Stream) error {
	switch {
	case p.o.Residual && c == 0:
		return &Error{Call: "cublasLtMatmul", Code: 7, Name: "CUBLAS_STATUS_INVALID_VALUE", Msg: "an INT8 product planned with Residual needs C"}
	case !p.o.Residual && c != 0:
		return &Error{Call: "cublasLtMatmul", Code: 7, Name: "CUBLAS_STATUS_INVALID_VALUE", Msg: "C given to an INT8 product planned without Residual"}
	case p.o.Alpha != AlphaHost && alpha == 0:
		return &Error{Call: "cublasLtMatmul", Code: 7, Name: "CUBLAS_STATUS_INVALID_VALUE", Msg: "no alpha vector for " + p.o.Alpha.String()}
	}
	a := uintptr(p.scalar)
	if p.o.Alpha != AlphaHost {
		a = uintptr(alpha)
	}
	if c == 0 {
		c = y // beta is 0: C is not read (cuBLASLt still wants a pointer of D's layout)
	}
	if r := callC(p.f.mm, uintptr(h.p), uintptr(p.desc), a, uintptr(w), uintptr(p.la),
		uintptr(x), uintptr(p.lb), uintptr(p.scalar)+4, uintptr(c), uintptr(p.ly), uintptr(y), uintptr(p.ly),
		uintptr(p.algo), uintptr(workspace), uintptr(wsSize), uintptr(s.p)); r != 0 {
		return p.b.err("cublasLtMatmul(INT8)", r)
	}
	return nil
}

// Destroy frees the descriptors and the host scalars.
func (p *LtMatmulInt8) Destroy() {
	if p == nil {
		return
	}
	p.LtMatmul.Destroy()
	if p.scalar != nil {
		cFree(p.scalar)
		p.scalar = nil
	}
}

// RunC is refused: an INT8 product runs with Run, which takes its alpha
// vector and C.
func (p *LtMatmulInt8) RunC(h CUBLASLtHandle, a, b, c, y, workspace DevicePtr, wsSize int, s Stream) error {
	return &Error{Call: "cublasLtMatmul", Code: 7, Name: "CUBLAS_STATUS_INVALID_VALUE", Msg: "an INT8 product runs with LtMatmulInt8.Run"}
}
