package gpuexec

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/tensor"
)

// 1x1 convolutions of an INT8 plan as cuBLASLt FP8 E4M3 products (issue 11).
//
// In a quantized engine (int8.go) a quantized convolution that is a product
// over its NHWC tensors (op_conv1x1.go's gemm1x1: 1x1, stride 1, no
// padding, one group) with an epilogue cuBLASLt can add (bias, ReLU,
// residual) gets FP8 product tactics next to the cuDNN quantized graphs:
// the input quantized by quantize_nhwc_f8 into the context's workspace (as
// for the graphs; skipped when the producer writes FP8, int8chain.go), then
// cuda.LtMatmul.NewMatmulFP8: Y[N*H*W, M] = sx sw Xq[N*H*W, C] Wq[M, C]^T
// + z + bias, ReLU, written as half (or FP8 for a quantized reader).
//
// Scales. The input's scale is the calibrated one (Options.Int8, amax/127)
// times 127/448, as for the FP8 graphs. The weights are quantized once, when
// the engine is made, per tensor: sw = max|w|/448 over the whole layer.
// cuBLASLt's FP8 product takes one scale per operand (A_SCALE_POINTER,
// B_SCALE_POINTER, a float32 each); a per-output-channel scale would have
// to be a per-row alpha vector (CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_*,
// not tried with FP8 here) or a per-column scale between the product and
// the bias, which no epilogue offers. Per tensor costs little in E4M3: a
// float format keeps 3 mantissa bits at any magnitude, so a channel of
// weights 100x smaller than the largest loses no relative precision (the
// normal range spans 2^-6 to 448, about 2^15; below it subnormal steps of
// 2^-9); INT8's per-channel scales matter because an integer code's
// precision is relative to the largest value.
//
// Tactics. Tuning times each heuristic candidate of two products, with and
// without FAST_ACCUM, against the FP16 ones (cuDNN, cuBLASLt's half 1x1
// products) and the quantized graphs; the timing cache names them
// "cublaslt-fp8-lt:R" and "cublaslt-fp8-lt-fast:R" (R the candidate's
// rank), a plan's tactic has Impl cublaslt, Quant "fp8-lt" or
// "fp8-lt-fast" and Algo R. They need compute capability 8.9 or later and
// C and M multiples of 16. Untuned, a 1x1 layer stays FP16 (int8.go).

// The Tactic.Quant of the FP8 products.
const (
	quantLtFP8     = "fp8-lt"
	quantLtFP8Fast = "fp8-lt-fast"
)

// Offsets in int8Conv.scale of an FP8 product's weight scale and output
// scale (the input's at 0): 16 bytes apart.
const ltWScale, ltYScale = 16, 32

// ltQuant is a quantized convolution's FP8 cuBLASLt product (int8Conv.lt).
type ltQuant struct {
	mm   *cuda.LtMatmul
	fast bool // FAST_ACCUM
	rank int  // the candidate in use
	// the product's options (its scale pointers point into int8Conv.scale:
	// x scale, w scale, 1/output scale at 0, ltWScale, ltYScale; its bias is
	// int8Conv.bias, half)
	o cuda.FP8MatmulOptions
}

// destroy frees the product; nil-safe.
func (l *ltQuant) destroy() {
	if l != nil {
		l.mm.Destroy()
		l.mm = nil
	}
}

// quant is the Tactic.Quant of l.
func (l *ltQuant) quant() string {
	if l.fast {
		return quantLtFP8Fast
	}
	return quantLtFP8
}

// ltQuantOK says why step i cannot run as an FP8 product, or nil.
func (e *Engine) ltQuantOK(i int) error {
	cc := e.prog.steps[i].conv
	switch {
	case e.opt.NoCUBLASLt || !e.prog.half:
		return fmt.Errorf("%w: FP8 products run in half engines with cuBLASLt", ErrUnsupported)
	case !cuda.FP8Capable(e.fp.ComputeMajor, e.fp.ComputeMinor):
		return fmt.Errorf("%w: FP8 products need compute capability 8.9 or later, not %d.%d", ErrUnsupported, e.fp.ComputeMajor, e.fp.ComputeMinor)
	case !cc.gemm1x1():
		return fmt.Errorf("%w: an FP8 product runs a 1x1, stride-1, unpadded NHWC convolution of one group", ErrUnsupported)
	case !cc.ltEpilogue1x1():
		return fmt.Errorf("%w: the epilogue of this 1x1 convolution (post %q) is not cuBLASLt's", ErrUnsupported, cc.post.kernel)
	case cc.c%16 != 0 || cc.m%16 != 0:
		return fmt.Errorf("%w: FP8 products need input and output channels multiples of 16, not %d and %d", ErrUnsupported, cc.c, cc.m)
	}
	return nil
}

// quantizeWeightsFP8Tensor quantizes float32 weights to FP8 E4M3 with one
// scale for the tensor, max|w|/448 (1 for all zeros), and returns the codes
// in w's order and the scale.
func quantizeWeightsFP8Tensor(w []float32) ([]byte, float32) {
	var amax float64
	for _, v := range w {
		amax = max(amax, math.Abs(float64(v)))
	}
	s := float32(1)
	if amax > 0 && !math.IsInf(amax, 0) {
		s = float32(amax / 448)
	}
	q := make([]byte, len(w))
	for i, v := range w {
		q[i] = cuda.EncodeFP8(v / s)
	}
	return q, s
}

// newLtQuant plans step i as an FP8 product (fast: with FAST_ACCUM) on b
// with handle h. The context is current.
func (e *Engine) newLtQuant(b *cuda.CUBLASLt, h cuda.CUBLASLtHandle, i int, fast bool) (_ *int8Conv, err error) {
	if err := e.ltQuantOK(i); err != nil {
		return nil, err
	}
	s := e.prog.steps[i]
	cc := s.conv
	sx := e.opt.Int8[s.node.Name]
	wv := input(s.node, 1)
	switch {
	case !(sx > 0) || math.IsInf(float64(sx), 0):
		return nil, fmt.Errorf("%w: input scale %g", ErrUnsupported, sx)
	case wv == nil || wv.Const == nil || wv.Const.DType != tensor.Float32 || len(wv.Const.Float32s()) != cc.m*cc.c:
		return nil, fmt.Errorf("%w: an FP8 product needs constant float32 weights [%d, %d, 1, 1]", ErrUnsupported, cc.m, cc.c)
	}
	sx *= 127.0 / 448
	wq, sw := quantizeWeightsFP8Tensor(wv.Const.Float32s())
	q := &int8Conv{name: s.node.Name, kind: "fp8", fn: e.int8.fns["fp8"], inv: 1 / sx, c: cc.c, cp: cc.c, lt: &ltQuant{fast: fast}}
	defer func() {
		if err != nil {
			e.freeInt8(q)
		}
	}()
	q.xq = (cc.n*cc.h*cc.wd*cc.c + 255) / 256 * 256
	if q.w, err = e.uploadInt8(q, wq); err != nil {
		return nil, err
	}
	// the scales 16 bytes apart and the bias in an allocation of its own:
	// the engine's weights blob gave CUBLAS_STATUS_NOT_SUPPORTED at run time
	// on an H100 (FP8 kernels want 16-byte aligned pointers)
	if q.scale, err = e.uploadInt8(q, float32Bytes([]float32{sx, 0, 0, 0, sw, 0, 0, 0, 1, 0, 0, 0})); err != nil {
		return nil, err
	}
	bias := make([]byte, 2*cc.m)
	if bv := input(s.node, 2); bv != nil && bv.Const != nil && bv.Const.DType == tensor.Float32 && len(bv.Const.Float32s()) == cc.m {
		for k, v := range bv.Const.Float32s() {
			h := tensor.Float32ToHalf(v)
			bias[2*k], bias[2*k+1] = byte(h), byte(h>>8)
		}
	}
	if q.bias, err = e.uploadInt8(q, bias); err != nil {
		return nil, err
	}
	q.lt.o = cuda.FP8MatmulOptions{XScale: q.scale, WScale: q.scale + ltWScale, Bias: q.bias,
		ReLU: cc.relu, Residual: cc.z != nil, FastAccum: fast}
	if q.lt.mm, err = b.NewMatmulFP8(h, cc.n*cc.h*cc.wd, cc.m, cc.c, q.lt.o, maxWorkspace); err != nil {
		return nil, err
	}
	return q, nil
}

// ltQuantLib returns the engine's cuBLASLt, opening it (and keeping it, so
// contexts make a handle) if needed.
func (e *Engine) ltQuantLib(o cuda.Options) (*cuda.CUBLASLt, error) {
	if e.lt != nil {
		return e.lt, nil
	}
	b, err := cuda.OpenCUBLASLt(o)
	if err != nil {
		return nil, err
	}
	e.lt = b
	return b, nil
}

// ltQuantSpares plans step i's FP8 products for tuning: without and with
// FAST_ACCUM; none where step i cannot run so.
func (e *Engine) ltQuantSpares(o cuda.Options, i int) []*int8Conv {
	if e.ltQuantOK(i) != nil {
		return nil
	}
	b, err := e.ltQuantLib(o)
	if err != nil {
		return nil
	}
	h, err := b.Create()
	if err != nil {
		return nil
	}
	defer b.Destroy(h)
	var out []*int8Conv
	for _, fast := range []bool{false, true} {
		if q, err := e.newLtQuant(b, h, i, fast); err == nil {
			out = append(out, q)
		}
	}
	return out
}

// newQuantTactic rebuilds step i quantized as the recorded tactic t says: an
// FP8 product (Quant fp8-lt, fp8-lt-fast) with candidate t.Algo, else
// cuDNN's quantized graph (newInt8Conv).
func (e *Engine) newQuantTactic(o cuda.Options, d *cuda.CUDNN, h cuda.CUDNNHandle, i int, t Tactic) (*int8Conv, error) {
	if t.Quant == quantI8x { // op_conv1x1_i8x.go
		return e.newI8x(i)
	}
	if t.Quant == quantC3 { // op_conv3_i8x.go
		return e.newC3(i)
	}
	if t.Quant != quantLtFP8 && t.Quant != quantLtFP8Fast {
		return e.newInt8Conv(d, h, i, t.Quant, t.Graph)
	}
	b, err := e.ltQuantLib(o)
	if err != nil {
		return nil, err
	}
	lh, err := b.Create()
	if err != nil {
		return nil, err
	}
	defer b.Destroy(lh)
	q, err := e.newLtQuant(b, lh, i, t.Quant == quantLtFP8Fast)
	if err != nil {
		return nil, err
	}
	if err := q.lt.mm.UseCandidate(t.Algo); err != nil {
		e.freeInt8(q)
		return nil, err
	}
	q.lt.rank = t.Algo
	return q, nil
}

// withLtQuant adds the candidates of q, step i's FP8 product, to cands.
func (e *Engine) withLtQuant(i int, sig string, q *int8Conv, cands []candidate) []candidate {
	for r := range q.lt.mm.Candidates {
		cands = append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplCUBLASLt, Algo: r, Epi: true, Quant: q.lt.quant()}, apply: func() error {
			delete(e.convs, i)
			delete(e.fused, i)
			delete(e.graphs, i)
			delete(e.conv1x1.use, i)
			delete(e.conv1x1.epi, i)
			e.int8.use[i] = q
			q.lt.rank = r
			return q.lt.mm.UseCandidate(r)
		}})
	}
	return cands
}

// keep keeps, after tuning, only the engine q runs (its FP8 product needs
// nothing done).
func (q *int8Conv) keep() {
	if q.lt == nil && q.g != nil {
		q.g.Keep(q.g.Engine().ID)
	}
}

// ltWorkspace is int8Conv.workspace of an FP8 product.
func (q *int8Conv) ltWorkspace(all bool) int {
	ws := q.lt.mm.Workspace
	if all {
		for _, a := range q.lt.mm.Candidates {
			ws = max(ws, a.Workspace)
		}
	}
	if q.in8 {
		return ws
	}
	return q.xq + ws
}

// ltQuantCalls are the calls of step i run as q's FP8 product: the input
// quantized into the workspace (unless its producer wrote FP8), then the
// product, its workspace after the quantized input.
func (c *Context) ltQuantCalls(i int, q *int8Conv) ([]call, []launch) {
	e := c.e
	cc := e.prog.steps[i].conv
	x, y := c.addr(cc.x), c.addr(cc.y)
	mm := q.lt.mm
	xq, ws := c.ws, c.ws+cuda.DevicePtr(q.xq)
	if q.in8 {
		xq, ws = x, c.ws
	}
	run := func() error { return mm.Run(c.ltH, xq, q.w, y, ws, mm.Workspace, c.stream) }
	if cc.z != nil {
		z := c.addr(*cc.z)
		run = func() error { return mm.RunC(c.ltH, xq, q.w, z, y, ws, mm.Workspace, c.stream) }
	}
	if q.in8 {
		return []call{{step: i, lib: run}}, nil
	}
	rows := int64(cc.n) * int64(cc.h) * int64(cc.wd)
	grid, block := grid1D(rows * int64(q.cp) / 8) // C a multiple of 16: 8 channels a thread
	args := cuda.NewKernelArgs(6)
	args.SetPtr(0, xq)
	args.SetPtr(1, x)
	args.SetFloat32(2, q.inv)
	args.SetInt64(3, rows)
	args.SetInt32(4, int32(q.c))
	args.SetInt32(5, int32(q.cp))
	return []call{{step: i, fn: q.fn, grid: grid, block: block, args: args}, {step: i, lib: run}}, nil
}

// ltQuantTactic describes step i run as q's FP8 product, as kiln inspect
// shows it: "quantize_nhwc_f8 + cublaslt nhwc 1x1 fp8 gemm 802816x64x256
// algo 66 (heuristic #0 of 8), per-tensor scales, bias+ReLU epilogue".
func (e *Engine) ltQuantTactic(i int, q *int8Conv) string {
	cc := e.prog.steps[i].conv
	mm := q.lt.mm
	how := fmt.Sprintf("heuristic #%d of %d", q.lt.rank, len(mm.Candidates))
	if r := q.lt.rank; r < len(mm.Candidates) && mm.Candidates[r].ID >= 0 {
		how = fmt.Sprintf("algo %d (heuristic #%d of %d)", mm.Candidates[r].ID, mm.Candidates[r].Index, len(mm.Candidates))
	}
	s := fmt.Sprintf("%s + cublaslt nhwc 1x1 fp8 gemm %dx%dx%d %s, per-tensor scales, %s epilogue", quantKernels["fp8"],
		mm.M, mm.N, mm.K, how, cc.fusedEpilogue())
	if q.lt.fast {
		s += ", fast accumulation"
	}
	if q.in8 {
		s = s[len(quantKernels["fp8"])+3:] + ", input in 8 bits"
	}
	if q.out8 {
		s += ", output in 8 bits"
	}
	return s
}

// ltQuantImpl is Layer.Impl of step i run as q's FP8 product.
func (e *Engine) ltQuantImpl(i int, q *int8Conv) string {
	return "cublaslt nhwc 1x1 fp8 (" + e.prog.steps[i].conv.fusedEpilogue() + " epilogue)"
}

// chainLt makes step i, an FP8 product, write its output in FP8 for step
// j (int8chain.go): the product planned again with an FP8 D scaled by j's
// 1/input scale, with the algorithm it runs now where the new plan has it
// (else the heuristic's first); on failure both stay as they were.
func (e *Engine) chainLt(i, j int) {
	a, b := e.int8.use[i], e.int8.use[j]
	if e.lt == nil {
		return
	}
	h, err := e.lt.Create()
	if err != nil {
		return
	}
	defer e.lt.Destroy(h)
	if err := e.drv.MemcpyHtoD(a.scale+ltYScale, float32Bytes([]float32{b.inv})); err != nil {
		return
	}
	o := a.lt.o
	o.OutFP8, o.YScale = true, a.scale+ltYScale
	old := a.lt.mm
	mm, err := e.lt.NewMatmulFP8(h, old.M, old.N, old.K, o, maxWorkspace)
	if err != nil {
		return
	}
	rank := 0
	if id := old.Candidates[a.lt.rank].ID; id >= 0 {
		for r, c := range mm.Candidates {
			if c.ID == id {
				rank = r
				break
			}
		}
	}
	if mm.UseCandidate(rank) != nil {
		mm.Destroy()
		return
	}
	old.Destroy()
	a.lt.mm, a.lt.o, a.lt.rank = mm, o, rank
	a.out8, b.in8 = true, true
	e.ws = max(e.ws, a.workspace(false), b.workspace(false))
}

// EnvFP8All names the environment variable that, set to 1, makes an
// untuned INT8 engine run every quantized convolution in FP8 (for
// measurements): the 1x1 ones an FP8 product can run as the product's
// first candidate, the others as cuDNN's FP8 graph (its first engine); with
// KILN_CUDA_INT8_CHAIN=1 (int8chain.go) the values between them stay FP8
// where one layer reads them.
const EnvFP8All = "KILN_CUDA_FP8_ALL"

// useFP8All makes step i run in FP8 (EnvFP8All), or leaves it as planned
// where neither FP8 form builds. The context is current.
func (e *Engine) useFP8All(o cuda.Options, d *cuda.CUDNN, h cuda.CUDNNHandle, i int) {
	if e.ltQuantOK(i) == nil {
		if b, err := e.ltQuantLib(o); err == nil {
			if lh, err := b.Create(); err == nil {
				q, err := e.newLtQuant(b, lh, i, false)
				b.Destroy(lh)
				if err == nil {
					e.useInt8(i, q)
					return
				}
			}
		}
	}
	q, err := e.newQuantConv(d, h, i, "fp8")
	if err != nil {
		return
	}
	if q.g.Keep(q.g.Candidates[0].ID) != nil {
		e.freeInt8(q)
		return
	}
	e.useInt8(i, q)
}
