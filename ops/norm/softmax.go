package norm

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// softmaxKind selects Softmax, LogSoftmax or Hardmax.
type softmaxKind int

const (
	kindSoftmax softmaxKind = iota
	kindLogSoftmax
	kindHardmax
)

var softmaxNames = [...]string{"Softmax", "LogSoftmax", "Hardmax"}

// softmaxOp is Softmax, LogSoftmax or Hardmax. Before opset 13 the input is
// coerced to 2-D at axis (the op works on the flattened trailing dims);
// from opset 13 on it works along the single axis.
type softmaxOp struct {
	kind   softmaxKind
	axis   int64
	legacy bool
}

func prepareSoftmax(kind softmaxKind) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a := ops.AttrsOf(n)
		k := &softmaxOp{kind: kind, legacy: opset < 13}
		def := int64(-1)
		if k.legacy {
			def = 1
		}
		k.axis = a.Int("axis", def)
		return k, a.Err()
	}
}

func (k *softmaxOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	name := softmaxNames[k.kind]
	if err := needValues(name, in, 1); err != nil {
		return nil, err
	}
	t := in[0].Type
	if t.DType != tensor.Undefined && !isFloatType(t.DType) {
		return nil, fmt.Errorf("%w: %s of %v", ops.ErrBadInput, name, t.DType)
	}
	if _, _, err := inferAxis(name, k.axis, t.Shape); err != nil {
		return nil, err
	}
	return []ir.Type{{DType: t.DType, Shape: t.Shape.Clone()}}, nil
}

func (k *softmaxOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	name := softmaxNames[k.kind]
	if err := needTensors(name, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if err := needFloat(name, "input", x); err != nil {
		return nil, err
	}
	ax, err := normAxis(name, k.axis, x.Rank())
	if err != nil {
		return nil, err
	}
	outer, n, inner := product(x.Shape[:ax]), x.Shape[ax], product(x.Shape[ax+1:])
	if k.legacy {
		n, inner = product(x.Shape[ax:]), 1
	}
	out, err := newFloatOut(x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	if x.Len() == 0 {
		return []*tensor.Tensor{out.done()}, nil
	}
	if out.f64 != nil {
		softmaxGeneric(k.kind, x.Float64s(), out.f64, outer, n, inner, math.Exp)
		return []*tensor.Tensor{out.done()}, nil
	}
	src := float32s(x)
	if inner == 1 && k.kind != kindHardmax {
		softmaxRows32(k.kind, src, out.f32, outer, n)
	} else {
		softmaxGeneric(k.kind, src, out.f32, outer, n, inner, expf)
	}
	return []*tensor.Tensor{out.done()}, nil
}

// softmaxRows32 computes Softmax or LogSoftmax of each contiguous row of
// length n of x into y.
func softmaxRows32(kind softmaxKind, x, y []float32, rows, n int) {
	cpu.ParallelFor(rows, max(1, rowGrain/n), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*n:(r+1)*n], y[r*n:(r+1)*n]
			m := maxf32(xr)
			var sum float64
			if kind == kindSoftmax {
				for i, v := range xr {
					e := expf(v - m)
					yr[i] = e
					sum += float64(e)
				}
				inv := float32(1 / sum)
				for i := range yr {
					yr[i] *= inv
				}
				continue
			}
			for _, v := range xr {
				sum += float64(expf(v - m))
			}
			ls := float32(math.Log(sum))
			for i, v := range xr {
				yr[i] = (v - m) - ls
			}
		}
	})
}

// maxf32 returns the largest element of a non-empty slice (NaN if any is NaN).
func maxf32(x []float32) float32 {
	m0, m1, m2, m3 := x[0], x[0], x[0], x[0]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		m0 = max(m0, x[i])
		m1 = max(m1, x[i+1])
		m2 = max(m2, x[i+2])
		m3 = max(m3, x[i+3])
	}
	for ; i < len(x); i++ {
		m0 = max(m0, x[i])
	}
	return max(m0, m1, m2, m3)
}

// softmaxGeneric computes the op along the middle axis of x viewed as
// [outer, n, inner], working on whole inner rows at a time.
func softmaxGeneric[T ops.Float](kind softmaxKind, x, y []T, outer, n, inner int, exp func(T) T) {
	cpu.ParallelFor(outer, max(1, rowGrain/(n*inner)), func(lo, hi int) {
		m := make([]T, inner)
		s := make([]float64, inner)
		idx := make([]int, inner)
		for o := lo; o < hi; o++ {
			base := o * n * inner
			xs, ys := x[base:base+n*inner], y[base:base+n*inner]
			copy(m, xs[:inner])
			clear(idx)
			for j := 1; j < n; j++ {
				row := xs[j*inner : (j+1)*inner]
				for i, v := range row {
					if v > m[i] || (v != v && m[i] == m[i]) {
						m[i] = v
						idx[i] = j
					}
				}
			}
			if kind == kindHardmax {
				clear(ys)
				for i, j := range idx {
					ys[j*inner+i] = 1
				}
				continue
			}
			clear(s)
			for j := 0; j < n; j++ {
				row, yr := xs[j*inner:(j+1)*inner], ys[j*inner:(j+1)*inner]
				for i, v := range row {
					e := exp(v - m[i])
					yr[i] = e
					s[i] += float64(e)
				}
			}
			if kind == kindLogSoftmax {
				for i := range s {
					s[i] = math.Log(s[i])
				}
			}
			for j := 0; j < n; j++ {
				row, yr := xs[j*inner:(j+1)*inner], ys[j*inner:(j+1)*inner]
				for i := range yr {
					if kind == kindSoftmax {
						yr[i] = T(float64(yr[i]) / s[i])
					} else {
						yr[i] = (row[i] - m[i]) - T(s[i])
					}
				}
			}
		}
	})
}

func init() {
	ops.Register(ops.Def{Type: "Softmax", Prepare: prepareSoftmax(kindSoftmax)})
	ops.Register(ops.Def{Type: "LogSoftmax", Prepare: prepareSoftmax(kindLogSoftmax)})
	ops.Register(ops.Def{Type: "Hardmax", Prepare: prepareSoftmax(kindHardmax)})
}
