package gpuexec

import (
	"fmt"
	"math"
	"os"
	"sync"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/tensor"
)

// expand_i8u2 as a tactic of a quantized 1x1 convolution with a residual
// (issue 11; the kernel in device/cuda/expandi8.go, its design and
// measurements in device/cuda/NOTES.md, "What integrating expand_i8u2 into
// the INT8 executor needs").
//
// In an INT8 engine on compute capability 9.0, a quantized convolution that
// is a product over NHWC rows (1x1, stride 1, unpadded, one group), with a
// bias, a residual z (or none: the reducing 1x1s and a stride-1
// downsample, the kernel's hasz bit 0 clear, beta 0; KILN_CUDA_INT8_REDUCE=0
// keeps them out) and ReLU (or none: the downsample, hasz bit 1, the output
// clamped to [-128, 127] instead), P = N*H*W a multiple of 128, M of 128 and
// C of 64, can run as kiln's kernel expand_i8u2:
//
//	y8[p, n] = sat(round(relu(alpha[n] sum_k x8[p, k] w8[n, k] + bias'[n] + beta z8[p, n])))
//
// with x8, z8 and y8 the 8-bit values of x, z and y at their scales sx, sz,
// sy: alpha[n] = sx sw[n] / sy (sw the per-channel weight scale, max|w|/127),
// bias' = bias / sy, beta = sz / sy. sx is the layer's input scale
// (Options.Int8[node]); sz and sy are the scales of the values z and y
// (valueScale: the input scale of a convolution that reads the value, else
// Options.Int8[Int8ValueKey(name)], which the calibration gives for values
// read only as a residual or by a layer that is not quantized). Where x, z
// or y is not kept in 8 bits by the chains (int8chain.go), the layer
// quantizes x and z into the context's workspace (quantize_nhwc_i8) and
// writes y8 there, widened into y by dequant_i8_f16; where they are, the
// kernel reads and writes the values' storage (half of the half storage)
// directly.
//
// The kernel's four tensor maps hold the tensors' addresses: each context
// keeps them in 512 bytes of device memory of its own per layer (a fixed
// address, so that its captured CUDA graph replays the launch), encoded
// when the context binds its calls, again when it binds them to a new
// shared arena (sharedarena.go), freed with the engine.
//
// The module (expand_i8u2 and dequant_i8_f16) is compiled by NVRTC for
// sm_90a once per engine, when the first layer takes the tactic. Tuning
// times it against the layer's other tactics ("kiln-expand-i8u2" in the
// timing cache: Impl kernel, Quant expand-i8u2 in a plan); with
// the chains on it is timed as the chains run it (its values in 8
// bits, no conversion), and an untuned engine with the chains runs every
// layer it takes with it.
//
// TestInt8ExpandOnGPU checked it on an H100 (2026-12-07: top-1 100%
// against FP32 on ResNet-50), so it is offered by default on compute 9.0;
// KILN_CUDA_INT8_EXPAND=0 keeps it out.

// EnvInt8Expand names the environment variable that, set to 0, keeps
// expand_i8u2 out of INT8 engines (by default it is offered on compute
// capability 9.0).
const EnvInt8Expand = "KILN_CUDA_INT8_EXPAND"

// EnvInt8Reduce names the environment variable that, set to 1, lets
// expand_i8u2 take the 1x1s without a residual or ReLU too (the reducing
// 1x1s of the bottleneck blocks, bias and ReLU only, and a stride-1
// downsample, bias only; KILN_CUDA_UNVERIFIED=1 does as well); set to 0 it
// keeps them out. By default they keep the libraries' tactics until that
// form has run on a GPU.
const EnvInt8Reduce = "KILN_CUDA_INT8_REDUCE"

// EnvInt8K128 names the environment variable that, set to 1, makes the
// layers expand_i8u2 takes whose input channels are a multiple of 128 run
// cuda.ExpandK128Kernel instead (expand_k128u2: the same arguments, threads
// and blocks an SM, 128-byte K slices; its own module, shared memory and
// maps). Not yet run on a GPU; off by default, and the plan's tactic stays
// expand_i8u2's (a runtime switch, for an A/B of the same plan).
const EnvInt8K128 = "KILN_CUDA_INT8_K128"

// quantI8x is the Tactic.Quant of expand_i8u2 (Impl ImplKernel), and
// i8xName its name in the timing cache.
const (
	quantI8x = "expand-i8u2"
	i8xName  = "kiln-expand-i8u2"
)

// Int8ValueKey is the key in Options.Int8 (and device.ExecOptions.Int8Scales)
// of the scale of the value named name (calibrated amax/127), for values
// no quantized convolution reads as its input: a downsample's output read
// as a residual, the last block's output.
func Int8ValueKey(name string) string { return "value:" + name }

// i8xConv is a layer run as expand_i8u2 (int8Conv.x8).
type i8xConv struct {
	sx, sz, sy float32 // scales of x, z and y
	beta       float32 // sz / sy
	p, k, n    int     // rows, input and output channels
	z8         bool    // z is read in 8 bits (its producer writes them: int8chain.go)
	noz        bool    // no residual (a reducing 1x1: bias and ReLU only; the kernel's hasz bit 0 clear)
	noRelu     bool    // no ReLU (a stride-1 downsample: the output clamped to [-128, 127]; hasz bit 1)
	c3         *c3Geom // a 3x3 run as conv3_i8u2 instead (op_conv3_i8x.go)
	// timing: tuning with the chains on times the kernel alone, as the
	// chains will run it (no quantizing or widening pass)
	timing bool
}

// hasz is the kernel's hasz argument: cuda.ExpandI8Residual with a
// residual, plus cuda.ExpandI8NoReLU without ReLU.
func (x8 *i8xConv) hasz() int32 {
	var f int32
	if !x8.noz {
		f |= cuda.ExpandI8Residual
	}
	if x8.noRelu {
		f |= cuda.ExpandI8NoReLU
	}
	return f
}

// epilogue names what the layer adds after the product: "bias", then
// "+residual" with a residual and "+ReLU" with ReLU (a reducing 1x1:
// bias+ReLU; the stride-1 downsample: bias).
func (x8 *i8xConv) epilogue() string {
	epi := "bias"
	if !x8.noz {
		epi += "+residual"
	}
	if !x8.noRelu {
		epi += "+ReLU"
	}
	return epi
}

// i8xState is an engine's expand_i8u2 module and its contexts' tensor maps.
type i8xState struct {
	copt   cuda.Options
	mu     sync.Mutex
	tried  bool
	mod    cuda.Module
	fn, dq cuda.Function
	// k128: ExpandK128Kernel, loaded with EnvInt8K128=1 (k128On), in a
	// module of its own
	k128Mod cuda.Module
	k128    cuda.Function
	k128On  bool
	sms     int
	maps    ctxMaps
	loadErr error
}

// i8xOK says why step i cannot run as expand_i8u2, or nil.
func (e *Engine) i8xOK(i int) error {
	s := e.prog.steps[i]
	cc := s.conv
	switch {
	case os.Getenv(EnvInt8Expand) == "0":
		return fmt.Errorf("%w: expand_i8u2 is turned off (%s=0)", ErrUnsupported, EnvInt8Expand)
	case e.fp.ComputeMajor != 9 || e.fp.ComputeMinor != 0:
		return fmt.Errorf("%w: expand_i8u2 needs compute capability 9.0 (sm_90a), not %d.%d", ErrUnsupported, e.fp.ComputeMajor, e.fp.ComputeMinor)
	case !e.prog.half || cc == nil || !cc.gemm1x1():
		return fmt.Errorf("%w: expand_i8u2 runs a 1x1, stride-1, unpadded NHWC convolution of one group", ErrUnsupported)
	case !cc.fusable:
		return fmt.Errorf("%w: expand_i8u2 needs the bias epilogue", ErrUnsupported)
	case (cc.z == nil || !cc.relu) && os.Getenv(EnvInt8Reduce) == "0":
		return fmt.Errorf("%w: expand_i8u2 without a residual or ReLU is turned off (%s=0)", ErrUnsupported, EnvInt8Reduce)
	case (cc.z == nil || !cc.relu) && os.Getenv(EnvInt8Reduce) != "1" && os.Getenv(EnvUnverified) != "1":
		// the expanding form (residual and ReLU) ran on an H100; the
		// reducing 1x1s and the stride-1 downsample have not yet
		return fmt.Errorf("%w: expand_i8u2 without a residual or ReLU has not run on a GPU yet (%s=1 uses it)", ErrUnsupported, EnvInt8Reduce)
	case !cuda.ExpandI8Fits(cc.n*cc.h*cc.wd, cc.c, cc.m):
		return fmt.Errorf("%w: expand_i8u2 needs rows and output channels multiples of 128 and input channels of 64, not %d, %d, %d",
			ErrUnsupported, cc.n*cc.h*cc.wd, cc.m, cc.c)
	}
	if _, ok := e.opt.Int8[s.node.Name]; !ok {
		return fmt.Errorf("%w: layer %s has no input scale", ErrUnsupported, s.node.Name)
	}
	return nil
}

// valueScale is the scale of the value r: the input scale of the first
// quantized convolution that reads it as its input, else the calibrated
// scale Options.Int8 holds under Int8ValueKey of one of its names.
func (e *Engine) valueScale(r ref) (float32, bool) {
	for _, s := range e.prog.steps {
		if s.conv != nil && s.conv.x == r {
			if v, ok := e.opt.Int8[s.node.Name]; ok {
				return v, true
			}
		}
	}
	for name, v := range e.prog.values {
		if v.ref == r {
			if s, ok := e.opt.Int8[Int8ValueKey(name)]; ok {
				return s, true
			}
		}
	}
	return 0, false
}

// i8xScales returns alpha, bias' and beta of expand_i8u2 (see the file
// comment) from the weight scales sw and the float bias.
func i8xScales(sx, sz, sy float32, sw, bias []float32) (alpha, b []float32, beta float32) {
	alpha, b = make([]float32, len(sw)), make([]float32, len(sw))
	for n := range sw {
		alpha[n] = sx * sw[n] / sy
		b[n] = bias[n] / sy
	}
	return alpha, b, sz / sy
}

// loadI8x compiles and loads the module once; the context is current.
func (e *Engine) loadI8x() error {
	st := e.int8.x8
	if st == nil {
		return fmt.Errorf("%w: no INT8 plan", ErrUnsupported)
	}
	if st.tried {
		return st.loadErr
	}
	st.tried = true
	if i8xLoadHook != nil {
		st.loadErr = i8xLoadHook(e, st)
		return st.loadErr
	}
	st.loadErr = func() error {
		nv, err := cuda.OpenNVRTC(st.copt)
		if err != nil {
			return err
		}
		comp, err := nv.Compile("expand_i8x.cu", cuda.ExpandI8Source(os.Getenv(EnvUnverified) == "1"), "--gpu-architecture=sm_90a")
		if err != nil {
			return err
		}
		if len(comp.CUBIN) == 0 {
			return fmt.Errorf("%w: NVRTC made no cubin for sm_90a", ErrUnsupported)
		}
		mod, err := e.drv.ModuleLoadData(comp.CUBIN)
		if err != nil {
			return err
		}
		fn, err := e.drv.ModuleFunction(mod, cuda.ExpandI8Kernel)
		if err == nil {
			err = e.drv.FuncSetMaxDynamicShared(fn, cuda.ExpandI8SharedMem())
		}
		var dq cuda.Function
		if err == nil {
			dq, err = e.drv.ModuleFunction(mod, cuda.DequantI8Kernel)
		}
		if err != nil {
			e.drv.ModuleUnload(mod)
			return err
		}
		st.mod, st.fn, st.dq = mod, fn, dq
		if os.Getenv(EnvInt8K128) == "1" {
			// asked for: a failure is the engine's error, not a silent fallback
			if err := e.loadK128(nv); err != nil {
				e.drv.ModuleUnload(mod)
				st.mod = cuda.Module{}
				return fmt.Errorf("%s: %w", cuda.ExpandK128Kernel, err)
			}
		}
		st.sms = 132
		if v, err := e.drv.Attribute(e.dev, 16); err == nil && v > 0 { // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
			st.sms = v
		}
		return nil
	}()
	return st.loadErr
}

// loadK128 compiles and loads ExpandK128Kernel's module (EnvInt8K128).
func (e *Engine) loadK128(nv *cuda.NVRTC) error {
	st := e.int8.x8
	comp, err := nv.Compile(cuda.ExpandK128Kernel+".cu", cuda.ExpandK128Source(), "--gpu-architecture=sm_90a")
	if err != nil {
		return err
	}
	if len(comp.CUBIN) == 0 {
		return fmt.Errorf("%w: NVRTC made no cubin for sm_90a", ErrUnsupported)
	}
	mod, err := e.drv.ModuleLoadData(comp.CUBIN)
	if err != nil {
		return err
	}
	fn, err := e.drv.ModuleFunction(mod, cuda.ExpandK128Kernel)
	if err == nil {
		err = e.drv.FuncSetMaxDynamicShared(fn, cuda.ExpandK128SharedMem())
	}
	if err != nil {
		e.drv.ModuleUnload(mod)
		return err
	}
	st.k128Mod, st.k128, st.k128On = mod, fn, true
	return nil
}

// i8xLoadHook, when a test sets it, replaces loadI8x's compile and load
// (the fake libraries have no sm_90a module).
var i8xLoadHook func(e *Engine, st *i8xState) error

// destroyI8x frees the contexts' maps and unloads the module.
func (e *Engine) destroyI8x() {
	st := e.int8.x8
	if st == nil {
		return
	}
	st.mu.Lock()
	st.maps.free(e)
	st.mu.Unlock()
	if st.mod != (cuda.Module{}) {
		e.drv.ModuleUnload(st.mod)
		st.mod = cuda.Module{}
	}
	if st.k128Mod != (cuda.Module{}) {
		e.drv.ModuleUnload(st.k128Mod)
		st.k128Mod = cuda.Module{}
	}
	st.k128On = false
	st.tried, st.loadErr = false, nil
}

// newI8x plans step i as expand_i8u2: the module loaded, the weights
// quantized per output channel, alpha and bias' uploaded. The context is
// current.
func (e *Engine) newI8x(i int) (_ *int8Conv, err error) {
	if err := e.i8xOK(i); err != nil {
		return nil, err
	}
	s := e.prog.steps[i]
	cc := s.conv
	sx := e.opt.Int8[s.node.Name]
	sz, okz := float32(1), true // no residual: beta 0, sz unused
	if cc.z != nil {
		sz, okz = e.valueScale(*cc.z)
	}
	sy, oky := e.valueScale(cc.y)
	wv := input(s.node, 1)
	switch {
	case !okz || !oky:
		return nil, fmt.Errorf("%w: expand_i8u2 needs the scales of the residual and the output (%v, %v)", ErrUnsupported, okz, oky)
	case !(sx > 0) || !(sz > 0) || !(sy > 0) || math.IsInf(float64(sx*sz*sy), 0):
		return nil, fmt.Errorf("%w: scales %g, %g, %g", ErrUnsupported, sx, sz, sy)
	case wv == nil || wv.Const == nil || wv.Const.DType != tensor.Float32 || len(wv.Const.Float32s()) != cc.m*cc.c:
		return nil, fmt.Errorf("%w: expand_i8u2 needs constant float32 weights [%d, %d, 1, 1]", ErrUnsupported, cc.m, cc.c)
	}
	bias := make([]float32, cc.m)
	if b := input(s.node, 2); b != nil {
		if b.Const == nil || b.Const.DType != tensor.Float32 || len(b.Const.Float32s()) != cc.m {
			return nil, fmt.Errorf("%w: expand_i8u2 needs a constant float32 bias", ErrUnsupported)
		}
		bias = b.Const.Float32s()
	}
	if err := e.loadI8x(); err != nil {
		return nil, err
	}
	wq, sw := quantizeWeights(wv.Const.Float32s(), cc.m, cc.c, 1, 1, cc.c)
	alpha, b, beta := i8xScales(sx, sz, sy, sw, bias)
	if cc.z == nil {
		beta = 0
	}
	p := cc.n * cc.h * cc.wd
	q := &int8Conv{name: s.node.Name, kind: "int8", fn: e.int8.fns["int8"], inv: 1 / sx, c: cc.c, cp: cc.c,
		x8: &i8xConv{sx: sx, sz: sz, sy: sy, beta: beta, p: p, k: cc.c, n: cc.m, noz: cc.z == nil, noRelu: !cc.relu}}
	defer func() {
		if err != nil {
			e.freeInt8(q)
		}
	}()
	q.xq = align256(p * cc.c)
	if q.w, err = e.uploadInt8(q, wq); err != nil {
		return nil, err
	}
	if q.scale, err = e.uploadInt8(q, float32Bytes(alpha)); err != nil {
		return nil, err
	}
	if q.bias, err = e.uploadInt8(q, float32Bytes(b)); err != nil {
		return nil, err
	}
	return q, nil
}

// align256 rounds n up to a multiple of 256.
func align256(n int) int { return (n + 255) / 256 * 256 }

// i8xLayout is where step i's expand_i8u2 finds x8 and z8 and writes y8 in
// the workspace (offsets from its start; -1: in the value's own storage),
// and the workspace it needs.
func (q *int8Conv) i8xLayout() (x, z, y, ws int) {
	x8 := q.x8
	x, z, y = -1, -1, -1
	if x8.timing {
		return x, z, y, 0
	}
	if !q.in8 {
		x, ws = ws, ws+q.xq
	}
	if !x8.z8 && !x8.noz {
		z, ws = ws, ws+align256(x8.p*x8.n)
	}
	if !q.out8 {
		y, ws = ws, ws+align256(x8.p*x8.n)
	}
	return x, z, y, ws
}

// i8xMaps returns c's device memory for step i's tensor maps (512 bytes,
// allocated on first use, at the same address for the context's life).
// The context is current.
func (c *Context) i8xMaps(i int) (cuda.DevicePtr, error) {
	st := c.e.int8.x8
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.maps.at(c, i)
}

// ctxMaps is each context's device memory for its layers' tensor maps (the
// 8-bit kernels' four maps: 512 bytes a layer), by context and step; its
// owner's mutex guards it.
type ctxMaps map[*Context]map[int]cuda.DevicePtr

// at returns c's memory for step i's maps, allocated on first use and at
// the same address for the context's life; closed contexts' memory goes
// back first. The context is current.
func (m *ctxMaps) at(c *Context, i int) (cuda.DevicePtr, error) {
	if *m == nil {
		*m = ctxMaps{}
	}
	for o, ps := range *m {
		if o.closed {
			for _, p := range ps {
				c.e.drv.MemFree(p)
			}
			delete(*m, o)
		}
	}
	if p, ok := (*m)[c][i]; ok {
		return p, nil
	}
	p, err := c.e.drv.MemAlloc(4 * len(cuda.TensorMap{}))
	if err != nil {
		return 0, err
	}
	if (*m)[c] == nil {
		(*m)[c] = map[int]cuda.DevicePtr{}
	}
	(*m)[c][i] = p
	return p, nil
}

// free gives every context's memory back.
func (m *ctxMaps) free(e *Engine) {
	for _, ps := range *m {
		for _, p := range ps {
			e.drv.MemFree(p)
		}
	}
	*m = nil
}

// quantCall is a launch of the quantizing kernel fn: rows of c channels of
// half at x into 8 bits at xq, times inv.
func quantCall(i int, fn cuda.Function, xq, x cuda.DevicePtr, inv float32, rows int64, c int) call {
	grid, block := grid1D(rows * int64(c) / 8)
	args := cuda.NewKernelArgs(6)
	args.SetPtr(0, xq)
	args.SetPtr(1, x)
	args.SetFloat32(2, inv)
	args.SetInt64(3, rows)
	args.SetInt32(4, int32(c))
	args.SetInt32(5, int32(c))
	return call{step: i, fn: fn, grid: grid, block: block, args: args}
}

// i8xCalls are the calls of step i run as q's expand_i8u2: x and z
// quantized into the workspace where they are half, the kernel (its maps
// encoded now, into the context's memory for them), y widened from the
// workspace where it stays half.
func (c *Context) i8xCalls(i int, q *int8Conv) ([]call, []launch) {
	e := c.e
	st := e.int8.x8
	x8 := q.x8
	cc := e.prog.steps[i].conv
	x, y := c.addr(cc.x), c.addr(cc.y)
	var z cuda.DevicePtr // 0: no residual (its map then points at y, unread)
	if cc.z != nil {
		z = c.addr(*cc.z)
	}
	xo, zo, yo, _ := q.i8xLayout()
	rows := int64(x8.p)
	var calls []call
	xq, zq, yq := x, z, y
	if xo >= 0 {
		xq = c.ws + cuda.DevicePtr(xo)
		calls = append(calls, quantCall(i, q.fn, xq, x, 1/x8.sx, rows, x8.k))
	}
	if zo >= 0 {
		zq = c.ws + cuda.DevicePtr(zo)
		calls = append(calls, quantCall(i, q.fn, zq, z, 1/x8.sz, rows, x8.n))
	}
	if yo >= 0 {
		yq = c.ws + cuda.DevicePtr(yo)
	}
	// EnvInt8K128's kernel where the layer's K is whole 128-byte slices
	k128 := st.k128On && cuda.ExpandK128Fits(x8.p, x8.k, x8.n)
	maps, err := c.i8xMaps(i)
	if err == nil {
		err = c.encodeI8x(maps, xq, q.w, zq, yq, x8, k128)
	}
	if err != nil {
		for _, k := range calls {
			k.args.Free()
		}
		return []call{{step: i, lib: func() error { return fmt.Errorf("expand_i8u2: %w", err) }}}, nil
	}
	tiles := cuda.ExpandI8Tiles(x8.p, x8.n)
	args := cuda.NewKernelArgs(8)
	args.SetPtr(0, maps)
	args.SetPtr(1, q.scale)
	args.SetPtr(2, q.bias)
	args.SetFloat32(3, x8.beta)
	args.SetInt32(4, x8.hasz())
	args.SetInt32(5, int32(x8.k))
	args.SetInt32(6, int32(x8.n))
	args.SetInt32(7, int32(tiles))
	grid := cuda.Dim3{X: uint32(min(tiles, cuda.ExpandI8BlocksPerSM*st.sms)), Y: 1, Z: 1}
	fn, shmem := st.fn, cuda.ExpandI8SharedMem()
	if k128 {
		fn, shmem = st.k128, cuda.ExpandK128SharedMem() // the same threads and blocks an SM
	}
	calls = append(calls, call{step: i, fn: fn, grid: grid, block: cuda.Dim3{X: cuda.ExpandI8Threads, Y: 1, Z: 1},
		shmem: uint32(shmem), args: args})
	if yo >= 0 {
		n := rows * int64(x8.n)
		g, b := grid1D(n / 8)
		da := cuda.NewKernelArgs(4)
		da.SetPtr(0, y)
		da.SetPtr(1, yq)
		da.SetFloat32(2, x8.sy)
		da.SetInt64(3, n)
		calls = append(calls, call{step: i, fn: st.dq, grid: g, block: b, args: da})
	}
	return calls, nil
}

// encodeI8x encodes the four maps of x8 (x, w, z, y at these addresses)
// into maps: expand_i8u2's, or with k128 ExpandK128Kernel's.
func (c *Context) encodeI8x(maps, x, w, z, y cuda.DevicePtr, x8 *i8xConv, k128 bool) error {
	var buf []byte
	specs := cuda.ExpandI8MapSpecs
	if k128 {
		specs = cuda.ExpandK128MapSpecs
	}
	for _, t := range specs(x, w, z, y, x8.p, x8.k, x8.n) {
		m, err := c.e.drv.EncodeTensorMapTiled(t)
		if err != nil {
			return err
		}
		buf = append(buf, m[:]...)
	}
	return c.e.drv.MemcpyHtoD(maps, buf)
}

// planI8x makes, in an untuned engine with the chains on, every layer
// expand_i8u2 takes run with it (its other plans freed). The context is
// current.
func (e *Engine) planI8x() {
	if e.opt.Tune || e.int8.x8 == nil {
		return
	}
	e.planKernel8(e.i8xOK, e.newI8x, quantI8x)
}

// planKernel8 gives every layer that fits accepts (and that runs no 8-bit
// kernel yet, nor has a recorded choice) the kernel tactic mk makes, its
// other plans freed: expand_i8u2's and conv3_i8u2's untuned plan.
func (e *Engine) planKernel8(fits func(int) error, mk func(int) (*int8Conv, error), quant string) {
	for i, s := range e.prog.steps {
		if q := e.int8.use[i]; q != nil && q.x8 != nil || fits(i) != nil {
			continue
		}
		if t, ok := e.opt.Tactics[s.node.Name]; ok && t.Sig == convSig(s, s.half) {
			continue // a recorded choice stands
		}
		q, err := mk(i)
		if err != nil {
			continue
		}
		if old := e.int8.use[i]; old != nil {
			e.freeInt8(old)
		}
		e.useInt8(i, q)
		e.tactics[s.node.Name] = Tactic{Sig: convSig(s, s.half), Impl: ImplKernel, Quant: quant}
	}
}

// i8xSpare is step i's expand_i8u2 for tuning to time, or nil.
func (e *Engine) i8xSpare(i int) *int8Conv { return e.spareKernel8(i, e.i8xOK, e.newI8x) }

// spareKernel8 is step i's kernel tactic (mk's, where fits accepts the
// layer) for tuning to time, timed as the chains run it; or nil.
func (e *Engine) spareKernel8(i int, fits func(int) error, mk func(int) (*int8Conv, error)) *int8Conv {
	if fits(i) != nil {
		return nil
	}
	q, err := mk(i)
	if err != nil {
		return nil
	}
	q.x8.timing = e.int8Chains()
	return q
}

// withI8x adds q, step i's expand_i8u2, to its tuning candidates.
func (e *Engine) withI8x(i int, sig string, q *int8Conv, cands []candidate) []candidate {
	return append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplKernel, Quant: q.x8.quant()}, apply: func() error {
		delete(e.convs, i)
		delete(e.fused, i)
		delete(e.graphs, i)
		delete(e.conv1x1.use, i)
		delete(e.conv1x1.epi, i)
		e.int8.use[i] = q
		return nil
	}})
}

// i8xTactic describes step i run as q's expand_i8u2, as kiln inspect shows it.
func (e *Engine) i8xTactic(i int, q *int8Conv) string {
	x8 := q.x8
	s := fmt.Sprintf("kiln expand_i8u2 nhwc 1x1 int8 %dx%dx%d (wgmma, tensor maps), per-channel scales, %s", x8.p, x8.n, x8.k, x8.epilogue())
	var in []string
	if q.in8 {
		in = append(in, "input")
	}
	if x8.z8 {
		in = append(in, "residual")
	}
	switch len(in) {
	case 1:
		s += ", " + in[0] + " in 8 bits"
	case 2:
		s += ", input and residual in 8 bits"
	}
	if q.out8 {
		s += ", output in 8 bits"
	}
	return s
}
