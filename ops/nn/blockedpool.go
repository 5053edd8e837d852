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
	out    []int
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

func (k *blockedPoolOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues(k.name, in, 1); err != nil {
		return nil, err
	}
	if err := checkFloat32(k.name, in[0]); err != nil {
		return nil, err
	}
	xs := in[0].Type.Shape
	if err := checkBlockedShape(k.name, xs); err != nil {
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

// vec is one pixel's block of lanes.
type vec = [cpu.Block]float32

// at16 returns the block of lanes at offset o of v.
func at16(v []float32, o int) *vec { return (*vec)(v[o : o+cpu.Block]) }

func (j *blockedPoolJob) do(lo, hi int) {
	s := j.s
	oh, ow := len(s.rows), len(s.cols)
	inPlane, outPlane := j.h*j.w*cpu.Block, oh*ow*cpu.Block
	isMax := j.k.kind == poolMax
	for it := lo; it < hi; it++ {
		plane, b := it/j.bands, it%j.bands
		xp := j.x[plane*inPlane : (plane+1)*inPlane]
		yp := j.y[plane*outPlane : (plane+1)*outPlane]
		for oi := b * j.band; oi < min(oh, (b+1)*j.band); oi++ {
			r := s.rows[oi]
			for oj, c := range s.cols {
				dst := at16(yp, (oi*ow+oj)*cpu.Block)
				if isMax {
					// every window holds an input pixel (geometry)
					acc := *at16(xp, ((r.start+r.lo*s.dh)*j.w+c.start+c.lo*s.dw)*cpu.Block)
					for t := r.lo; t < r.hi; t++ {
						row := (r.start + t*s.dh) * j.w
						for u := c.lo; u < c.hi; u++ {
							v := at16(xp, (row+c.start+u*s.dw)*cpu.Block)
							for l := range acc {
								if v[l] > acc[l] {
									acc[l] = v[l]
								}
							}
						}
					}
					*dst = acc
					continue
				}
				var acc vec
				for t := r.lo; t < r.hi; t++ {
					row := (r.start + t*s.dh) * j.w
					for u := c.lo; u < c.hi; u++ {
						v := at16(xp, (row+c.start+u*s.dw)*cpu.Block)
						for l := range acc {
							acc[l] += v[l]
						}
					}
				}
				n := (r.hi - r.lo) * (c.hi - c.lo)
				if j.k.includePad {
					n = r.count * c.count
				}
				if n == 0 {
					*dst = vec{}
					continue
				}
				d := float32(n)
				for l := range acc {
					dst[l] = acc[l] / d
				}
			}
		}
	}
}

// blockedGlobalPoolOp is kiln::BlockedGlobalAveragePool and
// kiln::BlockedGlobalMaxPool: [N, Cb, H, W, 16] -> [N, Cb, 1, 1, 16], the
// plane's 16-lane vectors summed (or their maximum taken).
type blockedGlobalPoolOp struct {
	name   string
	kind   poolKind
	shapes shapeCache
}

func (k *blockedGlobalPoolOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues(k.name, in, 1); err != nil {
		return nil, err
	}
	if err := checkFloat32(k.name, in[0]); err != nil {
		return nil, err
	}
	xs := in[0].Type.Shape
	if err := checkBlockedShape(k.name, xs); err != nil {
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
	planes := x.Shape[0] * x.Shape[1]
	if planes == 0 {
		return env.One(y), nil
	}
	j := globalJobs.Get().(*blockedGlobalJob)
	j.max, j.hw, j.x, j.y = k.kind == poolMax, hw, x.Float32s(), y.Float32s()
	cpu.DynamicFor(planes, max(1, 4096/(hw*cpu.Block)), j.run)
	j.x, j.y = nil, nil
	globalJobs.Put(j)
	return env.One(y), nil
}

// blockedGlobalJob is a blocked global pool's parallel loop over planes,
// pooled with its bound method so that a run allocates no closure.
type blockedGlobalJob struct {
	max  bool
	hw   int
	x, y []float32
	run  func(lo, hi int)
}

var globalJobs = sync.Pool{New: func() any {
	j := &blockedGlobalJob{}
	j.run = j.do
	return j
}}

func (j *blockedGlobalJob) do(lo, hi int) {
	size := j.hw * cpu.Block
	for pl := lo; pl < hi; pl++ {
		xp := j.x[pl*size : (pl+1)*size]
		dst := at16(j.y, pl*cpu.Block)
		if j.max {
			acc := *at16(xp, 0)
			for o := cpu.Block; o < size; o += cpu.Block {
				v := at16(xp, o)
				for l := range acc {
					if v[l] > acc[l] || acc[l] != acc[l] {
						acc[l] = v[l]
					}
				}
			}
			*dst = acc
			continue
		}
		// two partial sums: fewer dependent adds
		var a0, a1 vec
		o := 0
		for ; o+2*cpu.Block <= size; o += 2 * cpu.Block {
			v0, v1 := at16(xp, o), at16(xp, o+cpu.Block)
			for l := range a0 {
				a0[l] += v0[l]
				a1[l] += v1[l]
			}
		}
		if o < size {
			v := at16(xp, o)
			for l := range a0 {
				a0[l] += v[l]
			}
		}
		d := float32(j.hw)
		for l := range a0 {
			dst[l] = (a0[l] + a1[l]) / d
		}
	}
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
