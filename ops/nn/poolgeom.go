package nn

import (
	"slices"
	"sync/atomic"
)

// PoolGeometry is a pooling window resolved over one input's spatial dims
// (N and C left out): MaxPool's, AveragePool's and the blocked pools'
// kernel_shape, strides, dilations, pads, auto_pad and ceil_mode applied to
// the input sizes In, giving the output sizes Out. It is what the CPU
// registry's fast pooling kernels (device/cpu/kernels) take from the op
// (PoolWindows), so that a node's windows mean the same on either path.
// Read only.
type PoolGeometry struct {
	In, Out, Kernel, Stride, Dil, PadB, PadE []int
}

// Rank is the number of spatial dims.
func (g *PoolGeometry) Rank() int { return len(g.In) }

// Span is the valid part of one output position's window along one dim:
// kernel steps [Lo, Hi) fall inside the input, starting at input
// coordinate Start (for step 0); Count is the number of steps inside the
// padded extent (AveragePool's count_include_pad divisor).
type Span struct{ Lo, Hi, Start, Count int }

// Spans computes the windows of every output position along each dim,
// padded to 3 dims with unit leading dims, and the input sizes and
// dilations likewise padded.
func (g *PoolGeometry) Spans() (sp [3][]Span, in, dil [3]int) {
	r := g.Rank()
	for d := 0; d < 3; d++ {
		i := d - (3 - r)
		if i < 0 {
			sp[d] = []Span{{Lo: 0, Hi: 1, Start: 0, Count: 1}}
			in[d], dil[d] = 1, 1
			continue
		}
		in[d], dil[d] = g.In[i], g.Dil[i]
		k, s, dl := g.Kernel[i], g.Stride[i], g.Dil[i]
		sp[d] = make([]Span, g.Out[i])
		for o := range sp[d] {
			start := o*s - g.PadB[i]
			lo := 0
			if start < 0 {
				lo = min(k, (-start+dl-1)/dl)
			}
			hi := 0
			if g.In[i]-1-start >= 0 {
				hi = min(k, (g.In[i]-1-start)/dl+1)
			}
			hi = max(hi, lo)
			cnt := 0
			for j := 0; j < k; j++ {
				if p := start + j*dl; p >= -g.PadB[i] && p < g.In[i]+g.PadE[i] {
					cnt++
				}
			}
			sp[d][o] = Span{Lo: lo, Hi: hi, Start: start, Count: cnt}
		}
	}
	return
}

// poolGeometry returns g as a PoolGeometry (its own copies of the sizes).
func poolGeometry(g *geom) *PoolGeometry {
	return &PoolGeometry{In: slices.Clone(g.in), Out: slices.Clone(g.out), Kernel: slices.Clone(g.kernel),
		Stride: slices.Clone(g.stride), Dil: slices.Clone(g.dil), PadB: slices.Clone(g.padB), PadE: slices.Clone(g.padE)}
}

// poolGeomCache holds a pool's windows and output shape for the input shape
// of its last run (a server runs one shape after another), so that a
// steady-state run resolves and allocates neither.
type poolGeomCache struct{ p atomic.Pointer[poolGeomEntry] }

// poolGeomEntry is the windows and output shape of input shape x; all read
// only.
type poolGeomEntry struct {
	x, out []int
	g      *PoolGeometry
}

func (c *poolGeomCache) get(x []int) *poolGeomEntry {
	if e := c.p.Load(); e != nil && slices.Equal(e.x, x) {
		return e
	}
	return nil
}

func (c *poolGeomCache) put(x []int, g *PoolGeometry, out []int) {
	c.p.Store(&poolGeomEntry{x: slices.Clone(x), g: g, out: out})
}

// PoolWindows returns the windows of the pooling over an input of shape x
// ([N, C, spatial...]) and its output shape, or the error Run would give
// for that shape. The CPU registry's fast kernels call it once per input
// shape; both are read only.
func (k *poolOp) PoolWindows(x []int) (*PoolGeometry, []int, error) {
	return k.geometry(x)
}

// PoolWindows returns the windows of a blocked pool over an input of shape
// x ([N, Cb, H, W, 16]) and its output shape, or the error Run would give
// for that shape (a max window that holds only padding included); both
// are read only.
func (k *blockedPoolOp) PoolWindows(x []int) (*PoolGeometry, []int, error) {
	if len(x) != 5 || x[4] != blockLanes {
		return nil, nil, badInput("%s input %v, want [N, Cb, H, W, %d]", k.name, x, blockLanes)
	}
	return k.geometry(x)
}
