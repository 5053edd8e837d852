package ops

import (
	"math"
	"math/bits"
	"runtime"
	"sync"
	"unsafe"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// This file holds the float16 adapter: Prepare wraps the kernel of a node
// that reads float16 tensors, unless the kernel handles float16 itself, in a
// kernel that computes in float32. The inner kernel is prepared on a
// float32 stand-in of the node (constant inputs widened once, at Prepare);
// the adapter's Infer infers it with float32 stand-ins for the float16
// inputs and reports float16 for the outputs that follow them; its Run
// widens the float16 activations to float32 (with F16C where the CPU has
// it), runs the inner kernel and rounds its float32 outputs back to float16
// (to nearest even). Float32 accumulation and float32 reductions (LayerNorm,
// Softmax) come for free: the inner kernel is the float32 one. Nodes
// without float16 inputs are never wrapped, so float32 graphs run exactly
// the kernels they ran before.

// Float16Native is implemented by kernels that compute float16 tensors
// themselves (for example by moving 16-bit elements without converting
// them); Prepare does not wrap them in the float16 adapter.
type Float16Native interface{ Float16Native() }

// isFloat16Native reports whether the kernel k of node n handles float16
// tensors itself: the kernel says so, or its op has the trait HasFloat16
// (declared where it registers: data movement, shape queries, ops whose
// output type comes from an attribute or another input, ops that run
// subgraphs; ops/fp16_test.go checks the data movement ones against
// float32 runs). ops.NonDeterministic kernels are never wrapped either.
func isFloat16Native(n *ir.Node, k Kernel) bool {
	if _, ok := k.(Float16Native); ok {
		return true
	}
	if _, ok := k.(NonDeterministic); ok {
		return true
	}
	return TraitsOf(n.Domain, n.OpType).Has(HasFloat16)
}

// prepareFloat16 prepares node n with d. When n reads a float16 value
// (types as inferred so far) and its kernel does not handle float16 itself,
// the kernel is prepared on a float32 stand-in of n (float16 inputs typed
// float32, constant ones widened once, here) and wrapped in the float16
// adapter: it sees what it would see in a float32 graph, cached weight
// transforms included.
func prepareFloat16(d Def, n *ir.Node, opset int64) (Kernel, error) {
	half := false
	for _, v := range n.Inputs {
		if v != nil && v.Type.DType == tensor.Float16 {
			half = true
			break
		}
	}
	if !half || d.Traits.Has(HasFloat16) {
		return d.Prepare(n, opset)
	}
	a := &fp16Kernel{consts: make([]*fp16Const, len(n.Inputs))}
	sn := *n
	sn.Inputs = make([]*ir.Value, len(n.Inputs))
	for i, v := range n.Inputs {
		sn.Inputs[i] = v
		if v == nil || v.Type.DType != tensor.Float16 {
			continue
		}
		c := *v
		c.Type = ir.Type{DType: tensor.Float32, Shape: v.Type.Shape}
		c.Const = nil
		if v.Const != nil && v.Const.DType == tensor.Float16 {
			a.consts[i] = &fp16Const{src: v.Const, f32: widenHalf(v.Const)}
			c.Const = a.consts[i].f32
		}
		sn.Inputs[i] = &c
	}
	k, err := d.Prepare(&sn, opset)
	if err != nil {
		return nil, err
	}
	if isFloat16Native(n, k) {
		return d.Prepare(n, opset)
	}
	a.inner = k
	if t, ok := k.(Tactical); ok {
		return &fp16TacticalKernel{fp16Kernel: a, tactical: t}, nil
	}
	return a, nil
}

// fp16Kernel is the float16 adapter around a float32 kernel.
type fp16Kernel struct {
	inner Kernel
	// consts[i], when not nil, is constant input i and its float32 copy.
	consts []*fp16Const
	// Set by Infer (never concurrently with Run).
	inferred bool
	narrow   []bool // output i follows the float16 inputs
}

// fp16Const is a constant float16 input and its float32 copy.
type fp16Const struct {
	src, f32 *tensor.Tensor
}

// fp16InferConstLimit bounds the size of a constant float16 input, other
// than those Prepare saw, that Infer widens to show the inner kernel.
const fp16InferConstLimit = 1 << 16

// standIn returns in with type dt in place of float16 and, when withConst,
// the constants widened.
func (k *fp16Kernel) standIn(in []*ir.Value, dt tensor.DType, withConst bool) []*ir.Value {
	out := make([]*ir.Value, len(in))
	for i, v := range in {
		if v == nil || v.Type.DType != tensor.Float16 {
			out[i] = v
			continue
		}
		c := *v
		c.Type = ir.Type{DType: dt, Shape: v.Type.Shape}
		c.Const = nil
		if withConst && v.Const != nil {
			if i < len(k.consts) && k.consts[i] != nil && k.consts[i].src == v.Const {
				c.Const = k.consts[i].f32
			} else if v.Const.DType == tensor.Float16 && v.Const.Len() <= fp16InferConstLimit {
				c.Const = widenHalf(v.Const)
			}
		}
		out[i] = &c
	}
	return out
}

// Infer infers the inner kernel with float32 stand-ins for the float16
// inputs. An output whose type follows those inputs is float16: the inner
// kernel is inferred a second time with float64 stand-ins, and the float32
// outputs that turn float64 are the ones that follow (a kernel that rejects
// float64 has all its float32 outputs follow).
func (k *fp16Kernel) Infer(in []*ir.Value) ([]ir.Type, error) {
	k.inferred = true
	any16 := false
	for _, v := range in {
		any16 = any16 || (v != nil && v.Type.DType == tensor.Float16)
	}
	if !any16 {
		k.narrow = nil
		return k.inner.Infer(in)
	}
	// The float64 probe runs first, so that a kernel keeping what Infer
	// saw keeps the float32 inference.
	probe, perr := k.inner.Infer(k.standIn(in, tensor.Float64, false))
	types, err := k.inner.Infer(k.standIn(in, tensor.Float32, true))
	if err != nil {
		return nil, err
	}
	k.narrow = make([]bool, len(types))
	out := make([]ir.Type, len(types))
	for i, t := range types {
		out[i] = t
		if t.DType != tensor.Float32 {
			continue
		}
		if perr == nil && i < len(probe) && probe[i].DType == tensor.Float32 {
			continue // fixed float32, whatever the inputs
		}
		k.narrow[i] = true
		out[i].DType = tensor.Float16
	}
	return out, nil
}

// Run widens the float16 inputs, runs the inner kernel and narrows the
// outputs that Infer found to follow the float16 inputs (all float32
// outputs when Infer was not called). The float32 stand-ins of activations
// and the inner kernel's float32 outputs live in recycled scratch buffers
// (fp16Scratch), given back once the outputs are narrowed.
func (k *fp16Kernel) Run(env *Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	any16 := false
	for _, t := range in {
		any16 = any16 || (t != nil && t.DType == tensor.Float16)
	}
	if !any16 {
		return k.inner.Run(env, in)
	}
	s := &fp16Scratch{}
	defer s.release()
	args := make([]*tensor.Tensor, len(in))
	for i, t := range in {
		args[i] = t
		if t == nil || t.DType != tensor.Float16 {
			continue
		}
		if i < len(k.consts) && k.consts[i] != nil && k.consts[i].src == t {
			args[i] = k.consts[i].f32
			continue
		}
		w, err := s.alloc(tensor.Float32, t.Shape)
		if err != nil {
			return nil, err
		}
		widenInto(w, t)
		args[i] = w
	}
	// The inner kernel's float32 outputs are temporaries: they come from
	// the scratch buffers, not from the context's arena.
	ienv := &Env{Alloc: s.alloc}
	if env != nil {
		e := *env
		e.Alloc = s.alloc
		ienv = &e
	}
	outs, err := k.inner.Run(ienv, args)
	if err != nil {
		return nil, err
	}
	res := make([]*tensor.Tensor, len(outs))
	for i, o := range outs {
		res[i] = o
		if o == nil || o.DType != tensor.Float32 {
			s.keep(o)
			continue
		}
		if k.inferred && (i >= len(k.narrow) || !k.narrow[i]) {
			s.keep(o)
			continue
		}
		if res[i], err = narrowFloat32(env, o); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// fp16ScratchMin is the smallest buffer (in bytes) worth recycling.
const fp16ScratchMin = 1 << 12

// fp16Pools recycle scratch buffers by power-of-two capacity.
var fp16Pools [48]sync.Pool

// fp16Scratch tracks the scratch buffers one Run of the adapter hands out,
// to give them back when it ends, save those an output it returns uses.
type fp16Scratch struct {
	mu   sync.Mutex
	bufs [][]byte
	kept []*tensor.Tensor
}

// alloc is an Env.Alloc: float32 tensors of at least fp16ScratchMin bytes
// come from the pools (their contents undefined), others are fresh.
func (s *fp16Scratch) alloc(dt tensor.DType, shape []int) (*tensor.Tensor, error) {
	if err := tensor.CheckShape(shape); err != nil || dt != tensor.Float32 {
		return tensor.Make(dt, shape)
	}
	n := tensor.NumElements(shape) * 4
	if n < fp16ScratchMin {
		return tensor.Make(dt, shape)
	}
	c := bits.Len(uint(n - 1))
	var b []byte
	if v, ok := fp16Pools[c].Get().(*[]byte); ok {
		b = (*v)[:n]
	} else {
		b = tensor.AlignedBytes(1 << c)[:n]
	}
	s.mu.Lock()
	s.bufs = append(s.bufs, b)
	s.mu.Unlock()
	return &tensor.Tensor{DType: dt, Shape: append([]int(nil), shape...), Data: b}, nil
}

// keep marks an output returned as it is: no buffer it touches is given
// back.
func (s *fp16Scratch) keep(t *tensor.Tensor) {
	if t != nil && len(t.Data) > 0 {
		s.kept = append(s.kept, t)
	}
}

// release gives the buffers back to the pools.
func (s *fp16Scratch) release() {
	seen := map[*byte]bool{}
	for _, b := range s.bufs {
		p := &b[:1][0]
		if seen[p] || s.used(b) {
			continue
		}
		seen[p] = true
		b = b[:cap(b)]
		if c := bits.Len(uint(len(b) - 1)); 1<<c == len(b) {
			fp16Pools[c].Put(&b)
		}
	}
}

// used reports whether a kept output's data overlaps b.
func (s *fp16Scratch) used(b []byte) bool {
	lo := uintptr(unsafe.Pointer(&b[:1][0]))
	hi := lo + uintptr(cap(b))
	for _, t := range s.kept {
		p := uintptr(unsafe.Pointer(&t.Data[0]))
		if p < hi && p+uintptr(len(t.Data)) > lo {
			return true
		}
	}
	return false
}

// fp16TacticalKernel is the adapter around a kernel with tactics.
type fp16TacticalKernel struct {
	*fp16Kernel
	tactical Tactical
}

// Tactics returns the inner kernel's tactics for the float32 stand-ins.
func (k *fp16TacticalKernel) Tactics(in []*ir.Value) []string {
	return k.tactical.Tactics(k.standIn(in, tensor.Float32, false))
}

// SetTactic selects the inner kernel's tactic.
func (k *fp16TacticalKernel) SetTactic(name string) error { return k.tactical.SetTactic(name) }

var (
	_ Tactical = (*fp16TacticalKernel)(nil)
	_ Kernel   = (*fp16Kernel)(nil)
)

// halfTable maps every float16 bit pattern to its float32 value.
var halfTable = sync.OnceValue(func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = tensor.HalfToFloat32(uint16(i))
	}
	return &t
})

// fp16Grain is the number of elements one goroutine converts.
const fp16Grain = 1 << 16

// parallelChunks calls fn on [lo, hi) chunks of [0, n), on several
// goroutines when n is large.
func parallelChunks(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), (n+fp16Grain-1)/fp16Grain)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	step := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += step {
		hi := min(lo+step, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// widenHalf returns a float32 copy of float16 tensor t.
func widenHalf(t *tensor.Tensor) *tensor.Tensor {
	out := tensor.New(tensor.Float32, t.Shape...)
	widenInto(out, t)
	return out
}

// widenInto stores float16 tensor t into float32 tensor out of its size.
func widenInto(out, t *tensor.Tensor) {
	src, dst, tbl := t.Halfs(), out.Float32s(), halfTable()
	parallelChunks(len(dst), func(lo, hi int) {
		if m := (hi - lo) &^ 7; useF16C && m > 0 {
			f16cWiden(&dst[lo], &src[lo], m)
			lo += m
		}
		for i, h := range src[lo:hi] {
			dst[lo+i] = tbl[h]
		}
	})
}

// narrowFloat32 returns float32 tensor t rounded to float16, allocated with
// NewOutput. It rounds to nearest even and saturates: a finite value beyond
// the float16 range becomes +-65504, not an infinity (as FP16Convert does
// with constants), so that an activation that merely overflows float16
// (a mask of -10000 times a large count, say) stays finite; infinities stay
// infinities and NaNs NaNs (their payloads may differ from
// tensor.Float32ToHalf's).
func narrowFloat32(env *Env, t *tensor.Tensor) (*tensor.Tensor, error) {
	out, err := NewOutput(env, tensor.Float16, t.Shape)
	if err != nil {
		return nil, err
	}
	src, dst := t.Float32s(), out.Halfs()
	parallelChunks(len(dst), func(lo, hi int) {
		if m := (hi - lo) &^ 7; useF16C && m > 0 {
			f16cNarrow(&dst[lo], &src[lo], m)
			lo += m
		}
		for i, f := range src[lo:hi] {
			dst[lo+i] = halfOf(f)
		}
	})
	return out, nil
}

// halfOf is tensor.Float32ToHalf without the branches of its general path
// (after F. Giesen's float_to_half_fast3_rtne), saturating: round to
// nearest even, finite values beyond +-65504 to +-65504, infinities stay
// infinities, NaN to a quiet NaN.
func halfOf(f float32) uint16 {
	const (
		infBits   = 255 << 23
		maxHalf   = 0x477fe000                         // 65504, the largest finite float16
		minNormal = 113 << 23                          // below: float16 subnormal or zero
		magicBits = ((127 - 15) + (23 - 10) + 1) << 23 // 0.5: aligns subnormal bits
	)
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	u &^= 0x80000000
	switch {
	case u > infBits:
		return sign | 0x7e00
	case u == infBits:
		return sign | 0x7c00
	case u >= maxHalf:
		return sign | 0x7bff
	case u < minNormal:
		// the float addition rounds the mantissa to nearest even
		v := math.Float32frombits(u) + math.Float32frombits(magicBits)
		return sign | uint16(math.Float32bits(v)-magicBits)
	}
	odd := (u >> 13) & 1
	u = u - (127-15)<<23 + 0xfff + odd // rebias the exponent, round
	return sign | uint16(u>>13)
}
