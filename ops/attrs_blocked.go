package ops

import "github.com/kilnai/kiln/ir"

// Typed attributes of kiln's blocked-layout operators (domain "kiln",
// written by the optimizer's "blocked" pass; their kernels are in ops/nn):
// activations kept as [N, ceil(C/16), H, W, 16] between convolutions.
// They are 2-D only: every window attribute given must fit two spatial
// dims.

// BlockedConvAttrs are kiln's BlockedConv's attributes: FusedConv's (a
// Conv's window and group, and the activation epilogue) and "input_nchw"
// (0 by default: X is blocked; 1: X is a plain NCHW tensor, the network's
// first layer; only with group 1).
type BlockedConvAttrs struct {
	FusedConvAttrs
	InputNCHW bool
}

// ParseBlockedConvAttrs reads a kiln BlockedConv node's attributes.
func ParseBlockedConvAttrs(n *ir.Node, opset int64) (BlockedConvAttrs, error) {
	a := AttrsOf(n)
	c := BlockedConvAttrs{FusedConvAttrs: FusedConvAttrs{ConvAttrs: readConvAttrs(a), EpilogueAttrs: ReadEpilogueAttrs(a)}}
	checkGroup(a, c.Group)
	checkBlocked2D(a, &c.WindowAttrs)
	switch v := a.Int("input_nchw", 0); v {
	case 0:
	case 1:
		c.InputNCHW = true
		if c.Group != 1 {
			a.Fail("input_nchw", "an NCHW input needs group 1, got group %d", c.Group)
		}
	default:
		a.Fail("input_nchw", "must be 0 or 1, got %d", v)
	}
	return c, a.Err()
}

// checkBlocked2D records in a a window attribute that does not fit two
// spatial dims.
func checkBlocked2D(a *Attrs, w *WindowAttrs) {
	for _, l := range []struct {
		name string
		v    []int64
		n    int
	}{{"kernel_shape", w.KernelShape, 2}, {"strides", w.Strides, 2}, {"dilations", w.Dilations, 2}, {"pads", w.Pads, 4}} {
		if l.v != nil && len(l.v) != l.n {
			a.Fail(l.name, "%v does not fit a 2-D window (blocked operators are 2-D)", l.v)
		}
	}
}

// ParseBlockedPoolAttrs reads a kiln BlockedMaxPool or BlockedAveragePool
// node's attributes: MaxPool's and AveragePool's (kernel_shape required,
// 2-D; ceil_mode; count_include_pad for BlockedAveragePool). They have
// one output, so MaxPool's storage_order is not read.
func ParseBlockedPoolAttrs(n *ir.Node, opset int64) (PoolAttrs, error) {
	a := AttrsOf(n)
	p := PoolAttrs{WindowAttrs: ReadWindowAttrs(a)}
	p.CeilMode = a.Int("ceil_mode", 0) != 0
	if p.KernelShape == nil {
		a.Fail("kernel_shape", "%s requires kernel_shape", n.OpType)
	}
	checkBlocked2D(a, &p.WindowAttrs)
	if n.OpType == "BlockedAveragePool" {
		p.CountIncludePad = a.Int("count_include_pad", 0) != 0
	}
	return p, a.Err()
}

// FromBlockedAttrs are kiln's FromBlocked's attributes: "channels"
// (required, positive), the channel count C of the NCHW output, which the
// blocked input holds in ceil(C/16) blocks.
type FromBlockedAttrs struct {
	Channels int64
}

// ParseFromBlockedAttrs reads a kiln FromBlocked node's attributes.
func ParseFromBlockedAttrs(n *ir.Node, opset int64) (FromBlockedAttrs, error) {
	a := AttrsOf(n)
	f := FromBlockedAttrs{Channels: a.Int("channels", 0)}
	if !a.Has("channels") {
		a.Fail("channels", "is required")
	} else if f.Channels <= 0 {
		a.Fail("channels", "must be positive, got %d", f.Channels)
	}
	return f, a.Err()
}
