package kernels

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ops/nn"
)

// poolRegPlan is what poolRegPlanes needs of one input geometry: the rows,
// column blocks and AveragePool divisors of poolS2AVX512, computed once per
// shape and kept by the op.
type poolRegPlan struct {
	key  [12]int // poolRegKey
	avg  bool
	incl bool
	h, w int
	oh   int
	ow   int
	kw   int
	sw   int // horizontal stride, 1 or 2
	nblk int
	b0   int       // the first block of the interior loop
	nint int       // how many blocks from b0 on the interior loop runs
	reg  [7]int    // the regular rows: count, block 0's offset, output offset, divisors' offset, input step, output row length, reuse
	tab  []int     // per output row: block 0's offset, rows inside, divisors' offset, output offset, interior loop
	blk  []uint16  // stride 2, per block of 16 outputs: masks of A, B, C, the outputs, border flag, 3 unused; stride 1: per chunk, its mask and its block's outputs
	inv  []float32 // AveragePool: 1/count per output column, one row of nblk*16 per distinct row count
}

// poolRegCache holds the last plan of a poolOp.
type poolRegCache struct{ p atomic.Pointer[poolRegPlan] }

// poolRegKey is the geometry a plan depends on.
func poolRegKey(g *nn.PoolGeometry) [12]int {
	return [12]int{g.In[0], g.In[1], g.Out[0], g.Out[1], g.Kernel[0], g.Kernel[1], g.Stride[0], g.PadB[0], g.PadB[1], g.PadE[0], g.PadE[1], g.Stride[1]}
}

// poolRegApplies reports whether poolRegPlanes runs g: 2-D, no dilation,
// and a horizontal stride of 2 with a window 2 or 3 columns wide or a
// stride of 1 with a window up to 17 wide (any rows, any vertical stride).
func poolRegApplies(k *poolKernel, g *nn.PoolGeometry) bool {
	if g.Rank() != 2 || (k.kind != poolMax && k.kind != poolAvg) || g.Dil[0] != 1 || g.Dil[1] != 1 || g.In[0]*g.In[1] == 0 || g.Out[0]*g.Out[1] == 0 {
		return false
	}
	kw := g.Kernel[1]
	return (g.Stride[1] == 2 && (kw == 2 || kw == 3)) || (g.Stride[1] == 1 && kw <= 17)
}

// planFor returns the plan of g, from the cache when the geometry is the
// one of the last call.
func (c *poolRegCache) planFor(k *poolKernel, g *nn.PoolGeometry) *poolRegPlan {
	key := poolRegKey(g)
	avg := k.kind == poolAvg
	if p := c.p.Load(); p != nil && p.key == key && p.avg == avg && p.incl == k.includePad {
		return p
	}
	p := newPoolS2Plan(g, avg, k.includePad)
	c.p.Store(p)
	return p
}

func newPoolS2Plan(g *nn.PoolGeometry, avg, incl bool) *poolRegPlan {
	sp, in, _ := g.Spans()
	rows, cols := sp[1], sp[2]
	p := &poolRegPlan{key: poolRegKey(g), avg: avg, incl: incl, h: in[1], w: in[2], oh: len(rows), ow: len(cols), kw: g.Kernel[1], sw: g.Stride[1]}
	padL := g.PadB[1]
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
	if p.sw == 1 {
		p.blk = make([]uint16, 2*(p.nblk+1))
		for c := 0; c <= p.nblk; c++ {
			p.blk[2*c] = lanes(16*c-padL, 16)
			if c < p.nblk {
				p.blk[2*c+1] = uint16(1<<min(16, p.ow-16*c) - 1)
			}
		}
	} else {
		p.blk = make([]uint16, 8*p.nblk)
	}
	for b := 0; b < p.nblk && p.sw == 2; b++ {
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
		if e[4] == 0 && e[3] == 0xffff {
			e[5] = 1
		}
	}
	// interior blocks: every column read and every output inside
	p.b0 = (padL + 31) / 32
	b1 := p.b0
	for ; b1 < p.nblk && p.sw == 2; b1++ {
		if cb := 32*b1 - padL; cb+32+p.kw-2 > p.w || 16*b1+16 > p.ow {
			break
		}
	}
	p.nint = b1 - p.b0
	p.tab = make([]int, 5*p.oh)
	invOff := map[int]int{}
	for i, r := range rows {
		t := p.tab[5*i : 5*i+5]
		t[3] = i * p.ow
		n := r.Hi - r.Lo
		if n <= 0 {
			continue
		}
		t[0], t[1] = (r.Start+r.Lo)*p.w-padL, n
		if n == p.kw && p.nint > 0 {
			t[4] = 1
		}
		if !avg {
			continue
		}
		rc := n
		if incl {
			rc = r.Count
		}
		off, ok := invOff[rc]
		if !ok {
			off = len(p.inv)
			invOff[rc] = off
			p.inv = slices.Grow(p.inv, 16*p.nblk)[:off+16*p.nblk]
			for j, c := range cols {
				cc := c.Hi - c.Lo
				if incl {
					cc = c.Count
				}
				if m := rc * cc; m > 0 {
					p.inv[off+j] = 1 / float32(m)
				}
			}
		}
		t[2] = off
	}
	if p.sw == 2 {
		p.regularRows()
	}
	return p
}

// regularRows marks the longest run of output rows whose windows have kw
// rows inside the input, the same divisors and input rows a constant step
// apart, for poolS2AVX512's column pass.
func (p *poolRegPlan) regularRows() {
	best, bestAt := 0, 0
	for i := 0; i < p.oh; {
		t := p.tab[5*i:]
		if t[1] != p.kw {
			i++
			continue
		}
		j := i + 1
		for ; j < p.oh; j++ {
			u := p.tab[5*j:]
			if u[1] != p.kw || u[2] != t[2] || (j > i+1 && u[0]-p.tab[5*(j-1)] != p.tab[5*(i+1)]-t[0]) {
				break
			}
		}
		if j-i > best {
			best, bestAt = j-i, i
		}
		i = j
	}
	if best == 0 {
		return
	}
	t := p.tab[5*bestAt:]
	step := 0
	if best > 1 {
		step = p.tab[5*(bestAt+1)] - t[0]
	}
	p.reg = [7]int{best, t[0], t[3], t[2], step, p.ow, 0}
	if p.kw == 3 && step == 2*p.w {
		p.reg[6] = 1 // each window's last row is the next one's first
	}
	for i := bestAt; i < bestAt+best; i++ {
		p.tab[5*i+4] = 2
	}
}

// check panics unless the kernel's reads stay inside x and its writes
// inside y (the assembly does not check).
func (p *poolRegPlan) check(y, x []float32, planes int) {
	blk := 8 * p.nblk
	if p.sw == 1 {
		blk = 2 * (p.nblk + 1)
	}
	if len(x) < planes*p.h*p.w || len(y) < planes*p.oh*p.ow || len(p.tab) != 5*p.oh || len(p.blk) != blk || p.b0+p.nint > p.nblk || p.kw > 17 {
		panic(fmt.Sprintf("nn: poolRegRun: %d planes of %dx%d -> %dx%d, x %d, y %d", planes, p.h, p.w, p.oh, p.ow, len(x), len(y)))
	}
	for i := 0; i < p.oh; i++ {
		t := p.tab[5*i : 5*i+5]
		if t[1] > 0 && (t[0]+p.key[8] < 0 || (t[4] == 2 && t[0] != p.reg[1]+(i-(p.reg[2]/p.ow))*p.reg[4]) || t[0]+p.key[8]+t[1]*p.w > p.h*p.w || (p.avg && t[2]+16*p.nblk > len(p.inv))) {
			panic(fmt.Sprintf("nn: poolRegRun: row %d reads %d rows from %d of %d", i, t[1], t[0], p.h*p.w))
		}
	}
}

// poolSplitMin is the input size (elements) from which the pools spread
// their planes over the threads, in ranges of at least half of it: below
// it, a pool costs about 20 us or less on one core, and waking a worker
// did not pay on the shared 2-core machine it was measured on (with two
// threads, squeezenet's 256x27x27 MaxPool took 24-28 us wall split and 13
// us on the caller alone, GlobalAveragePool of 1000x13x13 10-14 us split
// and 5-6 us alone).
const poolSplitMin = 1 << 18

// poolStripRows is how many output rows poolS2AVX512's column pass runs
// block by block before it moves to the next rows, on planes of more than
// poolStripPlane elements (smaller planes stay in L1: one strip). Measured
// against a single strip (9 rounds, two runs, CPU time): squeezenet's
// 128x55x55 3x3/2 33-41 us against 38-42, the resnet stem 65-67 against
// 70-76, the 64x111x111 one the same (70-84); the 256x27x27 one 15-18
// against 13-15, hence one strip for small planes. Variables for the tests.
var (
	poolStripRows  = 8
	poolStripPlane = 2048
)

// stripRows is the strip of poolS2AVX512's column pass for p.
func (p *poolRegPlan) stripRows() int {
	if p.h*p.w <= poolStripPlane {
		return 1 << 30
	}
	return poolStripRows
}

// poolRegJob is one poolRegPlanes call spread over the cores; pooled with its
// method value so that a call allocates nothing.
type poolRegJob struct {
	p    *poolRegPlan
	x, y []float32
	fn   func(lo, hi int)
}

// poolS1Idx holds the VPERMI2PS indices of poolS1AVX512's taps: for t = 1
// .. 16, t, t+1, ... t+15.
var poolS1Idx = func() []int32 {
	v := make([]int32, 16*16)
	for t := 1; t <= 16; t++ {
		for l := 0; l < 16; l++ {
			v[16*(t-1)+l] = int32(t + l)
		}
	}
	return v
}()

var poolRegJobs = sync.Pool{New: func() any {
	j := &poolRegJob{}
	j.fn = j.run
	return j
}}

func (j *poolRegJob) run(lo, hi int) {
	hw, ohw := j.p.h*j.p.w, j.p.oh*j.p.ow
	poolRegRun(j.y[lo*ohw:hi*ohw], j.x[lo*hw:hi*hw], j.p, hi-lo)
}

// poolRegPlanes computes a 2-D float32 MaxPool or AveragePool with a
// horizontal stride of 2 and a window 2 or 3 wide (the CNN pools: 3x3/2,
// 2x2/2) or a stride of 1 and a window up to 17 wide (3x3/1, SPPF's 5x5/1),
// with any pads, ceil_mode and count_include_pad, with poolS2AVX512 or
// poolS1AVX512, the window reduced in registers, and reports whether it did
// (false: the caller takes another path).
func poolRegPlanes(k *poolKernel, g *nn.PoolGeometry, planes int, x, y []float32) bool {
	if !poolAsm || !poolRegApplies(k, g) {
		return false
	}
	p := k.regs.planFor(k, g)
	hw := p.h * p.w
	chunk := max(1, (poolSplitMin/2+hw-1)/hw)
	if planes*hw < poolSplitMin || chunk >= planes || cpu.Threads() == 1 {
		poolRegRun(y, x, p, planes)
		return true
	}
	j := poolRegJobs.Get().(*poolRegJob)
	j.p, j.x, j.y = p, x, y
	cpu.DynamicFor(planes, chunk, j.fn)
	j.p, j.x, j.y = nil, nil, nil
	poolRegJobs.Put(j)
	return true
}
