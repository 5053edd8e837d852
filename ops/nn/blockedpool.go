package nn

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// blockedPoolOp is kiln::BlockedMaxPool and kiln::BlockedAveragePool:
// ONNX MaxPool (one output) and AveragePool, 2-D, on blocked tensors
// [N, Cb, H, W, 16] (blocked.go), a window's 16 lanes reduced at once. The
// windows are MaxPool's and AveragePool's (geom and spans: pads, auto_pad,
// ceil_mode, dilations, count_include_pad). Pad lanes stay zero: the max
// or mean of zeros; a max window that holds no input pixel (MaxPool's
// -Inf, which would reach the pad lanes) is refused.
type blockedPoolOp struct {
	name       string
	kind       poolKind
	win        window
	includePad bool
	setup      atomic.Pointer[blockedPoolSetup]
}

// blockedPoolSetup is a blocked pool's geometry for one input shape; read
// only.
type blockedPoolSetup struct {
	x      []int
	rows   []span // the windows of each output row
	cols   []span // and column
	dh, dw int
	// the output columns [j0, j1) have every tap of their kw-wide window
	// inside the input, stepping sw columns
	j0, j1, kw, sw int
	out            []int
}

func blockedPoolAttrs(n *ir.Node, opset int64) (any, error) {
	return ops.ParseBlockedPoolAttrs(n, opset)
}

func prepareBlockedPool(kind poolKind, name string) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseBlockedPoolAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		return &blockedPoolOp{name: name, kind: kind, win: windowOf(&a.WindowAttrs), includePad: a.CountIncludePad}, nil
	}
}

// blockedPoolInput checks a blocked pool's one input (float32, blocked
// [N, Cb, H, W, 16]) and returns its shape, nil when unknown.
func blockedPoolInput(name string, in []*ir.Value) (ir.Shape, error) {
	if err := needValues(name, in, 1); err != nil {
		return nil, err
	}
	if err := checkFloat32(name, in[0]); err != nil {
		return nil, err
	}
	xs := in[0].Type.Shape
	if err := checkBlockedShape(name, xs); err != nil {
		return nil, err
	}
	return xs, nil
}

func (k *blockedPoolOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	xs, err := blockedPoolInput(k.name, in)
	if err != nil {
		return nil, err
	}
	if xs == nil {
		return []ir.Type{{DType: tensor.Float32}}, nil
	}
	sp, err := k.win.inferDims(xs[2:4], nil)
	if err != nil {
		return nil, err
	}
	keepSymbolic(&k.win, xs[2:4], nil, sp)
	if h, w := xs[2], xs[3]; h.Known() && w.Known() {
		if _, err := k.geometry([]int{1, 1, int(h.Val), int(w.Val), cpu.Block}); err != nil {
			return nil, err
		}
	}
	return []ir.Type{{DType: tensor.Float32, Shape: ir.Shape{xs[0], xs[1], sp[0], sp[1], ir.D(cpu.Block)}}}, nil
}

// geometry resolves the windows of input shape x.
func (k *blockedPoolOp) geometry(x []int) (*blockedPoolSetup, error) {
	g, err := k.win.resolve(x[2:4], nil)
	if err != nil {
		return nil, err
	}
	sp, _, dil := spans(g)
	s := &blockedPoolSetup{x: slices.Clone(x), rows: sp[1], cols: sp[2], dh: dil[1], dw: dil[2],
		out: []int{x[0], x[1], g.out[0], g.out[1], cpu.Block}}
	s.kw, s.sw = g.kernel[1], g.stride[1]
	s.j0, s.j1 = len(s.cols), len(s.cols)
	for oj, c := range s.cols {
		if c.lo == 0 && c.hi == s.kw {
			if s.j0 == len(s.cols) {
				s.j0 = oj
			}
			s.j1 = oj + 1
		}
	}
	if k.kind == poolMax {
		for _, r := range s.rows {
			for _, c := range s.cols {
				if r.lo >= r.hi || c.lo >= c.hi {
					return nil, badInput("%s: a window (kernel %v, pads %v, dilations %v) over input %dx%d holds only padding", k.name, g.kernel, k.win.pads, g.dil, x[2], x[3])
				}
			}
		}
	}
	if _, err := checkedNumel(s.out); err != nil {
		return nil, err
	}
	return s, nil
}

func (k *blockedPoolOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs(k.name, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if err := checkBlockedTensor(k.name, x); err != nil {
		return nil, err
	}
	s := k.setup.Load()
	if s == nil || !slices.Equal(s.x, x.Shape) {
		var err error
		if s, err = k.geometry(x.Shape); err != nil {
			return nil, err
		}
		k.setup.Store(s)
	}
	y, err := newOut(env, tensor.Float32, s.out)
	if err != nil {
		return nil, err
	}
	if y.Len() == 0 {
		return env.One(y), nil
	}
	j := poolJobs.Get().(*blockedPoolJob)
	j.k, j.s, j.x, j.y = k, s, x.Float32s(), y.Float32s()
	j.h, j.w = x.Shape[2], x.Shape[3]
	oh, ow := len(s.rows), len(s.cols)
	// bands of output rows of about 2K output floats a range
	j.band = max(1, min(oh, 2048/(ow*cpu.Block)))
	j.bands = (oh + j.band - 1) / j.band
	cpu.DynamicFor(x.Shape[0]*x.Shape[1]*j.bands, 1, j.run)
	j.k, j.s, j.x, j.y = nil, nil, nil, nil
	poolJobs.Put(j)
	return env.One(y), nil
}

// blockedPoolJob is a blocked pool's parallel loop over (image, block,
// band of output rows), pooled with its bound method so that a run
// allocates no closure.
type blockedPoolJob struct {
	k           *blockedPoolOp
	s           *blockedPoolSetup
	x, y        []float32
	h, w        int
	band, bands int
	run         func(lo, hi int)
}

var poolJobs = sync.Pool{New: func() any {
	j := &blockedPoolJob{}
	j.run = j.do
	return j
}}

// blockLanes is cpu.Block, the lanes of one pixel's block.
const blockLanes = cpu.Block

func (j *blockedPoolJob) do(lo, hi int) {
	s := j.s
	oh, ow := len(s.rows), len(s.cols)
	inPlane, outPlane := j.h*j.w*blockLanes, oh*ow*blockLanes
	avg := j.k.kind == poolAvg
	incl := j.k.includePad
	rs, cs := s.dh*j.w*blockLanes, s.dw*blockLanes
	for it := lo; it < hi; it++ {
		plane, b := it/j.bands, it%j.bands
		xp := j.x[plane*inPlane : (plane+1)*inPlane]
		yp := j.y[plane*outPlane : (plane+1)*outPlane]
		for oi := b * j.band; oi < min(oh, (b+1)*j.band); oi++ {
			r := s.rows[oi]
			kh := r.hi - r.lo
			yr := yp[oi*ow*blockLanes : (oi+1)*ow*blockLanes]
			if kh <= 0 { // only an average pool's window may hold no pixel
				clear(yr)
				continue
			}
			xr := xp[(r.start+r.lo*s.dh)*j.w*blockLanes:]
			// one pixel whose window is cut by the pads
			edge := func(oj int) {
				c := s.cols[oj]
				kw := c.hi - c.lo
				if kw <= 0 {
					clear(yr[oj*blockLanes : (oj+1)*blockLanes])
					return
				}
				n := kh * kw
				if incl {
					n = r.count * c.count
				}
				cpu.BlockedPoolRow(yr[oj*blockLanes:], xr[(c.start+c.lo*s.dw)*blockLanes:], 1, kh, kw, 0, rs, cs, avg, 1/float32(n))
			}
			for oj := 0; oj < s.j0; oj++ {
				edge(oj)
			}
			if s.j1 > s.j0 {
				n := kh * s.kw
				if incl {
					n = r.count * s.kw
				}
				cpu.BlockedPoolRow(yr[s.j0*blockLanes:], xr[s.cols[s.j0].start*blockLanes:], s.j1-s.j0, kh, s.kw, s.sw*blockLanes, rs, cs, avg, 1/float32(n))
			}
			for oj := max(s.j0, s.j1); oj < ow; oj++ {
				edge(oj)
			}
		}
	}
}

// blockedGlobalPoolOp is kiln::BlockedGlobalAveragePool and
// kiln::BlockedGlobalMaxPool: [N, Cb, H, W, 16] -> [N, Cb, 1, 1, 16], the
// plane's 16-lane vectors summed (or their maximum taken). Its Run is the
// reference (serial); the engine runs the CPU registry's.
type blockedGlobalPoolOp struct {
	name   string
	kind   poolKind
	shapes shapeCache
}

func (k *blockedGlobalPoolOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	xs, err := blockedPoolInput(k.name, in)
	if err != nil {
		return nil, err
	}
	if xs == nil {
		return []ir.Type{{DType: tensor.Float32}}, nil
	}
	for _, d := range xs[2:4] {
		if d.Known() && d.Val == 0 {
			return nil, badInput("%s of an empty plane %v", k.name, xs)
		}
	}
	return []ir.Type{{DType: tensor.Float32, Shape: ir.Shape{xs[0], xs[1], ir.D(1), ir.D(1), ir.D(cpu.Block)}}}, nil
}

func (k *blockedGlobalPoolOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs(k.name, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if err := checkBlockedTensor(k.name, x); err != nil {
		return nil, err
	}
	hw := x.Shape[2] * x.Shape[3]
	if hw == 0 {
		return nil, badInput("%s of an empty plane %v", k.name, x.Shape)
	}
	var outShape []int
	if e := k.shapes.get(x.Shape); e != nil {
		outShape = e.out
	} else {
		outShape = []int{x.Shape[0], x.Shape[1], 1, 1, cpu.Block}
		k.shapes.put(x.Shape, nil, outShape)
	}
	y, err := newOut(env, tensor.Float32, outShape)
	if err != nil {
		return nil, err
	}
	// the reference: every plane one window, serially (the CPU
	// registry's kernel, device/cpu/kernels, splits the planes over the
	// cores)
	planes := x.Shape[0] * x.Shape[1]
	cpu.BlockedPoolRowGo(y.Float32s(), x.Float32s(), planes, 1, hw, hw*blockLanes, 0, blockLanes, k.kind != poolMax, 1/float32(hw))
	return env.One(y), nil
}

func init() {
	ops.Register(ops.Def{Domain: FusedDomain, Type: "BlockedMaxPool", Attrs: blockedPoolAttrs, Prepare: prepareBlockedPool(poolMax, "BlockedMaxPool")})
	ops.Register(ops.Def{Domain: FusedDomain, Type: "BlockedAveragePool", Attrs: blockedPoolAttrs, Prepare: prepareBlockedPool(poolAvg, "BlockedAveragePool")})
	ops.Register(ops.Def{Domain: FusedDomain, Type: "BlockedGlobalAveragePool", Prepare: func(*ir.Node, int64) (ops.Kernel, error) {
		return &blockedGlobalPoolOp{name: "BlockedGlobalAveragePool", kind: poolAvg}, nil
	}})
	ops.Register(ops.Def{Domain: FusedDomain, Type: "BlockedGlobalMaxPool", Prepare: func(*ir.Node, int64) (ops.Kernel, error) {
		return &blockedGlobalPoolOp{name: "BlockedGlobalMaxPool", kind: poolMax}, nil
	}})
}
