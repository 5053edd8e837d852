package cuda

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// cuDNN enumerators used by the convolution bindings.
const (
	cudnnTensorNCHW          = 0 // CUDNN_TENSOR_NCHW
	cudnnDataFloat           = 0 // CUDNN_DATA_FLOAT
	cudnnDataHalf            = 2 // CUDNN_DATA_HALF
	cudnnCrossCorrelation    = 1 // CUDNN_CROSS_CORRELATION
	cudnnMathFMA             = 3 // CUDNN_FMA_MATH: no tensor cores, so no TF32
	cudnnMathTensorOp        = 1 // CUDNN_TENSOR_OP_MATH
	cudnnMathAllowConversion = 2 // CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
)

// convFn holds cuDNN's legacy convolution functions, resolved on first use.
type convFn struct {
	setStream, createTensor, setTensor, destroyTensor    unsafe.Pointer
	createFilter, setFilter, destroyFilter               unsafe.Pointer
	createConv, setConv, setGroups, setMath, destroyConv unsafe.Pointer
	algos, workspace, forward                            unsafe.Pointer
}

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
	if r := C.kiln_cudnnSetStream(f.setStream, h.p, s.p); r != 0 {
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
		if r := C.kiln_cudnnSetInt(c.f.setMath, c.conv, C.int(a.Math)); r != 0 {
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
	dt, math0 := C.int(cudnnDataFloat), C.int(cudnnMathFMA)
	if p.Half {
		dt, math0 = cudnnDataHalf, cudnnMathTensorOp
	}
	defer func() {
		if err != nil {
			c.Destroy()
		}
	}()
	// Handles are created into locals: cgo refuses pointers into c, which
	// holds Go pointers.
	for _, dst := range []*unsafe.Pointer{&c.x, &c.y} {
		var h unsafe.Pointer
		if r := C.kiln_createHandle(f.createTensor, &h); r != 0 {
			return nil, d.err("cudnnCreateTensorDescriptor", r)
		}
		*dst = h
	}
	var fh, ch unsafe.Pointer
	if r := C.kiln_createHandle(f.createFilter, &fh); r != 0 {
		return nil, d.err("cudnnCreateFilterDescriptor", r)
	}
	c.w = fh
	if r := C.kiln_createHandle(f.createConv, &ch); r != 0 {
		return nil, d.err("cudnnCreateConvolutionDescriptor", r)
	}
	c.conv = ch
	if r := C.kiln_cudnnSetTensor4d(f.setTensor, c.x, cudnnTensorNCHW, dt, C.int(p.N), C.int(p.C), C.int(p.H), C.int(p.W)); r != 0 {
		return nil, d.err(fmt.Sprintf("cudnnSetTensor4dDescriptor(x %dx%dx%dx%d)", p.N, p.C, p.H, p.W), r)
	}
	if r := C.kiln_cudnnSetTensor4d(f.setTensor, c.y, cudnnTensorNCHW, dt, C.int(p.N), C.int(p.M), C.int(oh), C.int(ow)); r != 0 {
		return nil, d.err(fmt.Sprintf("cudnnSetTensor4dDescriptor(y %dx%dx%dx%d)", p.N, p.M, oh, ow), r)
	}
	if r := C.kiln_cudnnSetFilter4d(f.setFilter, c.w, dt, cudnnTensorNCHW, C.int(p.M), C.int(p.C/max(p.Group, 1)), C.int(p.KH), C.int(p.KW)); r != 0 {
		return nil, d.err("cudnnSetFilter4dDescriptor", r)
	}
	if r := C.kiln_cudnnSetConv2d(f.setConv, c.conv, C.int(p.PadH), C.int(p.PadW), C.int(p.StrideH), C.int(p.StrideW), C.int(p.DilH), C.int(p.DilW), cudnnCrossCorrelation, cudnnDataFloat); r != 0 {
		return nil, d.err("cudnnSetConvolution2dDescriptor", r)
	}
	if r := C.kiln_cudnnSetInt(f.setGroups, c.conv, C.int(p.Group)); r != 0 {
		return nil, d.err("cudnnSetConvolutionGroupCount", r)
	}
	if r := C.kiln_cudnnSetInt(f.setMath, c.conv, math0); r != 0 {
		return nil, d.err("cudnnSetConvolutionMathType", r)
	}
	const req = 16
	var n C.int
	var algo, status, math [req]C.int
	var tm [req]C.float
	var mem [req]C.size_t
	if r := C.kiln_cudnnGetConvFwdAlgos(f.algos, h.p, c.x, c.w, c.conv, c.y, req, &n, &algo[0], &status[0], &tm[0], &mem[0], &math[0]); r != 0 {
		return nil, d.err("cudnnGetConvolutionForwardAlgorithm_v7", r)
	}
	for i := 0; i < int(n) && i < req; i++ {
		if status[i] != 0 || (!p.Half && (math[i] == cudnnMathTensorOp || math[i] == cudnnMathAllowConversion)) {
			continue
		}
		if p.Half {
			if r := C.kiln_cudnnSetInt(f.setMath, c.conv, math[i]); r != 0 {
				continue
			}
		}
		var ws C.size_t
		if r := C.kiln_cudnnGetConvFwdWorkspace(f.workspace, h.p, c.x, c.w, c.conv, c.y, algo[i], &ws); r != 0 || int(ws) > maxWorkspace {
			continue
		}
		c.Candidates = append(c.Candidates, ConvAlgo{Algo: int(algo[i]), Math: int(math[i]), Workspace: int(ws)})
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
	if r := C.kiln_cudnnConvFwd(c.f.forward, h.p, 1, c.x, C.ulonglong(x), c.w, C.ulonglong(w), c.conv, C.int(c.Algo),
		C.ulonglong(workspace), C.size_t(wsSize), 0, c.y, C.ulonglong(y)); r != 0 {
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
			C.kiln_destroyHandle(c.f.destroyTensor, *p)
			*p = nil
		}
	}
	if c.w != nil {
		C.kiln_destroyHandle(c.f.destroyFilter, c.w)
		c.w = nil
	}
	if c.conv != nil {
		C.kiln_destroyHandle(c.f.destroyConv, c.conv)
		c.conv = nil
	}
}
