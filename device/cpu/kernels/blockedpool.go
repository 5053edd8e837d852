package kernels

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// kiln's blocked global pools (ops/nn/blockedpool.go defines them, their
// inference and a serial reference): [N, Cb, H, W, 16] -> [N, Cb, 1, 1, 16],
// the planes split over the cores, each reduced by cpu.BlockedPoolRow
// (AVX-512 where the machine has it).
var blockedPoolKernels = []Def{
	{Name: "cpu.BlockedGlobalAveragePool", Domain: "kiln", Type: "BlockedGlobalAveragePool", Types: []tensor.DType{tensor.Float32},
		Prepare: prepareGlobalPool(false)},
	{Name: "cpu.BlockedGlobalMaxPool", Domain: "kiln", Type: "BlockedGlobalMaxPool", Types: []tensor.DType{tensor.Float32},
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
