package cuda

import (
	"fmt"
	"structs"
	"unsafe"
)

// cuDNN enumerators used by the convolution bindings.
const (
	cudnnTensorNCHW          = 0 // CUDNN_TENSOR_NCHW
	cudnnTensorNHWC          = 1 // CUDNN_TENSOR_NHWC
	cudnnDataFloat           = 0 // CUDNN_DATA_FLOAT
	cudnnDataHalf            = 2 // CUDNN_DATA_HALF
	cudnnCrossCorrelation    = 1 // CUDNN_CROSS_CORRELATION
	cudnnMathFMA             = 3 // CUDNN_FMA_MATH: no tensor cores, so no TF32
	cudnnMathTensorOp        = 1 // CUDNN_TENSOR_OP_MATH
	cudnnMathAllowConversion = 2 // CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
)

// convFn holds cuDNN's legacy convolution functions, resolved on first use.
type convFn struct {
	setStream, createTensor, setTensor, destroyTensor    uintptr
	createFilter, setFilter, destroyFilter               uintptr
	createConv, setConv, setGroups, setMath, destroyConv uintptr
	algos, workspace, forward                            uintptr
}

// cudnnConvFwdAlgoPerf is cudnnConvolutionFwdAlgoPerf_t.
type cudnnConvFwdAlgoPerf struct {
	_                     structs.HostLayout
	algo, status          int32
	time                  float32
	memory                uintptr // size_t
	determinism, mathType int32
	reserved              [3]int32
}

// The alpha and beta of cuDNN and cuBLASLt calls: float32 scales passed by
// pointer, here so that a call takes their address without allocating.
var scaleOne, scaleZero float32 = 1, 0

// conv resolves the convolution functions; an error (wrapping
// ErrUnavailable) names the first missing one.
func (d *CUDNN) conv() (*convFn, error) {
	d.convOnce.Do(func() {
		f := &convFn{}
		d.convErr = d.lib.symbols([]symbol{
			sym(&f.setStream, "cudnnSetStream"),
			sym(&f.createTensor, "cudnnCreateTensorDescriptor"),
			sym(&f.setTensor, "cudnnSetTensor4dDescriptor"),
			sym(&f.destroyTensor, "cudnnDestroyTensorDescriptor"),
			sym(&f.createFilter, "cudnnCreateFilterDescriptor"),
			sym(&f.setFilter, "cudnnSetFilter4dDescriptor"),
			sym(&f.destroyFilter, "cudnnDestroyFilterDescriptor"),
			sym(&f.createConv, "cudnnCreateConvolutionDescriptor"),
			sym(&f.setConv, "cudnnSetConvolution2dDescriptor"),
			sym(&f.setGroups, "cudnnSetConvolutionGroupCount"),
			sym(&f.setMath, "cudnnSetConvolutionMathType"),
			sym(&f.destroyConv, "cudnnDestroyConvolutionDescriptor"),
			sym(&f.algos, "cudnnGetConvolutionForwardAlgorithm_v7"),
			sym(&f.workspace, "cudnnGetConvolutionForwardWorkspaceSize"),
			sym(&f.forward, "cudnnConvolutionForward"),
		})
		if d.convErr == nil {
			d.convFn = f
		}
	})
	return d.convFn, d.convErr
}

// SetStream makes h queue its work on s.
func (d *CUDNN) SetStream(h CUDNNHandle, s Stream) error {
	f, err := d.conv()
	if err != nil {
		return err
	}
	if r := callC(f.setStream, uintptr(h.p), uintptr(s.p)); r != 0 {
		return d.err("cudnnSetStream", r)
	}
	return nil
}

// ConvParams describes an NCHW 2-D convolution with symmetric padding:
// X [N,C,H,W], W [M,C/Group,KH,KW], Y [N,M,OH,OW], in float32, or in half
// when Half is set.
type ConvParams struct {
	N, C, H, W, M, KH, KW int
	PadH, PadW            int
	StrideH, StrideW      int
	DilH, DilW, Group     int
	// Half makes X, W and Y IEEE binary16 with float32 accumulation
	// (cuDNN's PSEUDO_HALF configuration), tensor cores allowed.
	Half bool
	// NHWC stores X and Y as [N,H,W,C] and W as [M,KH,KW,C/Group]
	// (cuDNN's NHWC format: tensor-core kernels read it without
	// transposing).
	NHWC bool
}

// format is p's cudnnTensorFormat_t.
func (p ConvParams) format() uintptr {
	if p.NHWC {
		return cudnnTensorNHWC
	}
	return cudnnTensorNCHW
}

// CUDNNConv is a planned convolution: cuDNN's descriptors and the chosen
// algorithm. It is used with any handle of the same library.
type CUDNNConv struct {
	d             *CUDNN
	f             *convFn
	x, w, y, conv unsafe.Pointer
	Algo          int // the cudnnConvolutionFwdAlgo_t chosen
	Math          int // its cudnnMathType_t (1: tensor cores)
	Workspace     int // bytes of workspace Forward needs
	half          bool
	// Candidates are the algorithms that run p within the workspace limit
	// given to NewConv, in the order cuDNN's heuristics rank them (the
	// first is the one chosen by NewConv); Use switches to another.
	Candidates []ConvAlgo
}

// ConvAlgo is one cuDNN forward algorithm for a planned convolution.
type ConvAlgo struct {
	Algo      int // cudnnConvolutionFwdAlgo_t
	Math      int // cudnnMathType_t
	Workspace int // bytes of workspace it needs
}

// Use makes c run with algorithm a (one of c.Candidates).
func (c *CUDNNConv) Use(a ConvAlgo) error {
	if c.half {
		if r := call(c.f.setMath, uintptr(c.conv), uintptr(a.Math)); r != 0 {
			return c.d.err("cudnnSetConvolutionMathType", r)
		}
	}
	c.Algo, c.Math, c.Workspace = a.Algo, a.Math, a.Workspace
	return nil
}

// NewConv plans p, choosing the first algorithm cuDNN's heuristics rank
// that needs at most maxWorkspace bytes (the others that do are kept in
// Candidates): in float32 one without tensor-op
// math (CUDNN_FMA_MATH: no TF32); in half (p.Half) any, tensor cores
// included, the descriptor taking the math type of the chosen algorithm.
// Free it with Destroy.
func (d *CUDNN) NewConv(h CUDNNHandle, p ConvParams, oh, ow, maxWorkspace int) (_ *CUDNNConv, err error) {
	f, err := d.conv()
	if err != nil {
		return nil, err
	}
	c := &CUDNNConv{d: d, f: f, Algo: -1, half: p.Half}
	dt, math0 := int32(cudnnDataFloat), int32(cudnnMathFMA)
	if p.Half {
		dt, math0 = cudnnDataHalf, cudnnMathTensorOp
	}
	defer func() {
		if err != nil {
			c.Destroy()
		}
	}()
	// Handles are created into locals: Go memory passed to C must not hold
	// Go pointers, and c does.
	for _, dst := range []*unsafe.Pointer{&c.x, &c.y} {
		var h unsafe.Pointer
		if r := call(f.createTensor, uintptr(unsafe.Pointer(&h))); r != 0 {
			return nil, d.err("cudnnCreateTensorDescriptor", r)
		}
		*dst = h
	}
	var fh, ch unsafe.Pointer
	if r := call(f.createFilter, uintptr(unsafe.Pointer(&fh))); r != 0 {
		return nil, d.err("cudnnCreateFilterDescriptor", r)
	}
	c.w = fh
	if r := call(f.createConv, uintptr(unsafe.Pointer(&ch))); r != 0 {
		return nil, d.err("cudnnCreateConvolutionDescriptor", r)
	}
	c.conv = ch
	if r := call(f.setTensor, uintptr(c.x), p.format(), uintptr(dt), uintptr(p.N), uintptr(p.C), uintptr(p.H), uintptr(p.W)); r != 0 {
		return nil, d.err(fmt.Sprintf("cudnnSetTensor4dDescriptor(x %dx%dx%dx%d)", p.N, p.C, p.H, p.W), r)
	}
	if r := call(f.setTensor, uintptr(c.y), p.format(), uintptr(dt), uintptr(p.N), uintptr(p.M), uintptr(oh), uintptr(ow)); r != 0 {
		return nil, d.err(fmt.Sprintf("cudnnSetTensor4dDescriptor(y %dx%dx%dx%d)", p.N, p.M, oh, ow), r)
	}
	if r := call(f.setFilter, uintptr(c.w), uintptr(dt), p.format(), uintptr(p.M), uintptr(p.C/max(p.Group, 1)), uintptr(p.KH), uintptr(p.KW)); r != 0 {
		return nil, d.err("cudnnSetFilter4dDescriptor", r)
	}
	if r := call(f.setConv, uintptr(c.conv), uintptr(p.PadH), uintptr(p.PadW), uintptr(p.StrideH), uintptr(p.StrideW), uintptr(p.DilH), uintptr(p.DilW), cudnnCrossCorrelation, cudnnDataFloat); r != 0 {
		return nil, d.err("cudnnSetConvolution2dDescriptor", r)
	}
	if r := call(f.setGroups, uintptr(c.conv), uintptr(p.Group)); r != 0 {
		return nil, d.err("cudnnSetConvolutionGroupCount", r)
	}
	if r := call(f.setMath, uintptr(c.conv), uintptr(math0)); r != 0 {
		return nil, d.err("cudnnSetConvolutionMathType", r)
	}
	const req = 16
	var n int32
	var perf [req]cudnnConvFwdAlgoPerf
	if r := call(f.algos, uintptr(h.p), uintptr(c.x), uintptr(c.w), uintptr(c.conv), uintptr(c.y), req,
		uintptr(unsafe.Pointer(&n)), uintptr(unsafe.Pointer(&perf[0]))); r != 0 {
		return nil, d.err("cudnnGetConvolutionForwardAlgorithm_v7", r)
	}
	for i := 0; i < int(n) && i < req; i++ {
		pf := &perf[i]
		if pf.status != 0 || (!p.Half && (pf.mathType == cudnnMathTensorOp || pf.mathType == cudnnMathAllowConversion)) {
			continue
		}
		if p.Half {
			if r := call(f.setMath, uintptr(c.conv), uintptr(pf.mathType)); r != 0 {
				continue
			}
		}
		var ws uintptr // size_t
		if r := call(f.workspace, uintptr(h.p), uintptr(c.x), uintptr(c.w), uintptr(c.conv), uintptr(c.y), uintptr(pf.algo),
			uintptr(unsafe.Pointer(&ws))); r != 0 || int(ws) > maxWorkspace {
			continue
		}
		c.Candidates = append(c.Candidates, ConvAlgo{Algo: int(pf.algo), Math: int(pf.mathType), Workspace: int(ws)})
	}
	if len(c.Candidates) > 0 {
		if err := c.Use(c.Candidates[0]); err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, &Error{Call: "cudnnGetConvolutionForwardAlgorithm_v7", Code: 9, Name: "CUDNN_STATUS_NOT_SUPPORTED",
		Msg: fmt.Sprintf("none of %d algorithms runs (half %v) within %d bytes of workspace", int(n), p.Half, maxWorkspace)}
}

// Forward queues y = conv(x, w) on h's stream.
func (c *CUDNNConv) Forward(h CUDNNHandle, x, w, y, workspace DevicePtr, wsSize int) error {
	// cudnnConvolutionForward(handle, alpha, xDesc, x, wDesc, w, convDesc,
	// algo, workspace, workspaceSize, beta, yDesc, y); the scales are
	// float32 read through pointers, so every argument is an integer.
	if r := callC(c.f.forward, uintptr(h.p), uintptr(unsafe.Pointer(&scaleOne)), uintptr(c.x), uintptr(x), uintptr(c.w), uintptr(w),
		uintptr(c.conv), uintptr(c.Algo), uintptr(workspace), uintptr(wsSize), uintptr(unsafe.Pointer(&scaleZero)), uintptr(c.y), uintptr(y)); r != 0 {
		return c.d.err("cudnnConvolutionForward", r)
	}
	return nil
}

// Destroy frees the descriptors.
func (c *CUDNNConv) Destroy() {
	if c == nil || c.f == nil {
		return
	}
	for _, p := range []*unsafe.Pointer{&c.x, &c.y} {
		if *p != nil {
			call(c.f.destroyTensor, uintptr(*p))
			*p = nil
		}
	}
	if c.w != nil {
		call(c.f.destroyFilter, uintptr(c.w))
		c.w = nil
	}
	if c.conv != nil {
		call(c.f.destroyConv, uintptr(c.conv))
		c.conv = nil
	}
}
