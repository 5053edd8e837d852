package cuda

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// cuBLASLt enumerators used by the matmul bindings.
const (
	cublasCompute32F      = 68 // CUBLAS_COMPUTE_32F: true float32, no TF32
	cudaR32F              = 0  // CUDA_R_32F
	cudaR16F              = 2  // CUDA_R_16F
	ltDescTransA          = 3  // CUBLASLT_MATMUL_DESC_TRANSA
	ltDescTransB          = 4  // CUBLASLT_MATMUL_DESC_TRANSB
	ltDescEpilogue        = 7  // CUBLASLT_MATMUL_DESC_EPILOGUE
	ltDescBiasPointer     = 8  // CUBLASLT_MATMUL_DESC_BIAS_POINTER
	ltEpilogueBias        = 4  // CUBLASLT_EPILOGUE_BIAS
	ltEpilogueReLUBias    = 6  // CUBLASLT_EPILOGUE_RELU_BIAS
	ltEpilogueGELUBias    = 36 // CUBLASLT_EPILOGUE_GELU_BIAS (the tanh form of GELU)
	ltPrefMaxWorkspace    = 1  // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES
	cublasOpT             = 1  // CUBLAS_OP_T
	ltHeuristicResultSize = 96 // sizeof(cublasLtMatmulHeuristicResult_t)
	ltAlgoConfigID        = 0  // CUBLASLT_ALGO_CONFIG_ID (int32)
	ltAlgoConfigSplitK    = 2  // CUBLASLT_ALGO_CONFIG_SPLITK_NUM (uint32)
	ltAlgoConfigReduction = 3  // CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME (uint32)
	// LtReductionInPlace and LtReductionCompute are cuBLASLt's split-K
	// reduction schemes (cublasLtReductionScheme_t): the parts added in
	// the output itself, in its type (INPLACE), or in float32 in the
	// workspace, then one pass to the output (COMPUTE_TYPE).
	LtReductionInPlace = 1
	LtReductionCompute = 2
	// ltHeuristicRequests is how many algorithms NewMatmulWith asks the
	// heuristics for: the candidates a tuned build times.
	ltHeuristicRequests = 16
)

// matmulFn holds cuBLASLt's matmul functions, resolved on first use.
type matmulFn struct {
	descCreate, descDestroy, descSet                uintptr
	layoutCreate, layoutDestroy                     uintptr
	prefCreate, prefDestroy, prefSet, heuristic, mm uintptr
	algoConfigGet                                   uintptr // optional: 0 when missing
	// optional too: without them MatmulOptions.SplitK adds nothing
	algoConfigSet, algoCheck uintptr
}

func (b *CUBLASLt) matmul() (*matmulFn, error) {
	b.mmOnce.Do(func() {
		f := &matmulFn{}
		b.mmErr = b.lib.symbols([]symbol{
			sym(&f.descCreate, "cublasLtMatmulDescCreate"),
			sym(&f.descDestroy, "cublasLtMatmulDescDestroy"),
			sym(&f.descSet, "cublasLtMatmulDescSetAttribute"),
			sym(&f.layoutCreate, "cublasLtMatrixLayoutCreate"),
			sym(&f.layoutDestroy, "cublasLtMatrixLayoutDestroy"),
			sym(&f.prefCreate, "cublasLtMatmulPreferenceCreate"),
			sym(&f.prefDestroy, "cublasLtMatmulPreferenceDestroy"),
			sym(&f.prefSet, "cublasLtMatmulPreferenceSetAttribute"),
			sym(&f.heuristic, "cublasLtMatmulAlgoGetHeuristic"),
			sym(&f.mm, "cublasLtMatmul"),
		})
		if b.mmErr == nil {
			// only to name the algorithms (kiln inspect): optional
			f.algoConfigGet, _ = b.lib.sym("cublasLtMatmulAlgoConfigGetAttribute")
			f.algoConfigSet, _ = b.lib.sym("cublasLtMatmulAlgoConfigSetAttribute")
			f.algoCheck, _ = b.lib.sym("cublasLtMatmulAlgoCheck")
			b.mmFn = f
		}
	})
	return b.mmFn, b.mmErr
}

// LtMatmul is a planned row-major float32 product Y[M,N] = A[M,K] B, with
// B stored [K,N], or [N,K] when transposed. It runs in true float32
// (CUBLAS_COMPUTE_32F: no TF32). Planned with MatmulOptions.Residual it
// is Y = A B + C (beta = 1, C of Y's shape and layout), run with RunC.
type LtMatmul struct {
	b                *CUBLASLt
	f                *matmulFn
	desc, la, lb, ly unsafe.Pointer
	lc               unsafe.Pointer // C's layout where it differs from D's (lt_fp8.go), else nil
	cNull            bool           // Run passes no C (an FP8 D must not alias a half C)
	algo             unsafe.Pointer // 64 bytes of C memory: cublasLtMatmulAlgo_t
	M, N, K          int
	Workspace        int // bytes of workspace Run needs
	// Candidates are the algorithms cuBLASLt's heuristics returned that
	// need at most the workspace limit given, in their rank order (the
	// first is in use after planning); UseCandidate switches to another.
	Candidates []LtAlgo
	// Splits says, for each candidate, how it splits K: the heuristic's
	// own results as they come ({0, 0}), the variants MatmulOptions.SplitK
	// added (after them) with more than one part.
	Splits []LtSplit
	// Configs describes each candidate's configuration (LtConfig.String)
	// when the product was planned with MatmulOptions.Enumerate (else it is
	// empty): for the enumerated candidates (Index -1) it is their
	// identity, which AddConfig plans again. Read it with Config(i).
	Configs  []string
	algos    [][64]byte
	residual bool  // planned with beta = 1: RunC adds C
	dt       int32 // A, B, C and D's cudaDataType (lt_algo.go initializes algorithms with it)
}

// LtAlgo is one cuBLASLt heuristic result for a planned product.
type LtAlgo struct {
	Index     int // its rank in the heuristic's answer (0: the first)
	Workspace int // bytes of workspace it needs
	// ID is the algorithm's CUBLASLT_ALGO_CONFIG_ID, -1 when the library
	// does not say.
	ID int
}

// LtSplit is how a candidate splits the product's K dimension: in Parts
// parts (0 or 1: not split), summed by the reduction scheme Reduction
// (LtReductionInPlace, LtReductionCompute).
type LtSplit struct{ Parts, Reduction int }

// CandidateString names candidate i as kiln inspect shows it.
func (p *LtMatmul) CandidateString(i int) string {
	if i < 0 || i >= len(p.Candidates) {
		return fmt.Sprintf("no candidate %d", i)
	}
	a := p.Candidates[i]
	if a.Index < 0 { // enumerated (lt_algo.go)
		return "enumerated " + p.Config(i)
	}
	s := fmt.Sprintf("heuristic #%d", a.Index)
	if a.ID >= 0 {
		s = fmt.Sprintf("algo %d (%s)", a.ID, s)
	}
	if c := p.Config(i); c != "" {
		s += " " + c
	}
	if sp := p.Splits[i]; sp.Parts > 1 {
		red := "in place"
		if sp.Reduction == LtReductionCompute {
			red = "float32 workspace"
		}
		s += fmt.Sprintf(", split-K %d (%s)", sp.Parts, red)
	}
	return s
}

// Split-K variants that MatmulOptions.SplitK adds: of the first
// ltSplitKBases heuristic results not already split, each of ltSplitKParts
// whose parts keep at least ltSplitKMinDepth of K, with each reduction
// scheme that cublasLtMatmulAlgoCheck accepts; only for products of at
// most ltSplitKMaxOutputs elements (64 tiles of 128 x 128, half an H100's
// SMs: larger ones fill the GPU without splitting, and tuning would only
// time more candidates).
const ltSplitKBases, ltSplitKMinDepth, ltSplitKMaxOutputs = 4, 128, 1 << 20

var ltSplitKParts = []int{2, 3, 4, 6, 8}

// UseCandidate makes p run with p.Candidates[i].
func (p *LtMatmul) UseCandidate(i int) error {
	if i < 0 || i >= len(p.Candidates) {
		return &Error{Call: "cublasLtMatmul", Code: 15, Name: "CUBLAS_STATUS_NOT_SUPPORTED",
			Msg: fmt.Sprintf("candidate %d of %d", i, len(p.Candidates))}
	}
	copy(unsafe.Slice((*byte)(p.algo), 64), p.algos[i][:])
	p.Workspace = p.Candidates[i].Workspace
	return nil
}

// NewMatmul plans the float32 product with the algorithm cuBLASLt's
// heuristics rank first among those needing at most maxWorkspace bytes
// (up to 16 are asked for; those that fit are kept in Candidates).
// Free it with Destroy.
func (b *CUBLASLt) NewMatmul(h CUBLASLtHandle, m, n, k int, transB bool, maxWorkspace int) (*LtMatmul, error) {
	return b.NewMatmulWith(h, m, n, k, MatmulOptions{TransB: transB}, maxWorkspace)
}

// MatmulOptions are the settings of NewMatmulWith.
type MatmulOptions struct {
	// Half makes A, B, Y and Bias IEEE binary16, accumulated in float32.
	Half bool
	// TransB says B is stored [N,K].
	TransB bool
	// Bias, when not 0, is a device vector of N elements added to every
	// row of Y by cuBLASLt's epilogue (CUBLASLT_EPILOGUE_BIAS).
	Bias DevicePtr
	// ReLU, with Bias, applies max(0, x) after the bias (RELU_BIAS).
	ReLU bool
	// GELU, with Bias, applies GELU after the bias (GELU_BIAS): cuBLASLt's
	// GELU is the tanh approximation, 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))).
	GELU bool
	// Residual plans Y = A B (+ bias, activation) + C, with C a matrix of
	// Y's shape and layout (beta = 1): run it with RunC. cuBLASLt adds C
	// before the epilogue's bias and activation.
	Residual bool
	// SplitK adds to the Candidates, after the heuristic's own results,
	// variants of the first few with K split in 2 to 8 parts (where
	// cublasLtMatmulAlgoCheck accepts them within the workspace limit), for
	// products of at most 1M outputs: small-M products (a BERT layer at
	// batch 1 is 128 rows) otherwise run on a few of the GPU's SMs. The
	// heuristic's first result stays in use.
	SplitK bool
	// Enumerate adds to the Candidates, after those, up to 24
	// configurations of the algorithms cublasLtMatmulAlgoGetIds lists for
	// the product's types, ranked by the waves their tiles make on SMs
	// multiprocessors (lt_algo.go's tileCost). The heuristic's first
	// result stays in use.
	Enumerate bool
	// SMs is the GPU's multiprocessor count for Enumerate's waves
	// arithmetic (0: 132, an H100 SXM).
	SMs int
}

// NewMatmulWith plans the product Y = A B as o says (see NewMatmul).
func (b *CUBLASLt) NewMatmulWith(h CUBLASLtHandle, m, n, k int, o MatmulOptions, maxWorkspace int) (*LtMatmul, error) {
	dt := int32(cudaR32F)
	if o.Half {
		dt = cudaR16F
	}
	return b.newMatmul(h, dt, m, n, k, o, maxWorkspace)
}

// NewMatmulHalf is NewMatmul for A, B and Y in IEEE binary16, accumulated
// in float32 (CUBLAS_COMPUTE_32F, float scale factors: tensor cores).
func (b *CUBLASLt) NewMatmulHalf(h CUBLASLtHandle, m, n, k int, transB bool, maxWorkspace int) (*LtMatmul, error) {
	return b.NewMatmulWith(h, m, n, k, MatmulOptions{Half: true, TransB: transB}, maxWorkspace)
}

func (b *CUBLASLt) newMatmul(h CUBLASLtHandle, dt int32, m, n, k int, o MatmulOptions, maxWorkspace int) (_ *LtMatmul, err error) {
	transB := o.TransB
	f, err := b.matmul()
	if err != nil {
		return nil, err
	}
	p := &LtMatmul{b: b, f: f, M: m, N: n, K: k, residual: o.Residual, dt: dt}
	defer func() {
		if err != nil {
			p.Destroy()
		}
	}()
	// Row-major Y = A B is column-major Y^T = B^T A^T: cuBLASLt's "A" is
	// our B and its "B" our A, and D is column-major N x M.
	// Handles are created into locals: Go memory passed to C must not hold
	// Go pointers, and p does.
	var desc, la, lb, ly unsafe.Pointer
	if r := call(f.descCreate, uintptr(unsafe.Pointer(&desc)), cublasCompute32F, cudaR32F); r != 0 {
		return nil, b.err("cublasLtMatmulDescCreate", r)
	}
	p.desc = desc
	rowsA, colsA, ldA := n, k, n // our B [K,N] row-major = column-major N x K
	if transB {
		op := int32(cublasOpT)
		if r := call(f.descSet, uintptr(p.desc), ltDescTransA, uintptr(unsafe.Pointer(&op)), 4); r != 0 {
			return nil, b.err("cublasLtMatmulDescSetAttribute(TRANSA)", r)
		}
		rowsA, colsA, ldA = k, n, k // our B [N,K] row-major = column-major K x N, transposed
	}
	if o.Bias != 0 {
		// cuBLASLt's bias is per row of its column-major D (N x M): per
		// column of our row-major Y.
		epi := int32(ltEpilogueBias)
		switch {
		case o.ReLU && o.GELU:
			return nil, &Error{Call: "cublasLtMatmulDescSetAttribute(EPILOGUE)", Code: 7, Name: "CUBLAS_STATUS_INVALID_VALUE",
				Msg: "ReLU and GELU together"}
		case o.ReLU:
			epi = ltEpilogueReLUBias
		case o.GELU:
			epi = ltEpilogueGELUBias
		}
		if r := call(f.descSet, uintptr(p.desc), ltDescEpilogue, uintptr(unsafe.Pointer(&epi)), 4); r != 0 {
			return nil, b.err("cublasLtMatmulDescSetAttribute(EPILOGUE)", r)
		}
		bias := uint64(o.Bias)
		if r := call(f.descSet, uintptr(p.desc), ltDescBiasPointer, uintptr(unsafe.Pointer(&bias)), 8); r != 0 {
			return nil, b.err("cublasLtMatmulDescSetAttribute(BIAS_POINTER)", r)
		}
	}
	if r := call(f.layoutCreate, uintptr(unsafe.Pointer(&la)), uintptr(dt), uintptr(rowsA), uintptr(colsA), uintptr(ldA)); r != 0 {
		return nil, b.err("cublasLtMatrixLayoutCreate(A)", r)
	}
	p.la = la
	if r := call(f.layoutCreate, uintptr(unsafe.Pointer(&lb)), uintptr(dt), uintptr(k), uintptr(m), uintptr(k)); r != 0 {
		return nil, b.err("cublasLtMatrixLayoutCreate(B)", r)
	}
	p.lb = lb
	if r := call(f.layoutCreate, uintptr(unsafe.Pointer(&ly)), uintptr(dt), uintptr(n), uintptr(m), uintptr(n)); r != 0 {
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
	// The results hold no pointers (the algorithm is 8 opaque uint64):
	// Go memory.
	all := make([]byte, req*ltHeuristicResultSize)
	var got int32
	if r := call(f.heuristic, uintptr(h.p), uintptr(p.desc), uintptr(p.la), uintptr(p.lb), uintptr(p.ly), uintptr(p.ly),
		uintptr(pref), req, uintptr(unsafe.Pointer(&all[0])), uintptr(unsafe.Pointer(&got))); r != 0 {
		return nil, b.err(fmt.Sprintf("cublasLtMatmulAlgoGetHeuristic(%dx%dx%d)", m, n, k), r)
	}
	p.keepHeuristic(f, all, int(got), maxWorkspace)
	if o.SplitK && len(p.Candidates) > 0 {
		p.addSplitK(h, maxWorkspace)
	}
	if o.Enumerate && len(p.Candidates) > 0 {
		p.addEnumerated(h, maxWorkspace, o.SMs)
	}
	if len(p.Candidates) > 0 {
		p.algo = cMalloc(64)
		if err := p.UseCandidate(0); err != nil {
			return nil, err
		}
		return p, nil
	}
	return nil, &Error{Call: "cublasLtMatmulAlgoGetHeuristic", Code: 15, Name: "CUBLAS_STATUS_NOT_SUPPORTED",
		Msg: fmt.Sprintf("no algorithm for %dx%dx%d within %d bytes of workspace", m, n, k, maxWorkspace)}
}

// keepHeuristic appends to p's candidates the first got of the heuristic
// results in all that cuBLASLt can run (state 0) within maxWorkspace
// bytes of workspace, in the heuristic's order.
func (p *LtMatmul) keepHeuristic(f *matmulFn, all []byte, got, maxWorkspace int) {
	for i := 0; i < got && i < ltHeuristicRequests; i++ {
		r := all[i*ltHeuristicResultSize : (i+1)*ltHeuristicResultSize]
		wsSize := binary.LittleEndian.Uint64(r[64:72])
		if int32(binary.LittleEndian.Uint32(r[72:76])) != 0 || wsSize > uint64(maxWorkspace) {
			continue
		}
		var a [64]byte
		copy(a[:], r[:64])
		id := int32(-1)
		if f.algoConfigGet != 0 {
			var written uint64
			if call(f.algoConfigGet, uintptr(unsafe.Pointer(&a[0])), ltAlgoConfigID, uintptr(unsafe.Pointer(&id)), 4, uintptr(unsafe.Pointer(&written))) != 0 {
				id = -1
			}
		}
		p.algos = append(p.algos, a)
		p.Candidates = append(p.Candidates, LtAlgo{Index: i, Workspace: int(wsSize), ID: int(id)})
		p.Splits = append(p.Splits, LtSplit{})
	}
}

// addSplitK appends the split-K variants of the first heuristic results
// (MatmulOptions.SplitK) that cublasLtMatmulAlgoCheck accepts within
// maxWorkspace bytes.
func (p *LtMatmul) addSplitK(h CUBLASLtHandle, maxWorkspace int) {
	f := p.f
	if f.algoConfigSet == 0 || f.algoCheck == 0 || p.M*p.N > ltSplitKMaxOutputs {
		return
	}
	// The algorithm is copied into C memory for each call: cuBLASLt may
	// keep no pointer into it, but Go memory that moves is not passed.
	buf := cMalloc(64 + ltHeuristicResultSize)
	defer cFree(buf)
	algo := unsafe.Slice((*byte)(buf), 64)
	res := unsafe.Slice((*byte)(unsafe.Add(buf, 64)), ltHeuristicResultSize)
	setU32 := func(attr int, v uint32) bool {
		return call(f.algoConfigSet, uintptr(buf), uintptr(attr), uintptr(unsafe.Pointer(&v)), 4) == 0
	}
	n := len(p.Candidates)
	for i := 0; i < n && i < ltSplitKBases; i++ {
		base := p.Candidates[i]
		copy(algo, p.algos[i][:])
		if f.algoConfigGet != 0 {
			var splits uint32
			var written uint64
			if call(f.algoConfigGet, uintptr(buf), ltAlgoConfigSplitK, uintptr(unsafe.Pointer(&splits)), 4, uintptr(unsafe.Pointer(&written))) == 0 && splits > 1 {
				continue // the heuristic split it already
			}
		}
		for _, parts := range ltSplitKParts {
			if p.K/parts < ltSplitKMinDepth {
				break
			}
			for _, red := range []int{LtReductionInPlace, LtReductionCompute} {
				copy(algo, p.algos[i][:])
				if !setU32(ltAlgoConfigSplitK, uint32(parts)) || !setU32(ltAlgoConfigReduction, uint32(red)) {
					continue
				}
				clear(res)
				if call(f.algoCheck, uintptr(h.p), uintptr(p.desc), uintptr(p.la), uintptr(p.lb), uintptr(p.ly), uintptr(p.ly),
					uintptr(buf), uintptr(unsafe.Pointer(&res[0]))) != 0 {
					continue
				}
				ws := binary.LittleEndian.Uint64(res[64:72])
				if ws > uint64(maxWorkspace) {
					continue
				}
				var a [64]byte
				copy(a[:], algo)
				p.algos = append(p.algos, a)
				p.Candidates = append(p.Candidates, LtAlgo{Index: base.Index, Workspace: int(ws), ID: base.ID})
				p.Splits = append(p.Splits, LtSplit{Parts: parts, Reduction: red})
			}
		}
	}
}

// Run queues y = a b on s (a product planned without Residual).
func (p *LtMatmul) Run(h CUBLASLtHandle, a, b, y, workspace DevicePtr, wsSize int, s Stream) error {
	if p.residual {
		return &Error{Call: "cublasLtMatmul", Code: 7, Name: "CUBLAS_STATUS_INVALID_VALUE", Msg: "a product planned with Residual runs with RunC"}
	}
	return p.run(h, a, b, y, y, &scaleZero, workspace, wsSize, s)
}

// RunC queues y = a b + c on s (a product planned with Residual); c may be
// y itself.
func (p *LtMatmul) RunC(h CUBLASLtHandle, a, b, c, y, workspace DevicePtr, wsSize int, s Stream) error {
	if !p.residual {
		return &Error{Call: "cublasLtMatmul", Code: 7, Name: "CUBLAS_STATUS_INVALID_VALUE", Msg: "RunC of a product planned without Residual"}
	}
	return p.run(h, a, b, c, y, &scaleOne, workspace, wsSize, s)
}

func (p *LtMatmul) run(h CUBLASLtHandle, a, b, c, y DevicePtr, beta *float32, workspace DevicePtr, wsSize int, s Stream) error {
	// cublasLtMatmul(handle, desc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc,
	// D, Ddesc, algo, workspace, workspaceSize, stream); the scales are
	// float32 read through pointers, so every argument is an integer. C
	// has D's layout, unless lc says otherwise (an FP8 D).
	lc := p.ly
	if p.lc != nil {
		lc = p.lc
	}
	if p.cNull && !p.residual {
		c = 0
	}
	if r := callC(p.f.mm, uintptr(h.p), uintptr(p.desc), uintptr(unsafe.Pointer(&scaleOne)), uintptr(b), uintptr(p.la),
		uintptr(a), uintptr(p.lb), uintptr(unsafe.Pointer(beta)), uintptr(c), uintptr(lc), uintptr(y), uintptr(p.ly),
		uintptr(p.algo), uintptr(workspace), uintptr(wsSize), uintptr(s.p)); r != 0 {
		return p.b.err("cublasLtMatmul", r)
	}
	return nil
}

// Destroy frees the descriptors.
func (p *LtMatmul) Destroy() {
	if p == nil || p.f == nil {
		return
	}
	if p.desc != nil {
		call(p.f.descDestroy, uintptr(p.desc))
		p.desc = nil
	}
	for _, l := range []*unsafe.Pointer{&p.la, &p.lb, &p.lc, &p.ly} {
		if *l != nil {
			call(p.f.layoutDestroy, uintptr(*l))
			*l = nil
		}
	}
	if p.algo != nil {
		cFree(p.algo)
		p.algo = nil
	}
}
