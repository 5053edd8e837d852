package nn

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/kilnai/kiln/device/cpu"
)

// poolS2Plan is what poolS2Planes needs of one input geometry: the rows,
// column blocks and AveragePool divisors of poolS2AVX512, computed once per
// shape and kept by the op.
type poolS2Plan struct {
	key  [11]int // in, out, kernel, stride, padB, padE of g... see poolS2Key
	avg  bool
	incl bool
	h, w int
	oh   int
	ow   int
	kw   int
	nblk int
	tab  []int     // per output row: block 0's offset, rows inside, divisors' offset, output offset
	blk  []uint16  // per block of 16 outputs: masks of A, B, C, the outputs, border flag, 3 unused
	inv  []float32 // AveragePool: 1/count per output column, one row of nblk*16 per distinct row count
}

// poolS2Cache holds the last plan of a poolOp.
type poolS2Cache struct{ p atomic.Pointer[poolS2Plan] }

// poolS2Key is the geometry a plan depends on.
func poolS2Key(g *geom) [11]int {
	return [11]int{g.in[0], g.in[1], g.out[0], g.out[1], g.kernel[0], g.kernel[1], g.stride[0], g.padB[0], g.padB[1], g.padE[0], g.padE[1]}
}

// poolS2Applies reports whether poolS2Planes runs g: 2-D, no dilation, a
// horizontal stride of 2 and a window 2 or 3 columns wide (any rows).
func poolS2Applies(k *poolOp, g *geom) bool {
	return g.rank() == 2 && (k.kind == poolMax || k.kind == poolAvg) && g.dil[0] == 1 && g.dil[1] == 1 &&
		g.stride[1] == 2 && (g.kernel[1] == 2 || g.kernel[1] == 3) && g.in[0]*g.in[1] > 0 && g.out[0]*g.out[1] > 0
}

// planFor returns the plan of g, from the cache when the geometry is the
// one of the last call.
func (c *poolS2Cache) planFor(k *poolOp, g *geom) *poolS2Plan {
	key := poolS2Key(g)
	avg := k.kind == poolAvg
	if p := c.p.Load(); p != nil && p.key == key && p.avg == avg && p.incl == k.includePad {
		return p
	}
	p := newPoolS2Plan(g, avg, k.includePad)
	c.p.Store(p)
	return p
}

func newPoolS2Plan(g *geom, avg, incl bool) *poolS2Plan {
	sp, in, _ := spans(g)
	rows, cols := sp[1], sp[2]
	p := &poolS2Plan{key: poolS2Key(g), avg: avg, incl: incl, h: in[1], w: in[2], oh: len(rows), ow: len(cols), kw: g.kernel[1]}
	padL := g.padB[1]
	p.nblk = (p.ow + 15) / 16
	lanes := func(cb, n int) uint16 { // lanes l < n of a vector at column cb inside the row
		var m uint16
		for l := 0; l < n; l++ {
			if c := cb + l; c >= 0 && c < p.w {
				m |= 1 << l
			}
		}
		return m
	}
	p.blk = make([]uint16, 8*p.nblk)
	for b := 0; b < p.nblk; b++ {
		cb := 32*b - padL
		e := p.blk[8*b : 8*b+8]
		e[0], e[1] = lanes(cb, 16), lanes(cb+16, 16)
		if p.kw == 3 {
			e[2] = lanes(cb+32, 1)
		}
		e[3] = uint16(1<<min(16, p.ow-16*b) - 1)
		if e[0] != 0xffff || e[1] != 0xffff || (p.kw == 3 && e[2] != 1) {
			e[4] = 1
		}
	}
	p.tab = make([]int, 4*p.oh)
	invOff := map[int]int{}
	for i, r := range rows {
		t := p.tab[4*i : 4*i+4]
		t[3] = i * p.ow
		n := r.hi - r.lo
		if n <= 0 {
			continue
		}
		t[0], t[1] = (r.start+r.lo)*p.w-padL, n
		if !avg {
			continue
		}
		rc := n
		if incl {
			rc = r.count
		}
		off, ok := invOff[rc]
		if !ok {
			off = len(p.inv)
			invOff[rc] = off
			p.inv = slices.Grow(p.inv, 16*p.nblk)[:off+16*p.nblk]
			for j, c := range cols {
				cc := c.hi - c.lo
				if incl {
					cc = c.count
				}
				if m := rc * cc; m > 0 {
					p.inv[off+j] = 1 / float32(m)
				}
			}
		}
		t[2] = off
	}
	return p
}

// check panics unless the kernel's reads stay inside x and its writes
// inside y (the assembly does not check).
func (p *poolS2Plan) check(y, x []float32, planes int) {
	if len(x) < planes*p.h*p.w || len(y) < planes*p.oh*p.ow || len(p.tab) != 4*p.oh || len(p.blk) != 8*p.nblk {
		panic(fmt.Sprintf("nn: poolS2: %d planes of %dx%d -> %dx%d, x %d, y %d", planes, p.h, p.w, p.oh, p.ow, len(x), len(y)))
	}
	for i := 0; i < p.oh; i++ {
		t := p.tab[4*i : 4*i+4]
		if t[1] > 0 && (t[0]+p.key[8] < 0 || t[0]+p.key[8]+t[1]*p.w > p.h*p.w || (p.avg && t[2]+16*p.nblk > len(p.inv))) {
			panic(fmt.Sprintf("nn: poolS2: row %d reads %d rows from %d of %d", i, t[1], t[0], p.h*p.w))
		}
	}
}

// poolS2Job is one poolS2Planes call spread over the cores; pooled with its
// method value so that a call allocates nothing.
type poolS2Job struct {
	p    *poolS2Plan
	x, y []float32
	fn   func(lo, hi int)
}

var poolS2Jobs = sync.Pool{New: func() any {
	j := &poolS2Job{}
	j.fn = j.run
	return j
}}

func (j *poolS2Job) run(lo, hi int) {
	hw, ohw := j.p.h*j.p.w, j.p.oh*j.p.ow
	poolS2(j.y[lo*ohw:hi*ohw], j.x[lo*hw:hi*hw], j.p, hi-lo)
}

// poolS2Planes computes a 2-D float32 MaxPool or AveragePool with a
// horizontal stride of 2 and a window 2 or 3 wide (the CNN pools: 3x3/2,
// 2x2/2, with any pads, ceil_mode and count_include_pad) with poolS2AVX512,
// the window reduced in registers, and reports whether it did (false: the
// caller takes another path).
func poolS2Planes(k *poolOp, g *geom, planes int, x, y []float32) bool {
	if !poolAsm || !poolS2Applies(k, g) {
		return false
	}
	p := k.s2.planFor(k, g)
	hw := p.h * p.w
	chunk := max(1, (1<<15)/hw, planes/(4*cpu.Threads()))
	if chunk >= planes || cpu.Threads() == 1 {
		poolS2(y, x, p, planes)
		return true
	}
	j := poolS2Jobs.Get().(*poolS2Job)
	j.p, j.x, j.y = p, x, y
	dynamicFor(planes, chunk, j.fn)
	j.p, j.x, j.y = nil, nil, nil
	poolS2Jobs.Put(j)
	return true
}
