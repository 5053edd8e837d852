package kernels

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ops/nn"
)

// maxPlanePlan is what maxPoolPlanes needs of one input geometry, computed
// once per input shape and kept by the op (a plan runs one shape).
type maxPlanePlan struct {
	h, w, oh, ow    int
	k, stride, padL int
	bufLen          int
	tab             []int // per output row: offset of its first input row, rows inside
}

// maxPlaneCache holds the last plan of a poolOp.
type maxPlaneCache struct{ p atomic.Pointer[maxPlanePlan] }

// maxPlaneFor returns the plan of g, from the cache when the shape is the
// one of the last call.
func (c *maxPlaneCache) maxPlaneFor(g *nn.PoolGeometry) *maxPlanePlan {
	if p := c.p.Load(); p != nil && p.h == g.In[0] && p.w == g.In[1] && p.oh == g.Out[0] && p.ow == g.Out[1] &&
		p.k == g.Kernel[1] && p.stride == g.Stride[1] && p.padL == g.PadB[1] {
		return p
	}
	sp, in, _ := g.Spans()
	rows := sp[1]
	p := &maxPlanePlan{h: in[1], w: in[2], oh: len(rows), ow: len(sp[2]),
		k: g.Kernel[1], stride: g.Stride[1], padL: g.PadB[1]}
	p.bufLen = max(p.padL+p.w, poolHSrcLen(p.ow, p.k, p.stride))
	p.tab = make([]int, 2*p.oh)
	for i, r := range rows {
		p.tab[2*i] = (r.Start + r.Lo) * p.w
		p.tab[2*i+1] = r.Hi - r.Lo
		if r.Hi <= r.Lo {
			p.tab[2*i] = 0
			p.tab[2*i+1] = 0
		}
	}
	c.p.Store(p)
	return p
}

// maxPoolPlanes computes a 2-D float32 MaxPool without dilation, strides 1
// or 2 and windows up to 16 wide, one whole plane per kernel call (the
// vertical and horizontal passes of poolFast2D without a Go call per
// output row, which dominated on the small planes of the deeper layers),
// planes spread over the cores. It reports false when it does not apply
// (the caller takes poolFast2D or the generic path).
func maxPoolPlanes(k *poolKernel, g *nn.PoolGeometry, planes int, x, y []float32) bool {
	if !poolAsm || g.Rank() != 2 || k.kind != poolMax {
		return false
	}
	for i := 0; i < 2; i++ {
		if g.Dil[i] != 1 || g.Stride[i] > 2 || g.Kernel[i] > 16 {
			return false
		}
	}
	p := k.planes.maxPlaneFor(g)
	H, W, OH, OW := p.h, p.w, p.oh, p.ow
	if H*W == 0 || OH*OW == 0 {
		return false
	}
	chunk := max(1, (1<<15)/max(1, H*W), planes/(4*cpu.Threads()))
	cpu.DynamicFor(planes, chunk, func(lo, hi int) {
		bufp := poolRowPool.get(2 * p.bufLen) // two row buffers, used in turn
		defer poolRowPool.put(bufp)
		buf := *bufp
		ninf := float32(math.Inf(-1))
		for j := range buf {
			buf[j] = ninf
		}
		for pl := lo; pl < hi; pl++ {
			maxPoolPlane(y[pl*OH*OW:(pl+1)*OH*OW], x[pl*H*W:(pl+1)*H*W], buf, p.tab, W, p.k, p.stride, p.padL)
		}
	})
	return true
}

// maxPoolPlaneCheck panics unless the kernel's reads and writes stay inside
// its slices (the assembly does not check).
func maxPoolPlaneCheck(y, x, buf []float32, tab []int, w, ow, k, stride, padL int) {
	rows := len(tab) / 2
	if len(y) != rows*ow || len(buf)/2 < max(padL+w, poolHSrcLen(ow, k, stride)) || k < 1 || (stride != 1 && stride != 2) {
		panic(fmt.Sprintf("nn: maxPoolPlane: %d outputs, %d rows of %d, buffer %d, k %d stride %d", len(y), rows, ow, len(buf), k, stride))
	}
	for i := 0; i < rows; i++ {
		off, n := tab[2*i], tab[2*i+1]
		if n > 0 && (off < 0 || off+n*w > len(x)) {
			panic(fmt.Sprintf("nn: maxPoolPlane: row %d reads %d rows from %d of %d", i, n, off, len(x)))
		}
	}
}

// maxPoolPlaneGo is maxPoolPlaneAVX512 in Go (one row buffer: the first
// half of buf).
func maxPoolPlaneGo(y, x, buf []float32, tab []int, w, k, stride, padL int) {
	rows := len(tab) / 2
	if rows == 0 {
		return
	}
	ow := len(y) / rows
	maxPoolPlaneCheck(y, x, buf, tab, w, ow, k, stride, padL)
	for i := 0; i < rows; i++ {
		out := y[i*ow : (i+1)*ow]
		off, n := tab[2*i], tab[2*i+1]
		if n == 0 {
			for j := range out {
				out[j] = float32(math.Inf(-1))
			}
			continue
		}
		row := buf[padL : padL+w]
		copy(row, x[off:off+w])
		for q := 1; q < n; q++ {
			poolVGo(row, x[off+q*w:off+(q+1)*w], false)
		}
		poolHGo(out, buf, k, stride, false)
	}
}
