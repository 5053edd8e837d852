package kernels

import (
	"math"
	"sync"
	"sync/atomic"

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
// Planes are spread over the cores. The windows and divisors are a plan
// kept by the op for its last geometry and the call's closure is a pooled
// job, so that a steady-state call allocates nothing (this is the path of
// CPUs without AVX-512, where poolRegPlanes and maxPoolPlanes do not run).
func poolFast2D(k *poolKernel, g *nn.PoolGeometry, planes int, x, y []float32) bool {
	if g.Rank() != 2 || k.kind == poolLp {
		return false
	}
	for i := 0; i < 2; i++ {
		if g.Dil[i] != 1 || g.Stride[i] > 2 || g.Kernel[i] > 16 {
			return false
		}
	}
	p := k.fast.planFor(k, g)
	chunk := max(1, (1<<15)/max(1, p.h*p.w), planes/(4*cpu.Threads()))
	j := poolFastJobs.Get().(*poolFastJob)
	j.p, j.x, j.y = p, x, y
	cpu.DynamicFor(planes, chunk, j.fn)
	j.p, j.x, j.y = nil, nil, nil
	poolFastJobs.Put(j)
	return true
}

// poolFastPlan is what poolFast2D needs of one geometry: the windows of
// the output rows and columns, the sizes, and AveragePool's 1/count of
// each output (row-major). Read only.
type poolFastPlan struct {
	g            *nn.PoolGeometry // the geometry it was made for (the key)
	rows, cols   []nn.Span
	h, w, oh, ow int
	kw, sw, padL int
	bufLen       int
	avg          bool
	fill         float32
	inv          []float32
}

// poolFastCache holds the last plan of a poolOp. The op's geometry of an
// input shape is itself cached and read only (poolKernel.geometry), so the
// pointer identifies it; the plan keeps it alive.
type poolFastCache struct{ p atomic.Pointer[poolFastPlan] }

// planFor returns the plan of g, from the cache when g is the geometry of
// the last call.
func (c *poolFastCache) planFor(k *poolKernel, g *nn.PoolGeometry) *poolFastPlan {
	if p := c.p.Load(); p != nil && p.g == g {
		return p
	}
	sp, in, _ := g.Spans()
	p := &poolFastPlan{g: g, rows: sp[1], cols: sp[2], h: in[1], w: in[2], oh: len(sp[1]), ow: len(sp[2]),
		kw: g.Kernel[1], sw: g.Stride[1], padL: g.PadB[1], avg: k.kind == poolAvg, fill: float32(math.Inf(-1))}
	// The row buffer holds input columns -padL .. (OW-1)*sw-padL+kw-1 (past
	// the right edge with ceil_mode) plus the slack poolH reads.
	p.bufLen = max(p.padL+p.w, poolHSrcLen(p.ow, p.kw, p.sw))
	if p.avg {
		p.fill = 0
		p.inv = make([]float32, p.oh*p.ow)
		for i, r := range p.rows {
			rc := r.Hi - r.Lo
			if k.includePad {
				rc = r.Count
			}
			for j, c := range p.cols {
				cc := c.Hi - c.Lo
				if k.includePad {
					cc = c.Count
				}
				if n := rc * cc; n > 0 {
					p.inv[i*p.ow+j] = 1 / float32(n)
				}
			}
		}
	}
	c.p.Store(p)
	return p
}

// poolFastJob is one poolFast2D call spread over the cores; pooled with
// its method value so that a call allocates nothing.
type poolFastJob struct {
	p    *poolFastPlan
	x, y []float32
	fn   func(lo, hi int)
}

var poolFastJobs = sync.Pool{New: func() any {
	j := &poolFastJob{}
	j.fn = j.run
	return j
}}

// run pools planes [lo, hi).
func (j *poolFastJob) run(lo, hi int) {
	p := j.p
	H, W, OH, OW := p.h, p.w, p.oh, p.ow
	fill, avg := p.fill, p.avg
	bufp := poolRowPool.get(p.bufLen)
	defer poolRowPool.put(bufp)
	buf := *bufp
	for pl := lo; pl < hi; pl++ {
		xp := j.x[pl*H*W : (pl+1)*H*W]
		yp := j.y[pl*OH*OW : (pl+1)*OH*OW]
		for i, r := range p.rows {
			out := yp[i*OW : (i+1)*OW]
			if r.Lo >= r.Hi {
				for j := range out {
					out[j] = fill
				}
				continue
			}
			for j := 0; j < p.padL; j++ {
				buf[j] = fill
			}
			row := buf[p.padL : p.padL+W]
			copy(row, xp[(r.Start+r.Lo)*W:][:W])
			for q := r.Lo + 1; q < r.Hi; q++ {
				poolV(row, xp[(r.Start+q)*W:][:W], avg)
			}
			for j := p.padL + W; j < p.bufLen; j++ {
				buf[j] = fill
			}
			poolH(out, buf, p.kw, p.sw, avg)
			if avg {
				for j, v := range p.inv[i*OW : (i+1)*OW] {
					out[j] *= v
				}
			}
		}
	}
}

// Scratch of the fast pooling path: row buffers, reused across calls.
var poolRowPool floatBufs

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
