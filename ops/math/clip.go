package math

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// clip is ONNX Clip: y = min(max(x, lo), hi). Before opset 11 the bounds
// are float attributes; from 11 they are optional scalar inputs of x's type.
type clip struct {
	attrs  bool // bounds come from attributes
	lo, hi float64
}

func (k *clip) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs("Clip", in, 1, 3); err != nil {
		return nil, err
	}
	dt := in[0].Type.DType
	if dt != tensor.Undefined && !numericTypes.has(dt) {
		return nil, badType("Clip", dt)
	}
	for _, b := range in[1:] {
		if b == nil {
			continue
		}
		if err := sameDType("Clip", dt, b.Type.DType); err != nil {
			return nil, err
		}
		if r := b.Type.Shape.Rank(); r > 1 {
			return nil, fmt.Errorf("%w: Clip bound of rank %d, want a scalar", ops.ErrBadInput, r)
		}
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: in[0].Type.Shape.Clone()}}, nil
}

// bound returns the single element of an optional bound input.
func bound(t, x *tensor.Tensor) (*tensor.Tensor, error) {
	if t == nil {
		return nil, nil
	}
	if t.DType != x.DType {
		return nil, fmt.Errorf("%w: Clip bound of type %v for %v input", ops.ErrBadInput, t.DType, x.DType)
	}
	switch t.Len() {
	case 0:
		return nil, nil // an empty tensor stands for an omitted bound
	case 1:
		return t, nil
	}
	return nil, fmt.Errorf("%w: Clip bound of shape %v, want a scalar", ops.ErrBadInput, t.Shape)
}

func (k *clip) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := checkTensors("Clip", in, 1, 3); err != nil {
		return nil, err
	}
	x := in[0]
	if !numericTypes.has(x.DType) {
		return nil, badType("Clip", x.DType)
	}
	var lo, hi *tensor.Tensor
	var err error
	if !k.attrs {
		if len(in) > 1 {
			if lo, err = bound(in[1], x); err != nil {
				return nil, err
			}
		}
		if len(in) > 2 {
			if hi, err = bound(in[2], x); err != nil {
				return nil, err
			}
		}
	}
	out, err := ops.NewOutput(env, x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	switch x.DType {
	case tensor.Float32:
		clipT[float32](k, x, out, lo, hi)
	case tensor.Float64:
		clipT[float64](k, x, out, lo, hi)
	case tensor.Float16, tensor.BFloat16:
		l, h := k.lo, k.hi
		if lo != nil {
			l = lo.Float(0)
		}
		if hi != nil {
			h = hi.Float(0)
		}
		v := halfToF32(x)
		clipSlice(v, v, float32(l), float32(h), !k.attrs && lo == nil, !k.attrs && hi == nil)
		storeHalf(out, v)
	case tensor.Int8:
		clipT[int8](k, x, out, lo, hi)
	case tensor.Int16:
		clipT[int16](k, x, out, lo, hi)
	case tensor.Int32:
		clipT[int32](k, x, out, lo, hi)
	case tensor.Int64:
		clipT[int64](k, x, out, lo, hi)
	case tensor.Uint8:
		clipT[uint8](k, x, out, lo, hi)
	case tensor.Uint16:
		clipT[uint16](k, x, out, lo, hi)
	case tensor.Uint32:
		clipT[uint32](k, x, out, lo, hi)
	case tensor.Uint64:
		clipT[uint64](k, x, out, lo, hi)
	}
	return env.One(out), nil
}

func clipT[T ops.Number](k *clip, x, out, lo, hi *tensor.Tensor) {
	var l, h T
	noLo, noHi := !k.attrs && lo == nil, !k.attrs && hi == nil
	if k.attrs {
		l, h = T(k.lo), T(k.hi)
		noLo, noHi = math.IsInf(k.lo, -1), math.IsInf(k.hi, 1)
	}
	if lo != nil {
		l = elems[T](lo)[0]
	}
	if hi != nil {
		h = elems[T](hi)[0]
	}
	n := x.Len()
	src, dst := elems[T](x)[:n], elems[T](out)
	parallel.For(n, ops.ElemGrain, func(a, b int) { clipSlice(dst[a:b], src[a:b], l, h, noLo, noHi) })
}

// clipSlice writes src clipped to [lo, hi] (a side flagged absent is open)
// into dst; NaNs stay NaN. The builtin min and max keep the loops free of
// data-dependent branches.
func clipSlice[T ops.Number](dst, src []T, lo, hi T, noLo, noHi bool) {
	src = src[:len(dst)]
	switch {
	case noLo && noHi:
		copy(dst, src)
	case noLo:
		for i, v := range src {
			dst[i] = min(v, hi)
		}
	case noHi:
		for i, v := range src {
			dst[i] = max(v, lo)
		}
	default:
		for i, v := range src {
			dst[i] = min(max(v, lo), hi)
		}
	}
}

func init() {
	ops.Register(ops.Def{Type: "Clip", Traits: ops.ElementwiseUnary, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseClipAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		if !a.FromAttrs {
			return &clip{}, nil
		}
		return &clip{attrs: true, lo: float64(a.Min), hi: float64(a.Max)}, nil
	}, Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseClipAttrs(n, opset) }})
}
