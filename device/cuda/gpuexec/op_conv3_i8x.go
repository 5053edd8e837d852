package gpuexec

import (
	"fmt"
	"math"
	"os"
	"sync"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/tensor"
)

// conv3_i8u2 as a tactic of a quantized 3x3 convolution (issue 11; the
// kernel in device/cuda/conv3i8.go, its design and prediction in
// device/cuda/NOTES.md, "conv3_i8u2, kiln's INT8 3x3 convolution").
//
// In an INT8 engine on compute capability 9.0, a quantized NHWC 3x3
// convolution of one group, stride 1 or 2, padding 1, undilated, with a
// bias and ReLU and no residual, whose shape cuda.Conv3I8Fits (input and
// output channels multiples of 64), can run as kiln's kernel conv3_i8u2
// (conv3_i8u2n64 where the output channels are not a multiple of 128,
// suffix s2 for stride 2):
//
//	y8[p, n] = sat(round(relu(alpha[n] sum_{r,s,c} x8[patch(p), r, s, c] w8[n, r, s, c] + bias'[n])))
//
// the implicit GEMM of expand_i8u2 (op_conv1x1_i8x.go) with x read by
// im2col tensor copies: alpha[n] = sx sw[n] / sy, bias' = bias / sy, as the
// 1x1's (i8xScales), hasz 0. It is an i8xConv with c3 set, so the chains
// (int8chain.go) treat it as the 1x1's: where its input is kept in 8 bits
// (the reducing 1x1 before it writes 8 bits at its input scale) it reads
// the value's storage, and where its output is (the expanding 1x1 after it
// reads 8 bits) it writes it; where not, it quantizes x into the workspace
// (quantize_nhwc_i8) and widens y8 (dequant_i8_f16, built into the same
// module). The weights are quantized per output channel once, in the ONNX
// order [Cout, C, 3, 3], and reordered to the kernel's [Cout, 3, 3, C]
// (cuda.Conv3I8ReorderWeights).
//
// Each build (conv3_i8u2, n64, s2, n64s2) is its own module, compiled by
// NVRTC for sm_90a once per engine when the first layer needing it takes
// the tactic. Each context keeps a layer's four tensor maps (x's im2col map,
// then w, z and y, 512 bytes) in device memory of its own at a fixed
// address, encoded when it binds its calls.
//
// Untuned with the chains on, every layer it takes runs it; tuning times it
// against cuDNN's INT8 graphs ("kiln-conv3-i8u2" in the timing cache, Quant
// conv3-i8u2 in a plan; with the chains on, against cuDNN's graph reading
// and writing what it does, as the reducing 1x1s are: reduceAlt), and a
// loaded plan that chose it builds it again.
//
// Not yet run in an engine on a GPU: opt-in, KILN_CUDA_INT8_CONV3=1 or
// KILN_CUDA_UNVERIFIED=1 offers it, KILN_CUDA_INT8_CONV3=0 keeps it out.

// EnvInt8Conv3 names the environment variable that, set to 1, offers
// conv3_i8u2 to INT8 engines on compute capability 9.0 (as
// KILN_CUDA_UNVERIFIED=1 does), and set to 0 keeps it out.
const EnvInt8Conv3 = "KILN_CUDA_INT8_CONV3"

// quantC3 is the Tactic.Quant of conv3_i8u2 (Impl ImplKernel), and c3Name
// its name in the timing cache.
const (
	quantC3 = "conv3-i8u2"
	c3Name  = "kiln-conv3-i8u2"
)

// c3Geom is the shape of a layer run as conv3_i8u2 (i8xConv.c3).
type c3Geom struct {
	n, h, w, c     int // input [n, h, w, c]
	oh, ow, stride int
	kernel         string // the build's name (cuda.Conv3I8Build)
	mod            *c3Mod // the build, loaded
}

// quant is x8's Tactic.Quant: conv3_i8u2's or expand_i8u2's.
func (x8 *i8xConv) quant() string {
	if x8.c3 != nil {
		return quantC3
	}
	return quantI8x
}

// c3Mod is one build of conv3_i8u2 loaded: its kernel, the widening
// kernel beside it, its shared memory and the SM count.
type c3Mod struct {
	name      string // the kernel's
	mod       cuda.Module
	fn, dq    cuda.Function
	smem, sms int
	err       error // the build's load error, kept (tried once)
}

// c3State is an engine's conv3_i8u2 modules (by kernel name) and its
// contexts' tensor maps (by context and step).
type c3State struct {
	mu   sync.Mutex
	mods map[string]*c3Mod
	maps ctxMaps
}

// c3On says whether conv3_i8u2 is offered: KILN_CUDA_INT8_CONV3=0 or 1
// decides, else KILN_CUDA_UNVERIFIED=1 (it has not run in an engine on a
// GPU yet).
func c3On() bool {
	switch os.Getenv(EnvInt8Conv3) {
	case "0":
		return false
	case "1":
		return true
	}
	return os.Getenv(EnvUnverified) == "1"
}

// c3OK says why step i cannot run as conv3_i8u2, or nil.
func (e *Engine) c3OK(i int) error {
	s := e.prog.steps[i]
	cc := s.conv
	switch {
	case !c3On():
		return fmt.Errorf("%w: conv3_i8u2 has not run in an engine on a GPU yet (%s=1 or %s=1 uses it; %s=0 keeps it out)",
			ErrUnsupported, EnvInt8Conv3, EnvUnverified, EnvInt8Conv3)
	case e.fp.ComputeMajor != 9 || e.fp.ComputeMinor != 0:
		return fmt.Errorf("%w: conv3_i8u2 needs compute capability 9.0 (sm_90a), not %d.%d", ErrUnsupported, e.fp.ComputeMajor, e.fp.ComputeMinor)
	case !e.prog.half || cc == nil || !cc.nhwc || cc.kh != 3 || cc.kw != 3 || cc.group != 1 || cc.dh != 1 || cc.dw != 1:
		return fmt.Errorf("%w: conv3_i8u2 runs an NHWC 3x3 undilated convolution of one group", ErrUnsupported)
	case cc.sh != cc.sw || cc.ph != 1 || cc.pw != 1 ||
		cc.oh != cuda.Conv3I8OutSize(cc.h, cc.sh) || cc.ow != cuda.Conv3I8OutSize(cc.wd, cc.sw):
		return fmt.Errorf("%w: conv3_i8u2 needs padding 1 and one stride (%dx%d, pads %d, %d, output %dx%d of %dx%d)",
			ErrUnsupported, cc.sh, cc.sw, cc.ph, cc.pw, cc.oh, cc.ow, cc.h, cc.wd)
	case !cc.fusable || !cc.relu || cc.z != nil:
		return fmt.Errorf("%w: conv3_i8u2 needs the bias and ReLU epilogue without a residual", ErrUnsupported)
	case !cuda.Conv3I8Fits(cc.n, cc.h, cc.wd, cc.c, cc.m, cc.sh, cc.ph):
		return fmt.Errorf("%w: conv3_i8u2 needs input and output channels multiples of 64 and stride 1 or 2, not %d -> %d, stride %d",
			ErrUnsupported, cc.c, cc.m, cc.sh)
	}
	if _, ok := e.opt.Int8[s.node.Name]; !ok {
		return fmt.Errorf("%w: layer %s has no input scale", ErrUnsupported, s.node.Name)
	}
	return nil
}

// loadC3 compiles and loads the build for cout output channels and the
// stride once per engine; the context is current.
func (e *Engine) loadC3(cout, stride int) (*c3Mod, error) {
	if e.int8.c3 == nil {
		e.int8.c3 = &c3State{}
	}
	st := e.int8.c3
	name, _, smem := cuda.Conv3I8Build(cout, stride)
	if m := st.mods[name]; m != nil {
		return m, m.err
	}
	if st.mods == nil {
		st.mods = map[string]*c3Mod{}
	}
	m := &c3Mod{name: name, smem: smem, sms: 132}
	st.mods[name] = m
	if c3LoadHook != nil {
		m.err = c3LoadHook(e, name, m)
		return m, m.err
	}
	var copt cuda.Options
	if e.int8.x8 != nil {
		copt = e.int8.x8.copt
	}
	m.err = func() error {
		nv, err := cuda.OpenNVRTC(copt)
		if err != nil {
			return err
		}
		comp, err := nv.Compile(name+".cu", cuda.Conv3I8ModuleSource(cout, stride), "--gpu-architecture=sm_90a")
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
		fn, err := e.drv.ModuleFunction(mod, name)
		if err == nil {
			err = e.drv.FuncSetMaxDynamicShared(fn, smem)
		}
		var dq cuda.Function
		if err == nil {
			dq, err = e.drv.ModuleFunction(mod, cuda.DequantI8Kernel)
		}
		if err != nil {
			e.drv.ModuleUnload(mod)
			return err
		}
		m.mod, m.fn, m.dq = mod, fn, dq
		if v, err := e.drv.Attribute(e.dev, 16); err == nil && v > 0 { // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
			m.sms = v
		}
		return nil
	}()
	return m, m.err
}

// c3LoadHook, when a test sets it, replaces loadC3's compile and load of
// the build name (the fake libraries have no sm_90a module).
var c3LoadHook func(e *Engine, name string, m *c3Mod) error

// destroyC3 frees the contexts' maps and unloads the modules.
func (e *Engine) destroyC3() {
	st := e.int8.c3
	if st == nil {
		return
	}
	st.mu.Lock()
	st.maps.free(e)
	st.mu.Unlock()
	for _, m := range st.mods {
		if m.mod != (cuda.Module{}) {
			e.drv.ModuleUnload(m.mod)
		}
	}
	st.mods = nil
}

// newC3 plans step i as conv3_i8u2: its build loaded, the weights
// quantized per output channel and reordered, alpha and bias' uploaded.
// The context is current.
func (e *Engine) newC3(i int) (_ *int8Conv, err error) {
	if err := e.c3OK(i); err != nil {
		return nil, err
	}
	s := e.prog.steps[i]
	cc := s.conv
	sx := e.opt.Int8[s.node.Name]
	sy, oky := e.valueScale(cc.y)
	wv := input(s.node, 1)
	switch {
	case !oky:
		return nil, fmt.Errorf("%w: conv3_i8u2 needs the scale of the output", ErrUnsupported)
	case !(sx > 0) || !(sy > 0) || math.IsInf(float64(sx*sy), 0):
		return nil, fmt.Errorf("%w: scales %g, %g", ErrUnsupported, sx, sy)
	case wv == nil || wv.Const == nil || wv.Const.DType != tensor.Float32 || len(wv.Const.Float32s()) != cc.m*cc.c*9:
		return nil, fmt.Errorf("%w: conv3_i8u2 needs constant float32 weights [%d, %d, 3, 3]", ErrUnsupported, cc.m, cc.c)
	}
	bias := make([]float32, cc.m)
	if b := input(s.node, 2); b != nil {
		if b.Const == nil || b.Const.DType != tensor.Float32 || len(b.Const.Float32s()) != cc.m {
			return nil, fmt.Errorf("%w: conv3_i8u2 needs a constant float32 bias", ErrUnsupported)
		}
		bias = b.Const.Float32s()
	}
	mod, err := e.loadC3(cc.m, cc.sh)
	if err != nil {
		return nil, err
	}
	wq, sw := c3Weights(wv.Const.Float32s(), cc.m, cc.c)
	alpha, b, _ := i8xScales(sx, 1, sy, sw, bias)
	p := cc.n * cc.oh * cc.ow
	q := &int8Conv{name: s.node.Name, kind: "int8", fn: e.int8.fns["int8"], inv: 1 / sx, c: cc.c, cp: cc.c,
		x8: &i8xConv{sx: sx, sz: 1, sy: sy, p: p, k: 9 * cc.c, n: cc.m, noz: true,
			c3: &c3Geom{n: cc.n, h: cc.h, w: cc.wd, c: cc.c, oh: cc.oh, ow: cc.ow, stride: cc.sh, kernel: mod.name, mod: mod}}}
	defer func() {
		if err != nil {
			e.freeInt8(q)
		}
	}()
	q.xq = align256(cc.n * cc.h * cc.wd * cc.c)
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

// c3Weights quantizes float32 weights [m, c, 3, 3] per output channel
// (quantizeWeights: max|w|/127) in their order and reorders them to the
// kernel's [m, 3, 3, c] (cuda.Conv3I8ReorderWeights); it returns the bytes
// and the scales.
func c3Weights(w []float32, m, c int) ([]byte, []float32) {
	q, sw := quantizeWeights(w, m, 9*c, 1, 1, 9*c) // [m, c*9]: the ONNX order, one scale a row
	i8 := make([]int8, len(q))
	for j, v := range q {
		i8[j] = int8(v)
	}
	r := cuda.Conv3I8ReorderWeights(i8, m, c)
	out := make([]byte, len(r))
	for j, v := range r {
		out[j] = byte(v)
	}
	return out, sw
}

// c3Maps returns c's device memory for step i's tensor maps (512 bytes,
// allocated on first use, at the same address for the context's life).
// The context is current.
func (c *Context) c3Maps(i int) (cuda.DevicePtr, error) {
	st := c.e.int8.c3
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.maps.at(c, i)
}

// c3Calls are the calls of step i run as q's conv3_i8u2: x quantized into
// the workspace where it is half, the kernel (its maps encoded now, into
// the context's memory for them), y widened from the workspace where it
// stays half.
func (c *Context) c3Calls(i int, q *int8Conv) ([]call, []launch) {
	e := c.e
	x8, g := q.x8, q.x8.c3
	cc := e.prog.steps[i].conv
	x, y := c.addr(cc.x), c.addr(cc.y)
	xo, _, yo, _ := q.i8xLayout()
	var calls []call
	xq, yq := x, y
	if xo >= 0 {
		xq = c.ws + cuda.DevicePtr(xo)
		calls = append(calls, quantCall(i, q.fn, xq, x, 1/x8.sx, int64(g.n*g.h*g.w), g.c))
	}
	if yo >= 0 {
		yq = c.ws + cuda.DevicePtr(yo)
	}
	mod := g.mod
	maps, err := c.c3Maps(i)
	if err == nil {
		err = c.encodeC3(maps, xq, q.w, yq, x8)
	}
	if err != nil {
		for _, k := range calls {
			k.args.Free()
		}
		return []call{{step: i, lib: func() error { return fmt.Errorf("%s: %w", g.kernel, err) }}}, nil
	}
	tiles := cuda.Conv3I8Tiles(x8.p, x8.n)
	args := cuda.NewKernelArgs(10)
	args.SetPtr(0, maps)
	args.SetPtr(1, q.scale)
	args.SetPtr(2, q.bias)
	args.SetFloat32(3, 0) // beta: no residual
	args.SetInt32(4, x8.hasz())
	args.SetInt32(5, int32(x8.k))
	args.SetInt32(6, int32(x8.n))
	args.SetInt32(7, int32(tiles))
	args.SetInt32(8, int32(g.oh))
	args.SetInt32(9, int32(g.ow))
	grid := cuda.Dim3{X: uint32(min(tiles, cuda.ExpandI8BlocksPerSM*mod.sms)), Y: 1, Z: 1}
	calls = append(calls, call{step: i, fn: mod.fn, grid: grid, block: cuda.Dim3{X: cuda.ExpandI8Threads, Y: 1, Z: 1},
		shmem: uint32(mod.smem), args: args})
	if yo >= 0 {
		n := int64(x8.p) * int64(x8.n)
		gr, b := grid1D(n / 8)
		da := cuda.NewKernelArgs(4)
		da.SetPtr(0, y)
		da.SetPtr(1, yq)
		da.SetFloat32(2, x8.sy)
		da.SetInt64(3, n)
		calls = append(calls, call{step: i, fn: mod.dq, grid: gr, block: b, args: da})
	}
	return calls, nil
}

// encodeC3 encodes the four maps of x8 (x's im2col map, w, z and y; no
// residual: z's points at y, unread) into maps.
func (c *Context) encodeC3(maps, x, w, y cuda.DevicePtr, x8 *i8xConv) error {
	g := x8.c3
	ms, err := c.e.drv.EncodeConv3I8Maps(x, w, 0, y, g.n, g.h, g.w, g.c, x8.n, g.stride)
	if err != nil {
		return err
	}
	var buf []byte
	for _, m := range ms {
		buf = append(buf, m[:]...)
	}
	return c.e.drv.MemcpyHtoD(maps, buf)
}

// planC3 makes, in an untuned engine with the chains on, every layer
// conv3_i8u2 takes run with it (its other plans freed). The context is
// current.
func (e *Engine) planC3() {
	if e.opt.Tune || !c3On() {
		return
	}
	e.planKernel8(e.c3OK, e.newC3, quantC3)
}

// c3Spare is step i's conv3_i8u2 for tuning to time, or nil.
func (e *Engine) c3Spare(i int) *int8Conv { return e.spareKernel8(i, e.c3OK, e.newC3) }

// c3Tactic describes step i run as q's conv3_i8u2, as kiln inspect shows it.
func (e *Engine) c3Tactic(q *int8Conv) string {
	x8, g := q.x8, q.x8.c3
	s := fmt.Sprintf("kiln %s nhwc 3x3/%d int8 %dx%dx%d (wgmma, im2col tensor maps), per-channel scales, %s",
		g.kernel, g.stride, x8.p, x8.n, x8.k, x8.epilogue())
	if q.in8 {
		s += ", input in 8 bits"
	}
	if q.out8 {
		s += ", output in 8 bits"
	}
	return s
}

// c3Impl is Layer.Impl of a step run as q's conv3_i8u2.
func c3Impl(q *int8Conv) string {
	return fmt.Sprintf("kiln nhwc 3x3/%d int8 %s (%s epilogue)", q.x8.c3.stride, q.x8.c3.kernel, q.x8.epilogue())
}
