package kernels

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/nn"
	"github.com/kilnai/kiln/tensor"
)

// The fast kernels of ONNX MaxPool and AveragePool (1-D and 2-D, no
// argmax output) and of float32 GlobalAveragePool and GlobalMaxPool.
// ops/nn defines the ops (attributes, windows, inference) and keeps a
// plain reference loop; the windows come from the reference kernel
// (nn.PoolGeometry), so a node's windows mean the same on either path.
//
// A 2-D float32 window goes to the first of poolRegPlanes (stride-2 and
// stride-1 windows in registers, poolregs_amd64.s), maxPoolPlanes (a whole
// MaxPool plane per call, poolfast_amd64.s), poolFast2D (a vertical and a
// horizontal pass per output row) that takes it; every other 1-D or 2-D
// window, and float64, float16/bfloat16 and int8/uint8 MaxPool, to the
// separable passes of poolSep. LpPool, 3-D windows and MaxPool's indices
// output stay with the reference.
var poolKernels = []Def{
	{Name: "cpu.MaxPool", Type: "MaxPool", Check: checkPool,
		Types:   []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16, tensor.BFloat16, tensor.Int8, tensor.Uint8},
		Prepare: preparePool(poolMax)},
	{Name: "cpu.AveragePool", Type: "AveragePool", Check: checkPool,
		Types:   []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16, tensor.BFloat16},
		Prepare: preparePool(poolAvg)},
	{Name: "cpu.GlobalAveragePool", Type: "GlobalAveragePool", Types: []tensor.DType{tensor.Float32},
		Prepare: prepareGlobalPoolF32(poolAvg)},
	{Name: "cpu.GlobalMaxPool", Type: "GlobalMaxPool", Types: []tensor.DType{tensor.Float32},
		Prepare: prepareGlobalPoolF32(poolMax)},
}

// poolKind says what a pooling kernel computes over its windows.
type poolKind int

const (
	poolMax poolKind = iota
	poolAvg
	poolLp // the kind of no fast kernel; the fast paths decline it
)

// checkPool refuses what the fast kernels leave to the reference:
// MaxPool's indices output and windows of more than 2 spatial dims.
func checkPool(n *ir.Node, opset int64) error {
	if len(n.Outputs) > 1 && n.Outputs[1] != nil {
		return fmt.Errorf("the indices output is computed by the reference")
	}
	a, err := ops.ParsePoolAttrs(n, opset)
	if err != nil {
		return err
	}
	if r := len(a.KernelShape); r > 2 {
		return fmt.Errorf("%d-D windows are pooled by the reference", r)
	}
	return nil
}

// poolWindows is what the fast kernels take of the op's reference kernel:
// the windows over an input shape (nn's poolOp).
type poolWindows interface {
	PoolWindows(x []int) (*nn.PoolGeometry, []int, error)
}

func preparePool(kind poolKind) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParsePoolAttrs(n, opset)
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
		return &poolKernel{Kernel: ref, win: w, name: n.OpType, kind: kind, includePad: kind == poolAvg && a.CountIncludePad}, nil
	}
}

// poolKernel is the fast Run of MaxPool and AveragePool; Infer is the
// reference kernel's.
type poolKernel struct {
	ops.Kernel
	win        poolWindows
	name       string
	kind       poolKind
	includePad bool
	shape      atomic.Pointer[poolShape] // the windows of the last input shape
	planes     maxPlaneCache             // maxPoolPlanes' plan of the last shape
	regs       poolRegCache              // poolRegPlanes' plan of the last shape
	fast       poolFastCache             // poolFast2D's plan of the last shape
}

// poolShape is the geometry and output shape of one input shape; read
// only.
type poolShape struct {
	x, out []int
	g      *nn.PoolGeometry
}

func (k *poolKernel) geometry(x []int) (*poolShape, error) {
	if s := k.shape.Load(); s != nil && slices.Equal(s.x, x) {
		return s, nil
	}
	g, out, err := k.win.PoolWindows(x)
	if err != nil {
		return nil, err
	}
	s := &poolShape{x: slices.Clone(x), out: out, g: g}
	k.shape.Store(s)
	return s, nil
}

func (k *poolKernel) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) != 1 || in[0] == nil {
		return k.Kernel.Run(env, in) // the reference's error
	}
	x := in[0]
	switch x.DType {
	case tensor.Float32, tensor.Float64, tensor.Float16, tensor.BFloat16:
	case tensor.Int8, tensor.Uint8:
		if k.kind != poolMax {
			return k.Kernel.Run(env, in)
		}
	default:
		return k.Kernel.Run(env, in)
	}
	s, err := k.geometry(x.Shape)
	if err != nil {
		return nil, err
	}
	g := s.g
	if g.Rank() > 2 {
		return k.Kernel.Run(env, in)
	}
	y, err := ops.NewOutput(env, x.DType, s.out)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	planes := x.Shape[0] * x.Shape[1]
	switch x.DType {
	case tensor.Float32:
		if !poolRegPlanes(k, g, planes, x.Float32s(), y.Float32s()) && !maxPoolPlanes(k, g, planes, x.Float32s(), y.Float32s()) && !poolFast2D(k, g, planes, x.Float32s(), y.Float32s()) {
			poolSep(k, g, planes, x.Float32s(), y.Float32s())
		}
	case tensor.Float64:
		poolSep(k, g, planes, x.Float64s(), y.Float64s())
	case tensor.Float16, tensor.BFloat16:
		yf := make([]float32, y.Len())
		if xf := x.ToFloat32(); !poolRegPlanes(k, g, planes, xf, yf) {
			poolSep(k, g, planes, xf, yf)
		}
		if y, err = fromFloat32(x.DType, s.out, yf); err != nil {
			return nil, err
		}
	case tensor.Int8:
		poolSep(k, g, planes, x.Int8s(), y.Int8s())
	case tensor.Uint8:
		poolSep(k, g, planes, x.Uint8s(), y.Uint8s())
	}
	return env.One(y), nil
}

// fromFloat32 stores v into a new tensor of the 16-bit float type dt.
func fromFloat32(dt tensor.DType, shape []int, v []float32) (*tensor.Tensor, error) {
	out, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, err
	}
	if dt == tensor.BFloat16 {
		h := out.BHalfs()
		for i, x := range v {
			h[i] = tensor.Float32ToBF16(x)
		}
		return out, nil
	}
	h := out.Halfs()
	for i, x := range v {
		h[i] = tensor.Float32ToHalf(x)
	}
	return out, nil
}

// lowest returns the smallest value of T (-Inf for floats).
func lowest[T ops.Number]() T {
	var z T
	switch any(z).(type) {
	case float32:
		return T(math.Inf(-1))
	case float64:
		return T(math.Inf(-1))
	case int8:
		v := int8(math.MinInt8)
		return T(v)
	}
	return 0
}

// floatBufs hands out float32 scratch buffers (contents undefined).
type floatBufs struct{ p sync.Pool }

func (b *floatBufs) get(n int) *[]float32 {
	if v, ok := b.p.Get().(*[]float32); ok && cap(*v) >= n {
		*v = (*v)[:n]
		return v
	}
	s := make([]float32, n)
	return &s
}

func (b *floatBufs) put(v *[]float32) { b.p.Put(v) }

func prepareGlobalPoolF32(kind poolKind) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		ref, err := ops.Prepare(n, opset)
		if err != nil {
			return nil, err
		}
		return &globalPoolF32{Kernel: ref, kind: kind}, nil
	}
}

// globalPoolF32 is the fast Run of float32 GlobalAveragePool and
// GlobalMaxPool (planeSums, planeMax); Infer, and inputs of other types or
// with empty planes, are the reference's.
type globalPoolF32 struct {
	ops.Kernel
	kind  poolKind
	shape atomic.Pointer[reorderShape] // the output shape of the last input shape
}

func (k *globalPoolF32) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) != 1 || in[0] == nil || in[0].DType != tensor.Float32 || in[0].Rank() < 2 {
		return k.Kernel.Run(env, in)
	}
	x := in[0]
	size := tensor.NumElements(x.Shape[2:])
	if size == 0 {
		return k.Kernel.Run(env, in)
	}
	out := k.outShape(x.Shape)
	y, err := ops.NewOutput(env, tensor.Float32, out)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	planes := x.Shape[0] * x.Shape[1]
	if k.kind == poolAvg {
		globalAvgF32(planes, size, x.Float32s(), y.Float32s())
	} else {
		globalMaxF32(planes, size, x.Float32s(), y.Float32s())
	}
	return env.One(y), nil
}

func (k *globalPoolF32) outShape(x []int) []int {
	if s := k.shape.Load(); s != nil && equal(s.in, x) {
		return s.out
	}
	out := append([]int{}, x[:2]...)
	for range x[2:] {
		out = append(out, 1)
	}
	k.shape.Store(&reorderShape{in: slices.Clone(x), out: out})
	return out
}
