package image

import (
	"github.com/kilnai/kiln/internal/parallel"
)

// bilinearable reports whether an axis table has two taps and no
// extrapolation, as bilinear2D needs.
func bilinearable(t *axisTable) bool { return t.taps == 2 && t.ext == nil }

// bilinear2D is the fast path of linear Resize of the two innermost axes
// of float32 images (NCHW): each output row blends two source rows, each
// interpolated along the width once and kept in a small cache while the
// following output rows read it again. No intermediate tensor is made.
func bilinear2D(src, dst []float32, p *resizePlan, th, tw *axisTable) {
	r := len(p.in)
	inH, inW, outH, outW := p.in[r-2], p.in[r-1], p.out[r-2], p.out[r-1]
	planes := len(src) / (inH * inW)
	x0 := make([]int32, outW)
	x1 := make([]int32, outW)
	wx0 := make([]float32, outW)
	wx1 := make([]float32, outW)
	for j := 0; j < outW; j++ {
		x0[j], x1[j] = int32(tw.idx[2*j]), int32(tw.idx[2*j+1])
		wx0[j], wx1[j] = float32(tw.w[2*j]), float32(tw.w[2*j+1])
	}
	grain := max(1, passGrain/(2*outW))
	parallel.For(planes*outH, grain, func(lo, hi int) {
		// two cached horizontally interpolated rows, keyed by plane*inH+row
		var key [2]int
		key[0], key[1] = -1, -1
		rows := [2][]float32{make([]float32, outW), make([]float32, outW)}
		hrow := func(k, other int) []float32 {
			for s := 0; s < 2; s++ {
				if key[s] == k {
					return rows[s]
				}
			}
			s := 0
			if key[0] == other {
				s = 1
			}
			key[s] = k
			row := rows[s][:outW]
			srow := src[k*inW : (k+1)*inW]
			a0, a1, b0, b1 := x0[:len(row)], x1[:len(row)], wx0[:len(row)], wx1[:len(row)]
			for j := range row {
				row[j] = b0[j]*srow[a0[j]] + b1[j]*srow[a1[j]]
			}
			return row
		}
		for u := lo; u < hi; u++ {
			pl, y := u/outH, u%outH
			k0, k1 := pl*inH+th.idx[2*y], pl*inH+th.idx[2*y+1]
			w0, w1 := float32(th.w[2*y]), float32(th.w[2*y+1])
			d := dst[u*outW : (u+1)*outW]
			switch {
			case w1 == 0 || k0 == k1:
				a := hrow(k0, -1)
				w := w0 + w1
				for j := range d {
					d[j] = w * a[j]
				}
			case w0 == 0:
				b := hrow(k1, -1)
				for j := range d {
					d[j] = w1 * b[j]
				}
			default:
				a := hrow(k0, k1)
				b := hrow(k1, k0)
				blend(d, a, b, w0, w1)
			}
		}
	})
}

// blend sets d = w0*a + w1*b.
func blend(d, a, b []float32, w0, w1 float32) {
	a, b = a[:len(d)], b[:len(d)]
	j := 0
	for ; j+4 <= len(d); j += 4 {
		d0 := w0*a[j] + w1*b[j]
		d1 := w0*a[j+1] + w1*b[j+1]
		d2 := w0*a[j+2] + w1*b[j+2]
		d3 := w0*a[j+3] + w1*b[j+3]
		d[j], d[j+1], d[j+2], d[j+3] = d0, d1, d2, d3
	}
	for ; j < len(d); j++ {
		d[j] = w0*a[j] + w1*b[j]
	}
}
