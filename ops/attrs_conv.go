package ops

import "github.com/kilnai/kiln/ir"

// Typed attributes of the sliding-window ops (ops/nn): Conv and the
// convolutions that share its attributes (ConvInteger, QLinearConv, kiln's
// FusedConv), ConvTranspose, MaxPool, AveragePool, LpPool and GlobalLpPool,
// read by the CPU kernels and the CUDA kernels alike (see Def.Attrs).

// AutoPad is the attribute "auto_pad" of the window ops.
type AutoPad uint8

const (
	// AutoPadNotSet ("NOTSET", the default, or ""): the pads are "pads".
	AutoPadNotSet AutoPad = iota
	// AutoPadSameUpper ("SAME_UPPER"): the output has ceil(in/stride)
	// elements; an odd total pad puts the extra element at the end.
	AutoPadSameUpper
	// AutoPadSameLower ("SAME_LOWER"): as SAME_UPPER, the extra element
	// at the beginning.
	AutoPadSameLower
	// AutoPadValid ("VALID"): no padding.
	AutoPadValid
)

// String returns the attribute's value.
func (p AutoPad) String() string {
	switch p {
	case AutoPadSameUpper:
		return "SAME_UPPER"
	case AutoPadSameLower:
		return "SAME_LOWER"
	case AutoPadValid:
		return "VALID"
	}
	return "NOTSET"
}

// Same reports whether p is SAME_UPPER or SAME_LOWER.
func (p AutoPad) Same() bool { return p == AutoPadSameUpper || p == AutoPadSameLower }

// Split divides a total pad of one spatial dim into its begin and end pads
// (negative totals count as 0): SAME_UPPER puts the odd element at the
// end, the other modes at the beginning (what SAME_LOWER does, and what
// ConvTranspose does with output_shape under NOTSET).
func (p AutoPad) Split(total int) (begin, end int) {
	total = max(total, 0)
	begin = total - total/2
	if p == AutoPadSameUpper {
		begin = total / 2
	}
	return begin, total - begin
}

// WindowAttrs are the window attributes shared by the convolutions and
// the pools. Lists are nil when absent (the defaults: the kernel from the
// weights, strides and dilations 1, pads 0); every value is checked
// (kernel sizes, strides and dilations positive, pads not negative, pads
// of even length) and, when kernel_shape is given, the lists' lengths
// against it. Whether the lists fit the input's rank is known only with
// its shape, so the kernels check it.
type WindowAttrs struct {
	// AutoPad is "auto_pad" (NOTSET by default); under SAME_* and VALID
	// the pads are computed and Pads is not read.
	AutoPad AutoPad
	// KernelShape is "kernel_shape", required by the pools; the
	// convolutions take it from the weights when absent.
	KernelShape []int64
	// Strides is "strides" (1 per spatial dim by default).
	Strides []int64
	// Dilations is "dilations" (1 per spatial dim by default). ONNX
	// defines it on MaxPool from opset 10, AveragePool from 19 and LpPool
	// from 18; it is read at every opset, as both devices always did.
	Dilations []int64
	// Pads is "pads": the begin pads of every spatial dim, then the end
	// pads (0 by default).
	Pads []int64
	// CeilMode is "ceil_mode" of the pools (0 by default; any other value
	// is 1, as the CPU always read it): the output size rounds up, a last
	// window starting inside the input or the begin pad. ONNX defines it
	// on MaxPool and AveragePool from opset 10 and LpPool from 18; it is
	// read at every opset.
	CeilMode bool
}

// Rank is the number of spatial dims the attributes fix: kernel_shape's
// length, else that of strides, dilations or half of pads; -1 when none
// is given.
func (w *WindowAttrs) Rank() int {
	switch {
	case w.KernelShape != nil:
		return len(w.KernelShape)
	case w.Strides != nil:
		return len(w.Strides)
	case w.Dilations != nil:
		return len(w.Dilations)
	case w.Pads != nil:
		return len(w.Pads) / 2
	}
	return -1
}

// Fits reports the first list (its attribute name) whose length does not
// fit r spatial dims; "" when all do.
func (w *WindowAttrs) Fits(r int) string {
	switch {
	case w.KernelShape != nil && len(w.KernelShape) != r:
		return "kernel_shape"
	case w.Strides != nil && len(w.Strides) != r:
		return "strides"
	case w.Dilations != nil && len(w.Dilations) != r:
		return "dilations"
	case w.Pads != nil && len(w.Pads) != 2*r:
		return "pads"
	}
	return ""
}

// Stride returns the stride of spatial dim i (1 by default).
func (w *WindowAttrs) Stride(i int) int64 { return at64(w.Strides, i, 1) }

// Dilation returns the dilation of spatial dim i (1 by default).
func (w *WindowAttrs) Dilation(i int) int64 { return at64(w.Dilations, i, 1) }

// Pad returns the explicit begin and end pads of spatial dim i of r (0 by
// default), as "pads" gives them (not what auto_pad computes).
func (w *WindowAttrs) Pad(i, r int) (begin, end int64) {
	if w.Pads == nil {
		return 0, 0
	}
	return w.Pads[i], w.Pads[i+r]
}

func at64(v []int64, i int, def int64) int64 {
	if v == nil {
		return def
	}
	return v[i]
}

// ReadWindowAttrs reads the window attributes of a node through a,
// recording the first bad value in a (for the ops whose other attributes
// are read with the same reader: ConvAttrs, PoolAttrs, and kiln's fused
// convolutions and MaxUnpool in ops/nn). ceil_mode is left to the pools.
func ReadWindowAttrs(a *Attrs) WindowAttrs {
	var w WindowAttrs
	switch s := a.String("auto_pad", "NOTSET"); s {
	case "NOTSET", "":
	case "SAME_UPPER":
		w.AutoPad = AutoPadSameUpper
	case "SAME_LOWER":
		w.AutoPad = AutoPadSameLower
	case "VALID":
		w.AutoPad = AutoPadValid
	default:
		a.Fail("auto_pad", "unsupported value %q (want NOTSET, SAME_UPPER, SAME_LOWER or VALID)", s)
	}
	list := func(name string) []int64 {
		if !a.Has(name) {
			return nil
		}
		// present: not nil, even when empty (which fits no rank)
		return append([]int64{}, a.Ints(name, nil)...)
	}
	if w.KernelShape = list("kernel_shape"); w.KernelShape != nil {
		for _, k := range w.KernelShape {
			if k <= 0 {
				a.Fail("kernel_shape", "%v has a non-positive size", w.KernelShape)
			}
		}
	}
	if w.Strides = list("strides"); w.Strides != nil {
		for _, s := range w.Strides {
			if s <= 0 {
				a.Fail("strides", "%v has a non-positive stride", w.Strides)
			}
		}
	}
	if w.Dilations = list("dilations"); w.Dilations != nil {
		for _, d := range w.Dilations {
			if d <= 0 {
				a.Fail("dilations", "%v has a non-positive dilation", w.Dilations)
			}
		}
	}
	if w.Pads = list("pads"); w.Pads != nil {
		for _, p := range w.Pads {
			if p < 0 {
				a.Fail("pads", "%v has a negative pad", w.Pads)
			}
		}
		if len(w.Pads)%2 != 0 {
			a.Fail("pads", "%v has an odd length", w.Pads)
		}
	}
	if w.KernelShape != nil {
		r := len(w.KernelShape)
		if w.Strides != nil && len(w.Strides) != r {
			a.Fail("strides", "%v does not match kernel_shape %v", w.Strides, w.KernelShape)
		}
		if w.Dilations != nil && len(w.Dilations) != r {
			a.Fail("dilations", "%v does not match kernel_shape %v", w.Dilations, w.KernelShape)
		}
		if w.Pads != nil && len(w.Pads) != 2*r {
			a.Fail("pads", "%v does not match kernel_shape %v", w.Pads, w.KernelShape)
		}
	}
	return w
}

// ConvAttrs are the attributes of Conv, ConvInteger, QLinearConv and
// kiln's FusedConv and quantized fused convolutions (the window and the
// groups; the fused ops' epilogue is read by their kernels). Conv's
// attributes are the same in opsets 1 and 11.
type ConvAttrs struct {
	WindowAttrs
	// Group is "group" (1 by default), positive.
	Group int64
}

// ParseConvAttrs reads a convolution node's attributes.
func ParseConvAttrs(n *ir.Node, opset int64) (ConvAttrs, error) {
	a := AttrsOf(n)
	c := ConvAttrs{WindowAttrs: ReadWindowAttrs(a), Group: a.Int("group", 1)}
	if c.Group < 1 {
		a.Fail("group", "must be positive, got %d", c.Group)
	}
	return c, a.Err()
}

// ConvTransposeAttrs are ConvTranspose's attributes (the same in opsets 1
// and 11).
type ConvTransposeAttrs struct {
	WindowAttrs
	// Group is "group" (1 by default), positive.
	Group int64
	// OutputPadding is "output_padding" (nil: 0 per spatial dim), not
	// negative: added to the end of each output dim.
	OutputPadding []int64
	// OutputShape is "output_shape" (nil when absent), not negative: the
	// spatial output dims (or all of them, N and C included); when given,
	// the pads are computed from it (split as auto_pad says) and "pads"
	// is not read.
	OutputShape []int64
}

// ParseConvTransposeAttrs reads a ConvTranspose node's attributes.
func ParseConvTransposeAttrs(n *ir.Node, opset int64) (ConvTransposeAttrs, error) {
	a := AttrsOf(n)
	c := ConvTransposeAttrs{WindowAttrs: ReadWindowAttrs(a), Group: a.Int("group", 1)}
	if c.Group < 1 {
		a.Fail("group", "must be positive, got %d", c.Group)
	}
	for _, name := range []string{"output_padding", "output_shape"} {
		if !a.Has(name) {
			continue
		}
		v := append([]int64{}, a.Ints(name, nil)...)
		for _, p := range v {
			if p < 0 {
				a.Fail(name, "%v has a negative value", v)
			}
		}
		if name == "output_padding" {
			c.OutputPadding = v
		} else {
			c.OutputShape = v
		}
	}
	return c, a.Err()
}

// PoolAttrs are the attributes of MaxPool, AveragePool and LpPool.
type PoolAttrs struct {
	WindowAttrs
	// CountIncludePad is AveragePool's "count_include_pad" (from opset 7;
	// 0 by default, any other value is 1): the pads count in the divisor.
	CountIncludePad bool
	// StorageOrder is MaxPool's "storage_order" (from opset 8; 0 by
	// default, 0 or 1): the Indices output's order, row major or column
	// major.
	StorageOrder int64
	// P is LpPool's "p", positive: a float at opset 1 (2.0 by default), an
	// integer from opset 2 (2 by default); either type is read at every
	// opset, as both devices always did.
	P float64
}

// ParsePoolAttrs reads a MaxPool, AveragePool or LpPool node's attributes
// (kernel_shape is required).
func ParsePoolAttrs(n *ir.Node, opset int64) (PoolAttrs, error) {
	a := AttrsOf(n)
	p := PoolAttrs{WindowAttrs: ReadWindowAttrs(a)}
	p.CeilMode = a.Int("ceil_mode", 0) != 0
	if p.KernelShape == nil {
		a.Fail("kernel_shape", "%s requires kernel_shape", n.OpType)
	}
	switch n.OpType {
	case "MaxPool":
		p.StorageOrder = a.Int("storage_order", 0)
		if p.StorageOrder != 0 && p.StorageOrder != 1 {
			a.Fail("storage_order", "must be 0 or 1, got %d", p.StorageOrder)
		}
	case "AveragePool":
		p.CountIncludePad = a.Int("count_include_pad", 0) != 0
	case "LpPool":
		p.P = readLpP(n, a)
	}
	return p, a.Err()
}

// LpPoolAttrs are GlobalLpPool's attributes.
type LpPoolAttrs struct {
	// P is "p", positive, as PoolAttrs.P.
	P float64
}

// ParseLpPoolAttrs reads a GlobalLpPool node's attributes.
func ParseLpPoolAttrs(n *ir.Node, opset int64) (LpPoolAttrs, error) {
	a := AttrsOf(n)
	return LpPoolAttrs{P: readLpP(n, a)}, a.Err()
}

// readLpP reads p: a float (opset 1), else an integer (2 by default).
func readLpP(n *ir.Node, a *Attrs) float64 {
	var p float64
	if at, ok := n.Attrs["p"]; ok && at.Type == ir.AttrFloat {
		p = float64(at.F)
	} else {
		p = float64(a.Int("p", 2))
	}
	if !(p > 0) {
		a.Fail("p", "must be positive, got %g", p)
	}
	return p
}

// MaxUnpoolAttrs are MaxUnpool's attributes: kernel_shape (required),
// strides and pads as WindowAttrs reads them (auto_pad and dilations are
// not MaxUnpool's, and are read as the CPU always did).
type MaxUnpoolAttrs struct {
	WindowAttrs
}

// ParseMaxUnpoolAttrs reads a MaxUnpool node's attributes.
func ParseMaxUnpoolAttrs(n *ir.Node, opset int64) (MaxUnpoolAttrs, error) {
	a := AttrsOf(n)
	u := MaxUnpoolAttrs{ReadWindowAttrs(a)}
	if u.KernelShape == nil {
		a.Fail("kernel_shape", "MaxUnpool requires kernel_shape")
	}
	return u, a.Err()
}
