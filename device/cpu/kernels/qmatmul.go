package kernels

import (
	"math"
	"sync"
	"unsafe"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// kiln::QMatMul (ops/nn/qfused.go defines the op, its inference and
// reference kernel: plain loops in int32): A quantized row by row
// (cpu.QuantizeInt8, rows padded to whole quads), B packed once per int8
// kernel (cpu.PackInt8MatMul), the product and its epilogue (scales, bias,
// residual, Relu/Clip as a clamp) by cpu.Int8MatMul over the cores, other
// activations in a pass after. Inputs the fast path does not take (wrong
// types or shapes, non-finite scales) go to the reference, which says
// what is wrong with them.
var qMatMulKernels = []Def{
	{Name: "cpu.QMatMul", Domain: "kiln", Type: "QMatMul", Types: []tensor.DType{tensor.Float32},
		Prepare: prepareQMatMul},
}

func prepareQMatMul(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseQMatMulAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	ref, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	return &qMatMulKernel{Kernel: ref, aScale: a.AScale, ep: a.EpilogueAttrs}, nil
}

// qMatMulKernel is the fast Run of kiln::QMatMul; Infer and the errors are
// the reference's.
type qMatMulKernel struct {
	ops.Kernel
	aScale float32
	ep     ops.EpilogueAttrs
	cache  int8PackCache[cpu.Int8MatWeights]
}

// int8PackCache holds weights packed at a kernel's first Run, keyed by the
// weight tensor's storage and the int8 kernel they were packed for
// (cpu.Int8ISA), so that a constant W is packed once however many contexts
// run the kernel, and again if the int8 kernel changes.
type int8PackCache[T any] struct {
	mu   sync.Mutex
	data unsafe.Pointer
	n    int
	isa  string
	val  *T
}

// get returns the cached value for w, building it with pack on a miss.
func (c *int8PackCache[T]) get(w *tensor.Tensor, pack func() *T) *T {
	var p unsafe.Pointer
	if len(w.Data) > 0 {
		p = unsafe.Pointer(&w.Data[0])
	}
	isa := cpu.Int8ISA()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.val == nil || c.data != p || c.n != len(w.Data) || c.isa != isa {
		c.val, c.data, c.n, c.isa = pack(), p, len(w.Data), isa
	}
	return c.val
}

// int8Clamp returns the bounds of the activations the int8 epilogue
// applies itself (none, Relu, Clip) and whether it does; other
// activations run after it over the unclamped result.
func int8Clamp(e ops.EpilogueAttrs) (lo, hi float32, ok bool) {
	lo, hi = cpu.NoClamp()
	switch e.Activation {
	case "":
	case "Relu":
		lo = 0
	case "Clip":
		lo, hi = e.P0, e.P1
	default:
		return lo, hi, false
	}
	return lo, hi, true
}

// vectorOf reports whether t is a float32 vector of n elements.
func vectorOf(t *tensor.Tensor, n int) bool {
	return t.DType == tensor.Float32 && t.Rank() == 1 && t.Shape[0] == n
}

func (k *qMatMulKernel) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) < 3 || in[0] == nil || in[1] == nil || in[2] == nil {
		return k.Kernel.Run(env, in)
	}
	a, w, ws := in[0], in[1], in[2]
	var b, z *tensor.Tensor
	if len(in) > 3 {
		b = in[3]
	}
	if len(in) > 4 {
		z = in[4]
	}
	if a.DType != tensor.Float32 || w.DType != tensor.Int8 || w.Rank() != 2 || a.Rank() < 1 || a.Shape[a.Rank()-1] != w.Shape[0] {
		return k.Kernel.Run(env, in)
	}
	kd, nd := w.Shape[0], w.Shape[1]
	if !vectorOf(ws, nd) || (b != nil && !vectorOf(b, nd)) {
		return k.Kernel.Run(env, in)
	}
	rows := tensor.NumElements(a.Shape[:a.Rank()-1])
	if nd > 0 && rows > math.MaxInt/nd {
		return k.Kernel.Run(env, in) // the reference's checks of the output's size
	}
	if z != nil && (z.DType != tensor.Float32 || z.Rank() != a.Rank() || z.Len() != rows*nd ||
		!sameLead(z.Shape, a.Shape) || z.Shape[z.Rank()-1] != nd) {
		return k.Kernel.Run(env, in)
	}
	sc := make([]float32, nd)
	for i, v := range ws.Float32s() {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return k.Kernel.Run(env, in)
		}
		sc[i] = k.aScale * v
	}
	outShape := append(append([]int{}, a.Shape[:a.Rank()-1]...), nd)
	y, err := ops.NewOutput(env, tensor.Float32, outShape)
	if err != nil {
		return k.Kernel.Run(env, in) // the reference's error for an output too large
	}
	yv := y.Float32s()
	lo, hi, clamped := int8Clamp(k.ep)
	o := &cpu.Int8Output{Scale: sc, Dst: yv, Ld: max(1, nd), Lo: lo, Hi: hi}
	if b != nil {
		o.Bias = b.Float32s()
	}
	if z != nil {
		o.Z = z.Float32s()
	}
	if rows > 0 && nd > 0 {
		pw := k.cache.get(w, func() *cpu.Int8MatWeights { return cpu.PackInt8MatMul(w.Int8s(), kd, nd, nd) })
		// A quantized row by row, rows padded with zeros to whole quads.
		lda := 4 * ((kd + 3) / 4)
		bp := int8Scratch(max(1, rows*lda))
		defer int8Scratches.Put(bp)
		aq := *bp
		av := a.Float32s()
		cpu.ParallelFor(rows, max(1, 16384/max(1, kd)), func(lo2, hi2 int) {
			for j := lo2; j < hi2; j++ {
				row := aq[j*lda : (j+1)*lda]
				cpu.QuantizeInt8(row, av[j*kd:(j+1)*kd], k.aScale)
				clear(row[kd:])
			}
		})
		cpu.Int8MatMul(pw, aq, rows, lda, o, cpu.Threads())
	}
	if !clamped {
		epilogueApply(k.ep, yv)
	}
	return env.One(y), nil
}

// int8Scratches recycles the quantized activations of QMatMul (pooled, as
// ops/nn's kernel pooled them: an INT8 layer allocates no buffer of the
// activations' size per run).
var int8Scratches sync.Pool // of *[]int8

// int8Scratch returns a pooled buffer of n bytes (contents undefined), to
// give back with int8Scratches.Put.
func int8Scratch(n int) *[]int8 {
	bp, _ := int8Scratches.Get().(*[]int8)
	if bp == nil || cap(*bp) < n {
		b := make([]int8, n)
		bp = &b
	}
	*bp = (*bp)[:n]
	return bp
}

// sameLead reports whether a and b agree on every axis but the last.
func sameLead(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a)-1; i++ {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
