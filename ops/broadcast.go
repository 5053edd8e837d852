package ops

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// BroadcastShape returns the numpy broadcast of concrete shapes.
func BroadcastShape(shapes ...[]int) ([]int, error) {
	rank := 0
	for _, s := range shapes {
		rank = max(rank, len(s))
	}
	out := make([]int, rank)
	for i := range out {
		out[i] = 1
	}
	for _, s := range shapes {
		off := rank - len(s)
		for i, d := range s {
			switch o := out[off+i]; {
			case d == o || d == 1:
			case o == 1:
				out[off+i] = d
			default:
				return nil, fmt.Errorf("%w: shapes %v are not broadcastable", ErrBadInput, shapes)
			}
		}
	}
	return out, nil
}

// BroadcastShapeInto is BroadcastShape of two shapes, appended to dst[:0]
// (a caller's stack array keeps it off the heap); ok is false when they
// do not broadcast.
func BroadcastShapeInto(dst, a, b []int) (out []int, ok bool) {
	rank := max(len(a), len(b))
	out = dst[:0]
	for i := range rank {
		da, db := 1, 1
		if j := i - (rank - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (rank - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db || db == 1:
			out = append(out, da)
		case da == 1:
			out = append(out, db)
		default:
			return nil, false
		}
	}
	return out, true
}

// BroadcastStrides returns element strides for reading a tensor of shape in
// as if it had shape out (rank(out) >= rank(in)): broadcast dims get stride 0.
func BroadcastStrides(in, out []int) []int {
	st := make([]int, len(out))
	acc := 1
	off := len(out) - len(in)
	for i := len(in) - 1; i >= 0; i-- {
		if in[i] != 1 {
			st[off+i] = acc
		}
		acc *= in[i]
	}
	return st
}

// BroadcastStridesInto is BroadcastStrides writing into st (len(out)
// long) instead of allocating.
func BroadcastStridesInto(st, in, out []int) {
	clear(st[:len(out)])
	acc := 1
	off := len(out) - len(in)
	for i := len(in) - 1; i >= 0; i-- {
		if in[i] != 1 {
			st[off+i] = acc
		}
		acc *= in[i]
	}
}

// BroadcastsTo reports whether shape in broadcasts to out without
// enlarging it (BroadcastShape(out, in) would be out): rank(in) <=
// rank(out), and each of in's dims, aligned from the right, is 1 or out's.
// It allocates nothing.
func BroadcastsTo(in, out []int) bool {
	off := len(out) - len(in)
	if off < 0 {
		return false
	}
	for i, d := range in {
		if d != 1 && d != out[off+i] {
			return false
		}
	}
	return true
}

// BroadcastIndex fills idx[i] with the flat index into each input for every
// output element, i.e. idx[k][j] is input k's offset for output element j.
// It is the general (slow) path used by ops with several broadcast inputs.
func BroadcastIndex(out []int, ins ...[]int) [][]int32 {
	n := tensor.NumElements(out)
	idx := make([][]int32, len(ins))
	strides := make([][]int, len(ins))
	for k, s := range ins {
		idx[k] = make([]int32, n)
		strides[k] = BroadcastStrides(s, out)
	}
	coord := make([]int, len(out))
	offs := make([]int, len(ins))
	for j := 0; j < n; j++ {
		for k := range ins {
			idx[k][j] = int32(offs[k])
		}
		for d := len(out) - 1; d >= 0; d-- {
			coord[d]++
			for k := range ins {
				offs[k] += strides[k][d]
			}
			if coord[d] < out[d] {
				break
			}
			for k := range ins {
				offs[k] -= strides[k][d] * out[d]
			}
			coord[d] = 0
		}
	}
	return idx
}

// InferBroadcast infers the broadcast shape of the given input values.
func InferBroadcast(in ...*ir.Value) (ir.Shape, error) {
	shapes := make([]ir.Shape, 0, len(in))
	for _, v := range in {
		if v != nil {
			shapes = append(shapes, v.Type.Shape)
		}
	}
	return ir.Broadcast(shapes...)
}
