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

// blockedConvOp is kiln::BlockedConv: Y = act(Conv(X, W, B) + Z) with X,
// Z and Y blocked (X plain NCHW with input_nchw), computed by
// cpu.BlockedConv2D: Relu and Clip in the kernel, the other activations of
// FusedConv after it (their pad lanes zeroed again where act(0) != 0).
type blockedConvOp struct {
	ref    ops.Kernel
	geo    nn.BlockedConvGeometry
	group  int
	inNCHW bool
	ep     epilogue
	// post: ep runs after the kernel; zeroPad: ep(0) != 0, so it writes
	// pad lanes. (The activation the kernel applies is in the parameters
	// of the geometry.)
	post    bool
	zeroPad bool
	// wConst is the node's constant weights, packed once (packed).
	wConst *tensor.Tensor
	packed struct {
		sync.Mutex
		f *cpu.BlockedFilter
	}
	// setup is the geometry of the last input shape.
	setup atomic.Pointer[blockedConvSetup]
	// wino: the Winograd tactic (blockedwino.go) is set, with the
	// transformed constant weights in wfilt.
	wino  bool
	wfilt struct {
		sync.Mutex
		f *winoFilter
	}
}

// blockedConvSetup is a BlockedConv's geometry for one input shape: the
// packed filter with its parameters (the node's one packing of wConst,
// with P set to this shape's) and the output shape; read only.
type blockedConvSetup struct {
	x, w []int
	f    *cpu.BlockedFilter
	out  []int
}

func prepareBlockedConv(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseBlockedConvAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	ref, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	geo, ok := ref.(nn.BlockedConvGeometry)
	if !ok {
		return nil, fmt.Errorf("the reference kernel %T of kiln::BlockedConv has no geometry", ref)
	}
	k := &blockedConvOp{ref: ref, geo: geo, group: int(a.Group), inNCHW: a.InputNCHW, ep: epilogueOf(a.EpilogueAttrs)}
	switch k.ep.act {
	case actNone, actRelu, actClip:
	default:
		k.post = true
		z := []float32{0}
		k.ep.applySerial(z)
		k.zeroPad = z[0] != 0
	}
	if w := n.Input(1); w != nil && w.Const != nil {
		k.wConst = w.Const
	}
	return k, nil
}

func (k *blockedConvOp) Infer(in []*ir.Value) ([]ir.Type, error) { return k.ref.Infer(in) }

// setupFor returns the geometry and packed filter of inputs x and w: the
// cached one of the last shape, or one made (and cached when w is the
// node's constant weights; weights computed at run time are packed for
// each run).
func (k *blockedConvOp) setupFor(x, w *tensor.Tensor) (*blockedConvSetup, error) {
	if s := k.setup.Load(); s != nil && w == k.wConst && slices.Equal(s.x, x.Shape) && slices.Equal(s.w, w.Shape) {
		return s, nil
	}
	p, out, err := k.geo.BlockedParams(x.Shape, w.Shape)
	if err != nil {
		return nil, err
	}
	s := &blockedConvSetup{x: slices.Clone(x.Shape), w: slices.Clone(w.Shape), out: out}
	if w != k.wConst {
		s.f = cpu.PackBlockedFilter(p, k.inNCHW, w.Float32s())
		return s, nil
	}
	// One packing of the constant weights serves every input shape: the
	// packed layout depends on the weights' shape, the group and the input
	// layout, which the node fixes, not on N, H, W or the window.
	k.packed.Lock()
	base := k.packed.f
	if base == nil {
		base = cpu.PackBlockedFilter(p, k.inNCHW, w.Float32s())
		k.packed.f = base
	}
	k.packed.Unlock()
	f := *base
	f.P = p
	s.f = &f
	k.setup.Store(s)
	return s, nil
}

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
	s, err := k.setupFor(x, w)
	if err != nil {
		return nil, err
	}
	var bias, zs []float32
	if b != nil {
		if b.Rank() != 1 || b.Shape[0] != s.f.P.M {
			return nil, badInput("BlockedConv bias has shape %v, want [%d]", b.Shape, s.f.P.M)
		}
		bias = b.Float32s()
	}
	if z != nil {
		if !slices.Equal(z.Shape, s.out) {
			return nil, badInput("BlockedConv residual has shape %v, output %v", z.Shape, s.out)
		}
		zs = z.Float32s()
	}
	y, err := newOut(env, tensor.Float32, s.out)
	if err != nil {
		return nil, err
	}
	yv := y.Float32s()
	if len(yv) == 0 {
		return env.One(y), nil
	}
	if f := k.winoFilter(s.f.P, w, zs != nil); f != nil {
		blockedWino(s.f.P, f, x.Float32s(), bias, zs, yv)
	} else {
		cpu.BlockedConv2D(s.f, x.Float32s(), bias, zs, yv)
	}
	if k.post {
		blockedEpilogue(k.ep, k.zeroPad, s.f.P.M, s.out[2]*s.out[3], yv)
	}
	return env.One(y), nil
}

// Tactics offers the Winograd tactic (blockedwino.go) beside the blocked
// direct kernel where it applies (blockedWinoOffered).
func (k *blockedConvOp) Tactics(in []*ir.Value) []string {
	if len(in) < 2 || in[0] == nil || in[1] == nil || k.wConst == nil {
		return nil
	}
	xs, ok1 := concreteShape(in[0].Type.Shape)
	ws, ok2 := concreteShape(in[1].Type.Shape)
	if !ok1 || !ok2 {
		return nil
	}
	p, _, err := k.geo.BlockedParams(xs, ws)
	if err != nil || !blockedWinoOffered(p, k.inNCHW, value(in, 3) != nil) {
		return nil
	}
	return []string{blockedDirectTactic, blockedWinoTactic}
}

// SetTactic selects the blocked direct kernel or the Winograd tactic,
// transforming the constant weights for the latter once.
func (k *blockedConvOp) SetTactic(name string) error {
	switch name {
	case blockedDirectTactic:
		k.wino = false
		return nil
	case blockedWinoTactic:
		w := k.wConst
		if w == nil || w.DType != tensor.Float32 || w.Rank() != 4 || k.group != 1 || w.Shape[2] != 3 || w.Shape[3] != 3 {
			return fmt.Errorf("%w: BlockedConv tactic %s needs constant float32 3x3 weights of one group", ops.ErrBadAttr, name)
		}
		k.wfilt.Lock()
		k.wfilt.f = newWinoFilter(w.Float32s(), w.Shape[0], w.Shape[1], false)
		k.wfilt.Unlock()
		k.wino = true
		return nil
	}
	return fmt.Errorf("%w: BlockedConv has no tactic %q (%s, %s)", ops.ErrBadAttr, name, blockedDirectTactic, blockedWinoTactic)
}

// winoFilter returns the transformed weights when the Winograd tactic is
// set and computes this run (the node's constant weights, no residual, a
// geometry it applies to), else nil.
func (k *blockedConvOp) winoFilter(p cpu.Conv2DParams, w *tensor.Tensor, residual bool) *winoFilter {
	if !k.wino || w != k.wConst || !blockedWinoOffered(p, k.inNCHW, residual) {
		return nil
	}
	k.wfilt.Lock()
	f := k.wfilt.f
	k.wfilt.Unlock()
	if !f.fits(p) {
		return nil
	}
	return f
}

// epilogueJob is blockedEpilogue's parallel loop, pooled with its bound
// method so that a run allocates no closure.
type epilogueJob struct {
	ep      epilogue
	zeroPad bool
	// mb blocks of hw pixels an image; lanes from pad on of the last
	// block are pad lanes
	mb, hw, pad int
	y           []float32
	run         func(lo, hi int)
}

var epilogueJobs = sync.Pool{New: func() any {
	j := &epilogueJob{}
	j.run = j.do
	return j
}}

// do runs the activation over pixels [lo, hi) of y and zeroes their pad
// lanes again when the activation wrote them.
func (j *epilogueJob) do(lo, hi int) {
	if y := j.y[lo*cpu.Block : hi*cpu.Block]; j.ep.act == actSiLU {
		convSiLU(y, y) // the convolutions' SiLU: faster than fastmath's (NOTES-blocked.md 4)
	} else {
		j.ep.applySerial(y)
	}
	if !j.zeroPad || j.pad == cpu.Block {
		return
	}
	for px := lo; px < hi; {
		plane := px / j.hw
		end := min(hi, (plane+1)*j.hw)
		if plane%j.mb == j.mb-1 {
			for q := px; q < end; q++ {
				clear(j.y[q*cpu.Block+j.pad : (q+1)*cpu.Block])
			}
		}
		px = end
	}
}

// blockedEpilogue applies ep to the blocked y of m channels and hw pixels
// a plane, its pad lanes left zero.
func blockedEpilogue(ep epilogue, zeroPad bool, m, hw int, y []float32) {
	j := epilogueJobs.Get().(*epilogueJob)
	j.ep, j.zeroPad, j.mb, j.hw, j.y = ep, zeroPad, cpu.Blocks(m), hw, y
	j.pad = m - (cpu.Blocks(m)-1)*cpu.Block
	pixels := len(y) / cpu.Block
	cpu.DynamicFor(pixels, max(1, ep.grain()/cpu.Block), j.run)
	j.y = nil
	epilogueJobs.Put(j)
}
