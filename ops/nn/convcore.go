package nn

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// newOut is makeOut through ops.NewOutput: with an engine's allocator the
// tensor comes from its arena, not zeroed, so the kernel must write every
// element.
func newOut(env *ops.Env, dt tensor.DType, shape []int) (*tensor.Tensor, error) {
	t, err := ops.NewOutput(env, dt, shape)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	return t, nil
}

// scratchPool recycles the column buffers of the convolutions.
var scratchPool sync.Pool // of *[]uint64

// scratch returns a buffer of n elements of T (contents undefined) and the
// handle to give back with putScratch.
func scratch[T any](n int) ([]T, *[]uint64) {
	var z T
	words := (n*int(unsafe.Sizeof(z)) + 7) / 8
	bp, _ := scratchPool.Get().(*[]uint64)
	if bp == nil || cap(*bp) < words {
		b := make([]uint64, words)
		bp = &b
	}
	if words == 0 {
		return []T{}, bp
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&(*bp)[:words][0])), n), bp
}

// putScratch returns a buffer of scratch to the pool.
func putScratch(bp *[]uint64) { scratchPool.Put(bp) }

// convShape is a convolution's sizes: batch n, input channels c, output
// channels m, group and the window geometry.
type convShape struct {
	n, c, m, group int
	g              *geom
	// geom and out back g and convSetup's output shape (up to geomRank
	// spatial dims): one allocation for the three
	geom geom
	out  [2 + geomRank]int
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

// convTile bounds the number of elements of one im2col (or col2im) tile,
// so that the column buffer stays in cache and its size is bounded whatever
// the convolution. Tests lower it to exercise the tiling.
var convTile = 1 << 18

// im2col writes the columns of output runs [r0, r1) of cg channels of one
// image x ([cg, in...]) into col ([cg*kSize, (r1-r0)*outW]): row (channel,
// kernel offset), column output position. A run is one row of the last
// output dim. Positions in the padding read as zero.
func im2col[T any](g *geom, x []T, cg int, col []T, r0, r1 int, parallel bool) {
	r := g.rank()
	inSize, kSize := 1, 1
	for i := 0; i < r; i++ {
		inSize *= g.in[i]
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
	n := (r1 - r0) * outW
	rows := cg * kSize
	grain := max(1, (1<<13)/max(1, n))
	if !parallel {
		grain = rows
	}
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
			dst := col[row*n : (row+1)*n]
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
			// outer output coordinates of run r0
			rem := r0
			for i := last - 1; i >= 0; i-- {
				oc[i] = rem % g.out[i]
				rem /= g.out[i]
			}
			for base := 0; base < n; base += outW {
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
				switch {
				case !ok || wlo == whi:
					clear(run)
				case sW == 1:
					clear(run[:wlo])
					clear(run[whi:])
					copy(run[wlo:whi], src[inOff+wlo+off:inOff+whi+off])
				default:
					clear(run[:wlo])
					clear(run[whi:])
					p := inOff + wlo*sW + off
					for j := wlo; j < whi; j++ {
						run[j] = src[p]
						p += sW
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
// im2col and GEMM in type T, tile by tile of output runs. x is [n, c,
// in...], w [m, c/group, k...], bias nil or [m], y [n, m, out...]. The
// (image, group, tile) tasks run in parallel, each with its own column
// buffer.
func convGeneric[T ops.Number](s *convShape, x, w, bias, y []T) {
	inSize, outSize, kSize := s.sizes()
	cg, mg := s.c/s.group, s.m/s.group
	kRows := cg * kSize
	direct := s.pointwise()
	outW := s.g.out[s.g.rank()-1]
	runs := outSize / max(1, outW)
	if runs == 0 || s.n*s.group == 0 || mg == 0 {
		return
	}
	// enough tiles to keep every core busy, each within the tile budget
	want := max(1, (cpu.Threads()+s.n*s.group-1)/(s.n*s.group))
	perTile := (runs + want - 1) / want
	perTile = max(1, min(perTile, convTile/max(1, kRows*outW)))
	if direct {
		perTile = runs
	}
	tiles := (runs + perTile - 1) / perTile
	colLen := 0
	if !direct {
		colLen = kRows * perTile * outW
	}
	tasks := s.n * s.group * tiles
	cpu.ParallelFor(tasks, 1, func(lo, hi int) {
		col, buf := scratch[T](colLen)
		defer putScratch(buf)
		for t := lo; t < hi; t++ {
			tile := t % tiles
			b, gr := t/tiles/s.group, (t/tiles)%s.group
			r0 := tile * perTile
			r1 := min(runs, r0+perTile)
			p0, n := r0*outW, (r1-r0)*outW
			xs := x[(b*s.c+gr*cg)*inSize : (b*s.c+(gr+1)*cg)*inSize]
			yo := y[(b*s.m+gr*mg)*outSize : (b*s.m+(gr+1)*mg)*outSize]
			wg := w[gr*mg*kRows : (gr+1)*mg*kRows]
			var beta T
			if bias != nil {
				for j := 0; j < mg; j++ {
					v := bias[gr*mg+j]
					row := yo[j*outSize+p0 : j*outSize+p0+n]
					for i := range row {
						row[i] = v
					}
				}
				beta = 1
			}
			if direct {
				gemm(false, false, mg, n, kRows, 1, wg, kRows, xs[p0:], outSize, beta, yo[p0:], outSize)
				continue
			}
			im2col(s.g, xs, cg, col[:kRows*n], r0, r1, tasks == 1)
			gemm(false, false, mg, n, kRows, 1, wg, kRows, col, n, beta, yo[p0:], outSize)
		}
	})
}
