package gpuexec

import (
	"fmt"
	"math"
	"os"
	"slices"

	"github.com/kilnai/kiln/device/cuda"
)

// 8-bit values between quantized convolutions.
//
// With the chains on (int8Chains: by default on compute capability 9.0;
// KILN_CUDA_INT8_CHAIN=0 or 1 overrides), after the quantized tactics are chosen, a
// quantized convolution A whose output is read by one layer only, a
// convolution B quantized in the same kind (INT8 or FP8) whose input
// channels are a multiple of 16, writes that value in 8 bits: A's graph is
// rebuilt with y of the 8-bit type, its per-channel scale and bias divided
// by B's input scale (ReLU commutes with the positive factor), and B reads
// it without its quantizing pass. A cuDNN graph with a residual keeps
// writing half (its z would have to be 8-bit too); expand_i8u2
// (op_conv1x1_i8x.go) reads its residual in 8 bits, and with it values with
// several readers are chained too (chainValue, below). The rebuilt graph runs A's engine when that one builds
// it, else the heuristics' first (untuned). Tuned with the chains on
// (tune.go, tuneChained), each layer's engine is timed as chained and the
// plan's section records that the chains were on (int8File.Chain): loading
// it chains the same layers again. The value's storage is the half one,
// of which 8-bit data use half. KeepValues (whose values are read back as
// half) turns it off.

// EnvInt8Chain names the environment variable that, set to 1, keeps the
// values between quantized convolutions in 8 bits (int8chain.go), and set
// to 0 keeps them half.
const EnvInt8Chain = "KILN_CUDA_INT8_CHAIN"

// int8Chains reports whether the engine keeps values between quantized
// convolutions in 8 bits: KILN_CUDA_INT8_CHAIN=0 or 1 decides, else a
// plan's record (Options.Int8Chain), else the GPU: on by default on
// compute capability 9.0, where the chained engine was measured (an H100:
// 1.32x FP16 untuned, TestInt8ExpandOnGPU, device/cuda/NOTES.md), off on
// others. KeepValues (values read back as half) turns them off.
func (e *Engine) int8Chains() bool {
	return int8ChainsFor(e.opt, e.fp.ComputeMajor, e.fp.ComputeMinor)
}

// int8ChainsFor is int8Chains for an engine of options o on a GPU of
// compute capability major.minor.
func int8ChainsFor(o Options, major, minor int) bool {
	if o.KeepValues {
		return false
	}
	switch os.Getenv(EnvInt8Chain) {
	case "0":
		return false
	case "1":
		return true
	}
	if o.Int8Chain != nil {
		return *o.Int8Chain
	}
	return major == 9 && minor == 0
}

// int8All reports whether an untuned INT8 engine runs its quantized 1x1
// convolutions in INT8 too: KILN_CUDA_INT8_ALL=0 or 1 decides, else
// whether the chains are on (chained, the 1x1s read and write 8 bits and
// pay no quantizing pass).
func (e *Engine) int8All() bool {
	switch os.Getenv(EnvInt8All) {
	case "0":
		return false
	case "1":
		return true
	}
	return e.int8Chains()
}

// chainInt8 applies the 8-bit chains where they are allowed (see above,
// and the chains through residual blocks below). The context is current;
// d and h are a cuDNN library and handle.
func (e *Engine) chainInt8(d *cuda.CUDNN, h cuda.CUDNNHandle) {
	if !e.int8Chains() || len(e.int8.use) == 0 {
		return
	}
	e.planI8x()    // op_conv1x1_i8x.go: untuned, expand_i8u2 where it fits
	e.planC3()     // op_conv3_i8x.go: untuned, conv3_i8u2 where it fits (opt-in)
	e.planPoolI8() // op_pool_i8.go: a MaxPool whose readers all read INT8 writes it
	if len(e.int8.use) < 2 {
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
		if a.scaled || a.out8 || ca.z != nil && a.x8 == nil {
			continue
		}
		rs, ok := e.readers(i, ca.y)
		if !ok || len(rs) == 0 {
			continue
		}
		if j := rs[0]; len(rs) == 1 && a.x8 == nil && e.int8.use[j] != nil && e.int8.use[j].x8 == nil {
			// one reader, neither of them expand_i8u2: the pair (FP8 too)
			b := e.int8.use[j]
			cb := e.prog.steps[j].conv
			if b.kind != a.kind || b.in8 || b.cp != b.c || cb.x != ca.y || cb.z != nil && *cb.z == ca.y {
				continue
			}
			if a.lt != nil { // an FP8 product (op_conv1x1_q.go)
				e.chainLt(i, j)
			} else {
				e.chainPair(d, h, i, j)
			}
			continue
		}
		e.chainValue(d, h, i, rs)
	}
}

// The chains through residual blocks (with expand_i8u2,
// op_conv1x1_i8x.go). A value may have several readers, each reading it in
// 8 bits: a quantized INT8 convolution reading it as its input (cuDNN's
// graph or expand_i8u2, the input not padded), or expand_i8u2 reading it
// as its residual. All must agree on one scale (they do when it comes from
// one calibration: each reader's scale is the value's), and its producer
// must write 8 bits at that scale: a cuDNN INT8 graph without a residual
// (rebuilt as chainPair does), or expand_i8u2 (which writes 8 bits at its
// output's scale anyway). A block's input then stays 8-bit from the
// block before's expand_i8u2 to its own, read by the first 1x1 and as the
// residual; a downsample's output is written in 8 bits for the residual
// alone (its scale Options.Int8[Int8ValueKey(name)]). A value some other
// layer reads (the last block's output, read by the pooling) stays half:
// expand_i8u2 then widens its output itself.

// sameScale reports whether two scales of one value agree (to float32
// rounding of the same calibration).
func sameScale(a, b float32) bool {
	return a > 0 && b > 0 && math.Abs(float64(a-b)) <= 1e-6*float64(max(a, b))
}

// chainValue keeps step i's output in 8 bits for its readers rs where all
// of them can read it so (see above); otherwise nothing changes.
func (e *Engine) chainValue(d *cuda.CUDNN, h cuda.CUDNNHandle, i int, rs []int) {
	a := e.int8.use[i]
	ca := e.prog.steps[i].conv
	if a.kind != "int8" || a.lt != nil {
		return
	}
	var s float32
	var xs, zs, pools []int
	for _, j := range rs {
		if a.x8 != nil && e.gpoolI8Reader(j, ca.y) { // op_pool_i8.go: at a's output scale
			pools = append(pools, j)
			continue
		}
		b := e.int8.use[j]
		cb := e.prog.steps[j].conv
		if b == nil || cb == nil || b.kind != "int8" || b.lt != nil || b.scaled {
			return
		}
		isX, isZ := cb.x == ca.y, cb.z != nil && *cb.z == ca.y
		var sj float32
		switch {
		case isX && !isZ && !b.in8 && b.cp == b.c:
			sj, xs = 1/b.inv, append(xs, j)
		case isZ && !isX && b.x8 != nil && !b.x8.z8:
			sj, zs = b.x8.sz, append(zs, j)
		default:
			return
		}
		if s == 0 {
			s = sj
		} else if !sameScale(s, sj) {
			return
		}
	}
	if a.x8 != nil {
		if s == 0 { // read by a pooling alone
			s = a.x8.sy
		}
		if !sameScale(a.x8.sy, s) {
			return
		}
		a.out8 = true
	} else if !e.chainOut(d, h, i, s) {
		return
	}
	for _, j := range xs {
		e.int8.use[j].in8 = true
	}
	for _, j := range zs {
		e.int8.use[j].x8.z8 = true
	}
	for _, j := range pools {
		if e.int8.gpool == nil {
			e.int8.gpool = map[int]*gpoolI8{}
		}
		e.int8.gpool[j] = &gpoolI8{producer: i}
	}
	e.ws = max(e.ws, a.workspace(false))
	for _, j := range append(xs, zs...) { // the quantized readers
		e.ws = max(e.ws, e.int8.use[j].workspace(false))
	}
}

// readers returns the steps other than i that read r (a launch argument, a
// library call's operand), in order; ok is false when r is a graph output.
func (e *Engine) readers(i int, r ref) (_ []int, ok bool) {
	for _, o := range e.prog.outputs {
		if o.ref == r {
			return nil, false
		}
	}
	node := e.prog.steps[i].node
	var out []int
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
			out = append(out, k)
		}
	}
	return out, true
}

// soleReader returns the one step other than i that reads r, when exactly
// one does and r is no graph output.
func (e *Engine) soleReader(i int, r ref) (int, bool) {
	rs, ok := e.readers(i, r)
	if !ok || len(rs) != 1 {
		return 0, false
	}
	return rs[0], true
}

// chainPair makes step i write its output in 8 bits for step j (see the
// file comment); on any failure both stay as they were.
func (e *Engine) chainPair(d *cuda.CUDNN, h cuda.CUDNNHandle, i, j int) {
	a, b := e.int8.use[i], e.int8.use[j]
	if e.chainOut(d, h, i, 1/b.inv) { // B's input scale in its kind
		b.in8 = true
		e.ws = max(e.ws, a.workspace(false), b.workspace(false))
	}
}

// chainOut rebuilds step i's cuDNN quantized graph to write its output in
// 8 bits at scale sNext (its scale and bias divided by it); on any failure
// it stays as it was and chainOut returns false.
func (e *Engine) chainOut(d *cuda.CUDNN, h cuda.CUDNNHandle, i int, sNext float32) bool {
	a := e.int8.use[i]
	ca := e.prog.steps[i].conv
	in := cuda.DataInt8
	if a.kind == "fp8" {
		in = cuda.DataFP8
	}
	p := cuda.ConvParams{N: ca.n, C: a.cp, H: ca.h, W: ca.wd, M: ca.m, KH: ca.kh, KW: ca.kw, PadH: ca.ph, PadW: ca.pw,
		StrideH: ca.sh, StrideW: ca.sw, DilH: ca.dh, DilW: ca.dw, Group: 1, NHWC: true}
	o := cuda.GraphConvOptions{Bias: true, ReLU: ca.relu, MaxWorkspace: int8MaxWorkspace, MaxCandidates: 1, MaxRuntimeCompiled: 1,
		Quant: cuda.GraphQuant{In: in, Out: in, Scale: true}}
	// the engine a plan recorded for the chained layer (a.want), else the
	// engine A runs now, if it writes 8 bits too; else the heuristics'
	// first
	var g *cuda.GraphConv
	err := fmt.Errorf("no engine")
	ids := []string{a.want, a.pend} // a plan's engine (int8Conv.pend: no graph yet)
	if a.g != nil {
		ids = append(ids, a.g.Engine().ID)
	}
	for _, id := range ids {
		if id != "" && err != nil {
			g, err = d.NewGraphConvFromID(h, p, ca.oh, ca.ow, o, id)
		}
	}
	if err != nil {
		if g, err = d.NewGraphConv(h, p, ca.oh, ca.ow, o); err != nil {
			return false
		}
	}
	scale, bias := make([]byte, 4*ca.m), make([]byte, 4*ca.m)
	if err := e.drv.MemcpyDtoH(scale, a.scale); err != nil {
		g.Destroy()
		return false
	}
	if err := e.drv.MemcpyDtoH(bias, a.bias); err != nil {
		g.Destroy()
		return false
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
		return false
	}
	a.g.Destroy()
	a.g, a.out8, a.pend = g, true, ""
	return true
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
