package cuda

import (
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"
)

// cuDNN activation modes of the fused convolution.
const (
	cudnnActivationRelu     = 1 // CUDNN_ACTIVATION_RELU
	cudnnActivationIdentity = 5 // CUDNN_ACTIVATION_IDENTITY
	cudnnNotPropagateNaN    = 0 // CUDNN_NOT_PROPAGATE_NAN
)

// fusedFn holds cuDNN's fused convolution (cudnnConvolutionBiasActivationForward)
// and its activation descriptor functions, resolved on first use.
type fusedFn struct {
	forward, createAct, destroyAct uintptr
	// setAct is cudnnSetActivationDescriptor, whose last argument is a C
	// double: called through purego.RegisterFunc, which passes it in a
	// floating-point register (SyscallN passes integers only).
	setAct func(desc unsafe.Pointer, mode, nanOpt int32, coef float64) int32
}

// fused resolves the fused convolution's functions; an error (wrapping
// ErrUnavailable) names the first missing one.
func (d *CUDNN) fused() (*fusedFn, error) {
	d.fusedOnce.Do(func() {
		f := &fusedFn{}
		var set uintptr
		d.fusedErr = d.lib.symbols([]symbol{
			sym(&f.forward, "cudnnConvolutionBiasActivationForward"),
			sym(&f.createAct, "cudnnCreateActivationDescriptor"),
			sym(&f.destroyAct, "cudnnDestroyActivationDescriptor"),
			sym(&set, "cudnnSetActivationDescriptor"),
		})
		if d.fusedErr == nil {
			purego.RegisterFunc(&f.setAct, set)
			d.fusedFn = f
		}
	})
	return d.fusedFn, d.fusedErr
}

// CUDNNFusedConv is a planned convolution with cuDNN's fused epilogue:
// y = act(conv(x, w) + alpha2*z + bias), act ReLU or identity, in one
// call (cudnnConvolutionBiasActivationForward).
type CUDNNFusedConv struct {
	*CUDNNConv
	ff          *fusedFn
	bias, act   unsafe.Pointer
	relu, resid bool
}

// NewFusedConv plans p as NewConv does, with a bias of p.M values and,
// when relu is set, a ReLU after it; residual says whether Forward adds
// z (of y's shape and layout). Free it with Destroy.
func (d *CUDNN) NewFusedConv(h CUDNNHandle, p ConvParams, oh, ow, maxWorkspace int, relu, residual bool) (_ *CUDNNFusedConv, err error) {
	ff, err := d.fused()
	if err != nil {
		return nil, err
	}
	c, err := d.NewConv(h, p, oh, ow, maxWorkspace)
	if err != nil {
		return nil, err
	}
	fc := &CUDNNFusedConv{CUDNNConv: c, ff: ff, relu: relu, resid: residual}
	defer func() {
		if err != nil {
			fc.Destroy()
		}
	}()
	dt := uintptr(cudnnDataFloat)
	if p.Half {
		dt = cudnnDataHalf
	}
	var b, a unsafe.Pointer
	if r := call(c.f.createTensor, uintptr(unsafe.Pointer(&b))); r != 0 {
		return nil, d.err("cudnnCreateTensorDescriptor", r)
	}
	fc.bias = b
	if r := call(c.f.setTensor, uintptr(fc.bias), p.format(), dt, 1, uintptr(p.M), 1, 1); r != 0 {
		return nil, d.err(fmt.Sprintf("cudnnSetTensor4dDescriptor(bias %d)", p.M), r)
	}
	if r := call(ff.createAct, uintptr(unsafe.Pointer(&a))); r != 0 {
		return nil, d.err("cudnnCreateActivationDescriptor", r)
	}
	fc.act = a
	mode := int32(cudnnActivationIdentity)
	if relu {
		mode = cudnnActivationRelu
	}
	if r := ff.setAct(fc.act, mode, cudnnNotPropagateNaN, 0); r != 0 {
		return nil, d.err("cudnnSetActivationDescriptor", r)
	}
	return fc, nil
}

// Forward queues y = act(conv(x, w) + z + bias) on h's stream (z is read
// only when the convolution was planned with a residual).
func (c *CUDNNFusedConv) Forward(h CUDNNHandle, x, w, z, bias, y, workspace DevicePtr, wsSize int) error {
	// cudnnConvolutionBiasActivationForward(handle, alpha1, xDesc, x,
	// wDesc, w, convDesc, algo, workSpace, workSpaceSize, alpha2, zDesc, z,
	// biasDesc, bias, activationDesc, yDesc, y)
	alpha2 := &scaleZero
	if c.resid {
		alpha2 = &scaleOne
	} else {
		z = y
	}
	if r := callC(c.ff.forward, uintptr(h.p), uintptr(unsafe.Pointer(&scaleOne)), uintptr(c.x), uintptr(x), uintptr(c.w), uintptr(w),
		uintptr(c.conv), uintptr(c.Algo), uintptr(workspace), uintptr(wsSize), uintptr(unsafe.Pointer(alpha2)), uintptr(c.y), uintptr(z),
		uintptr(c.bias), uintptr(bias), uintptr(c.act), uintptr(c.y), uintptr(y)); r != 0 {
		return c.d.err("cudnnConvolutionBiasActivationForward", r)
	}
	return nil
}

// Destroy frees the descriptors.
func (c *CUDNNFusedConv) Destroy() {
	if c == nil {
		return
	}
	if c.bias != nil {
		call(c.f.destroyTensor, uintptr(c.bias))
		c.bias = nil
	}
	if c.act != nil {
		call(c.ff.destroyAct, uintptr(c.act))
		c.act = nil
	}
	c.CUDNNConv.Destroy()
}
