package math

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// det is ONNX Det: the determinant of each [M, M] matrix of a [..., M, M]
// tensor, by LU decomposition with partial pivoting in float64.
type det struct{}

func (det) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs("Det", in, 1, 1); err != nil {
		return nil, err
	}
	t := in[0].Type
	if t.DType != tensor.Undefined && !t.DType.IsFloat() {
		return nil, badType("Det", t.DType)
	}
	if t.Shape == nil {
		return []ir.Type{{DType: t.DType}}, nil
	}
	r := len(t.Shape)
	if r < 2 {
		return nil, fmt.Errorf("%w: Det of rank %d, want at least 2", ops.ErrBadInput, r)
	}
	m, n := t.Shape[r-2], t.Shape[r-1]
	if m.Known() && n.Known() && m.Val != n.Val {
		return nil, fmt.Errorf("%w: Det of non-square %v", ops.ErrBadInput, t.Shape)
	}
	return []ir.Type{{DType: t.DType, Shape: t.Shape[:r-2].Clone()}}, nil
}

func (det) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := checkTensors("Det", in, 1, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if !x.DType.IsFloat() {
		return nil, badType("Det", x.DType)
	}
	r := len(x.Shape)
	if r < 2 || x.Shape[r-1] != x.Shape[r-2] {
		return nil, fmt.Errorf("%w: Det of shape %v, want [..., M, M]", ops.ErrBadInput, x.Shape)
	}
	out, err := tensor.Make(x.DType, x.Shape[:r-2])
	if err != nil {
		return nil, err
	}
	m := x.Shape[r-1]
	v := numbers[float64](x)
	res := make([]float64, out.Len())
	for b := range res {
		res[b] = luDet(v[b*m*m:(b+1)*m*m], m)
	}
	store(out, res)
	return []*tensor.Tensor{out}, nil
}

// luDet returns the determinant of the m x m row-major matrix a, which it
// overwrites.
func luDet(a []float64, m int) float64 {
	d := 1.0
	for c := 0; c < m; c++ {
		p := c
		for r := c + 1; r < m; r++ {
			if math.Abs(a[r*m+c]) > math.Abs(a[p*m+c]) {
				p = r
			}
		}
		if a[p*m+c] == 0 {
			return 0
		}
		if p != c {
			for j := 0; j < m; j++ {
				a[p*m+j], a[c*m+j] = a[c*m+j], a[p*m+j]
			}
			d = -d
		}
		piv := a[c*m+c]
		d *= piv
		for r := c + 1; r < m; r++ {
			f := a[r*m+c] / piv
			if f == 0 {
				continue
			}
			for j := c + 1; j < m; j++ {
				a[r*m+j] -= f * a[c*m+j]
			}
		}
	}
	return d
}

func init() {
	ops.Register(ops.Def{Type: "Det", Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return det{}, nil }})
}
