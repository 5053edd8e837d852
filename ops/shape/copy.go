package shape

import (
	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/tensor"
)

// copyGrain is the minimum number of elements one goroutine of a copy moves.
const copyGrain = 1 << 16

// tileJ and tileK are the edges of the blocks a transposing copy moves at a
// time: tileJ rows of the source (contiguous in it) by tileK of the
// destination.
const tileJ, tileK = 32, 32

// copyND copies a box of dims elements between two tensors of the same type:
//
//	dst[doff + Σ i_k*dstr[k]] = src[soff + Σ i_k*sstr[k]]
//
// for every index i of the box. Strides may be zero (broadcast) or negative
// (reversed). Axes that are contiguous in both are merged so that the
// innermost loop is a copy() of a whole run, a fill, or a cache-blocked
// transpose; large boxes are split over all cores. The caller guarantees that
// every offset is in range.
func copyND(dst *tensor.Tensor, doff int, dstr []int, src *tensor.Tensor, soff int, sstr []int, dims []int) {
	switch {
	case dst.DType == tensor.String:
		copyNDT(dst.Strings, doff, dstr, src.Strings, soff, sstr, dims)
	case dst.DType.Size() == 1:
		copyNDT(dst.Data, doff, dstr, src.Data, soff, sstr, dims)
	case dst.DType.Size() == 2:
		copyNDT(view[uint16](dst.Data), doff, dstr, view[uint16](src.Data), soff, sstr, dims)
	case dst.DType.Size() == 4:
		copyNDT(view[uint32](dst.Data), doff, dstr, view[uint32](src.Data), soff, sstr, dims)
	case dst.DType.Size() == 8:
		copyNDT(view[uint64](dst.Data), doff, dstr, view[uint64](src.Data), soff, sstr, dims)
	default:
		// wider elements: copy them as runs of 8-byte words
		w := dst.DType.Size() / 8
		d2, ds2, ss2 := append(append([]int{}, dims...), w), scale(dstr, w), scale(sstr, w)
		copyNDT(view[uint64](dst.Data), doff*w, append(ds2, 1), view[uint64](src.Data), soff*w, append(ss2, 1), d2)
	}
}

func scale(s []int, k int) []int {
	out := make([]int, len(s))
	for i, v := range s {
		out[i] = v * k
	}
	return out
}

// simplify drops unit axes and merges axes that are contiguous in both
// layouts. It returns false when the box is empty.
func simplify(dims, dstr, sstr []int) (d, ds, ss []int, ok bool) {
	for i := range dims {
		if dims[i] == 0 {
			return nil, nil, nil, false
		}
		if dims[i] == 1 {
			continue
		}
		if n := len(d); n > 0 && ds[n-1] == dstr[i]*dims[i] && ss[n-1] == sstr[i]*dims[i] {
			d[n-1] *= dims[i]
			ds[n-1], ss[n-1] = dstr[i], sstr[i]
			continue
		}
		d = append(d, dims[i])
		ds = append(ds, dstr[i])
		ss = append(ss, sstr[i])
	}
	return d, ds, ss, true
}

// odometer walks the outer index space of a box, keeping both offsets.
type odometer struct {
	dims, dstr, sstr, idx []int
	d, s                  int
}

// newOdometer starts at linear outer index start.
func newOdometer(dims, dstr, sstr []int, doff, soff, start int) *odometer {
	o := &odometer{dims: dims, dstr: dstr, sstr: sstr, idx: make([]int, len(dims)), d: doff, s: soff}
	for k := len(dims) - 1; k >= 0 && start > 0; k-- {
		i := start % dims[k]
		start /= dims[k]
		o.idx[k] = i
		o.d += i * dstr[k]
		o.s += i * sstr[k]
	}
	return o
}

func (o *odometer) next() {
	for k := len(o.dims) - 1; k >= 0; k-- {
		o.idx[k]++
		o.d += o.dstr[k]
		o.s += o.sstr[k]
		if o.idx[k] < o.dims[k] {
			return
		}
		o.d -= o.dstr[k] * o.dims[k]
		o.s -= o.sstr[k] * o.dims[k]
		o.idx[k] = 0
	}
}

func copyNDT[T any](dst []T, doff int, dstr []int, src []T, soff int, sstr []int, dims []int) {
	dims, dstr, sstr, ok := simplify(dims, dstr, sstr)
	if !ok {
		return
	}
	n := len(dims)
	if n == 0 {
		dst[doff] = src[soff]
		return
	}
	L := n - 1
	run, dl, sl := dims[L], dstr[L], sstr[L]
	outer := prod(dims[:L])
	od, ods, oss := dims[:L], dstr[:L], sstr[:L]
	switch {
	case dl == 1 && sl == 1:
		if outer == 1 {
			parallel.For(run, copyGrain, func(lo, hi int) {
				copy(dst[doff+lo:doff+hi], src[soff+lo:soff+hi])
			})
			return
		}
		parallel.For(outer, max(1, copyGrain/run), func(lo, hi int) {
			o := newOdometer(od, ods, oss, doff, soff, lo)
			for i := lo; i < hi; i++ {
				copy(dst[o.d:o.d+run], src[o.s:o.s+run])
				o.next()
			}
		})
	case dl == 1 && sl == 0:
		parallel.For(outer, max(1, copyGrain/run), func(lo, hi int) {
			o := newOdometer(od, ods, oss, doff, soff, lo)
			for i := lo; i < hi; i++ {
				row := dst[o.d : o.d+run]
				row[0] = src[o.s]
				for f := 1; f < run; f *= 2 {
					copy(row[f:], row[:f])
				}
				o.next()
			}
		})
	case dl == 1 && transposeAxis(sstr[:L]) >= 0:
		j := transposeAxis(sstr[:L])
		// move the source-contiguous axis next to the innermost one
		dims = append(append(append([]int{}, dims[:j]...), dims[j+1:L]...), dims[j], dims[L])
		dstr = append(append(append([]int{}, dstr[:j]...), dstr[j+1:L]...), dstr[j], dstr[L])
		sstr = append(append(append([]int{}, sstr[:j]...), sstr[j+1:L]...), sstr[j], sstr[L])
		transposeTiles(dst, doff, dstr, src, soff, sstr, dims)
	default:
		parallel.For(outer, max(1, copyGrain/run), func(lo, hi int) {
			o := newOdometer(od, ods, oss, doff, soff, lo)
			for i := lo; i < hi; i++ {
				d, s := o.d, o.s
				for k := 0; k < run; k++ {
					dst[d] = src[s]
					d += dl
					s += sl
				}
				o.next()
			}
		})
	}
}

// transposeAxis returns the index of the axis with source stride 1, or -1.
func transposeAxis(sstr []int) int {
	for i, s := range sstr {
		if s == 1 {
			return i
		}
	}
	return -1
}

// transposeTiles copies a box whose innermost axis is contiguous in dst and
// whose next axis is contiguous in src, in tile x tile blocks.
func transposeTiles[T any](dst []T, doff int, dstr []int, src []T, soff int, sstr []int, dims []int) {
	n := len(dims)
	J, K := dims[n-2], dims[n-1]
	dj, sk := dstr[n-2], sstr[n-1]
	od, ods, oss := dims[:n-2], dstr[:n-2], sstr[:n-2]
	outer := prod(od)
	tj, tk := tileJ, tileK
	nbj := (J + tj - 1) / tj
	tasks := outer * nbj
	parallel.For(tasks, max(1, copyGrain/(tj*K)), func(lo, hi int) {
		o := newOdometer(od, ods, oss, doff, soff, lo/nbj)
		cur := lo / nbj
		for t := lo; t < hi; t++ {
			if t/nbj != cur {
				o.next()
				cur = t / nbj
			}
			j0 := (t % nbj) * tj
			j1 := min(j0+tj, J)
			for k0 := 0; k0 < K; k0 += tk {
				k1 := min(k0+tk, K)
				transposeBlock(dst, o.d, dj, src, o.s, sk, j0, j1, k0, k1)
			}
		}
	})
}

// transposeBlock copies dst[d + j*dj + k] = src[s + j + k*sk] for j in
// [j0, j1), k in [k0, k1), 4x4 elements at a time: four contiguous reads
// and four contiguous writes.
func transposeBlock[T any](dst []T, d, dj int, src []T, s, sk, j0, j1, k0, k1 int) {
	j := j0
	for ; j+4 <= j1; j += 4 {
		k := k0
		for ; k+4 <= k1; k += 4 {
			p := s + j + k*sk
			a := src[p : p+4 : p+4]
			b := src[p+sk : p+sk+4 : p+sk+4]
			c := src[p+2*sk : p+2*sk+4 : p+2*sk+4]
			e := src[p+3*sk : p+3*sk+4 : p+3*sk+4]
			q := d + j*dj + k
			r0 := dst[q : q+4 : q+4]
			r1 := dst[q+dj : q+dj+4 : q+dj+4]
			r2 := dst[q+2*dj : q+2*dj+4 : q+2*dj+4]
			r3 := dst[q+3*dj : q+3*dj+4 : q+3*dj+4]
			r0[0], r0[1], r0[2], r0[3] = a[0], b[0], c[0], e[0]
			r1[0], r1[1], r1[2], r1[3] = a[1], b[1], c[1], e[1]
			r2[0], r2[1], r2[2], r2[3] = a[2], b[2], c[2], e[2]
			r3[0], r3[1], r3[2], r3[3] = a[3], b[3], c[3], e[3]
		}
		for ; k < k1; k++ {
			p := s + j + k*sk
			q := d + j*dj + k
			dst[q], dst[q+dj], dst[q+2*dj], dst[q+3*dj] = src[p], src[p+1], src[p+2], src[p+3]
		}
	}
	for ; j < j1; j++ {
		q := d + j*dj
		p := s + j + k0*sk
		row := dst[q+k0 : q+k1]
		for k := range row {
			row[k] = src[p]
			p += sk
		}
	}
}
