package kernels

import (
	"fmt"
	"sync/atomic"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// The reorders of kiln's blocked layout (ops/nn/blocked.go defines the
// ops, their inference and their reference loops): kiln::ToBlocked
// [N, C, H, W] -> [N, ceil(C/16), H, W, 16] and kiln::FromBlocked back,
// run by cpu.ToBlocked and cpu.FromBlocked (vector code, large tensors
// split over the cores).
// float32Or16 is the Types of the kernels of kiln's blocked ops: float32,
// and float16 through the float16 adapter (Prepare), as the ops' own
// kernels ran it (FP16 plans keep the blocked layout).
var float32Or16 = []tensor.DType{tensor.Float32, tensor.Float16}

var blockedReorderKernels = []Def{
	{Name: "cpu.ToBlocked", Domain: "kiln", Type: "ToBlocked", Types: float32Or16,
		Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
			ref, err := ops.Prepare(n, opset)
			if err != nil {
				return nil, err
			}
			return &reorderKernel{Kernel: ref, to: true}, nil
		}},
	{Name: "cpu.FromBlocked", Domain: "kiln", Type: "FromBlocked", Types: float32Or16,
		Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
			a, err := ops.ParseFromBlockedAttrs(n, opset)
			if err != nil {
				return nil, err
			}
			ref, err := ops.Prepare(n, opset)
			if err != nil {
				return nil, err
			}
			return &reorderKernel{Kernel: ref, channels: int(a.Channels)}, nil
		}},
}

// reorderKernel is the fast Run of ToBlocked (to) or FromBlocked of
// channels channels; Infer is the reference kernel's.
type reorderKernel struct {
	ops.Kernel
	to       bool
	channels int
	// last is the output shape of the last input shape seen (a run at the
	// same shapes allocates nothing).
	last atomic.Pointer[reorderShape]
}

type reorderShape struct{ in, out []int }

func (k *reorderKernel) outShape(x []int) []int {
	if s := k.last.Load(); s != nil && equal(s.in, x) {
		return s.out
	}
	var out []int
	if k.to {
		out = []int{x[0], cpu.Blocks(x[1]), x[2], x[3], cpu.Block}
	} else {
		out = []int{x[0], k.channels, x[2], x[3]}
	}
	k.last.Store(&reorderShape{in: append([]int(nil), x...), out: out})
	return out
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (k *reorderKernel) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	op := "FromBlocked"
	if k.to {
		op = "ToBlocked"
	}
	if len(in) != 1 || in[0] == nil {
		return nil, fmt.Errorf("%w: %s takes 1 input, got %d", ops.ErrBadInput, op, len(in))
	}
	x := in[0]
	if x.DType != tensor.Float32 {
		return nil, fmt.Errorf("%w: %s of %v, want float32", ops.ErrBadInput, op, x.DType)
	}
	if k.to && x.Rank() != 4 {
		return nil, fmt.Errorf("%w: ToBlocked input %v, want [N, C, H, W]", ops.ErrBadInput, x.Shape)
	}
	if !k.to && (x.Rank() != 5 || x.Shape[4] != cpu.Block || x.Shape[1] != cpu.Blocks(k.channels)) {
		return nil, fmt.Errorf("%w: FromBlocked of %d channels: input %v, want [N, %d, H, W, %d]", ops.ErrBadInput, k.channels, x.Shape, cpu.Blocks(k.channels), cpu.Block)
	}
	y, err := ops.NewOutput(env, tensor.Float32, k.outShape(x.Shape))
	if err != nil {
		return nil, err
	}
	if y.Len() > 0 {
		if k.to {
			cpu.ToBlocked(x.Shape[0], x.Shape[1], x.Shape[2]*x.Shape[3], x.Float32s(), y.Float32s())
		} else {
			cpu.FromBlocked(x.Shape[0], k.channels, x.Shape[2]*x.Shape[3], x.Float32s(), y.Float32s())
		}
	}
	return env.One(y), nil
}
