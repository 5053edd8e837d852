package shape

import (
	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// padMode is how Pad fills the border.
type padMode int

const (
	padConstant padMode = iota
	padReflect
	padEdge
	padWrap
)

// padOp is ONNX Pad. Before opset 11 the pads ("paddings" in Pad-1) and the
// constant value are attributes; from 11 they are inputs 1 and 2, and from
// 18 input 3 selects the axes the pads apply to. Negative pads crop.
type padOp struct {
	mode  padMode
	attr  bool
	pads  []int64
	value float32
}

func preparePad(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParsePadAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &padOp{attr: a.FromAttrs, pads: a.Pads, value: a.Value}
	switch a.Mode {
	case "reflect":
		k.mode = padReflect
	case "edge":
		k.mode = padEdge
	case "wrap":
		k.mode = padWrap
	}
	return k, nil
}

// padAttrs is Pad's Def.Attrs.
func padAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParsePadAttrs(n, opset) }

// fullPads expands pads given for axes (nil: all axes) to 2*rank entries.
func fullPads(pads, axes []int64, rank int) ([]int64, error) {
	if axes == nil {
		if len(pads) != 2*rank {
			return nil, badInput("Pad: %d pads for rank %d", len(pads), rank)
		}
		return pads, nil
	}
	if len(pads) != 2*len(axes) {
		return nil, badInput("Pad: %d pads for %d axes", len(pads), len(axes))
	}
	ax, err := normAxes("Pad", axes, rank)
	if err != nil {
		return nil, err
	}
	out := make([]int64, 2*rank)
	for i, a := range ax {
		out[a], out[rank+a] = pads[i], pads[len(axes)+i]
	}
	return out, nil
}

func (k *padOp) padsOf(in []*ir.Value, rank int) ([]int64, bool, error) {
	if k.attr {
		p, err := fullPads(k.pads, nil, rank)
		return p, true, err
	}
	pads, ok := constInts(arg(in, 1))
	if !ok {
		return nil, false, nil
	}
	var axes []int64
	if v := arg(in, 3); v != nil {
		if axes, ok = constInts(v); !ok {
			return nil, false, nil
		}
	}
	p, err := fullPads(pads, axes, rank)
	return p, true, err
}

func (k *padOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	n := 2
	if k.attr {
		n = 1
	}
	if err := need("Pad", in, n); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[0].Type.DType}
	s := in[0].Type.Shape
	if s == nil {
		return []ir.Type{t}, nil
	}
	t.Shape = unknownShape(len(s))
	pads, ok, err := k.padsOf(in, len(s))
	if err != nil || !ok {
		return []ir.Type{t}, err
	}
	r := len(s)
	for i, d := range s {
		t.Shape[i] = addDims(d, ir.D(pads[i]+pads[r+i]))
		if pads[i]+pads[r+i] < 0 && !d.Known() {
			t.Shape[i] = ir.U()
		}
	}
	return []ir.Type{t}, nil
}

// padIndex maps output coordinate o (input coordinate o-before) of an axis of
// size n to an input coordinate, or -1 for a constant cell.
func (k *padOp) padIndex(i, n int) int {
	if i >= 0 && i < n {
		return i
	}
	switch k.mode {
	case padEdge:
		return min(max(i, 0), n-1)
	case padWrap:
		return ((i % n) + n) % n
	case padReflect:
		if n == 1 {
			return 0
		}
		p := 2 * (n - 1)
		i = ((i % p) + p) % p
		if i >= n {
			i = p - i
		}
		return i
	}
	return -1
}

func (k *padOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData("Pad", x); err != nil {
		return nil, err
	}
	r := x.Rank()
	pads := k.pads
	var value *tensor.Tensor
	var err error
	if k.attr {
		if pads, err = fullPads(pads, nil, r); err != nil {
			return nil, err
		}
		if x.DType != tensor.String {
			value = tensor.Scalar(x.DType, float64(k.value))
		}
	} else {
		if pads, err = intVector("Pad", "pads", arg(in, 1)); err != nil {
			return nil, err
		}
		var axes []int64
		if arg(in, 3) != nil {
			if axes, err = intVector("Pad", "axes", in[3]); err != nil {
				return nil, err
			}
		}
		if pads, err = fullPads(pads, axes, r); err != nil {
			return nil, err
		}
		if v := arg(in, 2); v != nil && v.Len() > 0 {
			if err := checkData("Pad", v); err != nil {
				return nil, err
			}
			if v.DType != x.DType {
				return nil, badInput("Pad: constant_value is %v, data %v", v.DType, x.DType)
			}
			value = v
		}
	}
	if value == nil {
		if value, err = tensor.Make(x.DType, []int{}); err != nil {
			return nil, err
		}
	}
	shape := make([]int, r)
	for i, d := range x.Shape {
		o := int64(d) + pads[i] + pads[r+i]
		if o < 0 || pads[i] > tensor.MaxElements || pads[r+i] > tensor.MaxElements {
			return nil, badInput("Pad: pads %v for input %v", pads, x.Shape)
		}
		if k.mode != padConstant && d == 0 && o > 0 {
			return nil, badInput("Pad: cannot pad an empty axis %d of %v in this mode", i, x.Shape)
		}
		shape[i] = int(o)
	}
	y, err := ops.NewOutput(env, x.DType, shape)
	if err != nil {
		return nil, err
	}
	if y.Len() == 0 {
		return env.One(y), nil
	}
	if r == 0 {
		copyElems(y, 0, x, 0, 1)
		return env.One(y), nil
	}
	// per axis, the input coordinate of each output coordinate
	maps := make([][]int, r)
	for a := 0; a < r; a++ {
		maps[a] = make([]int, shape[a])
		for o := range maps[a] {
			maps[a][o] = k.padIndex(o-int(pads[a]), x.Shape[a])
		}
	}
	// the innermost axis as segments: runs copied from the input or filled
	type seg struct{ o, src, n int } // src -1: constant
	var segs []seg
	for o, s := range maps[r-1] {
		if n := len(segs); n > 0 {
			last := &segs[n-1]
			if (s < 0 && last.src < 0) || (s >= 0 && last.src >= 0 && s == last.src+last.n) {
				last.n++
				continue
			}
		}
		segs = append(segs, seg{o, s, 1})
	}
	inner := shape[r-1]
	rows := prod(shape[:r-1])
	is := strides(x.Shape)
	parallel.For(rows, max(1, copyGrain/inner), func(lo, hi int) {
		coord := make([]int, r-1)
		rem := lo
		for a := r - 2; a >= 0; a-- {
			coord[a] = rem % shape[a]
			rem /= shape[a]
		}
		for row := lo; row < hi; row++ {
			base := 0
			for a := 0; a < r-1; a++ {
				s := maps[a][coord[a]]
				if s < 0 {
					base = -1
					break
				}
				base += s * is[a]
			}
			off := row * inner
			if base < 0 {
				fillValue(y, off, off+inner, value)
			} else {
				for _, sg := range segs {
					if sg.src < 0 {
						fillValue(y, off+sg.o, off+sg.o+sg.n, value)
					} else {
						copyElems(y, off+sg.o, x, base+sg.src, sg.n)
					}
				}
			}
			for a := r - 2; a >= 0; a-- {
				coord[a]++
				if coord[a] < shape[a] {
					break
				}
				coord[a] = 0
			}
		}
	})
	return env.One(y), nil
}

func init() {
	ops.Register(ops.Def{Type: "Pad", Attrs: padAttrs, Traits: ops.HasFloat16, Prepare: preparePad})
}
