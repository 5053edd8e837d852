package kernels

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/nn"
	"github.com/kilnai/kiln/tensor"
)

// kiln's blocked pools (ops/nn/blockedpool.go defines them, their
// windows, inference and plain reference loops). The windowed ones
// (BlockedMaxPool, BlockedAveragePool) split (image, block, band of output
// rows) over the cores, each output row's window interior in one
// cpu.BlockedPoolRow call and its edges one pixel at a time; the global
// ones, [N, Cb, H, W, 16] -> [N, Cb, 1, 1, 16], split the planes over the
// cores, each reduced by cpu.BlockedPoolRow (AVX-512 where the machine has
// it).
var blockedPoolKernels = []Def{
	{Name: "cpu.BlockedMaxPool", Domain: "kiln", Type: "BlockedMaxPool", Types: float32Or16,
		Prepare: prepareBlockedWindowPool(false)},
	{Name: "cpu.BlockedAveragePool", Domain: "kiln", Type: "BlockedAveragePool", Types: float32Or16,
		Prepare: prepareBlockedWindowPool(true)},
	{Name: "cpu.BlockedGlobalAveragePool", Domain: "kiln", Type: "BlockedGlobalAveragePool", Types: float32Or16,
		Prepare: prepareGlobalPool(false)},
	{Name: "cpu.BlockedGlobalMaxPool", Domain: "kiln", Type: "BlockedGlobalMaxPool", Types: float32Or16,
		Prepare: prepareGlobalPool(true)},
}

func prepareGlobalPool(isMax bool) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		ref, err := ops.Prepare(n, opset)
		if err != nil {
			return nil, err
		}
		return &globalPoolKernel{Kernel: ref, max: isMax, op: n.OpType}, nil
	}
}

// globalPoolKernel is the fast Run of a blocked global pool; Infer is the
// reference kernel's.
type globalPoolKernel struct {
	ops.Kernel
	max  bool
	op   string
	last atomic.Pointer[reorderShape] // the output shape of the last input shape
}

func (k *globalPoolKernel) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) != 1 || in[0] == nil {
		return nil, fmt.Errorf("%w: %s takes 1 input, got %d", ops.ErrBadInput, k.op, len(in))
	}
	x := in[0]
	if x.DType != tensor.Float32 || x.Rank() != 5 || x.Shape[4] != cpu.Block {
		return nil, fmt.Errorf("%w: %s of %v %v, want a float32 blocked [N, C/%d, H, W, %d]", ops.ErrBadInput, k.op, x.DType, x.Shape, cpu.Block, cpu.Block)
	}
	hw := x.Shape[2] * x.Shape[3]
	if hw == 0 {
		return nil, fmt.Errorf("%w: %s of an empty plane %v", ops.ErrBadInput, k.op, x.Shape)
	}
	out := k.outShape(x.Shape)
	y, err := ops.NewOutput(env, tensor.Float32, out)
	if err != nil {
		return nil, err
	}
	planes := x.Shape[0] * x.Shape[1]
	if planes == 0 {
		return env.One(y), nil
	}
	j := globalJobs.Get().(*globalJob)
	j.max, j.hw, j.x, j.y = k.max, hw, x.Float32s(), y.Float32s()
	cpu.DynamicFor(planes, max(1, 4096/(hw*cpu.Block)), j.run)
	j.x, j.y = nil, nil
	globalJobs.Put(j)
	return env.One(y), nil
}

func (k *globalPoolKernel) outShape(x []int) []int {
	if s := k.last.Load(); s != nil && equal(s.in, x) {
		return s.out
	}
	out := []int{x[0], x[1], 1, 1, cpu.Block}
	k.last.Store(&reorderShape{in: append([]int(nil), x...), out: out})
	return out
}

// globalJob is a blocked global pool's parallel loop over planes, pooled
// with its bound method so that a run allocates no closure.
type globalJob struct {
	max  bool
	hw   int
	x, y []float32
	run  func(lo, hi int)
}

var globalJobs = sync.Pool{New: func() any {
	j := &globalJob{}
	j.run = j.do
	return j
}}

func (j *globalJob) do(lo, hi int) {
	size := j.hw * cpu.Block
	// planes [lo, hi) as one row of outputs whose windows are the planes
	cpu.BlockedPoolRow(j.y[lo*cpu.Block:hi*cpu.Block], j.x[lo*size:hi*size], hi-lo, 1, j.hw, size, 0, cpu.Block, !j.max, 1/float32(j.hw))
}

func prepareBlockedWindowPool(avg bool) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseBlockedPoolAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		ref, err := ops.Prepare(n, opset)
		if err != nil {
			return nil, err
		}
		w, ok := ref.(poolWindows)
		if !ok {
			return nil, fmt.Errorf("kernels: the reference kernel of %s (%T) gives no windows", n.OpType, ref)
		}
		return &blockedPoolKernel{Kernel: ref, win: w, op: n.OpType, avg: avg, includePad: avg && a.CountIncludePad}, nil
	}
}

// blockedPoolKernel is the fast Run of kiln::BlockedMaxPool and
// kiln::BlockedAveragePool; Infer is the reference kernel's.
type blockedPoolKernel struct {
	ops.Kernel
	win        poolWindows
	op         string
	avg        bool
	includePad bool
	setup      atomic.Pointer[blockedPoolSetup]
}

// blockedPoolSetup is a blocked pool's geometry for one input shape; read
// only.
type blockedPoolSetup struct {
	x      []int
	rows   []nn.Span // the windows of each output row
	cols   []nn.Span // and column
	dh, dw int
	// the output columns [j0, j1) have every tap of their kw-wide window
	// inside the input, stepping sw columns
	j0, j1, kw, sw int
	out            []int
}

// geometry resolves the windows of input shape x (the reference's
// PoolWindows, errors included).
func (k *blockedPoolKernel) geometry(x []int) (*blockedPoolSetup, error) {
	g, out, err := k.win.PoolWindows(x)
	if err != nil {
		return nil, err
	}
	sp, _, dil := g.Spans()
	s := &blockedPoolSetup{x: slices.Clone(x), rows: sp[1], cols: sp[2], dh: dil[1], dw: dil[2], out: out}
	s.kw, s.sw = g.Kernel[1], g.Stride[1]
	s.j0, s.j1 = len(s.cols), len(s.cols)
	for oj, c := range s.cols {
		if c.Lo == 0 && c.Hi == s.kw {
			if s.j0 == len(s.cols) {
				s.j0 = oj
			}
			s.j1 = oj + 1
		}
	}
	return s, nil
}

func (k *blockedPoolKernel) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) != 1 || in[0] == nil {
		return nil, fmt.Errorf("%w: %s takes 1 input, got %d", ops.ErrBadInput, k.op, len(in))
	}
	x := in[0]
	if x.DType != tensor.Float32 || x.Rank() != 5 || x.Shape[4] != cpu.Block {
		return nil, fmt.Errorf("%w: %s of %v %v, want a float32 blocked [N, C/%d, H, W, %d]", ops.ErrBadInput, k.op, x.DType, x.Shape, cpu.Block, cpu.Block)
	}
	s := k.setup.Load()
	if s == nil || !slices.Equal(s.x, x.Shape) {
		var err error
		if s, err = k.geometry(x.Shape); err != nil {
			return nil, err
		}
		k.setup.Store(s)
	}
	y, err := ops.NewOutput(env, tensor.Float32, s.out)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	if y.Len() == 0 {
		return env.One(y), nil
	}
	j := windowJobs.Get().(*blockedPoolJob)
	j.k, j.s, j.x, j.y = k, s, x.Float32s(), y.Float32s()
	j.h, j.w = x.Shape[2], x.Shape[3]
	oh, ow := len(s.rows), len(s.cols)
	// bands of output rows of about 2K output floats a range
	j.band = max(1, min(oh, 2048/(ow*cpu.Block)))
	j.bands = (oh + j.band - 1) / j.band
	cpu.DynamicFor(x.Shape[0]*x.Shape[1]*j.bands, 1, j.run)
	j.k, j.s, j.x, j.y = nil, nil, nil, nil
	windowJobs.Put(j)
	return env.One(y), nil
}

// blockedPoolJob is a blocked pool's parallel loop over (image, block,
// band of output rows), pooled with its bound method so that a run
// allocates no closure.
type blockedPoolJob struct {
	k           *blockedPoolKernel
	s           *blockedPoolSetup
	x, y        []float32
	h, w        int
	band, bands int
	run         func(lo, hi int)
}

var windowJobs = sync.Pool{New: func() any {
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
	avg := j.k.avg
	incl := j.k.includePad
	rs, cs := s.dh*j.w*blockLanes, s.dw*blockLanes
	for it := lo; it < hi; it++ {
		plane, b := it/j.bands, it%j.bands
		xp := j.x[plane*inPlane : (plane+1)*inPlane]
		yp := j.y[plane*outPlane : (plane+1)*outPlane]
		for oi := b * j.band; oi < min(oh, (b+1)*j.band); oi++ {
			r := s.rows[oi]
			kh := r.Hi - r.Lo
			yr := yp[oi*ow*blockLanes : (oi+1)*ow*blockLanes]
			if kh <= 0 { // only an average pool's window may hold no pixel
				clear(yr)
				continue
			}
			xr := xp[(r.Start+r.Lo*s.dh)*j.w*blockLanes:]
			// one pixel whose window is cut by the pads
			edge := func(oj int) {
				c := s.cols[oj]
				kw := c.Hi - c.Lo
				if kw <= 0 {
					clear(yr[oj*blockLanes : (oj+1)*blockLanes])
					return
				}
				n := kh * kw
				if incl {
					n = r.Count * c.Count
				}
				cpu.BlockedPoolRow(yr[oj*blockLanes:], xr[(c.Start+c.Lo*s.dw)*blockLanes:], 1, kh, kw, 0, rs, cs, avg, 1/float32(n))
			}
			for oj := 0; oj < s.j0; oj++ {
				edge(oj)
			}
			if s.j1 > s.j0 {
				n := kh * s.kw
				if incl {
					n = r.Count * s.kw
				}
				cpu.BlockedPoolRow(yr[s.j0*blockLanes:], xr[s.cols[s.j0].Start*blockLanes:], s.j1-s.j0, kh, s.kw, s.sw*blockLanes, rs, cs, avg, 1/float32(n))
			}
			for oj := max(s.j0, s.j1); oj < ow; oj++ {
				edge(oj)
			}
		}
	}
}
