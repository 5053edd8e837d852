package serve

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/kilnai/kiln/tensor"
)

// MaxClassCount bounds the class count a request may ask of one output
// (the classification extension).
const MaxClassCount = 1 << 16

// classify returns the top k classes of t as the classification extension
// has them: a BYTES tensor of "value:index" or "value:index:label" strings
// (label from labels when it has the index), highest value first (ties by
// lower index), shape [batch, k] for a batched model (each batch row
// classified on its own) and [k] otherwise. k is at most the classes a row
// has.
func classify(t *tensor.Tensor, k int, batched bool, labels []string) (*tensor.Tensor, error) {
	if t.DType == tensor.String || !t.DType.Valid() {
		return nil, fmt.Errorf("%w: the classification of an output of type %v", ErrInvalid, t.DType)
	}
	rows, n := 1, t.Len()
	if batched && len(t.Shape) > 0 {
		rows = t.Shape[0]
		if rows > 0 {
			n /= rows
		}
	}
	k = min(k, n)
	isFloat := t.DType.IsFloat()
	out := make([]string, 0, rows*k)
	idx := make([]int, n)
	vals := make([]float64, n)
	for r := range rows {
		for i := range n {
			idx[i] = i
			v := t.Float(r*n + i)
			if math.IsNaN(v) {
				v = math.Inf(-1)
			}
			vals[i] = v
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(vals[b], vals[a]) })
		for _, i := range idx[:k] {
			var s string
			if isFloat {
				s = strconv.FormatFloat(t.Float(r*n+i), 'f', 6, 64)
			} else {
				s = strconv.FormatInt(t.Int(r*n+i), 10)
				if t.DType == tensor.Uint64 {
					s = strconv.FormatUint(t.Uint64s()[r*n+i], 10)
				}
			}
			s += ":" + strconv.Itoa(i)
			if i < len(labels) {
				s += ":" + labels[i]
			}
			out = append(out, s)
		}
	}
	shape := []int{k}
	if batched {
		shape = []int{rows, k}
	}
	return &tensor.Tensor{DType: tensor.String, Shape: shape, Strings: out}, nil
}
