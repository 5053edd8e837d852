package norm

import (
	"fmt"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// argOp is ArgMax or ArgMin: the int64 index of the extreme element along
// axis (the first one, or the last with select_last_index; a NaN counts as
// the extreme).
type argOp struct {
	name     string
	isMax    bool
	axis     int64
	keepdims bool
	last     bool
}

func prepareArg(isMax bool) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseArgReduceAttrs(n, opset)
		k := &argOp{name: "ArgMin", isMax: isMax, axis: a.Axis, keepdims: a.KeepDims, last: a.SelectLastIndex}
		if isMax {
			k.name = "ArgMax"
		}
		return k, err
	}
}

// argAttrs is the Def.Attrs of ArgMax and ArgMin.
func argAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseArgReduceAttrs(n, opset) }

func numericType(dt tensor.DType) bool { return isFloatType(dt) || dt.IsInt() }

func (k *argOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues(k.name, in, 1); err != nil {
		return nil, err
	}
	t := in[0].Type
	if t.DType != tensor.Undefined && !numericType(t.DType) {
		return nil, fmt.Errorf("%w: %s of %v", ops.ErrBadInput, k.name, t.DType)
	}
	out := ir.Type{DType: tensor.Int64}
	ax, ok, err := inferAxis(k.name, k.axis, t.Shape)
	if err != nil || !ok {
		return []ir.Type{out}, err
	}
	out.Shape = reduceOneAxis(t.Shape, ax, k.keepdims)
	return []ir.Type{out}, nil
}

// reduceOneAxis returns s without dim ax, or with it set to 1 when keep.
func reduceOneAxis(s ir.Shape, ax int, keep bool) ir.Shape {
	out := ir.Shape{}
	for i, d := range s {
		switch {
		case i != ax:
			out = append(out, d)
		case keep:
			out = append(out, ir.D(1))
		}
	}
	return out
}

func (k *argOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needTensors(k.name, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if !numericType(x.DType) {
		return nil, fmt.Errorf("%w: %s of %v", ops.ErrBadInput, k.name, x.DType)
	}
	ax, err := normAxis(k.name, k.axis, x.Rank())
	if err != nil {
		return nil, err
	}
	outer, n, inner := product(x.Shape[:ax]), x.Shape[ax], product(x.Shape[ax+1:])
	var shape []int
	for i, d := range x.Shape {
		switch {
		case i != ax:
			shape = append(shape, d)
		case k.keepdims:
			shape = append(shape, 1)
		}
	}
	out, err := ops.NewOutput(env, tensor.Int64, shape)
	if err != nil {
		return nil, err
	}
	if out.Len() == 0 {
		return []*tensor.Tensor{out}, nil
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: %s along an empty axis %d of %v", ops.ErrBadInput, k.name, ax, x.Shape)
	}
	y := out.Int64s()
	switch x.DType {
	case tensor.Float32, tensor.Float16, tensor.BFloat16:
		argExtreme(float32s(x), y, outer, n, inner, k.isMax, k.last)
	case tensor.Float64:
		argExtreme(x.Float64s(), y, outer, n, inner, k.isMax, k.last)
	case tensor.Int8:
		argExtreme(x.Int8s(), y, outer, n, inner, k.isMax, k.last)
	case tensor.Int16:
		argExtreme(x.Int16s(), y, outer, n, inner, k.isMax, k.last)
	case tensor.Int32:
		argExtreme(x.Int32s(), y, outer, n, inner, k.isMax, k.last)
	case tensor.Int64:
		argExtreme(x.Int64s(), y, outer, n, inner, k.isMax, k.last)
	case tensor.Uint8:
		argExtreme(x.Uint8s(), y, outer, n, inner, k.isMax, k.last)
	case tensor.Uint16:
		argExtreme(x.Uint16s(), y, outer, n, inner, k.isMax, k.last)
	case tensor.Uint32:
		argExtreme(x.Uint32s(), y, outer, n, inner, k.isMax, k.last)
	case tensor.Uint64:
		argExtreme(x.Uint64s(), y, outer, n, inner, k.isMax, k.last)
	}
	return []*tensor.Tensor{out}, nil
}

// argExtreme writes into y[o*inner+i] the index along the middle dim of x,
// viewed as [outer, n, inner], of its largest (isMax) or smallest element.
func argExtreme[T ops.Number](x []T, y []int64, outer, n, inner int, isMax, last bool) {
	parallel.For(outer*inner, max(1, rowGrain/n), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			o, i := t/inner, t%inner
			base := o*n*inner + i
			best, bi := x[base], 0
			if best != best { // NaN: nothing beats the first one
				if !last {
					y[t] = 0
					continue
				}
			}
			for j := 1; j < n; j++ {
				v := x[base+j*inner]
				var better bool
				switch {
				case v != v:
					better = best == best || last
				case best != best:
					better = false
				case isMax:
					better = v > best || (last && v == best)
				default:
					better = v < best || (last && v == best)
				}
				if better {
					best, bi = v, j
					if v != v && !last {
						break
					}
				}
			}
			y[t] = int64(bi)
		}
	})
}

func init() {
	ops.Register(ops.Def{Type: "ArgMax", Attrs: argAttrs, Prepare: prepareArg(true)})
	ops.Register(ops.Def{Type: "ArgMin", Attrs: argAttrs, Prepare: prepareArg(false)})
}
