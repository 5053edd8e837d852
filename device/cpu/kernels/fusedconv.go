package kernels

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/nn"
	"github.com/kilnai/kiln/tensor"
)

// fusedConvOp is kiln::FusedConv's fast kernel (cpu.FusedConv): Y =
// act(Conv(X, W, B) + Z), float32 only. The op's definition and its
// reference kernel are ops/nn's (fusedconv.go): Infer and the geometry
// (nn.ConvGeometry) are the reference's.
//
// It is ops.Tactical: 2-D convolutions can run each of the algorithms of
// cpu.Conv2DWith that applies to them (tactic names are cpu.ConvAlgo
// values), and im2col with each candidate GEMM blocking of cpu.Blockings
// ("im2col-mc144-kc256-nc1024", see cpu.Conv2DBlocked); without a tactic
// cpu.Conv2D picks the algorithm by shape.
type fusedConvOp struct {
	ref   ops.Kernel
	geo   nn.ConvGeometry
	group int
	ep    epilogue
	// tactic is the algorithm SetTactic chose; "" lets cpu.Conv2D pick.
	// blk, when not nil, is the GEMM blocking of ConvIm2col.
	tactic cpu.ConvAlgo
	blk    *cpu.Blocking
	// direct is set by the "direct" tactic (convDirect); the packed
	// weights of wConst are made when it is set.
	direct bool
	dfilt  struct {
		sync.Mutex
		f *directFilter
	}
	// wConst is the constant weight tensor of the node, if any: the
	// transformed Winograd filter is cached while Run gets this tensor.
	wConst *tensor.Tensor
	wino   struct {
		sync.Mutex
		f *cpu.WinogradFilter
	}
	// winoD is set by the "winograd4x4-direct" and "winograd4x4-cl"
	// tactics (convWino; winoCl: the latter); the transformed weights of
	// wConst are made when it is set.
	winoD, winoCl bool
	wfilt         struct {
		sync.Mutex
		f *winoFilter
	}
	// cl is set by the "direct-cl" tactic (convCL); the packed weights of
	// wConst are made when it is set.
	cl    bool
	cfilt struct {
		sync.Mutex
		f *clFilter
	}
	// gemmT is set by the "gemm-t" tactic (convGemmT); the packed
	// weights of wConst are made when it is set.
	gemmT bool
	gfilt struct {
		sync.Mutex
		f *gemmTFilter
	}
}

var _ ops.Tactical = (*fusedConvOp)(nil)

func prepareFusedConv(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseFusedConvAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	ref, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	geo, ok := ref.(nn.ConvGeometry)
	if !ok {
		return nil, fmt.Errorf("the reference kernel %T of kiln::FusedConv has no geometry", ref)
	}
	k := &fusedConvOp{ref: ref, geo: geo, group: int(a.Group), ep: epilogueOf(a.EpilogueAttrs)}
	if w := n.Input(1); w != nil {
		k.wConst = w.Const
	}
	return k, nil
}

func (k *fusedConvOp) Infer(in []*ir.Value) ([]ir.Type, error) { return k.ref.Infer(in) }

// Tactics returns the names of the cpu.ConvAlgo values that compute the
// node, the one cpu.Conv2D picks first, for a float32 2-D convolution whose
// input and weight shapes are known (nil otherwise, or when only one
// applies).
func (k *fusedConvOp) Tactics(in []*ir.Value) []string {
	if len(in) < 2 || in[0] == nil || in[1] == nil || in[0].Type.DType != tensor.Float32 {
		return nil
	}
	xs, ok1 := concreteShape(in[0].Type.Shape)
	ws, ok2 := concreteShape(in[1].Type.Shape)
	if !ok1 || !ok2 || len(xs) != 4 || len(ws) != 4 {
		return nil
	}
	s, ok := k.geo.ConvShapeOf(xs, ws)
	if !ok {
		return nil
	}
	p, ok := s.Conv2D()
	if !ok {
		return nil
	}
	var names []string
	for _, a := range cpu.ConvAlgos(p) {
		names = append(names, string(a))
	}
	if p.C/p.Group >= 2 && p.M/p.Group >= 2 {
		for _, b := range cpu.Blockings()[1:] {
			names = append(names, im2colTactic(b))
		}
	}
	if directApplies(p) {
		names = append(names, directTactic)
	}
	if winoApplies(p) {
		names = append(names, winoTactic)
		if winoClOffered(p) {
			names = append(names, winoClTactic)
		}
	}
	if clApplies(p) {
		names = append(names, clTactic)
	}
	if gemmTOffered(p) {
		names = append(names, gemmTTactic)
	}
	if len(names) < 2 {
		return nil
	}
	return names
}

// im2colTactic names im2col with the GEMM blocking b.
func im2colTactic(b cpu.Blocking) string { return string(cpu.ConvIm2col) + "-" + b.String() }

// SetTactic selects a cpu.ConvAlgo by name. A convolution the algorithm
// cannot compute at run time (another rank, say) still runs the default.
func (k *fusedConvOp) SetTactic(name string) error {
	k.winoD, k.winoCl, k.cl, k.gemmT = false, false, false, false
	if name == gemmTTactic {
		k.tactic, k.blk, k.direct, k.gemmT = "", nil, false, true
		if w := k.wConst; w != nil && w.DType == tensor.Float32 && w.Rank() == 4 && k.group == 1 {
			k.gfilt.Lock()
			k.gfilt.f = newGemmTFilter(w.Float32s(), w.Shape[0], w.Shape[1], w.Shape[2], w.Shape[3])
			k.gfilt.Unlock()
		}
		return nil
	}
	if name == clTactic {
		k.tactic, k.blk, k.direct, k.cl = "", nil, false, true
		if w := k.wConst; w != nil && w.DType == tensor.Float32 && w.Rank() == 4 && k.group == 1 {
			k.cfilt.Lock()
			k.cfilt.f = newCLFilter(w.Float32s(), w.Shape[0], w.Shape[1], w.Shape[2], w.Shape[3])
			k.cfilt.Unlock()
		}
		return nil
	}
	if name == winoTactic || name == winoClTactic {
		k.tactic, k.blk, k.direct, k.winoD, k.winoCl = "", nil, false, true, name == winoClTactic
		if w := k.wConst; w != nil && w.DType == tensor.Float32 && w.Rank() == 4 && k.group == 1 &&
			w.Shape[2] == 3 && w.Shape[3] == 3 {
			k.wfilt.Lock()
			k.wfilt.f = newWinoFilter(w.Float32s(), w.Shape[0], w.Shape[1], k.winoCl)
			k.wfilt.Unlock()
		}
		return nil
	}
	if name == directTactic {
		k.tactic, k.blk, k.direct = "", nil, true
		if w := k.wConst; w != nil && w.DType == tensor.Float32 && w.Rank() == 4 && k.group == 1 {
			k.dfilt.Lock()
			k.dfilt.f = newDirectFilter(w.Float32s(), w.Shape[0], w.Shape[1], w.Shape[2], w.Shape[3])
			k.dfilt.Unlock()
		}
		return nil
	}
	k.direct = false
	if slices.Contains(cpu.AllConvAlgos(), cpu.ConvAlgo(name)) {
		k.tactic, k.blk = cpu.ConvAlgo(name), nil
		return nil
	}
	if rest, ok := strings.CutPrefix(name, string(cpu.ConvIm2col)+"-"); ok {
		if b, err := cpu.ParseBlocking(rest); err == nil {
			k.tactic, k.blk = cpu.ConvIm2col, &b
			return nil
		}
	}
	return fmt.Errorf("%w: FusedConv has no tactic %q (known: %v, %s, %s, %s, %s, %s, and %s-<blocking> such as %s)",
		ops.ErrBadAttr, name, cpu.AllConvAlgos(), directTactic, winoTactic, winoClTactic, clTactic, gemmTTactic, cpu.ConvIm2col, im2colTactic(cpu.Blockings()[1]))
}

func (k *fusedConvOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("FusedConv", in, 2); err != nil {
		return nil, err
	}
	x, w, b, z := in[0], in[1], input(in, 2), input(in, 3)
	for _, t := range []*tensor.Tensor{x, w, b, z} {
		if t != nil && t.DType != tensor.Float32 {
			return nil, badInput("FusedConv of %v, want float32", t.DType)
		}
	}
	s, outShape, err := k.geo.ConvSetup(x, w, b)
	if err != nil {
		return nil, err
	}
	if z != nil && !slices.Equal(z.Shape, outShape) {
		return nil, badInput("FusedConv residual has shape %v, output %v", z.Shape, outShape)
	}
	y, err := ops.NewOutput(env, tensor.Float32, outShape)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	var bias []float32
	if b != nil {
		bias = b.Float32s()
	}
	// Every path below writes all of y before reading it (y may be arena
	// memory with stale contents).
	yv := y.Float32s()
	p, is2D := s.Conv2D()
	// the epilogue of the direct convolutions below: ReLU and clip in the
	// kernel's registers, the rest after
	directEp := func() (cpu.Conv2DParams, *epilogue, []float32) {
		q := p
		var ep *epilogue
		switch {
		case z == nil && k.ep.act == actNone:
		case z == nil && k.ep.act == actRelu:
			q.Act = cpu.ActRelu
		case z == nil && k.ep.act == actClip:
			q.Act, q.ActMin, q.ActMax = cpu.ActClip, k.ep.p0, k.ep.p1
		default:
			ep = &k.ep
		}
		var zs []float32
		if z != nil {
			zs = z.Float32s()
		}
		return q, ep, zs
	}
	if is2D && k.winoD && winoApplies(p) {
		if f := k.winoFilter(p, w); f != nil {
			if q, ep, zs := directEp(); q.Validate() == nil {
				convWino(q, x.Float32s(), f, bias, yv, zs, ep)
				return env.One(y), nil
			}
		}
	}
	if is2D && k.gemmT && gemmTApplies(p) {
		if f := k.gemmTFilter(p, w); f != nil {
			if q, ep, zs := directEp(); q.Validate() == nil {
				convGemmT(q, x.Float32s(), f, bias, yv, zs, ep)
				return env.One(y), nil
			}
		}
	}
	if is2D && k.cl && clApplies(p) {
		if f := k.clFilter(p, w); f != nil {
			if q, ep, zs := directEp(); q.Validate() == nil {
				convCL(q, x.Float32s(), f, bias, yv, zs, ep)
				return env.One(y), nil
			}
		}
	}
	if is2D && k.direct && directApplies(p) {
		if f := k.directFilter(p, w); f != nil {
			// ReLU and clip run in the kernel's registers; other
			// activations and the residual while the output is copied
			// out of the wide rows.
			var ep *epilogue
			switch {
			case z == nil && k.ep.act == actNone:
			case z == nil && k.ep.act == actRelu:
				p.Act = cpu.ActRelu
			case z == nil && k.ep.act == actClip:
				p.Act, p.ActMin, p.ActMax = cpu.ActClip, k.ep.p0, k.ep.p1
			default:
				ep = &k.ep
			}
			if p.Validate() == nil {
				var zs []float32
				if z != nil {
					zs = z.Float32s()
				}
				convDirect(p, x.Float32s(), f, bias, yv, zs, ep)
				return env.One(y), nil
			}
			p.Act = cpu.ActNone
		}
	}
	if is2D && z == nil {
		// The activations cpu.Conv2D applies itself.
		fused := true
		switch k.ep.act {
		case actNone:
		case actRelu:
			p.Act = cpu.ActRelu
		case actClip:
			p.Act, p.ActMin, p.ActMax = cpu.ActClip, k.ep.p0, k.ep.p1
		default:
			fused = false
		}
		if fused && p.Validate() == nil {
			k.conv2D(p, x, w, bias, yv)
			return env.One(y), nil
		}
		p.Act = cpu.ActNone
	}
	if is2D {
		k.conv2D(p, x, w, bias, yv)
	} else {
		s.Generic(x.Float32s(), w.Float32s(), bias, yv)
	}
	switch {
	case z != nil:
		k.ep.applyAdd(yv, z.Float32s())
	case k.ep.act == actSiLU:
		convSiLUPar(yv)
	default:
		k.ep.apply(yv)
	}
	return env.One(y), nil
}

// conv2D runs the 2-D convolution p with the chosen tactic, or cpu.Conv2D's
// own choice when none is set or it does not apply to p.
func (k *fusedConvOp) conv2D(p cpu.Conv2DParams, x, w *tensor.Tensor, bias, y []float32) {
	a := k.tactic
	switch {
	case a == "" || !cpu.ConvAlgoApplies(a, p):
		cpu.Conv2D(p, x.Float32s(), w.Float32s(), bias, y)
	case a == cpu.ConvIm2col && k.blk != nil:
		cpu.Conv2DBlocked(*k.blk, p, x.Float32s(), w.Float32s(), bias, y)
	case a == cpu.ConvWinograd2 || a == cpu.ConvWinograd4:
		if f := k.winogradFilter(a, p, w); f != nil {
			cpu.Conv2DWinograd(p, x.Float32s(), f, bias, y)
			return
		}
		cpu.Conv2DWith(a, p, x.Float32s(), w.Float32s(), bias, y)
	default:
		cpu.Conv2DWith(a, p, x.Float32s(), w.Float32s(), bias, y)
	}
}

// directTactic names the direct convolution (convDirect).
const directTactic = "direct"

// directFilter returns the packed weights of the direct convolution: those
// made from the node's constant weights when the tactic was set, or, for
// weights computed at run time, packed for this call.
func (k *fusedConvOp) directFilter(p cpu.Conv2DParams, w *tensor.Tensor) *directFilter {
	if w == k.wConst && w != nil {
		k.dfilt.Lock()
		f := k.dfilt.f
		k.dfilt.Unlock()
		if f.fits(p) {
			return f
		}
	}
	if w.Len() != p.M*p.C*p.KH*p.KW {
		return nil
	}
	return newDirectFilter(w.Float32s(), p.M, p.C, p.KH, p.KW)
}

// clFilter returns the packed weights of convCL: those made from the
// node's constant weights when the tactic was set, or, for weights
// computed at run time, packed for this call.
func (k *fusedConvOp) clFilter(p cpu.Conv2DParams, w *tensor.Tensor) *clFilter {
	if w == k.wConst && w != nil {
		k.cfilt.Lock()
		f := k.cfilt.f
		k.cfilt.Unlock()
		if f.fits(p) {
			return f
		}
	}
	if w.Len() != p.M*p.C*p.KH*p.KW {
		return nil
	}
	return newCLFilter(w.Float32s(), p.M, p.C, p.KH, p.KW)
}

// gemmTFilter returns the packed weights of convGemmT: those made from the
// node's constant weights when the tactic was set, or, for weights
// computed at run time, packed for this call.
func (k *fusedConvOp) gemmTFilter(p cpu.Conv2DParams, w *tensor.Tensor) *gemmTFilter {
	if w == k.wConst && w != nil {
		k.gfilt.Lock()
		f := k.gfilt.f
		k.gfilt.Unlock()
		if f.fits(p) {
			return f
		}
	}
	if w.Len() != p.M*p.C*p.KH*p.KW {
		return nil
	}
	return newGemmTFilter(w.Float32s(), p.M, p.C, p.KH, p.KW)
}

// winoFilter returns the transformed weights of convWino: those made from
// the node's constant weights when the tactic was set, or, for weights
// computed at run time, transformed for this call.
func (k *fusedConvOp) winoFilter(p cpu.Conv2DParams, w *tensor.Tensor) *winoFilter {
	if w == k.wConst && w != nil {
		k.wfilt.Lock()
		f := k.wfilt.f
		k.wfilt.Unlock()
		if f.fits(p) && f.cl == k.winoCl {
			return f
		}
	}
	if w.Len() != p.M*p.C*9 {
		return nil
	}
	return newWinoFilter(w.Float32s(), p.M, p.C, k.winoCl)
}

// winogradFilter returns the transformed filter of the node's constant
// weights, made on first use; nil when w is not that constant (then the
// weights are transformed on each run).
func (k *fusedConvOp) winogradFilter(a cpu.ConvAlgo, p cpu.Conv2DParams, w *tensor.Tensor) *cpu.WinogradFilter {
	if w != k.wConst || w == nil {
		return nil
	}
	k.wino.Lock()
	defer k.wino.Unlock()
	if f := k.wino.f; f != nil && f.Algo() == a {
		return f
	}
	f, err := cpu.NewWinogradFilter(a, p, w.Float32s())
	if err != nil {
		return nil
	}
	k.wino.f = f
	return f
}
