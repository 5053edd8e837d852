package ops

import (
	"math"
	"runtime"
	"sync"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// This file holds the float16 adapter: Prepare wraps the kernel of a node
// that reads float16 tensors, unless the kernel handles float16 itself, in a
// kernel that computes in float32. Its Infer infers the inner kernel with
// float32 stand-ins for the float16 inputs and reports float16 for the
// outputs that follow them; its Run widens the float16 inputs to float32
// (constant ones once, cached), runs the inner kernel and narrows its
// float32 outputs back to float16. Float32 accumulation and float32
// reductions (LayerNorm, Softmax) come for free: the inner kernel is the
// float32 one. Nodes without float16 inputs are never wrapped, so float32
// graphs run exactly the kernels they ran before.

// Float16Native is implemented by kernels that compute float16 tensors
// themselves (for example by moving 16-bit elements without converting
// them); Prepare does not wrap them in the float16 adapter.
type Float16Native interface{ Float16Native() }

// float16Native lists the op types (registry keys) whose kernels handle
// float16 tensors as well as float32 ones without converting: data
// movement, shape queries, ops whose output type comes from an attribute or
// another input (Cast, CastLike, EyeLike, random generators), ops that run
// subgraphs, and random kernels (ops.NonDeterministic kernels are never
// wrapped either). ops/fp16_test.go checks the data movement ones against
// float32 runs.
var float16Native = map[string]bool{}

func init() {
	for _, t := range []string{
		// data movement: elements are copied as 16-bit words
		"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose",
		"Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND",
		"Expand", "Tile", "DepthToSpace", "SpaceToDepth", "Pad", "Where",
		"Compress", "ReverseSequence", "Trilu", "ScatterElements", "ScatterND",
		"Scatter",
		// shape queries
		"Shape", "Size",
		// output type given by an attribute or another input
		"Cast", "CastLike", "EyeLike", "MelWeightMatrix", "Constant", "ConstantOfShape",
		"RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial",
		// subgraphs see the tensors as they are
		"If", "Loop", "Scan",
	} {
		float16Native[key("", t)] = true
	}
}

// isFloat16Native reports whether the kernel k of node n handles float16
// tensors itself.
func isFloat16Native(n *ir.Node, k Kernel) bool {
	if _, ok := k.(Float16Native); ok {
		return true
	}
	if _, ok := k.(NonDeterministic); ok {
		return true
	}
	return float16Native[key(n.Domain, n.OpType)]
}

// wrapFloat16 returns k wrapped in the float16 adapter when node n reads a
// float16 value (types as inferred so far) and k does not handle float16
// itself; otherwise it returns k unchanged.
func wrapFloat16(n *ir.Node, k Kernel) Kernel {
	half := false
	for _, v := range n.Inputs {
		if v != nil && v.Type.DType == tensor.Float16 {
			half = true
			break
		}
	}
	if !half || isFloat16Native(n, k) {
		return k
	}
	a := &fp16Kernel{inner: k}
	if t, ok := k.(Tactical); ok {
		return &fp16TacticalKernel{fp16Kernel: a, tactical: t}
	}
	return a
}

// fp16Kernel is the float16 adapter around a float32 kernel.
type fp16Kernel struct {
	inner Kernel
	// Set by Infer (never concurrently with Run).
	inferred bool
	half     []bool       // input i is float16
	narrow   []bool       // output i follows the float16 inputs
	consts   []*fp16Const // input i is this constant (nil: not constant)
	standIns []*ir.Value  // reused by Tactics
}

// fp16Const caches the float32 copy of a constant float16 input.
type fp16Const struct {
	src  *tensor.Tensor
	once sync.Once
	f32  *tensor.Tensor
}

func (c *fp16Const) get() *tensor.Tensor {
	c.once.Do(func() { c.f32 = widenHalf(c.src) })
	return c.f32
}

// fp16InferConstLimit bounds the size of a constant float16 input that
// Infer converts to show the inner kernel (which may read small constants
// such as Clip bounds); larger ones (weights) are converted at the first
// Run.
const fp16InferConstLimit = 1 << 16

// standIn returns in with float32 types in place of float16 ones and, when
// withConst, the constants converted (the small ones; see
// fp16InferConstLimit).
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
		if withConst && v.Const != nil && i < len(k.consts) && k.consts[i] != nil && v.Const.Len() <= fp16InferConstLimit {
			c.Const = k.consts[i].get()
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
	k.half = make([]bool, len(in))
	k.consts = make([]*fp16Const, len(in))
	any16 := false
	for i, v := range in {
		if v != nil && v.Type.DType == tensor.Float16 {
			k.half[i], any16 = true, true
			if v.Const != nil {
				k.consts[i] = &fp16Const{src: v.Const}
			}
		}
	}
	k.inferred = true
	if !any16 {
		k.narrow = nil
		return k.inner.Infer(in)
	}
	k.standIns = k.standIn(in, tensor.Float32, true)
	types, err := k.inner.Infer(k.standIns)
	if err != nil {
		return nil, err
	}
	k.narrow = make([]bool, len(types))
	probe, perr := k.inner.Infer(k.standIn(in, tensor.Float64, false))
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
// outputs when Infer was not called).
func (k *fp16Kernel) Run(env *Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	args := make([]*tensor.Tensor, len(in))
	any16 := false
	for i, t := range in {
		args[i] = t
		if t == nil || t.DType != tensor.Float16 {
			continue
		}
		any16 = true
		if i < len(k.consts) && k.consts[i] != nil && k.consts[i].src == t {
			args[i] = k.consts[i].get()
		} else {
			args[i] = widenHalf(t)
		}
	}
	if !any16 {
		return k.inner.Run(env, in)
	}
	// The inner kernel's float32 outputs are temporaries: keep them out of
	// the context's arena.
	var ienv *Env
	if env != nil {
		e := *env
		e.Alloc = nil
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
			continue
		}
		if k.inferred && (i >= len(k.narrow) || !k.narrow[i]) {
			continue
		}
		if res[i], err = narrowFloat32(env, o); err != nil {
			return nil, err
		}
	}
	return res, nil
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
	return out
}

// narrowFloat32 returns float32 tensor t rounded to float16 (to nearest
// even; values beyond the float16 range become infinities, as in IEEE
// arithmetic; NaNs stay NaNs, their payloads may differ from
// tensor.Float32ToHalf's), allocated with NewOutput.
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
// (F. Giesen's float_to_half_fast3_rtne): the same bits for every float32,
// round to nearest even, NaN to a quiet NaN, overflow to infinity.
func halfOf(f float32) uint16 {
	const (
		infBits   = 255 << 23
		maxBits   = (127 + 16) << 23                   // 65536: Inf or NaN from here
		minNormal = 113 << 23                          // below: float16 subnormal or zero
		magicBits = ((127 - 15) + (23 - 10) + 1) << 23 // 0.5: aligns subnormal bits
	)
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	u &^= 0x80000000
	switch {
	case u >= maxBits:
		if u > infBits {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case u < minNormal:
		// the float addition rounds the mantissa to nearest even
		v := math.Float32frombits(u) + math.Float32frombits(magicBits)
		return sign | uint16(math.Float32bits(v)-magicBits)
	}
	odd := (u >> 13) & 1
	u = u - (127-15)<<23 + 0xfff + odd // rebias the exponent, round
	return sign | uint16(u>>13)
}
