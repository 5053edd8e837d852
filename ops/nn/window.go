package nn

import (
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// autoPad is the auto_pad attribute of Conv, ConvTranspose and the pools.
type autoPad int

const (
	padNotSet autoPad = iota
	padSameUpper
	padSameLower
	padValid
)

// window holds the sliding-window attributes shared by Conv and the pools:
// the kernel (nil when it comes from the weights), strides, dilations and
// explicit pads (nil meaning the defaults), auto_pad and ceil_mode.
type window struct {
	autoPad   autoPad
	kernel    []int
	strides   []int
	dilations []int
	pads      []int
	ceil      bool
}

// geom is a resolved window over concrete spatial dims.
type geom struct {
	in, out, kernel, stride, dil, padB, padE []int
	// dims backs out, stride, dil, padB and padE up to geomRank spatial
	// dims: one allocation for the geometry of a 1-3D window
	dims [5 * geomRank]int
}

// geomRank is the rank up to which geom's slices share its dims.
const geomRank = 3

// rank is the number of spatial dims.
func (g *geom) rank() int { return len(g.in) }

// at returns v[i], or def when v is nil.
func at(v []int, i, def int) int {
	if v == nil {
		return def
	}
	return v[i]
}

// check verifies that the attribute lists fit r spatial dims.
func (w *window) check(r int) error {
	if w.kernel != nil && len(w.kernel) != r {
		return badInput("kernel_shape %v for %d spatial dims", w.kernel, r)
	}
	if w.strides != nil && len(w.strides) != r {
		return badInput("strides %v for %d spatial dims", w.strides, r)
	}
	if w.dilations != nil && len(w.dilations) != r {
		return badInput("dilations %v for %d spatial dims", w.dilations, r)
	}
	if w.pads != nil && len(w.pads) != 2*r {
		return badInput("pads %v for %d spatial dims", w.pads, r)
	}
	return nil
}

// outDim returns the output size of one spatial dim and its pads. The
// result may be < 1 for a window larger than the padded input.
func (w *window) outDim(i, in, k int) (out, pb, pe int) {
	s, d := at(w.strides, i, 1), at(w.dilations, i, 1)
	ek := (k-1)*d + 1
	switch w.autoPad {
	case padSameUpper, padSameLower:
		out = (in + s - 1) / s
		total := max(0, (out-1)*s+ek-in)
		if w.autoPad == padSameUpper {
			pb = total / 2
		} else {
			pb = total - total/2
		}
		return out, pb, total - pb
	case padValid:
		if in < ek {
			return 0, 0, 0
		}
		return (in-ek)/s + 1, 0, 0
	}
	r := len(w.pads) / 2
	pb, pe = at(w.pads, i, 0), 0
	if w.pads != nil {
		pe = w.pads[i+r]
	}
	span := in + pb + pe - ek
	if span < 0 {
		return 0, pb, pe
	}
	if w.ceil {
		out = (span+s-1)/s + 1
		// The last window must start inside the input or the left pad.
		if (out-1)*s >= in+pb {
			out--
		}
	} else {
		out = span/s + 1
	}
	return out, pb, pe
}

// resolve computes the geometry of the window over the spatial dims in with
// kernel k (the kernel_shape attribute wins when set).
func (w *window) resolve(in, k []int) (*geom, error) {
	g := &geom{}
	if err := w.resolveInto(g, in, k); err != nil {
		return nil, err
	}
	return g, nil
}

// resolveInto is resolve into a geom of the caller's.
func (w *window) resolveInto(g *geom, in, k []int) error {
	r := len(in)
	if err := w.check(r); err != nil {
		return err
	}
	if w.kernel != nil {
		k = w.kernel
	}
	if len(k) != r {
		return badInput("kernel %v for %d spatial dims", k, r)
	}
	*g = geom{in: in, kernel: k}
	var d []int
	if r <= geomRank {
		d = g.dims[:5*r]
	} else {
		d = make([]int, 5*r)
	}
	g.out, g.stride, g.dil, g.padB, g.padE = d[:r:r], d[r:2*r:2*r], d[2*r:3*r:3*r], d[3*r:4*r:4*r], d[4*r:5*r:5*r]
	for i := range in {
		if k[i] <= 0 {
			return badInput("kernel %v has a non-positive size", k)
		}
		g.stride[i] = at(w.strides, i, 1)
		g.dil[i] = at(w.dilations, i, 1)
		o, pb, pe := w.outDim(i, in[i], k[i])
		if o < 1 {
			return badInput("window %v (dilations %v) does not fit input %v with pads %v", k, w.dilations, in, w.pads)
		}
		g.out[i], g.padB[i], g.padE[i] = o, pb, pe
	}
	return nil
}

// inferDims returns the output spatial dims for symbolic input dims: known
// where the input dim and kernel are known.
func (w *window) inferDims(in ir.Shape, k []int) (ir.Shape, error) {
	r := len(in)
	if err := w.check(r); err != nil {
		return nil, err
	}
	if w.kernel != nil {
		k = w.kernel
	}
	out := make(ir.Shape, r)
	for i, d := range in {
		if !d.Known() || k == nil || k[i] < 0 {
			out[i] = ir.U()
			continue
		}
		o, _, _ := w.outDim(i, int(d.Val), k[i])
		if o < 1 {
			return nil, fmt.Errorf("%w: window %v does not fit input dims %v", ops.ErrBadInput, k, in)
		}
		out[i] = ir.D(int64(o))
	}
	return out, nil
}

// shapeCache holds a pool's geometry and output shape for the input shape
// of its last run (a server runs one shape after another), so that a
// steady-state run allocates neither: a geom's slices point into its own
// dims, so a resolved geom escapes to the heap.
type shapeCache struct{ p atomic.Pointer[shapeEntry] }

// shapeEntry is the geometry (nil for the global pools) and output shape of
// the input shape x; all read only (the output shape is shared by the
// output tensors, as convSetupCache's).
type shapeEntry struct {
	x   []int
	g   *geom
	out []int
}

// get returns the cached entry of input shape x, or nil.
func (c *shapeCache) get(x []int) *shapeEntry {
	if e := c.p.Load(); e != nil && slices.Equal(e.x, x) {
		return e
	}
	return nil
}

// put stores the geometry g and output shape out of input shape x (g's
// input sizes, which alias x, are copied).
func (c *shapeCache) put(x []int, g *geom, out []int) {
	if g != nil {
		g.in = slices.Clone(g.in)
		g.kernel = slices.Clone(g.kernel)
	}
	c.p.Store(&shapeEntry{x: slices.Clone(x), g: g, out: out})
}
