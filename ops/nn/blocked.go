package nn

import (
	"slices"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// kiln's blocked-layout operators (domain "kiln", written by the
// optimizer's "blocked" pass): an activation [N, C, H, W] kept as
// [N, ceil(C/16), H, W, 16] (cpu.Block channels of a pixel contiguous,
// the channels past C of the last block, its pad lanes, zero) between
// convolutions, so that cpu.BlockedConv2D fills every vector lane whatever
// the plane's width. They compute float32 only, 2-D only:
//
//	ToBlocked(X)             [N, C, H, W] -> [N, Cb, H, W, 16]
//	FromBlocked(X)           [N, Cb, H, W, 16] -> [N, channels, H, W]
//	BlockedConv(X, W, B?, Z?) FusedConv on blocked X, Z and Y (X plain
//	                          NCHW with input_nchw=1)
//	BlockedMaxPool(X), BlockedAveragePool(X), BlockedGlobalAveragePool(X),
//	BlockedGlobalMaxPool(X)   the ONNX pools on blocked tensors
//	                          (blockedpool.go)

// blocksDim is the block count of a channel dim (unknown when it is).
func blocksDim(c ir.Dim) ir.Dim {
	if !c.Known() {
		return ir.U()
	}
	return ir.D(int64(cpu.Blocks(int(c.Val))))
}

// keepSymbolic sets the unknown output dims out of a window over the
// input dims in (kernel k, -1 for unknown) to the input's where the window
// keeps the size whatever it is: a kernel of 1, stride 1, no pads (or
// SAME pads at stride 1, any kernel).
func keepSymbolic(w *window, in ir.Shape, k []int, out ir.Shape) {
	if w.kernel != nil {
		k = w.kernel
	}
	for i := range out {
		if out[i].Known() || at(w.strides, i, 1) != 1 {
			continue
		}
		same := w.autoPad == padSameUpper || w.autoPad == padSameLower
		unit := k != nil && k[i] == 1 && (w.autoPad == padValid || at(w.pads, i, 0) == 0 && at(w.pads, i+len(out), 0) == 0)
		if same || unit {
			out[i] = in[i]
		}
	}
}

// checkFloat32 refuses a value type other than float32 (or unknown).
func checkFloat32(op string, v *ir.Value) error {
	if dt := v.Type.DType; dt != tensor.Undefined && dt != tensor.Float32 {
		return badInput("%s of %v, want float32", op, dt)
	}
	return nil
}

// checkBlockedShape refuses a blocked tensor's shape that is not rank 5
// or whose last dim is known and not cpu.Block.
func checkBlockedShape(op string, s ir.Shape) error {
	if s == nil {
		return nil
	}
	if len(s) != 5 {
		return badInput("%s input %v, want a blocked [N, C/%d, H, W, %d]", op, s, cpu.Block, cpu.Block)
	}
	if d := s[4]; d.Known() && d.Val != cpu.Block {
		return badInput("%s input %v: last dim %d, want %d", op, s, d.Val, cpu.Block)
	}
	return nil
}

// checkBlockedTensor refuses a run-time blocked tensor of the wrong type,
// rank or block size.
func checkBlockedTensor(op string, x *tensor.Tensor) error {
	if x.DType != tensor.Float32 {
		return badInput("%s of %v, want float32", op, x.DType)
	}
	if x.Rank() != 5 || x.Shape[4] != cpu.Block {
		return badInput("%s input %v, want a blocked [N, C/%d, H, W, %d]", op, x.Shape, cpu.Block, cpu.Block)
	}
	return nil
}

// toBlockedOp is kiln::ToBlocked.
type toBlockedOp struct{ shapes shapeCache }

func (k *toBlockedOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("ToBlocked", in, 1); err != nil {
		return nil, err
	}
	if err := checkFloat32("ToBlocked", in[0]); err != nil {
		return nil, err
	}
	xs := in[0].Type.Shape
	var out ir.Shape
	if xs != nil {
		if len(xs) != 4 {
			return nil, badInput("ToBlocked input %v, want [N, C, H, W]", xs)
		}
		out = ir.Shape{xs[0], blocksDim(xs[1]), xs[2], xs[3], ir.D(cpu.Block)}
	}
	return []ir.Type{{DType: tensor.Float32, Shape: out}}, nil
}

func (k *toBlockedOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("ToBlocked", in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if x.DType != tensor.Float32 {
		return nil, badInput("ToBlocked of %v, want float32", x.DType)
	}
	if x.Rank() != 4 {
		return nil, badInput("ToBlocked input %v, want [N, C, H, W]", x.Shape)
	}
	var outShape []int
	if e := k.shapes.get(x.Shape); e != nil {
		outShape = e.out
	} else {
		outShape = []int{x.Shape[0], cpu.Blocks(x.Shape[1]), x.Shape[2], x.Shape[3], cpu.Block}
		k.shapes.put(x.Shape, nil, outShape)
	}
	y, err := newOut(env, tensor.Float32, outShape)
	if err != nil {
		return nil, err
	}
	n, c, hw := x.Shape[0], x.Shape[1], x.Shape[2]*x.Shape[3]
	if y.Len() > 0 {
		reorderRef(true, n, c, hw, x.Float32s(), y.Float32s())
	}
	return env.One(y), nil
}

// fromBlockedOp is kiln::FromBlocked.
type fromBlockedOp struct {
	channels int
	shapes   shapeCache
}

func prepareFromBlocked(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseFromBlockedAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &fromBlockedOp{channels: int(a.Channels)}, nil
}

func (k *fromBlockedOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("FromBlocked", in, 1); err != nil {
		return nil, err
	}
	if err := checkFloat32("FromBlocked", in[0]); err != nil {
		return nil, err
	}
	xs := in[0].Type.Shape
	if err := checkBlockedShape("FromBlocked", xs); err != nil {
		return nil, err
	}
	var out ir.Shape
	if xs != nil {
		if d := xs[1]; d.Known() && int(d.Val) != cpu.Blocks(k.channels) {
			return nil, badInput("FromBlocked of %d channels: input %v has %d blocks, want %d", k.channels, xs, d.Val, cpu.Blocks(k.channels))
		}
		out = ir.Shape{xs[0], ir.D(int64(k.channels)), xs[2], xs[3]}
	}
	return []ir.Type{{DType: tensor.Float32, Shape: out}}, nil
}

func (k *fromBlockedOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("FromBlocked", in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if err := checkBlockedTensor("FromBlocked", x); err != nil {
		return nil, err
	}
	if x.Shape[1] != cpu.Blocks(k.channels) {
		return nil, badInput("FromBlocked of %d channels: input %v has %d blocks, want %d", k.channels, x.Shape, x.Shape[1], cpu.Blocks(k.channels))
	}
	var outShape []int
	if e := k.shapes.get(x.Shape); e != nil {
		outShape = e.out
	} else {
		outShape = []int{x.Shape[0], k.channels, x.Shape[2], x.Shape[3]}
		k.shapes.put(x.Shape, nil, outShape)
	}
	y, err := newOut(env, tensor.Float32, outShape)
	if err != nil {
		return nil, err
	}
	if y.Len() > 0 {
		reorderRef(false, x.Shape[0], k.channels, x.Shape[2]*x.Shape[3], x.Float32s(), y.Float32s())
	}
	return env.One(y), nil
}

// reorderRef is the reference reorder of n images of c channels and hw
// pixels between plain NCHW (x when to, else y) and blocked (the pad lanes
// of the last block zero): plain loops, the oracle of the CPU registry's
// fast kernels (device/cpu/kernels, which call cpu.ToBlocked and
// cpu.FromBlocked and run instead wherever the engine prepares the node).
func reorderRef(to bool, n, c, hw int, x, y []float32) {
	cb := cpu.Blocks(c)
	for b := range n {
		for blk := range cb {
			for p := range hw {
				for l := range cpu.Block {
					ch := blk*cpu.Block + l
					bi := ((b*cb+blk)*hw+p)*cpu.Block + l
					switch {
					case ch >= c && to:
						y[bi] = 0
					case ch >= c:
					case to:
						y[bi] = x[(b*c+ch)*hw+p]
					default:
						y[(b*c+ch)*hw+p] = x[bi]
					}
				}
			}
		}
	}
}

// blockedConvOp is kiln::BlockedConv: Y = act(Conv(X, W, B) + Z) with X,
// Z and Y blocked (X plain NCHW with input_nchw). This is its definition
// (attributes, Infer, the geometry of BlockedParams) and its reference
// kernel, plain loops: X to NCHW, convGeneric, the residual and the
// activation, back to blocked. The fast kernel (cpu.BlockedConv2D and the
// Winograd tactic) is the CPU registry's cpu.BlockedConv
// (device/cpu/kernels), which runs wherever the engine prepares the node.
type blockedConvOp struct {
	win    window
	group  int
	inNCHW bool
	ep     epilogue
	// kact, kmin, kmax: the activation the fast kernel applies in its
	// registers (part of BlockedParams' cpu.Conv2DParams).
	kact       cpu.Activation
	kmin, kmax float32
}

func blockedConvAttrs(n *ir.Node, opset int64) (any, error) {
	return ops.ParseBlockedConvAttrs(n, opset)
}

func prepareBlockedConv(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseBlockedConvAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &blockedConvOp{win: windowOf(&a.WindowAttrs), group: int(a.Group), inNCHW: a.InputNCHW, ep: epilogueOf(a.EpilogueAttrs)}
	switch k.ep.act {
	case ActNone:
	case ActRelu:
		k.kact = cpu.ActRelu
	case ActClip:
		k.kact, k.kmin, k.kmax = cpu.ActClip, k.ep.p0, k.ep.p1
	}
	return k, nil
}

func (k *blockedConvOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("BlockedConv", in, 2); err != nil {
		return nil, err
	}
	for _, v := range in {
		if v != nil {
			if err := checkFloat32("BlockedConv", v); err != nil {
				return nil, err
			}
		}
	}
	xs, ws := in[0].Type.Shape, in[1].Type.Shape
	if xs != nil {
		if k.inNCHW {
			if len(xs) != 4 {
				return nil, badInput("BlockedConv (input_nchw) input %v, want [N, C, H, W]", xs)
			}
		} else if err := checkBlockedShape("BlockedConv", xs); err != nil {
			return nil, err
		}
	}
	if ws != nil {
		if len(ws) != 4 {
			return nil, badInput("BlockedConv weights %v, want [M, C/group, KH, KW]", ws)
		}
		for i, d := range k.win.kernel {
			if ws[i+2].Known() && int(ws[i+2].Val) != d {
				return nil, badInput("BlockedConv kernel_shape %v does not match weights %v", k.win.kernel, ws)
			}
		}
		if k.group > 1 {
			// depthwise only: M == C == group, one channel per group
			if (ws[1].Known() && ws[1].Val != 1) || (ws[0].Known() && int(ws[0].Val) != k.group) {
				return nil, badInput("BlockedConv of weights %v, group %d: a grouped blocked convolution must be depthwise (weights [group, 1, KH, KW])", ws, k.group)
			}
		} else if ws[0].Known() && ws[0].Val < 1 {
			return nil, badInput("BlockedConv weights %v have no output channel", ws)
		}
	}
	if xs != nil && ws != nil && xs[1].Known() && ws[1].Known() {
		c := int(ws[1].Val) * k.group
		if k.inNCHW && int(xs[1].Val) != c {
			return nil, badInput("BlockedConv input %v has %d channels, weights %v want %d", xs, xs[1].Val, ws, c)
		}
		if !k.inNCHW && int(xs[1].Val) != cpu.Blocks(c) {
			return nil, badInput("BlockedConv input %v has %d blocks, weights %v (group %d) want %d", xs, xs[1].Val, ws, k.group, cpu.Blocks(c))
		}
	}
	if b := value(in, 2); b != nil && b.Type.Shape != nil {
		bs := b.Type.Shape
		if len(bs) != 1 || (ws != nil && bs[0].Known() && ws[0].Known() && bs[0].Val != ws[0].Val) {
			return nil, badInput("BlockedConv bias %v for weights %v", bs, ws)
		}
	}
	var out ir.Shape
	if xs != nil || ws != nil {
		out = ir.Shape{ir.U(), ir.U(), ir.U(), ir.U(), ir.D(cpu.Block)}
		var kern []int
		if ws != nil {
			out[1] = blocksDim(ws[0])
			kern = []int{-1, -1}
			for i := range kern {
				if ws[i+2].Known() {
					kern[i] = int(ws[i+2].Val)
				}
			}
		}
		if xs != nil {
			out[0] = xs[0]
			sp, err := k.win.inferDims(xs[2:4], kern)
			if err != nil {
				return nil, err
			}
			out[2], out[3] = sp[0], sp[1]
			keepSymbolic(&k.win, xs[2:4], kern, out[2:4])
		} else if err := k.win.check(2); err != nil {
			return nil, err
		}
	}
	if z := value(in, 3); z != nil && z.Type.Shape != nil {
		zs := z.Type.Shape
		if err := checkBlockedShape("BlockedConv residual", zs); err != nil {
			return nil, err
		}
		for i := range zs {
			if out != nil && zs[i].Known() && out[i].Known() && zs[i].Val != out[i].Val {
				return nil, badInput("BlockedConv residual %v, output %v", zs, out)
			}
		}
	}
	// the whole convolution, when every size is known
	if xi, ok := xs.Ints(); ok && xs != nil {
		if wi, ok := ws.Ints(); ok && ws != nil {
			if _, _, err := k.params(xi, wi); err != nil {
				return nil, err
			}
		}
	}
	return []ir.Type{{DType: tensor.Float32, Shape: out}}, nil
}

// params returns the cpu.Conv2DParams (with the kernel's activation) and
// output shape of input shape xs and weights ws, or why they cannot run
// as a blocked convolution.
func (k *blockedConvOp) params(xs, ws []int) (cpu.Conv2DParams, []int, error) {
	var p cpu.Conv2DParams
	if k.inNCHW && len(xs) != 4 {
		return p, nil, badInput("BlockedConv (input_nchw) input %v, want [N, C, H, W]", xs)
	}
	if !k.inNCHW && (len(xs) != 5 || xs[4] != cpu.Block) {
		return p, nil, badInput("BlockedConv input %v, want a blocked [N, C/%d, H, W, %d]", xs, cpu.Block, cpu.Block)
	}
	if len(ws) != 4 {
		return p, nil, badInput("BlockedConv weights %v, want [M, C/group, KH, KW]", ws)
	}
	c := ws[1] * k.group
	if k.inNCHW && xs[1] != c || !k.inNCHW && xs[1] != cpu.Blocks(c) {
		return p, nil, badInput("BlockedConv input %v does not hold the %d channels of weights %v (group %d)", xs, c, ws, k.group)
	}
	if ws[0]%k.group != 0 {
		return p, nil, badInput("BlockedConv has %d output channels, not a multiple of group %d", ws[0], k.group)
	}
	for i, d := range k.win.kernel {
		if ws[i+2] != d {
			return p, nil, badInput("BlockedConv kernel_shape %v does not match weights %v", k.win.kernel, ws)
		}
	}
	var g geom
	if err := k.win.resolveInto(&g, xs[2:4], ws[2:4]); err != nil {
		return p, nil, err
	}
	p = cpu.Conv2DParams{
		N: xs[0], C: c, H: xs[2], W: xs[3], M: ws[0], KH: ws[2], KW: ws[3],
		Group: k.group, StrideH: g.stride[0], StrideW: g.stride[1], DilH: g.dil[0], DilW: g.dil[1],
		PadTop: g.padB[0], PadLeft: g.padB[1], PadBottom: g.padE[0], PadRight: g.padE[1],
		Act: k.kact, ActMin: k.kmin, ActMax: k.kmax,
	}
	if err := cpu.BlockedSupported(p, k.inNCHW); err != nil {
		return p, nil, badInput("BlockedConv: %v", err)
	}
	if p.OutH() != g.out[0] || p.OutW() != g.out[1] {
		return p, nil, badInput("BlockedConv input %v, weights %v: output %dx%d, window %v", xs, ws, p.OutH(), p.OutW(), g.out)
	}
	out := []int{p.N, cpu.Blocks(p.M), p.OutH(), p.OutW(), cpu.Block}
	if _, err := checkedNumel(out); err != nil {
		return p, nil, err
	}
	return p, out, nil
}

// BlockedParams returns the cpu.Conv2DParams (with the activation the
// fast kernel applies in its registers) and the output shape of input
// shape xs and weights ws, or why they cannot run as a blocked
// convolution: the geometry the CPU registry's cpu.BlockedConv runs.
func (k *blockedConvOp) BlockedParams(xs, ws []int) (cpu.Conv2DParams, []int, error) {
	return k.params(xs, ws)
}

// Run is the reference: plain loops over NCHW copies (Z, which may be Y's
// memory, is read before Y is written).
func (k *blockedConvOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("BlockedConv", in, 2); err != nil {
		return nil, err
	}
	x, w, b, z := in[0], in[1], input(in, 2), input(in, 3)
	for _, t := range []*tensor.Tensor{x, w, b, z} {
		if t != nil && t.DType != tensor.Float32 {
			return nil, badInput("BlockedConv of %v, want float32", t.DType)
		}
	}
	p, out, err := k.params(x.Shape, w.Shape)
	if err != nil {
		return nil, err
	}
	var bias []float32
	if b != nil {
		if b.Rank() != 1 || b.Shape[0] != p.M {
			return nil, badInput("BlockedConv bias has shape %v, want [%d]", b.Shape, p.M)
		}
		bias = b.Float32s()
	}
	if z != nil && !slices.Equal(z.Shape, out) {
		return nil, badInput("BlockedConv residual has shape %v, output %v", z.Shape, out)
	}
	oh, ow := p.OutH(), p.OutW()
	xn := x.Float32s()
	if !k.inNCHW {
		xn = make([]float32, p.N*p.C*p.H*p.W)
		reorderRef(false, p.N, p.C, p.H*p.W, x.Float32s(), xn)
	}
	g, err := k.win.resolve([]int{p.H, p.W}, w.Shape[2:])
	if err != nil {
		return nil, err
	}
	yn := make([]float32, p.N*p.M*oh*ow)
	convGeneric(&convShape{n: p.N, c: p.C, m: p.M, group: k.group, g: g}, xn, w.Float32s(), bias, yn)
	if z != nil {
		zn := make([]float32, len(yn))
		reorderRef(false, p.N, p.M, oh*ow, z.Float32s(), zn)
		for i := range yn {
			yn[i] += zn[i]
		}
	}
	k.ep.applySerial(yn)
	y, err := newOut(env, tensor.Float32, out)
	if err != nil {
		return nil, err
	}
	reorderRef(true, p.N, p.M, oh*ow, yn, y.Float32s())
	return env.One(y), nil
}

func init() {
	ops.Register(ops.Def{Domain: FusedDomain, Type: "ToBlocked", Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return &toBlockedOp{}, nil }})
	ops.Register(ops.Def{Domain: FusedDomain, Type: "FromBlocked",
		Attrs:   func(n *ir.Node, opset int64) (any, error) { return ops.ParseFromBlockedAttrs(n, opset) },
		Prepare: prepareFromBlocked})
	ops.Register(ops.Def{Domain: FusedDomain, Type: "BlockedConv", Attrs: blockedConvAttrs, Prepare: prepareBlockedConv,
		// cpu.BlockedConv2D allows z == y and the epilogue reads only y
		Traits: ops.OverwritesResidual})
}
