package nn

import (
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
// -Inf, which would reach the pad lanes) is refused. Its Run is the
// reference (a plain loop); the engine runs the CPU registry's
// (device/cpu/kernels), with the windows of PoolWindows.
type blockedPoolOp struct {
	name       string
	kind       poolKind
	win        window
	includePad bool
	shapes     poolGeomCache // the windows and output shape of the last shape
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
		if _, _, err := k.geometry([]int{1, 1, int(h.Val), int(w.Val), blockLanes}); err != nil {
			return nil, err
		}
	}
	return []ir.Type{{DType: tensor.Float32, Shape: ir.Shape{xs[0], xs[1], sp[0], sp[1], ir.D(blockLanes)}}}, nil
}

// geometry resolves the windows of input shape x ([N, Cb, H, W, 16]) and
// the output shape (cached for the last shape).
func (k *blockedPoolOp) geometry(x []int) (*PoolGeometry, []int, error) {
	if e := k.shapes.get(x); e != nil {
		return e.g, e.out, nil
	}
	rg, err := k.win.resolve(x[2:4], nil)
	if err != nil {
		return nil, nil, err
	}
	g := poolGeometry(rg)
	if k.kind == poolMax {
		sp, _, _ := g.Spans()
		for _, r := range sp[1] {
			for _, c := range sp[2] {
				if r.Lo >= r.Hi || c.Lo >= c.Hi {
					return nil, nil, badInput("%s: a window (kernel %v, pads %v, dilations %v) over input %dx%d holds only padding", k.name, g.Kernel, k.win.pads, g.Dil, x[2], x[3])
				}
			}
		}
	}
	out := []int{x[0], x[1], g.Out[0], g.Out[1], blockLanes}
	if _, err := checkedNumel(out); err != nil {
		return nil, nil, err
	}
	k.shapes.put(x, g, out)
	return g, out, nil
}

func (k *blockedPoolOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs(k.name, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if err := checkBlockedTensor(k.name, x); err != nil {
		return nil, err
	}
	g, out, err := k.geometry(x.Shape)
	if err != nil {
		return nil, err
	}
	y, err := newOut(env, tensor.Float32, out)
	if err != nil {
		return nil, err
	}
	// the reference: every output pixel's 16 lanes reduced over the taps
	// of its window, in order
	sp, _, dil := g.Spans()
	h, w := x.Shape[2], x.Shape[3]
	oh, ow := len(sp[1]), len(sp[2])
	xv, yv := x.Float32s(), y.Float32s()
	for plane := range x.Shape[0] * x.Shape[1] {
		xp := xv[plane*h*w*blockLanes : (plane+1)*h*w*blockLanes]
		yp := yv[plane*oh*ow*blockLanes : (plane+1)*oh*ow*blockLanes]
		for oi, r := range sp[1] {
			for oj, c := range sp[2] {
				o := yp[(oi*ow+oj)*blockLanes : (oi*ow+oj+1)*blockLanes]
				n := (r.Hi - r.Lo) * (c.Hi - c.Lo)
				if k.includePad {
					n = r.Count * c.Count
				}
				for l := range o {
					var acc float32
					first := true
					for i := r.Lo; i < r.Hi; i++ {
						for j := c.Lo; j < c.Hi; j++ {
							v := xp[((r.Start+i*dil[1])*w+c.Start+j*dil[2])*blockLanes+l]
							switch {
							case first:
								acc, first = v, false
							case k.kind == poolMax:
								acc = max(acc, v)
							default:
								acc += v
							}
						}
					}
					if k.kind == poolAvg && n > 0 {
						acc *= 1 / float32(n)
					}
					o[l] = acc // 0 for an average window with no pixel
				}
			}
		}
	}
	return env.One(y), nil
}

// blockLanes is cpu.Block, the lanes of one pixel's block.
const blockLanes = cpu.Block

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
