package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// Options configures an Engine.
type Options struct {
	// Ordinal is the GPU to run on (as in "cuda:1").
	Ordinal int
	// FP16 runs in half precision: float32 activations and constants are
	// stored in IEEE binary16, convolutions and matrix products run on
	// tensor cores (cuDNN, cuBLASLt) and kiln's kernels compute in float32
	// between half loads and stores (reductions in float32). Context.Run
	// still takes and returns float32 tensors, converted on the device.
	FP16 bool
	// LayerPrecision, with FP16, names the layers (nodes) that run in
	// float32 instead ("fp32"; "fp16" and unnamed layers run in half): the
	// builder's precision stage decides them for every device
	// (device.ExecOptions.LayerPrecision). Conversion steps sit at the
	// precision boundaries (precision.go). nil: every layer in half.
	LayerPrecision map[string]string
	// MemoryLimit, when positive, bounds the device memory the engine and
	// all its contexts take together (weights, activations, workspaces).
	MemoryLimit int64
	// LibDir overrides where the CUDA libraries are found (see package cuda).
	LibDir string
	// NoCUDNN and NoCUBLASLt run convolutions and matrix products with
	// kiln's own kernels instead of cuDNN's and cuBLASLt's.
	NoCUDNN, NoCUBLASLt bool
	// NoGraphs turns off CUDA graph capture: every Run launches each layer.
	NoGraphs bool
	// SyncEachLayer waits for each layer to finish while it runs without a
	// graph, so that an error in a kernel is reported with its layer.
	SyncEachLayer bool
	// KeepValues gives every value its own memory, so that Context.Value
	// can read any of them after a run (for debugging: no memory reuse).
	KeepValues bool
	// Kernels, when not empty, is the compiled kernel image (a cubin or PTX
	// from KernelImage, e.g. stored in a plan) to load instead of compiling
	// the embedded sources with NVRTC; NVRTC is then not needed.
	Kernels []byte
	// Tune times, for each convolution and matrix product, the algorithms
	// cuDNN or cuBLASLt offer within the workspace limit and kiln's own
	// kernels (CUDA events, median of 7 runs after 3 warm-up runs, at the
	// engine's shapes) and keeps the fastest; Engine.Tactics lists the
	// choices. Layers that Tactics covers are not timed.
	Tune bool
	// TimingCache, when set with Tune, supplies earlier measurements (keyed
	// by CacheDevice, the GPU's fingerprint, the layer's signature and the
	// implementation) and receives new ones; the caller saves it.
	TimingCache *tactic.Cache
	CacheDevice device.Fingerprint
	// NCHW keeps half-precision convolutions (and the values between them)
	// in NCHW: without it, a half engine stores the values that
	// convolutions produce and read NHWC, with transposes where a layer
	// needs NCHW (layout.go). The environment variable KILN_CUDA_NCHW=1
	// does the same. Float32 engines are always NCHW.
	NCHW bool
	// GraphConv adds, for each NHWC convolution, the engines of cuDNN's
	// graph (backend) API for conv + bias + residual + ReLU as one
	// operation graph to the tactics that tuning times (heuristics modes
	// A and B and the fallback list; building a runtime-compiled engine
	// takes 0.1-1 s, so tuning takes longer). KILN_CUDA_GRAPH_CONV=1 does
	// the same. A plan's tactic that names a graph engine is rebuilt from
	// its ID whatever this says.
	GraphConv bool
	// Int8 (with FP16) gives the convolutions to run in INT8, by node
	// name, with the scale of each one's input (int8.go).
	Int8 map[string]float32
	// Int8Chain, when not nil, says whether an INT8 engine keeps the values
	// between quantized convolutions in 8 bits (a plan's record, int8.go);
	// nil: the GPU's default (int8chain.go, int8Chains).
	Int8Chain *bool
	// plainNHWC (tests) runs NHWC convolutions as cuDNN's plain call and
	// the epilogue kernel unless a tactic says otherwise.
	plainNHWC bool
	// Tactics are choices made earlier (Engine.Tactics of a tuned engine,
	// e.g. kept in a plan): a layer of the same name and signature runs as
	// its tactic says, when the library still offers that algorithm.
	Tactics Tactics
}

// maxWorkspace bounds the workspace a library call may use.
const maxWorkspace = 64 << 20

// maxHalfConvWorkspace bounds the workspace of a half convolution: cuDNN's
// tensor-core algorithms on NCHW data convert the layout in their
// workspace, which grows with the batch (100 MB for one ResNet-50 layer at
// batch 256); under 64 MB cuDNN falls back to slower algorithms. Only what
// the chosen algorithms need is allocated.
const maxHalfConvWorkspace = 1 << 30

// Layer describes how one node runs, for inspection.
type Layer struct {
	Node string // the node's name
	Op   string // its op, e.g. "kiln::FusedConv"
	Impl string // "cudnn", "cublaslt", or the kernel(s) run, e.g. "conv2d_f32"
	// Tactic says it in full, as kiln inspect shows it: the library's
	// algorithm and the kernels launched around it, e.g. "cudnn
	// IMPLICIT_PRECOMP_GEMM (algo 1, FMA math) + bias_act_f32".
	Tactic string
	// Precision is what the layer computes in ("fp32", "fp16"; "" without
	// float data).
	Precision string
	// Time is the layer's device time measured while tuning (Options.Tune;
	// 0 otherwise): the chosen tactic's, or for layers without a choice,
	// their kernels'. Cached says the time came from the timing cache.
	Time   time.Duration
	Cached bool
	// Workspace is the library workspace the layer needs, in bytes.
	Workspace int64
}

// Engine is a graph prepared on one GPU: constants uploaded and kernels
// loaded. It is safe for concurrent use; each goroutine runs its own Context.
type Engine struct {
	prog    *program
	opt     Options
	drv     *cuda.Driver
	dev     cuda.Device
	cctx    cuda.Context
	fp      cuda.Fingerprint
	mod     cuda.Module
	funcs   map[string]cuda.Function
	weights cuda.DevicePtr
	dnn     *cuda.CUDNN
	lt      *cuda.CUBLASLt
	convs   map[int]*cuda.CUDNNConv      // by step
	fused   map[int]*cuda.CUDNNFusedConv // NHWC convolutions run as cuDNN's fused call, by step
	graphs  map[int]*cuda.GraphConv      // NHWC convolutions run as a cuDNN graph (backend API) engine, by step
	// spare are the NHWC convolutions' other cuDNN plans (fused or plain)
	// that tuning times against the one in use, by step.
	spare    map[int]convPlans
	gemms    map[int]*cuda.LtMatmul // by step
	gemmEpi  map[int]bool           // steps whose bias (and ReLU) cuBLASLt's epilogue adds
	gemmAlt  map[int]*cuda.LtMatmul // tuning: plain plans of those steps, timed against them
	pdl      bool                   // pdlKernels launch with programmatic dependent launch (pdl.go)
	conv1x1  conv1x1State           // NHWC 1x1 convolutions as cuBLASLt products (op_conv1x1.go)
	int8     int8State              // convolutions run in INT8 (int8.go)
	ws       int                    // workspace bytes a context needs
	tactics  Tactics                // tuned or applied choices, by node name
	measured int                    // timings measured by tune
	cached   map[string]bool        // tactics whose time came from the timing cache, by node name
	stepNS   map[int]time.Duration  // device times of the steps tune had no choice for
	reverted bool                   // tune kept the first choices: the network was slower with its own

	mu       sync.Mutex
	closed   bool
	contexts map[*Context]bool
	used     int64 // device bytes held
}

// compiledKernels caches NVRTC's output per target architecture.
var compiledKernels sync.Map // arch -> *cuda.Compiled

// NewEngine prepares g (optimized, every shape known) on GPU opt.Ordinal.
func NewEngine(g *ir.Graph, opt Options) (*Engine, error) {
	// cuDNN's run-time fusion compiles with NVRTC, which breaks Go's
	// handler of SIGTERM: the dispositions are restored at the end
	defer cuda.KeepSignals()()
	prog, err := compilePrecision(g, opt.KeepValues, opt.FP16, true, nchwForced(opt), opt.LayerPrecision)
	if err != nil {
		return nil, err
	}
	copt := cuda.Options{LibDir: opt.LibDir, Device: opt.Ordinal}
	drv, err := cuda.OpenDriver(copt)
	if err != nil {
		return nil, err
	}
	n, err := drv.DeviceCount()
	if err != nil {
		return nil, err
	}
	if opt.Ordinal < 0 || opt.Ordinal >= n {
		return nil, fmt.Errorf("%w: no CUDA device %d (%d found)", cuda.ErrUnavailable, opt.Ordinal, n)
	}
	dev, err := drv.Device(opt.Ordinal)
	if err != nil {
		return nil, err
	}
	e := &Engine{prog: prog, opt: opt, drv: drv, dev: dev, contexts: map[*Context]bool{},
		convs: map[int]*cuda.CUDNNConv{}, fused: map[int]*cuda.CUDNNFusedConv{}, graphs: map[int]*cuda.GraphConv{}, spare: map[int]convPlans{}, gemms: map[int]*cuda.LtMatmul{}, gemmEpi: map[int]bool{}, gemmAlt: map[int]*cuda.LtMatmul{}, tactics: Tactics{},
		cached: map[string]bool{}, stepNS: map[int]time.Duration{}}
	if e.fp.GPUName, err = drv.DeviceName(dev); err != nil {
		return nil, err
	}
	if e.fp.ComputeMajor, e.fp.ComputeMinor, err = drv.ComputeCapability(dev); err != nil {
		return nil, err
	}
	if prog.mma && e.fp.ComputeMajor < 8 { // no mma.sync: the scalar attention kernels
		if prog, err = compilePrecision(g, opt.KeepValues, opt.FP16, false, nchwForced(opt), opt.LayerPrecision); err != nil {
			return nil, err
		}
		e.prog = prog
	}
	image := opt.Kernels
	if len(image) == 0 {
		if _, image, err = KernelImage(copt, e.fp.ComputeMajor, e.fp.ComputeMinor); err != nil {
			return nil, err
		}
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if e.cctx, err = drv.RetainPrimaryContext(dev); err != nil {
		return nil, err
	}
	if err := drv.SetCurrent(e.cctx); err != nil {
		drv.ReleasePrimaryContext(dev)
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			e.release()
		}
	}()
	if e.mod, err = drv.ModuleLoadData(image); err != nil {
		return nil, err
	}
	e.funcs = map[string]cuda.Function{}
	for k := range prog.kernels {
		if e.funcs[k], err = drv.ModuleFunction(e.mod, k); err != nil {
			return nil, err
		}
	}
	e.pdl = e.probePDL()
	if err := e.reserve(int64(len(prog.weights))); err != nil {
		return nil, err
	}
	if len(prog.weights) > 0 {
		if e.weights, err = drv.MemAlloc(len(prog.weights)); err != nil {
			return nil, fmt.Errorf("weights: %w", err)
		}
		if err := drv.MemcpyHtoD(e.weights, prog.weights); err != nil {
			return nil, fmt.Errorf("weights: %w", err)
		}
	}
	if err := e.planLibraries(copt); err != nil {
		return nil, err
	}
	if opt.Tune {
		if err := e.tune(); err != nil {
			return nil, err
		}
	}
	ok = true
	return e, nil
}

// KernelImage compiles the embedded kernels with NVRTC (found as o says)
// for a GPU of compute capability major.minor, once per process and
// architecture, and returns the target ("sm_90", or "compute_XY" PTX when
// NVRTC is older than the GPU) and the image, for Options.Kernels.
func KernelImage(o cuda.Options, major, minor int) (arch string, img []byte, err error) {
	nv, err := cuda.OpenNVRTC(o)
	if err != nil {
		return "", nil, err
	}
	if arch, err = nv.TargetFor(major, minor); err != nil {
		return "", nil, err
	}
	if c, ok := compiledKernels.Load(arch); ok {
		return arch, image(c.(*cuda.Compiled)), nil
	}
	c, err := cuda.CompileKernels(nv, arch)
	if err != nil {
		return "", nil, err
	}
	compiledKernels.Store(arch, c)
	return arch, image(c), nil
}

func image(c *cuda.Compiled) []byte {
	if len(c.CUBIN) > 0 {
		return c.CUBIN
	}
	return c.PTX
}

// planLibraries opens cuDNN and cuBLASLt (unless turned off) and plans the
// steps they can run; a step whose plan fails keeps kiln's kernels.
func (e *Engine) planLibraries(o cuda.Options) error {
	var hasConv, hasGemm bool
	for _, s := range e.prog.steps {
		hasConv = hasConv || s.conv != nil
		hasGemm = hasGemm || s.gemm != nil
	}
	if hasConv && !e.opt.NoCUDNN {
		if d, err := cuda.OpenCUDNN(o); err == nil {
			if h, err := d.Create(); err == nil {
				for i, s := range e.prog.steps {
					cc := s.conv
					if cc == nil {
						continue
					}
					p := cuda.ConvParams{N: cc.n, C: cc.c, H: cc.h, W: cc.wd, M: cc.m, KH: cc.kh, KW: cc.kw,
						PadH: cc.ph, PadW: cc.pw, StrideH: cc.sh, StrideW: cc.sw, DilH: cc.dh, DilW: cc.dw, Group: cc.group,
						Half: s.half, NHWC: cc.nhwc}
					limit := maxWorkspace
					if p.Half {
						limit = maxHalfConvWorkspace
					}
					t, ok := e.opt.Tactics[s.node.Name]
					// signatures name the program's precision, as tune.go makes them
					ok = ok && t.Sig == convSig(s, s.half)
					if ok && t.Impl == ImplKernel {
						e.tactics[s.node.Name] = t
						continue
					}
					if cc.nhwc {
						e.planNHWC(d, h, i, p, limit, t, ok)
						continue
					}
					if conv, err := d.NewConv(h, p, cc.oh, cc.ow, limit); err == nil {
						if ok && t.Impl == ImplCUDNN && useConvTactic(conv, t) {
							e.tactics[s.node.Name] = t
						}
						e.convs[i] = conv
						e.ws = max(e.ws, conv.Workspace)
					}
				}
				d.Destroy(h)
				if len(e.convs) > 0 || len(e.fused) > 0 || len(e.graphs) > 0 {
					e.dnn = d
				}
			}
		}
	}
	if hasGemm && !e.opt.NoCUBLASLt {
		if b, err := cuda.OpenCUBLASLt(o); err == nil {
			if h, err := b.Create(); err == nil {
				for i, s := range e.prog.steps {
					gc := s.gemm
					if gc == nil {
						continue
					}
					mo := cuda.MatmulOptions{Half: s.half, TransB: gc.transB, SplitK: ltSplitK, Enumerate: e.ltEnumerate()}
					if mo.Enumerate {
						mo.SMs, _ = e.drv.Attribute(e.dev, cuda.AttrMultiprocessorCount)
					}
					t, ok := e.opt.Tactics[s.node.Name]
					ok = ok && t.Sig == gemmSig(s, s.half)
					if ok && t.Impl == ImplKernel {
						e.tactics[s.node.Name] = t
						continue
					}
					// use applies the recorded choice, when it is one of mm's.
					use := func(mm *cuda.LtMatmul, epi bool) {
						if !ok || t.Impl != ImplCUBLASLt || t.Epi != epi {
							return
						}
						j := t.Algo
						if t.Cfg != "" { // an enumerated configuration (tune.go): planned from its description
							var err error
							if j, err = mm.AddConfig(h, t.Cfg, maxWorkspace); err != nil {
								return
							}
						}
						if j < len(mm.Candidates) && mm.UseCandidate(j) == nil {
							e.tactics[s.node.Name] = t
						}
					}
					if relu, gelu, can := gc.ltEpilogue(s.half); can && (!ok || t.Impl != ImplCUBLASLt || t.Epi) {
						// the bias (and ReLU or GELU) in cuBLASLt's epilogue: no pass over Y after
						epi := mo
						epi.Bias, epi.ReLU, epi.GELU = e.weights+cuda.DevicePtr(gc.bias.off), relu, gelu
						epi.Residual = gc.resid != nil // through C; else post adds it
						if mm, err := b.NewMatmulWith(h, gc.m, gc.n, gc.k, epi, maxWorkspace); err == nil {
							use(mm, true)
							e.gemms[i], e.gemmEpi[i] = mm, true
							e.ws = max(e.ws, mm.Workspace)
							if e.opt.Tune && !ok { // the epilogue is a choice too
								if alt, err := b.NewMatmulWith(h, gc.m, gc.n, gc.k, mo, maxWorkspace); err == nil {
									e.gemmAlt[i] = alt
								}
							}
							continue
						}
					}
					if mm, err := b.NewMatmulWith(h, gc.m, gc.n, gc.k, mo, maxWorkspace); err == nil {
						use(mm, false)
						e.gemms[i] = mm
						e.ws = max(e.ws, mm.Workspace)
					}
				}
				b.Destroy(h)
				if len(e.gemms) > 0 {
					e.lt = b
				}
			}
		}
	}
	e.plan1x1(o)
	e.planInt8(o)
	return nil
}

// reserve counts n more bytes of device memory against MemoryLimit.
func (e *Engine) reserve(n int64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.opt.MemoryLimit > 0 && e.used+n > e.opt.MemoryLimit {
		return fmt.Errorf("%w: %d bytes more would make %d, over the limit of %d", ErrMemoryLimit, n, e.used+n, e.opt.MemoryLimit)
	}
	e.used += n
	return nil
}

func (e *Engine) unreserve(n int64) {
	e.mu.Lock()
	e.used -= n
	e.mu.Unlock()
}

// Fingerprint returns the GPU's name and compute capability (the library
// versions are left zero; cuda.Probe fills them).
func (e *Engine) Fingerprint() cuda.Fingerprint { return e.fp }

// Layers lists how each node runs.
func (e *Engine) Layers() []Layer {
	var out []Layer
	for i, s := range e.prog.steps {
		l := Layer{Node: s.node.Name, Op: opName(s.node), Tactic: e.stepTactic(i), Precision: e.stepPrecision(s), Workspace: e.stepWorkspace(i)}
		l.Time, l.Cached = e.stepTime(i)
		switch {
		case e.int8.use[i] != nil:
			l.Impl, l.Precision = e.int8Impl(i)
		case e.conv1x1.use[i] != nil:
			l.Impl = e.conv1x1Impl(i)
		case e.graphs[i] != nil:
			l.Impl = "cudnn nhwc graph (" + e.graphs[i].Engine().ID + ")"
		case e.fused[i] != nil:
			l.Impl = fmt.Sprintf("cudnn nhwc fused (algo %d, math %d)", e.fused[i].Algo, e.fused[i].Math)
		case e.convs[i] != nil && s.conv.nhwc:
			l.Impl = fmt.Sprintf("cudnn nhwc (algo %d, math %d)", e.convs[i].Algo, e.convs[i].Math)
		case e.convs[i] != nil:
			l.Impl = fmt.Sprintf("cudnn (algo %d, math %d)", e.convs[i].Algo, e.convs[i].Math)
		case e.gemms[i] != nil && e.gemmEpi[i]:
			l.Impl = "cublaslt (bias epilogue)"
		case e.gemms[i] != nil:
			l.Impl = "cublaslt"
		case len(s.launches) == 0:
			l.Impl = "alias"
		default:
			l.Impl = e.launchesOf(i)[0].kernel
		}
		out = append(out, l)
	}
	return out
}

// ArenaBytes returns the size of a context's activation buffer.
func (e *Engine) ArenaBytes() int64 { return e.prog.arena }

// WeightBytes returns the size of the constants on the device.
func (e *Engine) WeightBytes() int64 { return int64(len(e.prog.weights)) }

// Close frees the engine's device memory. Its contexts must be closed first.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	if len(e.contexts) > 0 {
		e.mu.Unlock()
		return fmt.Errorf("gpuexec: Close with %d contexts still open", len(e.contexts))
	}
	e.closed = true
	e.mu.Unlock()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := e.drv.SetCurrent(e.cctx); err != nil {
		return err
	}
	return e.release()
}

// release frees what NewEngine made; the context is current.
func (e *Engine) release() error {
	var errs []error
	for _, c := range e.convs {
		c.Destroy()
	}
	for _, c := range e.fused {
		c.Destroy()
	}
	for _, c := range e.graphs {
		c.Destroy()
	}
	for _, p := range e.spare {
		p.destroy()
	}
	for _, g := range e.gemms {
		g.Destroy()
	}
	for _, g := range e.gemmAlt {
		g.Destroy()
	}
	e.conv1x1.destroy()
	e.destroyInt8()
	if e.weights != 0 {
		errs = append(errs, e.drv.MemFree(e.weights))
		e.weights = 0
	}
	if e.mod != (cuda.Module{}) {
		errs = append(errs, e.drv.ModuleUnload(e.mod))
		e.mod = cuda.Module{}
	}
	errs = append(errs, e.drv.ReleasePrimaryContext(e.dev))
	return errors.Join(errs...)
}

// call is one bound piece of a step's work in a context.
type call struct {
	step  int
	fn    cuda.Function
	grid  cuda.Dim3
	block cuda.Dim3
	shmem uint32
	args  *cuda.KernelArgs
	lib   func() error // a library call instead of a launch
	pdl   bool         // launched with programmatic dependent launch (pdl.go)
}

// Context runs the engine on its own stream with its own activation
// memory. A Context is used by one goroutine at a time.
type Context struct {
	e        *Engine
	stream   cuda.Stream
	arena    cuda.DevicePtr
	ws       cuda.DevicePtr
	reserved int64
	in, out  []cuda.HostBuffer
	calls    []call
	dnnH     cuda.CUDNNHandle
	ltH      cuda.CUBLASLtHandle
	graph    cuda.GraphExec
	hasGraph bool
	layers   cuda.GraphExec // the layers alone, for DeviceTimes
	hasLayer bool
	noGraph  bool // capture failed once: run eagerly
	runs     int
	closed   bool
	// shared, when not nil, holds arena and ws (sharedarena.go): memory
	// of contexts that never run at once, bound at its allocation gen;
	// rebinds counts the times c bound its calls again to a new one.
	shared  *devArena
	gen     int
	rebinds int
}

// NewContext makes an execution context with its own stream and memory.
func (e *Engine) NewContext() (_ *Context, err error) { return e.newContext(nil) }

// newContext is NewContext with the activations and workspace in shared
// when it is not nil and of the same CUDA context (see devArena).
func (e *Engine) newContext(shared *devArena) (_ *Context, err error) {
	defer cuda.KeepSignals()() // as NewEngine
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := e.drv.SetCurrent(e.cctx); err != nil {
		return nil, err
	}
	c := &Context{e: e, noGraph: e.opt.NoGraphs}
	defer func() {
		if err != nil {
			c.release()
		}
	}()
	need := e.prog.arena + int64(e.ws)
	if err := e.reserve(need); err != nil {
		return nil, err
	}
	c.reserved = need
	if c.stream, err = e.drv.StreamCreate(1); err != nil {
		return nil, err
	}
	if shared != nil && e.sharedNeed() > 0 {
		base, gen, ok, err := shared.take(e, e.sharedNeed())
		if err != nil {
			return nil, err
		}
		if ok {
			c.shared, c.gen = shared, gen
			c.placeShared(base)
		}
	}
	if e.prog.arena > 0 && c.shared == nil {
		if c.arena, err = e.drv.MemAlloc(int(e.prog.arena)); err != nil {
			return nil, fmt.Errorf("activations: %w", err)
		}
	}
	if e.ws > 0 && c.shared == nil {
		if c.ws, err = e.drv.MemAlloc(e.ws); err != nil {
			return nil, fmt.Errorf("workspace: %w", err)
		}
	}
	for _, io := range e.prog.inputs {
		b, err := e.drv.MemAllocHost(int(max(io.bytes, 1)))
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", io.name, err)
		}
		c.in = append(c.in, b)
	}
	for _, io := range e.prog.outputs {
		size := max(io.bytes, 1)
		if io.rows != nil {
			size = 8 // the row count; the rows are copied once it is known
		}
		b, err := e.drv.MemAllocHost(int(size))
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", io.name, err)
		}
		c.out = append(c.out, b)
	}
	if e.dnn != nil {
		if c.dnnH, err = e.dnn.Create(); err != nil {
			return nil, err
		}
		if err := e.dnn.SetStream(c.dnnH, c.stream); err != nil {
			return nil, err
		}
	}
	if e.lt != nil {
		if c.ltH, err = e.lt.Create(); err != nil {
			return nil, err
		}
	}
	if err := c.bind(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.contexts[c] = true
	e.mu.Unlock()
	return c, nil
}

// addr resolves r in this context.
func (c *Context) addr(r ref) cuda.DevicePtr {
	switch r.buf {
	case bufWeights:
		return c.e.weights + cuda.DevicePtr(r.off)
	case bufArena:
		return c.arena + cuda.DevicePtr(c.e.prog.offsets[r.id]+r.off)
	}
	return 0
}

// bind makes the calls of every step, with their arguments resolved.
func (c *Context) bind() error {
	for i := range c.e.prog.steps {
		c.calls = append(c.calls, c.stepCalls(i)...)
	}
	return nil
}

// stepCalls makes the calls of step i as the engine plans it now.
func (c *Context) stepCalls(i int) []call {
	e := c.e
	s := e.prog.steps[i]
	var calls []call
	launches := e.launchesOf(i) // op_pool_i8.go: a MaxPool may write INT8
	if q := e.int8.use[i]; q != nil {
		calls, launches = c.int8Calls(i, q)
	} else if mm := e.conv1x1.use[i]; mm != nil {
		calls, launches = c.conv1x1Calls(i, mm)
	} else if gc := e.graphs[i]; gc != nil {
		cc := s.conv
		x, w, y := c.addr(cc.x), c.addr(cc.w), c.addr(cc.y)
		var b, z cuda.DevicePtr
		if cc.fusable {
			b = c.addr(cc.bias)
		}
		if cc.z != nil {
			z = c.addr(*cc.z)
		}
		calls = append(calls, call{step: i, lib: func() error {
			return gc.Execute(c.dnnH, x, w, b, z, y, c.ws)
		}})
		launches = nil
	} else if fc := e.fused[i]; fc != nil {
		cc := s.conv
		x, w, y, b := c.addr(cc.x), c.addr(cc.w), c.addr(cc.y), c.addr(cc.bias)
		var z cuda.DevicePtr
		if cc.z != nil {
			z = c.addr(*cc.z)
		}
		calls = append(calls, call{step: i, lib: func() error {
			return fc.Forward(c.dnnH, x, w, z, b, y, c.ws, e.ws)
		}})
		launches = nil
	} else if conv := e.convs[i]; conv != nil {
		cc := s.conv
		x, w, y := c.addr(cc.x), c.addr(cc.w), c.addr(cc.y)
		calls = append(calls, call{step: i, lib: func() error {
			return conv.Forward(c.dnnH, x, w, y, c.ws, e.ws)
		}})
		launches = nil
		if cc.post.kernel != "" {
			launches = []launch{cc.post}
		}
	} else if mm := e.gemms[i]; mm != nil {
		gc := s.gemm
		a, b, y := c.addr(gc.a), c.addr(gc.b), c.addr(gc.y)
		run := func() error { return mm.Run(c.ltH, a, b, y, c.ws, e.ws, c.stream) }
		if gc.resid != nil && e.gemmEpi[i] { // bias and residual in cuBLASLt
			r := c.addr(*gc.resid)
			run = func() error { return mm.RunC(c.ltH, a, b, r, y, c.ws, e.ws, c.stream) }
		}
		calls = append(calls, call{step: i, lib: run})
		launches = nil
		if gc.post.kernel != "" && !e.gemmEpi[i] {
			launches = []launch{gc.post}
		}
	}
	for _, l := range launches {
		args := cuda.NewKernelArgs(len(l.args))
		for j, a := range l.args {
			switch a.kind {
			case argPtr:
				args.SetPtr(j, c.addr(a.ref))
			case argI32:
				args.SetInt32(j, int32(a.i))
			case argI64:
				args.SetInt64(j, a.i)
			case argF32:
				args.SetFloat32(j, a.f)
			}
		}
		calls = append(calls, call{step: i, fn: e.funcs[l.kernel], grid: l.grid, block: l.block, shmem: l.shmem, args: args,
			pdl: e.pdl && pdlKernels[l.kernel]})
	}
	return calls
}

// enqueue queues the input copies, every layer and the output copies.
func (c *Context) enqueue(sync bool) error {
	e := c.e
	for i, io := range e.prog.inputs {
		if err := e.drv.MemcpyHtoDAsync(c.addr(io.ref), c.in[i], int(io.bytes), c.stream); err != nil {
			return fmt.Errorf("input %q: %w", io.name, err)
		}
	}
	if err := c.enqueueLayers(sync); err != nil {
		return err
	}
	for i, io := range e.prog.outputs {
		if io.konst != nil {
			continue
		}
		if io.rows != nil {
			if err := e.drv.MemcpyDtoHAsync(c.out[i], c.addr(*io.rows), 8, c.stream); err != nil {
				return fmt.Errorf("output %q: %w", io.name, err)
			}
			continue
		}
		if err := e.drv.MemcpyDtoHAsync(c.out[i], c.addr(io.ref), int(io.bytes), c.stream); err != nil {
			return fmt.Errorf("output %q: %w", io.name, err)
		}
	}
	return nil
}

// enqueueLayers queues every layer, without the input and output copies.
func (c *Context) enqueueLayers(sync bool) error {
	e := c.e
	for _, k := range c.calls {
		var err error
		if k.lib != nil {
			err = k.lib()
		} else {
			err = k.launch(e.drv, c.stream)
		}
		if err == nil && sync {
			err = e.drv.StreamSynchronize(c.stream)
		}
		if err != nil {
			return fmt.Errorf("layer %s: %w", e.prog.steps[k.step].name(), err)
		}
	}
	return nil
}

// DeviceTimes runs the layers n times on the inputs of the last Run,
// without copying inputs or outputs (replaying a CUDA graph of the layers
// alone, or launching them when that cannot be captured), and returns the
// device time of each run in milliseconds, measured with CUDA events. It
// is for benchmarks: the outputs of later Runs are unaffected.
func (c *Context) DeviceTimes(n int) ([]float64, error) {
	if c.closed {
		return nil, ErrClosed
	}
	if c.runs == 0 {
		return nil, fmt.Errorf("%w: DeviceTimes before the first Run", ErrInput)
	}
	e := c.e
	d := e.drv
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := d.SetCurrent(e.cctx); err != nil {
		return nil, err
	}
	if err := c.rebase(); err != nil {
		return nil, err
	}
	if !c.hasLayer && !c.noGraph {
		if err := d.BeginCapture(c.stream, cuda.CaptureModeThreadLocal); err != nil {
			return nil, err
		}
		qerr := c.enqueueLayers(false)
		g, err := d.EndCapture(c.stream)
		if qerr == nil && err == nil {
			c.layers, err = d.GraphInstantiate(g)
			c.hasLayer = err == nil
		}
		if err == nil {
			d.GraphDestroy(g)
		}
	}
	start, err := d.EventCreate(0)
	if err != nil {
		return nil, err
	}
	defer d.EventDestroy(start)
	end, err := d.EventCreate(0)
	if err != nil {
		return nil, err
	}
	defer d.EventDestroy(end)
	ms := make([]float64, 0, n)
	for range n {
		if err := d.EventRecord(start, c.stream); err != nil {
			return nil, err
		}
		if c.hasLayer {
			err = d.GraphLaunch(c.layers, c.stream)
		} else {
			err = c.enqueueLayers(false)
		}
		if err != nil {
			d.StreamSynchronize(c.stream)
			return nil, err
		}
		if err := d.EventRecord(end, c.stream); err != nil {
			return nil, err
		}
		if err := d.EventSynchronize(end); err != nil {
			return nil, err
		}
		t, err := d.EventElapsed(start, end)
		if err != nil {
			return nil, err
		}
		ms = append(ms, float64(t))
	}
	return ms, nil
}

// capture records the context's work as a CUDA graph.
func (c *Context) capture() error {
	d := c.e.drv
	if err := d.BeginCapture(c.stream, cuda.CaptureModeThreadLocal); err != nil {
		return err
	}
	qerr := c.enqueue(false)
	g, err := d.EndCapture(c.stream)
	if qerr != nil {
		if err == nil {
			d.GraphDestroy(g)
		}
		return qerr
	}
	if err != nil {
		return err
	}
	defer d.GraphDestroy(g)
	x, err := d.GraphInstantiate(g)
	if err != nil {
		return err
	}
	c.graph, c.hasGraph = x, true
	return nil
}

// Run copies inputs (each of exactly the graph's type and shape) to the
// GPU, runs the graph and returns its outputs as new host tensors.
func (c *Context) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return c.run(ctx, inputs, nil)
}

// run is Run with each output that fits in into[its name] returned over
// that memory instead of a new tensor (ShapesContext.SetOutputs).
func (c *Context) run(ctx context.Context, inputs map[string]*tensor.Tensor, into map[string][]byte) (map[string]*tensor.Tensor, error) {
	if c.closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e := c.e
	for i, io := range e.prog.inputs {
		t, ok := inputs[io.name]
		if !ok || t == nil {
			return nil, fmt.Errorf("%w: missing input %q", ErrInput, io.name)
		}
		if t.DType != io.dtype || !sameDims(t.Shape, io.shape) {
			return nil, fmt.Errorf("%w: input %q is %v%v, the engine was built for %v%v", ErrInput, io.name, t.DType, t.Shape, io.dtype, io.shape)
		}
		if int64(len(t.Data)) != io.bytes {
			return nil, fmt.Errorf("%w: input %q holds %d bytes, want %d", ErrInput, io.name, len(t.Data), io.bytes)
		}
		copy(c.in[i].Bytes(), t.Data)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := e.drv.SetCurrent(e.cctx); err != nil {
		return nil, err
	}
	if err := c.rebase(); err != nil {
		return nil, err
	}
	for i, io := range e.prog.outputs {
		if io.rows != nil {
			clear(c.out[i].Bytes()) // a run that writes no count returns no rows
		}
	}
	var err error
	switch {
	case c.hasGraph:
		err = e.drv.GraphLaunch(c.graph, c.stream)
	case c.runs == 0 || c.noGraph:
		err = c.enqueue(e.opt.SyncEachLayer)
	default:
		if cerr := c.capture(); cerr != nil {
			c.noGraph = true // e.g. a library call that cannot be captured
			err = c.enqueue(false)
		} else {
			err = e.drv.GraphLaunch(c.graph, c.stream)
		}
	}
	if err != nil {
		e.drv.StreamSynchronize(c.stream)
		return nil, err
	}
	if err := e.drv.StreamSynchronize(c.stream); err != nil {
		return nil, fmt.Errorf("running the layers: %w", err)
	}
	c.runs++
	out := make(map[string]*tensor.Tensor, len(e.prog.outputs))
	for i, io := range e.prog.outputs {
		if io.konst != nil {
			out[io.name] = io.konst.Clone()
			continue
		}
		if io.rows != nil {
			t, err := c.rowsOutput(io, c.out[i], into[io.name])
			if err != nil {
				return nil, err
			}
			out[io.name] = t
			continue
		}
		t, err := outputTensor(io.dtype, io.shape, into[io.name])
		if err != nil {
			return nil, err
		}
		copy(t.Data, c.out[i].Bytes()[:io.bytes])
		out[io.name] = t
	}
	return out, nil
}

// Value reads the value called name as the last Run left it, as it is
// stored: with Options.FP16 a float32 value comes back as a float16
// tensor. Unless the
// engine was made with KeepValues, only graph inputs and outputs are sure
// to hold what that run computed: other values' memory is reused, and in
// half a value between convolutions may lie NHWC (layout.go; KeepValues
// keeps every value NCHW). A context whose arena is shared
// (ShapesContext.ShareArena) keeps its values only until another context
// sharing it runs; after that arena was made again, Value fails.
func (c *Context) Value(name string) (*tensor.Tensor, error) {
	if c.closed {
		return nil, ErrClosed
	}
	if c.shared != nil {
		if _, gen := c.shared.current(); gen != c.gen {
			return nil, fmt.Errorf("%w: value %q: the shared arena was made again since the last run", ErrInput, name)
		}
	}
	v, ok := c.e.prog.values[name]
	if !ok {
		return nil, fmt.Errorf("%w: no value %q on the device", ErrInput, name)
	}
	t, err := tensor.Make(v.dtype, v.shape)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := c.e.drv.SetCurrent(c.e.cctx); err != nil {
		return nil, err
	}
	if err := c.e.drv.MemcpyDtoH(t.Data, c.addr(v.ref)); err != nil {
		return nil, fmt.Errorf("value %q: %w", name, err)
	}
	return t, nil
}

// Graphed reports whether the context replays a captured CUDA graph.
func (c *Context) Graphed() bool { return c.hasGraph }

// Close frees the context's memory and stream.
func (c *Context) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := c.e.drv.SetCurrent(c.e.cctx); err != nil {
		return err
	}
	err := c.release()
	c.e.mu.Lock()
	delete(c.e.contexts, c)
	c.e.mu.Unlock()
	return err
}

func (c *Context) release() error {
	e := c.e
	var errs []error
	if c.stream != (cuda.Stream{}) {
		errs = append(errs, e.drv.StreamSynchronize(c.stream))
	}
	if c.hasGraph {
		errs = append(errs, e.drv.GraphExecDestroy(c.graph))
		c.hasGraph = false
	}
	if c.hasLayer {
		errs = append(errs, e.drv.GraphExecDestroy(c.layers))
		c.hasLayer = false
	}
	for _, k := range c.calls {
		if k.args != nil {
			k.args.Free()
		}
	}
	c.calls = nil
	if e.dnn != nil && c.dnnH != (cuda.CUDNNHandle{}) {
		errs = append(errs, e.dnn.Destroy(c.dnnH))
	}
	if e.lt != nil && c.ltH != (cuda.CUBLASLtHandle{}) {
		errs = append(errs, e.lt.Destroy(c.ltH))
	}
	for _, b := range append(c.in, c.out...) {
		errs = append(errs, e.drv.MemFreeHost(b))
	}
	c.in, c.out = nil, nil
	if c.shared != nil {
		errs = append(errs, c.shared.drop())
		c.shared, c.arena, c.ws = nil, 0, 0
	}
	for _, p := range []*cuda.DevicePtr{&c.arena, &c.ws} {
		if *p != 0 {
			errs = append(errs, e.drv.MemFree(*p))
			*p = 0
		}
	}
	if c.stream != (cuda.Stream{}) {
		errs = append(errs, e.drv.StreamDestroy(c.stream))
		c.stream = cuda.Stream{}
	}
	e.unreserve(c.reserved)
	c.reserved = 0
	return errors.Join(errs...)
}
