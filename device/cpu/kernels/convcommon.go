package kernels

import (
	"fmt"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/internal/fastmath"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/nn"
	"github.com/kilnai/kiln/tensor"
)

// What the convolutions' fast kernels (fusedconv.go, blockedconv.go and
// the tactics conv*.go, blockedwino.go) share: the helpers of package ops
// under the names they had in ops/nn, and the epilogue.

var (
	badInput   = ops.BadInput
	needInputs = ops.Need[tensor.Tensor]
	input      = ops.Arg[tensor.Tensor]
	value      = ops.Arg[ir.Value]
)

// The activation names of the fused ops (ops/nn's).
const (
	actNone = nn.ActNone
	actRelu = nn.ActRelu
	actClip = nn.ActClip
	actSiLU = nn.ActSiLU
)

// newOut is ops.NewOutput with shape errors as bad input: with an engine's
// allocator the tensor comes from its arena, not zeroed, so the kernel must
// write every element.
func newOut(env *ops.Env, dt tensor.DType, shape []int) (*tensor.Tensor, error) {
	t, err := ops.NewOutput(env, dt, shape)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	return t, nil
}

// epilogue is a parsed activation: the convolutions' form of
// ops.EpilogueAttrs (ops.EpilogueAttrs.ApplySerial is its one definition).
type epilogue struct {
	act    string
	p0, p1 float32
}

// epilogueOf is the kernels' form of the typed epilogue.
func epilogueOf(e ops.EpilogueAttrs) epilogue {
	return epilogue{act: e.Activation, p0: e.P0, p1: e.P1}
}

// grain returns the parallel grain of the activation (matmul.go's
// epilogueGrain).
func (e epilogue) grain() int { return epilogueGrain(e.attrs()) }

func (e epilogue) attrs() ops.EpilogueAttrs {
	return ops.EpilogueAttrs{Activation: e.act, P0: e.p0, P1: e.p1}
}

// apply runs the activation over y in place, split over cpu.ParallelFor.
func (e epilogue) apply(y []float32) { epilogueApply(e.attrs(), y) }

// applyAdd adds z to y (of the same length) and runs the activation, in one
// pass split over cpu.ParallelFor. A pass one goroutine takes runs here
// without the closure (which would escape to the pool's workers: a heap
// allocation per call).
func (e epilogue) applyAdd(y, z []float32) {
	zs := z[:len(y)]
	grain := min(e.grain(), ops.ElemGrain/2)
	if len(y) <= grain || cpu.Threads() == 1 {
		fastmath.ScaleAdd(y, y, 1, zs) // y*1 + z rounds once, as y + z does
		e.applySerial(y)
		return
	}
	cpu.ParallelFor(len(y), grain, func(lo, hi int) {
		yc := y[lo:hi]
		fastmath.ScaleAdd(yc, yc, 1, zs[lo:hi])
		e.applySerial(yc)
	})
}

// applySerial runs the activation over y in place on the caller's
// goroutine.
func (e epilogue) applySerial(y []float32) {
	ops.EpilogueAttrs{Activation: e.act, P0: e.p0, P1: e.p1}.ApplySerial(y)
}

// scratchAdd counts the convolutions' own buffers and packed filters for
// the builder's workspace limit (ops.ScratchMeter), in ops/nn's counter.
func scratchAdd(n int64) { nn.ScratchAdd(n) }
