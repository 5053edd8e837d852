package gpuexec

import (
	"math"
	"os"
	"slices"

	"github.com/kilnai/kiln/device/cuda"
)

// 8-bit values between quantized convolutions (experimental, opt-in).
//
// With KILN_CUDA_INT8_CHAIN=1, after the quantized tactics are chosen, a
// quantized convolution A whose output is read by one layer only, a
// convolution B quantized in the same kind (INT8 or FP8) whose input
// channels are a multiple of 16, writes that value in 8 bits: A's graph is
// rebuilt with y of the 8-bit type, its per-channel scale and bias divided
// by B's input scale (ReLU commutes with the positive factor), and B reads
// it without its quantizing pass. A must have no residual (its z would have
// to be 8-bit too). The rebuilt graph runs A's engine when that one builds
// it, else the heuristics' first (not timed); a plan records nothing more: loading it with the variable
// set chains the same layers again. The value's storage is the half one,
// of which 8-bit data use half. KeepValues (whose values are read back as
// half) turns it off.

// EnvInt8Chain names the environment variable that, set to 1, keeps the
// values between quantized convolutions in 8 bits (int8chain.go).
const EnvInt8Chain = "KILN_CUDA_INT8_CHAIN"

// chainInt8 applies the 8-bit chains where they are allowed (see above).
// The context is current; d and h are a cuDNN library and handle.
func (e *Engine) chainInt8(d *cuda.CUDNN, h cuda.CUDNNHandle) {
	if os.Getenv(EnvInt8Chain) != "1" || len(e.int8.use) < 2 || e.opt.KeepValues {
		return
	}
	steps := make([]int, 0, len(e.int8.use))
	for i := range e.int8.use {
		steps = append(steps, i)
	}
	slices.Sort(steps)
	for _, i := range steps {
		a := e.int8.use[i]
		ca := e.prog.steps[i].conv
		if a.scaled || a.out8 || ca.z != nil {
			continue
		}
		j, ok := e.soleReader(i, ca.y)
		if !ok {
			continue
		}
		b := e.int8.use[j]
		cb := e.prog.steps[j].conv
		if b == nil || b.kind != a.kind || b.in8 || b.cp != b.c || cb.x != ca.y {
			continue
		}
		if a.lt != nil { // an FP8 product (op_conv1x1_q.go)
			e.chainLt(i, j)
		} else {
			e.chainPair(d, h, i, j)
		}
	}
}

// soleReader returns the one step other than i that reads r, when exactly
// one does (a launch argument, a library call's operand) and r is no graph
// output.
func (e *Engine) soleReader(i int, r ref) (int, bool) {
	for _, o := range e.prog.outputs {
		if o.ref == r {
			return 0, false
		}
	}
	node := e.prog.steps[i].node
	reader := -1
	for k, s := range e.prog.steps {
		if k == i {
			continue
		}
		reads := false
		for _, v := range s.node.Inputs {
			reads = reads || (v != nil && slices.Contains(node.Outputs, v))
		}
		var refs []ref
		for _, l := range s.launches {
			for _, a := range l.args {
				if a.kind == argPtr {
					refs = append(refs, a.ref)
				}
			}
		}
		if cc := s.conv; cc != nil {
			refs = append(refs, cc.x, cc.w, cc.bias)
			if cc.z != nil {
				refs = append(refs, *cc.z)
			}
			for _, a := range cc.post.args {
				if a.kind == argPtr {
					refs = append(refs, a.ref)
				}
			}
		}
		if gc := s.gemm; gc != nil {
			refs = append(refs, gc.a, gc.b)
			if gc.resid != nil {
				refs = append(refs, *gc.resid)
			}
		}
		if reads || slices.Contains(refs, r) {
			if reader >= 0 {
				return 0, false
			}
			reader = k
		}
	}
	return reader, reader >= 0
}

// chainPair makes step i write its output in 8 bits for step j (see the
// file comment); on any failure both stay as they were.
func (e *Engine) chainPair(d *cuda.CUDNN, h cuda.CUDNNHandle, i, j int) {
	a, b := e.int8.use[i], e.int8.use[j]
	ca := e.prog.steps[i].conv
	sNext := 1 / b.inv // B's input scale in its kind
	in := cuda.DataInt8
	if a.kind == "fp8" {
		in = cuda.DataFP8
	}
	p := cuda.ConvParams{N: ca.n, C: a.cp, H: ca.h, W: ca.wd, M: ca.m, KH: ca.kh, KW: ca.kw, PadH: ca.ph, PadW: ca.pw,
		StrideH: ca.sh, StrideW: ca.sw, DilH: ca.dh, DilW: ca.dw, Group: 1, NHWC: true}
	o := cuda.GraphConvOptions{Bias: true, ReLU: ca.relu, MaxWorkspace: int8MaxWorkspace, MaxCandidates: 1, MaxRuntimeCompiled: 1,
		Quant: cuda.GraphQuant{In: in, Out: in, Scale: true}}
	// the engine A runs now, if it writes 8 bits too; else the heuristics'
	// first
	g, err := d.NewGraphConvFromID(h, p, ca.oh, ca.ow, o, a.g.Engine().ID)
	if err != nil {
		if g, err = d.NewGraphConv(h, p, ca.oh, ca.ow, o); err != nil {
			return
		}
	}
	scale, bias := make([]byte, 4*ca.m), make([]byte, 4*ca.m)
	if err := e.drv.MemcpyDtoH(scale, a.scale); err != nil {
		g.Destroy()
		return
	}
	if err := e.drv.MemcpyDtoH(bias, a.bias); err != nil {
		g.Destroy()
		return
	}
	div := func(b []byte) []byte {
		v := bytesFloat32(b)
		for k := range v {
			v[k] /= sNext
		}
		return float32Bytes(v)
	}
	if e.drv.MemcpyHtoD(a.scale, div(scale)) != nil || e.drv.MemcpyHtoD(a.bias, div(bias)) != nil {
		g.Destroy()
		return
	}
	a.g.Destroy()
	a.g, a.out8, b.in8 = g, true, true
	e.ws = max(e.ws, a.workspace(false), b.workspace(false))
}

// bytesFloat32 reads little-endian float32 values.
func bytesFloat32(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		u := uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24
		v[i] = math.Float32frombits(u)
	}
	return v
}
