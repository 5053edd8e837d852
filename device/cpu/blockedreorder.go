package cpu

import "sync"

// reorderSeg is how many pixels of one channel block make one item of a
// parallel reorder (a multiple of Block), and reorderParallel how many
// floats a reorder moves before it is split over the pool.
const (
	reorderSeg      = 2048
	reorderParallel = 1 << 15
)

// ToBlocked writes x, [n, c, hw] (NCHW with the plane flattened), into y,
// [n, Blocks(c), hw, Block], its pad lanes zero.
func ToBlocked(n, c, hw int, x, y []float32) {
	cb := Blocks(c)
	_ = x[n*c*hw-1]
	_ = y[n*cb*hw*Block-1]
	reorder(n, c, hw, x, y, true)
}

// FromBlocked writes x, [n, Blocks(c), hw, Block], into y, [n, c, hw],
// dropping the pad lanes.
func FromBlocked(n, c, hw int, x, y []float32) {
	cb := Blocks(c)
	_ = x[n*cb*hw*Block-1]
	_ = y[n*c*hw-1]
	reorder(n, c, hw, x, y, false)
}

// reorder runs a reorder's items, (image, channel block, segment of
// reorderSeg pixels), on the pool when it is large.
func reorder(n, c, hw int, x, y []float32, to bool) {
	nseg := (hw + reorderSeg - 1) / reorderSeg
	items := n * Blocks(c) * nseg
	rc := reorderCalls.Get().(*reorderCall)
	*rc = reorderCall{n: n, c: c, hw: hw, nseg: nseg, x: x, y: y, to: to, fn: rc.fn}
	if n*Blocks(c)*hw*Block < reorderParallel {
		rc.items(0, items)
	} else {
		DynamicFor(items, 1, rc.fn)
	}
	*rc = reorderCall{fn: rc.fn}
	reorderCalls.Put(rc)
}

// reorderCall is one reorder, pooled with the function it hands to the
// pool (so that a call allocates nothing).
type reorderCall struct {
	n, c, hw, nseg int
	x, y           []float32
	to             bool
	fn             func(lo, hi int)
}

var reorderCalls = sync.Pool{New: func() any {
	rc := &reorderCall{}
	rc.fn = rc.items
	return rc
}}

// items reorders items [lo, hi): item it is segment it%nseg of block
// (it/nseg)%cb of image it/(nseg*cb).
func (rc *reorderCall) items(lo, hi int) {
	c, hw := rc.c, rc.hw
	cb := Blocks(c)
	for it := lo; it < hi; it++ {
		seg := it % rc.nseg
		nb := it / rc.nseg
		i, b := nb/cb, nb%cb
		p0 := seg * reorderSeg
		p1 := min(p0+reorderSeg, hw)
		lanes := min(Block, c-b*Block)
		blk := rc.y
		plain := rc.x
		if !rc.to {
			blk, plain = rc.x, rc.y
		}
		blk = blk[(nb*hw+p0)*Block : (nb*hw+p1)*Block]
		// plain from channel b*Block of image i, pixel p0
		if rc.to {
			reorderTo(blk, plain[(i*c+b*Block)*hw+p0:], hw, p1-p0, lanes)
		} else {
			reorderFrom(blk, plain[(i*c+b*Block)*hw+p0:], hw, p1-p0, lanes)
		}
	}
}

// reorderTo writes np pixels of lanes channels of plain (channel l's
// pixels at plain[l*hw:]) into blk, [np][Block], pad lanes zero.
func reorderTo(blk, plain []float32, hw, np, lanes int) {
	if reorderAsm(blk, plain, hw, np, lanes, true) {
		return
	}
	_ = blk[np*Block-1]
	for l := 0; l < Block; l++ {
		if l >= lanes {
			for q := 0; q < np; q++ {
				blk[q*Block+l] = 0
			}
			continue
		}
		src := plain[l*hw : l*hw+np]
		for q, v := range src {
			blk[q*Block+l] = v
		}
	}
}

// reorderFrom writes the first lanes channels of np pixels of blk,
// [np][Block], into plain (channel l's pixels at plain[l*hw:]).
func reorderFrom(blk, plain []float32, hw, np, lanes int) {
	if reorderAsm(blk, plain, hw, np, lanes, false) {
		return
	}
	_ = blk[np*Block-1]
	for l := 0; l < lanes; l++ {
		dst := plain[l*hw : l*hw+np]
		for q := range dst {
			dst[q] = blk[q*Block+l]
		}
	}
}
