package nn

import (
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ops"
)

// convShape is a convolution's sizes: batch n, input channels c, output
// channels m, group and the window geometry.
type convShape struct {
	n, c, m, group int
	g              *geom
}

// sizes returns the spatial element counts of input and output and the
// kernel size.
func (s *convShape) sizes() (inSize, outSize, kSize int) {
	inSize, outSize, kSize = 1, 1, 1
	for i := range s.g.in {
		inSize *= s.g.in[i]
		outSize *= s.g.out[i]
		kSize *= s.g.kernel[i]
	}
	return
}

// pointwise reports whether the convolution is a plain 1x1 product: unit
// kernel and stride, no padding, so the input is its own im2col matrix.
func (s *convShape) pointwise() bool {
	for i := range s.g.in {
		if s.g.kernel[i] != 1 || s.g.stride[i] != 1 || s.g.padB[i] != 0 || s.g.padE[i] != 0 {
			return false
		}
	}
	return true
}

// im2col writes the column matrix of cg channels of one image x ([cg,
// in...]) into col ([cg*kSize, outSize]): row (ch, kernel offset), column
// output position; positions in the padding read as zero.
func im2col[T any](g *geom, x []T, cg int, col []T) {
	r := g.rank()
	inSize, outSize, kSize := 1, 1, 1
	for i := 0; i < r; i++ {
		inSize *= g.in[i]
		outSize *= g.out[i]
		kSize *= g.kernel[i]
	}
	last := r - 1
	inW, outW := g.in[last], g.out[last]
	sW, dW, pW := g.stride[last], g.dil[last], g.padB[last]
	inStr := make([]int, r)
	acc := 1
	for i := r - 1; i >= 0; i-- {
		inStr[i] = acc
		acc *= g.in[i]
	}
	rows := cg * kSize
	grain := max(1, (1<<14)/max(1, outSize))
	cpu.ParallelFor(rows, grain, func(lo, hi int) {
		kc := make([]int, r)
		oc := make([]int, r)
		for row := lo; row < hi; row++ {
			ch, kk := row/kSize, row%kSize
			for i := r - 1; i >= 0; i-- {
				kc[i] = kk % g.kernel[i]
				kk /= g.kernel[i]
			}
			src := x[ch*inSize : (ch+1)*inSize]
			dst := col[row*outSize : (row+1)*outSize]
			// valid range of the last output coordinate
			off := kc[last]*dW - pW
			wlo := 0
			if off < 0 {
				wlo = (-off + sW - 1) / sW
			}
			whi := 0
			if inW-1-off >= 0 {
				whi = (inW-1-off)/sW + 1
			}
			whi = min(whi, outW)
			wlo = min(wlo, whi)
			clear(oc)
			for base := 0; base < outSize; base += outW {
				run := dst[base : base+outW]
				// input offset of the outer coordinates
				inOff, ok := 0, true
				for i := 0; i < last; i++ {
					ic := oc[i]*g.stride[i] - g.padB[i] + kc[i]*g.dil[i]
					if ic < 0 || ic >= g.in[i] {
						ok = false
						break
					}
					inOff += ic * inStr[i]
				}
				if !ok {
					clear(run)
				} else {
					clear(run[:wlo])
					clear(run[whi:])
					if wlo == whi {
						// the whole run reads padding
					} else if sW == 1 {
						copy(run[wlo:whi], src[inOff+wlo+off:inOff+whi+off])
					} else {
						p := inOff + wlo*sW + off
						for j := wlo; j < whi; j++ {
							run[j] = src[p]
							p += sW
						}
					}
				}
				for i := last - 1; i >= 0; i-- {
					oc[i]++
					if oc[i] < g.out[i] {
						break
					}
					oc[i] = 0
				}
			}
		}
	})
}

// convGeneric computes a grouped N-D convolution y = conv(x, w) + bias by
// im2col and GEMM in type T. x is [n, c, in...], w [m, c/group, k...], bias
// nil or [m], y [n, m, out...].
func convGeneric[T ops.Number](s *convShape, x, w, bias, y []T) {
	inSize, outSize, kSize := s.sizes()
	cg, mg := s.c/s.group, s.m/s.group
	kRows := cg * kSize
	direct := s.pointwise()
	task := func(b, gr int, col []T) {
		xs := x[(b*s.c+gr*cg)*inSize : (b*s.c+(gr+1)*cg)*inSize]
		if direct {
			col = xs
		} else {
			im2col(s.g, xs, cg, col)
		}
		yo := y[(b*s.m+gr*mg)*outSize : (b*s.m+(gr+1)*mg)*outSize]
		var beta T
		if bias != nil {
			for j := 0; j < mg; j++ {
				v := bias[gr*mg+j]
				row := yo[j*outSize : (j+1)*outSize]
				for i := range row {
					row[i] = v
				}
			}
			beta = 1
		}
		gemm(false, false, mg, outSize, kRows, 1, w[gr*mg*kRows:(gr+1)*mg*kRows], kRows, col, outSize, beta, yo, outSize)
	}
	tasks := s.n * s.group
	if s.group == 1 || tasks == 1 {
		var col []T
		if !direct {
			col = make([]T, kRows*outSize)
		}
		for b := 0; b < s.n; b++ {
			for gr := 0; gr < s.group; gr++ {
				task(b, gr, col)
			}
		}
		return
	}
	cpu.ParallelFor(tasks, 1, func(lo, hi int) {
		var col []T
		if !direct {
			col = make([]T, kRows*outSize)
		}
		for t := lo; t < hi; t++ {
			task(t/s.group, t%s.group, col)
		}
	})
}
