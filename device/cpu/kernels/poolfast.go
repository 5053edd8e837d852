package kernels

import (
	"math"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ops/nn"
)

// poolFast2D computes a 2-D float32 MaxPool or AveragePool over NCHW
// planes without dilation and with strides 1 or 2, the common cases of
// convolutional networks, and reports whether it did (false: the caller
// runs the generic path). Each output row is a vertical pass (the rows of
// the window reduced into a padded row buffer, vectorized) followed by a
// horizontal pass (each output the reduction of k consecutive or every
// other element of that buffer); pads and ceil_mode become fill values in
// the buffer, and AveragePool's divisors come from spans as in poolSep.
// Planes are spread over the cores.
func poolFast2D(k *poolKernel, g *nn.PoolGeometry, planes int, x, y []float32) bool {
	if g.Rank() != 2 || k.kind == poolLp {
		return false
	}
	for i := 0; i < 2; i++ {
		if g.Dil[i] != 1 || g.Stride[i] > 2 || g.Kernel[i] > 16 {
			return false
		}
	}
	sp, in, _ := g.Spans()
	rows, cols := sp[1], sp[2]
	H, W := in[1], in[2]
	OH, OW := len(rows), len(cols)
	kw, sw := g.Kernel[1], g.Stride[1]
	padL := g.PadB[1]
	avg := k.kind == poolAvg
	fill := float32(math.Inf(-1))
	if avg {
		fill = 0
	}
	// The row buffer holds input columns -padL .. (OW-1)*sw-padL+kw-1 (past
	// the right edge with ceil_mode) plus the slack poolH reads.
	bufLen := max(padL+W, poolHSrcLen(OW, kw, sw))
	var inv []float32 // AveragePool: 1/count of each output, row-major
	if avg {
		invBuf := poolInvPool.get(OH * OW)
		defer poolInvPool.put(invBuf)
		inv = *invBuf
		clear(inv)
		for i, r := range rows {
			rc := r.Hi - r.Lo
			if k.includePad {
				rc = r.Count
			}
			for j, c := range cols {
				cc := c.Hi - c.Lo
				if k.includePad {
					cc = c.Count
				}
				if n := rc * cc; n > 0 {
					inv[i*OW+j] = 1 / float32(n)
				}
			}
		}
	}
	chunk := max(1, (1<<15)/max(1, H*W), planes/(4*cpu.Threads()))
	cpu.DynamicFor(planes, chunk, func(lo, hi int) {
		bufp := poolRowPool.get(bufLen)
		defer poolRowPool.put(bufp)
		buf := *bufp
		for pl := lo; pl < hi; pl++ {
			xp := x[pl*H*W : (pl+1)*H*W]
			yp := y[pl*OH*OW : (pl+1)*OH*OW]
			for i, r := range rows {
				out := yp[i*OW : (i+1)*OW]
				if r.Lo >= r.Hi {
					for j := range out {
						out[j] = fill
					}
					continue
				}
				for j := 0; j < padL; j++ {
					buf[j] = fill
				}
				row := buf[padL : padL+W]
				copy(row, xp[(r.Start+r.Lo)*W:][:W])
				for q := r.Lo + 1; q < r.Hi; q++ {
					poolV(row, xp[(r.Start+q)*W:][:W], avg)
				}
				for j := padL + W; j < bufLen; j++ {
					buf[j] = fill
				}
				poolH(out, buf, kw, sw, avg)
				if avg {
					for j, v := range inv[i*OW : (i+1)*OW] {
						out[j] *= v
					}
				}
			}
		}
	})
	return true
}

// Scratch of the fast pooling path: row buffers and AveragePool's
// divisors, reused across calls.
var (
	poolRowPool floatBufs
	poolInvPool floatBufs
)

// poolHSrcLen is how many elements of its source poolH reads for n
// outputs of k taps with stride s (the assembly reads whole vectors).
func poolHSrcLen(n, k, s int) int {
	return s*16*((n+15)/16) + k + 16
}

// poolVGo is poolV in Go.
func poolVGo(dst, src []float32, avg bool) {
	src = src[:len(dst)]
	if avg {
		for i, v := range src {
			dst[i] += v
		}
		return
	}
	for i, v := range src {
		dst[i] = max(dst[i], v)
	}
}

// poolHGo is poolH in Go.
func poolHGo(dst, src []float32, k, stride int, avg bool) {
	for j := range dst {
		w := src[j*stride : j*stride+k]
		m := w[0]
		for _, v := range w[1:] {
			if avg {
				m += v
			} else {
				m = max(m, v)
			}
		}
		dst[j] = m
	}
}
