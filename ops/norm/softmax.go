package norm

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/internal/parallel"
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

// softmaxAttrs is the Softmax family's Def.Attrs.
func softmaxAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseSoftmaxAttrs(n, opset) }

func prepareSoftmax(kind softmaxKind) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseSoftmaxAttrs(n, opset)
		return &softmaxOp{kind: kind, axis: a.Axis, legacy: a.Legacy}, err
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

func (k *softmaxOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
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
	out, err := newFloatOut(env, x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	if x.Len() == 0 {
		return env.One(out.done()), nil
	}
	if out.f64 != nil {
		softmaxGeneric(k.kind, x.Float64s(), out.f64, outer, n, inner, math.Exp)
		return env.One(out.done()), nil
	}
	src := float32s(x)
	if inner == 1 && k.kind != kindHardmax {
		softmaxRows32(k.kind, src, out.f32, outer, n)
	} else {
		softmaxGeneric(k.kind, src, out.f32, outer, n, inner, expf)
	}
	return env.One(out.done()), nil
}

// softmaxRows32 computes Softmax or LogSoftmax of each contiguous row of
// length n of x into y.
func softmaxRows32(kind softmaxKind, x, y []float32, rows, n int) {
	if grain := max(1, rowGrain/n); rows <= grain {
		softmaxRowRange(kind, x, y, n, 0, rows) // one chunk: no closure to allocate
		return
	}
	parallel.For(rows, max(1, rowGrain/n), func(lo, hi int) {
		softmaxRowRange(kind, x, y, n, lo, hi)
	})
}

// softmaxRowRange is softmaxRows32 of rows [lo, hi).
func softmaxRowRange(kind softmaxKind, x, y []float32, n, lo, hi int) {
	for r := lo; r < hi; r++ {
		xr, yr := x[r*n:(r+1)*n], y[r*n:(r+1)*n]
		m := maxf32(xr)
		var sum float64
		if kind == kindSoftmax {
			sum = expShifted(yr, xr, m)
			inv := float32(1 / sum)
			for i := range yr {
				yr[i] *= inv
			}
			continue
		}
		sum = expShifted(yr, xr, m) // y as scratch
		ls := float32(math.Log(sum))
		for i, v := range xr {
			yr[i] = (v - m) - ls
		}
	}
}

// expShifted sets y[i] = exp(x[i]-m) for m >= max(x) and returns the sum
// of the y[i]: expf inlined for arguments <= 0, with results below the
// smallest normal float32 (arguments below -87.3) flushed to zero.
func expShifted(y, x []float32, m float32) float64 {
	const (
		log2e = 1.44269504088896341
		ln2Hi = 0.693359375
		ln2Lo = -2.12194440e-4
		magic = 12582912 // 1.5 * 2**23
	)
	y = y[:len(x)]
	var s float64
	for i, xv := range x {
		v := xv - m
		if v < -87.3 {
			y[i] = 0
			continue
		}
		t := v*log2e + magic
		n := t - magic
		r := v - n*ln2Hi - n*ln2Lo
		p := float32(1.9875691500e-4)
		p = p*r + 1.3981999507e-3
		p = p*r + 8.3334519073e-3
		p = p*r + 4.1665795894e-2
		p = p*r + 1.6666665459e-1
		p = p*r + 5.0000001201e-1
		e := (p*r*r + r + 1) * math.Float32frombits(uint32(int32(math.Float32bits(t))-0x4B400000+127)<<23)
		y[i] = e
		s += float64(e)
	}
	return s
}

// maxf32 returns the largest element of a non-empty slice, ignoring NaNs
// after the first element (callers get NaN through exp anyway).
func maxf32(x []float32) float32 {
	m0, m1, m2, m3 := x[0], x[0], x[0], x[0]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		if x[i] > m0 {
			m0 = x[i]
		}
		if x[i+1] > m1 {
			m1 = x[i+1]
		}
		if x[i+2] > m2 {
			m2 = x[i+2]
		}
		if x[i+3] > m3 {
			m3 = x[i+3]
		}
	}
	for ; i < len(x); i++ {
		if x[i] > m0 {
			m0 = x[i]
		}
	}
	return max(m0, m1, m2, m3)
}

// softmaxGeneric computes the op along the middle axis of x viewed as
// [outer, n, inner], working on whole inner rows at a time.
func softmaxGeneric[T ops.Float](kind softmaxKind, x, y []T, outer, n, inner int, exp func(T) T) {
	if n*inner == 0 {
		return
	}
	parallel.For(outer, max(1, rowGrain/(n*inner)), func(lo, hi int) {
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
	ops.Register(ops.Def{Type: "Softmax", Prepare: prepareSoftmax(kindSoftmax), Attrs: softmaxAttrs})
	ops.Register(ops.Def{Type: "LogSoftmax", Prepare: prepareSoftmax(kindLogSoftmax), Attrs: softmaxAttrs})
	ops.Register(ops.Def{Type: "Hardmax", Prepare: prepareSoftmax(kindHardmax), Attrs: softmaxAttrs})
}
