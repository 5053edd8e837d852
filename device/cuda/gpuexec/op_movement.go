package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// movable reports whether elements of type dt are moved by the copy
// kernels (1, 2, 4 or 8 bytes; float32 in either precision).
func movable(dt tensor.DType) bool {
	switch dt.Size() {
	case 1, 2, 4, 8:
		return true
	}
	return false
}

func notMovable(dt tensor.DType) error {
	return fmt.Errorf("%w: %v elements (only 1-, 2-, 4- and 8-byte types are moved on the GPU)", ErrUnsupported, dt)
}

func movedOutput(n *ir.Node) error {
	if dt := n.Outputs[0].Type.DType; !movable(dt) {
		return notMovable(dt)
	}
	return nil
}

func movedInput(n *ir.Node) error {
	if dt := dtypeOf(n.Inputs[0]); !movable(dt) {
		return notMovable(dt)
	}
	return nil
}

func gatherTypes(n *ir.Node) error {
	if dt := dtypeOf(n.Inputs[1]); dt != tensor.Int64 {
		return fmt.Errorf("%w: Gather indices of %v (only int64)", ErrUnsupported, dt)
	}
	return movedInput(n)
}

// copyKernel returns the 2-, 4- or 8-byte variant of a data-movement
// kernel for elements of type dt as they are stored.
func (c *compiler) copyKernel(base string, dt tensor.DType) (string, error) {
	switch c.esize(dt) {
	case 1:
		return base + "_b8", nil
	case 2:
		return base + "_b16", nil
	case 4:
		return base + "_b32", nil
	case 8:
		return base + "_b64", nil
	}
	return "", notMovable(dt)
}

func (c *compiler) concat(s *step) error {
	n := s.node
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("copy_rows", n.Outputs[0].Type.DType)
	if err != nil {
		return err
	}
	ca, err := ops.ParseConcatAttrs(n, c.g.Opset()) // the CPU's rules (ops/shape): axis 1 by default before opset 4
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("Concat", ca.Axis, len(yd))
	if err != nil {
		return err
	}
	nhwc := c.readsNHWC(n, 0) // along the channels of NHWC values (layout.go)
	if nhwc {
		yd, axis = nhwcDims(yd), 3
	}
	outer, inner := prod(yd[:axis]), prod(yd[axis+1:])
	ys := int64(yd[axis]) * inner
	var off int64
	for _, v := range n.Inputs {
		if v == nil {
			continue
		}
		d, err := c.dims(v)
		if err != nil {
			return err
		}
		r, err := c.ref(v)
		if err != nil {
			return err
		}
		if len(d) != len(yd) {
			return fmt.Errorf("%w: Concat input %v for output %v", ErrGraph, d, yd)
		}
		if nhwc {
			d = nhwcDims(d)
		}
		cols := int64(d[axis]) * inner
		if cols > 0 {
			s.launches = append(s.launches, elemLaunch(k, outer*cols, pArg(yr), pArg(r), lArg(outer), lArg(cols), lArg(ys), lArg(off), lArg(cols), lArg(0)))
		}
		off += cols
	}
	return nil
}

func (c *compiler) split(s *step) error {
	n := s.node
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("copy_rows", dtypeOf(x))
	if err != nil {
		return err
	}
	sa, err := ops.ParseSplitAttrs(n, c.g.Opset()) // the CPU's rules (ops/shape)
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("Split", sa.Axis, len(xd))
	if err != nil {
		return err
	}
	outer, inner := prod(xd[:axis]), prod(xd[axis+1:])
	xs := int64(xd[axis]) * inner
	var off int64
	for i, o := range n.Outputs {
		if o == nil {
			continue
		}
		yr, yd, err := c.out(n, i)
		if err != nil {
			return err
		}
		cols := int64(yd[axis]) * inner
		if cols > 0 {
			s.launches = append(s.launches, elemLaunch(k, outer*cols, pArg(yr), pArg(xr), lArg(outer), lArg(cols), lArg(cols), lArg(0), lArg(xs), lArg(off)))
		}
		off += cols
	}
	if off != xs {
		return fmt.Errorf("%w: Split outputs cover %d of %d elements per row", ErrGraph, off, xs)
	}
	return nil
}

// transposePerm is Transpose node n's "perm" as the CPU reads it (nil when
// absent, for the dimensions reversed, or when it is not a permutation).
func (c *compiler) transposePerm(n *ir.Node) []int64 {
	a, err := ops.ParseTransposeAttrs(n, c.g.Opset())
	if err != nil {
		return nil
	}
	return a.Perm
}

func (c *compiler) transpose(s *step) error {
	n := s.node
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("permute", dtypeOf(x))
	if err != nil {
		return err
	}
	a, err := ops.ParseTransposeAttrs(n, c.g.Opset()) // the CPU's rules (ops/shape)
	if err != nil {
		return err
	}
	perm, err := a.PermFor(len(xd))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrGraph, err)
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	st := tensor.Strides(xd)
	meta := []int64{int64(len(yd))}
	for _, d := range yd {
		meta = append(meta, int64(d))
	}
	for _, p := range perm {
		meta = append(meta, int64(st[p]))
	}
	total := prod(yd)
	s.launches = []launch{elemLaunch(k, total, pArg(yr), pArg(xr), pArg(c.meta(meta)), lArg(total))}
	return nil
}

func (c *compiler) gather(s *step) error {
	n := s.node
	x, idx := n.Inputs[0], n.Inputs[1] // int64 indices (gatherTypes)
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	id, err := c.dims(idx)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("gather", dtypeOf(x))
	if err != nil {
		return err
	}
	ga, err := ops.ParseGatherAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("Gather", ga.Axis, len(xd))
	if err != nil {
		return err
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	ir_, err := c.ref(idx)
	if err != nil {
		return err
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	outer, inner, nidx := prod(xd[:axis]), prod(xd[axis+1:]), prod(id)
	s.launches = []launch{elemLaunch(k, outer*nidx*inner, pArg(yr), pArg(xr), pArg(ir_), lArg(outer), lArg(int64(xd[axis])), lArg(nidx), lArg(inner))}
	return nil
}

// movementKernels move elements of 2, 4 or 8 bytes: the reshapes are
// aliases of their input's storage.
var movementKernels = []kernelDef{
	{op: "Reshape", emit: emitAlias},
	{op: "Flatten", emit: emitAlias},
	{op: "Squeeze", emit: emitAlias},
	{op: "Unsqueeze", emit: emitAlias},
	{op: "Identity", emit: emitAlias},
	{op: "Dropout", outputs: 2, check: dropoutInference, emit: (*compiler).dropout},
	{op: "Concat", check: movedOutput, emit: (*compiler).concat},
	{op: "Split", outputs: -1, check: movedInput, emit: (*compiler).split},
	{op: "Transpose", check: movedInput, emit: (*compiler).transpose},
	{op: "Slice", check: movedInput, emit: (*compiler).slice},
	{op: "Gather", inputs: 2, check: gatherTypes, emit: (*compiler).gather},
	{op: "Expand", inputs: 2, check: shapedMove, emit: (*compiler).expand},
	{op: "Tile", inputs: 2, check: shapedMove, emit: (*compiler).tile},
	{op: "DepthToSpace", check: movedInput, emit: (*compiler).depthSpace},
	{op: "SpaceToDepth", check: movedInput, emit: (*compiler).depthSpace},
	{op: "Pad", check: padArgs, emit: (*compiler).pad},
	{op: "GatherElements", inputs: 2, check: indexedMove, emit: (*compiler).gatherElements},
	{op: "ScatterElements", inputs: 3, check: scatterArgs, emit: (*compiler).scatterElements},
	{op: "Scatter", until: 10, inputs: 3, check: scatterArgs, emit: (*compiler).scatterElements},
	{op: "ScatterND", inputs: 3, check: scatterArgs, emit: (*compiler).scatterND},
	{op: "Trilu", check: triluArgs, emit: (*compiler).trilu},
	{op: "GatherND", inputs: 2, check: gatherNDArgs, emit: (*compiler).gatherND},
	{op: "Size", emit: (*compiler).sizeOp},
	{op: "OneHot", inputs: 3, check: oneHotArgs, emit: (*compiler).oneHot},
	{op: "EyeLike", check: eyeLikeArgs, emit: (*compiler).eyeLike},
}

// shapedMove: movable data, and input 1 (Expand's shape, Tile's repeats),
// which decides the output's shape, a constant or a shape value (it folds
// once the input shapes are bound).
func shapedMove(n *ir.Node) error {
	if err := movedInput(n); err != nil {
		return err
	}
	if v := n.Inputs[1]; v.Const == nil && !shapeVector(v) {
		return fmt.Errorf("%w: %s input %q computed at run time (it decides the output's shape)", ErrUnsupported, n.OpType, v.Name)
	}
	return nil
}

// indexedMove: movable data, int64 indices in input 1.
func indexedMove(n *ir.Node) error {
	if err := movedInput(n); err != nil {
		return err
	}
	return typeIn(n, 1, tensor.Int64)
}

// scatterArgs: movable data and updates of one type, int64 indices, no
// reduction.
func scatterArgs(n *ir.Node) error {
	if err := indexedMove(n); err != nil {
		return err
	}
	if err := sameTypeIn(n, 2); err != nil {
		return err
	}
	// The opset is not known here: read with the latest one's rules (the
	// CPU's Prepare checks the value against the node's opset).
	r := "none"
	if n.OpType == "ScatterND" {
		a, _ := ops.ParseScatterNDAttrs(n, ops.MaxOpset)
		r = a.Reduction
	} else {
		a, _ := ops.ParseScatterElementsAttrs(n, ops.MaxOpset)
		r = a.Reduction
	}
	if r != "none" {
		return fmt.Errorf("%w: %s reduction %q (only none)", ErrUnsupported, n.OpType, r)
	}
	return nil
}

// padArgs: movable data, constant pads, axes and value.
func padArgs(n *ir.Node) error {
	if err := movedInput(n); err != nil {
		return err
	}
	for i := 1; i < len(n.Inputs); i++ {
		if v := n.Inputs[i]; v != nil && v.Const == nil && !(i != 2 && v.ShapeValue != nil) {
			return fmt.Errorf("%w: Pad input %d computed at run time", ErrUnsupported, i)
		}
	}
	return nil
}

func triluArgs(n *ir.Node) error {
	if err := movedInput(n); err != nil {
		return err
	}
	return typeIn(n, 1, tensor.Int64)
}

// permuteLaunch moves x to y through the strides of a permutation kernel:
// output index (dims yd) reads x at sum idx[d]*xs[d].
func (c *compiler) permuteLaunch(s *step, dt tensor.DType, yr, xr ref, yd []int, xs []int64) error {
	k, err := c.copyKernel("permute", dt)
	if err != nil {
		return err
	}
	meta := []int64{int64(len(yd))}
	for _, d := range yd {
		meta = append(meta, int64(d))
	}
	meta = append(meta, xs...)
	total := prod(yd)
	if total > 0 {
		s.launches = append(s.launches, elemLaunch(k, total, pArg(yr), pArg(xr), pArg(c.meta(meta)), lArg(total)))
	}
	return nil
}

// inOut returns input 0's dims and ref and output 0's ref and dims.
func (c *compiler) inOut(n *ir.Node) (xd []int, xr, yr ref, yd []int, err error) {
	if xd, err = c.dims(n.Inputs[0]); err != nil {
		return
	}
	if xr, err = c.ref(n.Inputs[0]); err != nil {
		return
	}
	yr, yd, err = c.out(n, 0)
	return
}

// expand is a permutation with stride 0 on the broadcast dims.
func (c *compiler) expand(s *step) error {
	n := s.node
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	meta, err := bcastMeta(yd, xd)
	if err != nil {
		return err
	}
	return c.permuteLaunch(s, dtypeOf(n.Inputs[0]), yr, xr, yd, meta[1+len(yd):])
}

func (c *compiler) tile(s *step) error {
	n := s.node
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	if len(xd) != len(yd) {
		return fmt.Errorf("%w: Tile of %v to %v", ErrGraph, xd, yd)
	}
	bs, err := c.byteSuffix(dtypeOf(n.Inputs[0]))
	if err != nil {
		return err
	}
	st := tensor.Strides(xd)
	meta := []int64{int64(len(yd))}
	for _, d := range yd {
		meta = append(meta, int64(d))
	}
	for _, d := range xd {
		meta = append(meta, int64(d))
	}
	for _, v := range st {
		meta = append(meta, int64(v))
	}
	total := prod(yd)
	if total > 0 {
		s.launches = []launch{elemLaunch("tile_"+bs, total, pArg(yr), pArg(xr), pArg(c.meta(meta)), lArg(total))}
	}
	return nil
}

// depthSpace is DepthToSpace or SpaceToDepth: a 6-D permutation.
func (c *compiler) depthSpace(s *step) error {
	n := s.node
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	a, err := ops.ParseDepthSpaceAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	b, crd := a.BlockSize, a.CRD
	if len(xd) != 4 || b < 1 {
		return fmt.Errorf("%w: %s of %v with blocksize %d", ErrGraph, n.OpType, xd, b)
	}
	N, C, H, W := xd[0], xd[1], xd[2], xd[3]
	var view, perm []int
	switch {
	case n.OpType == "SpaceToDepth":
		view, perm = []int{N, C, H / b, b, W / b, b}, []int{0, 3, 5, 1, 2, 4}
	case crd:
		view, perm = []int{N, C / (b * b), b, b, H, W}, []int{0, 1, 4, 2, 5, 3}
	default:
		view, perm = []int{N, b, b, C / (b * b), H, W}, []int{0, 3, 4, 1, 5, 2}
	}
	if prod(view) != prod(xd) {
		return fmt.Errorf("%w: %s of %v with blocksize %d", ErrGraph, n.OpType, xd, b)
	}
	vs := tensor.Strides(view)
	pd := make([]int, 6)
	xs := make([]int64, 6)
	for i, p := range perm {
		pd[i], xs[i] = view[p], int64(vs[p])
	}
	_ = yd
	return c.permuteLaunch(s, dtypeOf(n.Inputs[0]), yr, xr, pd, xs)
}

// Pad modes of pad_bN.
var padModes = map[string]int{"constant": 0, "edge": 1, "reflect": 2, "wrap": 3}

func (c *compiler) pad(s *step) error {
	n := s.node
	a, err := ops.ParsePadAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	mode, ok := padModes[a.Mode]
	if !ok {
		return fmt.Errorf("%w: Pad mode %q", ErrUnsupported, a.Mode)
	}
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	r := len(xd)
	var pads []int64
	value := 0.0
	if a.FromAttrs {
		pads = a.Pads
		value = float64(a.Value)
	} else {
		if v := input(n, 1); v != nil {
			if pads, ok = constInts(v); !ok && v.ShapeValue != nil {
				for _, d := range v.ShapeValue {
					if !d.Known() {
						return fmt.Errorf("%w: Pad pads computed at run time", ErrUnsupported)
					}
					pads = append(pads, d.Val)
				}
			} else if !ok {
				return fmt.Errorf("%w: Pad pads computed at run time", ErrUnsupported)
			}
		}
		if v := input(n, 2); v != nil && v.Const != nil && v.Const.Len() > 0 {
			value = v.Const.Float(0)
		}
		if v := input(n, 3); v != nil {
			axes, ok := constInts(v)
			if !ok {
				return fmt.Errorf("%w: Pad axes computed at run time", ErrUnsupported)
			}
			full := make([]int64, 2*r)
			if len(pads) != 2*len(axes) {
				return fmt.Errorf("%w: Pad: %d pads for %d axes", ErrGraph, len(pads), len(axes))
			}
			for i, ax := range axes {
				j, err := ops.NormAxis("Pad", ax, r)
				if err != nil {
					return err
				}
				full[j], full[r+j] = pads[i], pads[len(axes)+i]
			}
			pads = full
		}
	}
	if len(pads) != 2*r || len(yd) != r {
		return fmt.Errorf("%w: Pad: %d pads for rank %d", ErrGraph, len(pads), r)
	}
	dt := dtypeOf(n.Inputs[0])
	bs, err := c.byteSuffix(dt)
	if err != nil {
		return err
	}
	meta := []int64{int64(r)}
	for _, d := range yd {
		meta = append(meta, int64(d))
	}
	for _, d := range xd {
		meta = append(meta, int64(d))
	}
	for _, v := range tensor.Strides(xd) {
		meta = append(meta, int64(v))
	}
	meta = append(meta, pads[:r]...)
	total := prod(yd)
	if total == 0 {
		return nil
	}
	if prod(xd) == 0 && mode != 0 {
		return fmt.Errorf("%w: Pad mode %d of an empty tensor", ErrGraph, mode)
	}
	s.launches = []launch{elemLaunch("pad_"+bs, total, pArg(yr), pArg(xr), pArg(c.meta(meta)), lArg(total), iArg(mode), lArg(int64(c.elemBits(dt, value))))}
	return nil
}

// elementsMeta is {r, axis, dims[r], strides[r], axis length} of the
// Gather/ScatterElements kernels.
func elementsMeta(r, axis int, dims []int, strided []int) []int64 {
	meta := []int64{int64(r), int64(axis)}
	for _, d := range dims {
		meta = append(meta, int64(d))
	}
	for _, v := range tensor.Strides(strided) {
		meta = append(meta, int64(v))
	}
	return append(meta, int64(strided[axis]))
}

func (c *compiler) gatherElements(s *step) error {
	n := s.node
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	ga, err := ops.ParseGatherAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("GatherElements", ga.Axis, len(xd))
	if err != nil {
		return err
	}
	ir_, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	if len(yd) != len(xd) {
		return fmt.Errorf("%w: GatherElements of %v to %v", ErrGraph, xd, yd)
	}
	bs, err := c.byteSuffix(dtypeOf(n.Inputs[0]))
	if err != nil {
		return err
	}
	total := prod(yd)
	if total > 0 {
		s.launches = []launch{elemLaunch("gather_elements_"+bs, total, pArg(yr), pArg(xr), pArg(ir_), pArg(c.meta(elementsMeta(len(xd), axis, yd, xd))), lArg(total))}
	}
	return nil
}

// copyAll copies x (all of it) into y, which has its shape.
func (c *compiler) copyAll(s *step, dt tensor.DType, yr, xr ref, total int64) error {
	k, err := c.copyKernel("copy_rows", dt)
	if err != nil {
		return err
	}
	if total > 0 {
		s.launches = append(s.launches, elemLaunch(k, total, pArg(yr), pArg(xr), lArg(1), lArg(total), lArg(total), lArg(0), lArg(total), lArg(0)))
	}
	return nil
}

func (c *compiler) scatterElements(s *step) error {
	n := s.node
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	sa, err := ops.ParseScatterElementsAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis(n.OpType, sa.Axis, len(xd))
	if err != nil {
		return err
	}
	dt := dtypeOf(n.Inputs[0])
	if err := c.copyAll(s, dt, yr, xr, prod(yd)); err != nil {
		return err
	}
	ud, err := c.dims(n.Inputs[2])
	if err != nil {
		return err
	}
	ur, err := c.ref(n.Inputs[2])
	if err != nil {
		return err
	}
	ir_, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	if len(ud) != len(xd) {
		return fmt.Errorf("%w: ScatterElements updates %v for data %v", ErrGraph, ud, xd)
	}
	bs, err := c.byteSuffix(dt)
	if err != nil {
		return err
	}
	if total := prod(ud); total > 0 {
		s.launches = append(s.launches, elemLaunch("scatter_elements_"+bs, total, pArg(yr), pArg(ur), pArg(ir_), pArg(c.meta(elementsMeta(len(xd), axis, ud, xd))), lArg(total)))
	}
	return nil
}

func (c *compiler) scatterND(s *step) error {
	n := s.node
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	dt := dtypeOf(n.Inputs[0])
	if err := c.copyAll(s, dt, yr, xr, prod(yd)); err != nil {
		return err
	}
	id, err := c.dims(n.Inputs[1])
	if err != nil {
		return err
	}
	if len(id) == 0 {
		return fmt.Errorf("%w: ScatterND indices of rank 0", ErrGraph)
	}
	k := id[len(id)-1]
	if k > len(xd) {
		return fmt.Errorf("%w: ScatterND index tuples of %d for data %v", ErrGraph, k, xd)
	}
	ur, err := c.ref(n.Inputs[2])
	if err != nil {
		return err
	}
	ir_, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	rows, slice := prod(id[:len(id)-1]), prod(xd[k:])
	st := tensor.Strides(xd)
	meta := []int64{int64(k)}
	for _, d := range xd[:k] {
		meta = append(meta, int64(d))
	}
	for _, v := range st[:k] {
		meta = append(meta, int64(v))
	}
	bs, err := c.byteSuffix(dt)
	if err != nil {
		return err
	}
	if rows*slice > 0 {
		s.launches = append(s.launches, elemLaunch("scatter_nd_"+bs, rows*slice, pArg(yr), pArg(ur), pArg(ir_), pArg(c.meta(meta)), lArg(rows), lArg(slice)))
	}
	return nil
}

func (c *compiler) trilu(s *step) error {
	n := s.node
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	if len(xd) < 2 {
		return fmt.Errorf("%w: Trilu of %v", ErrGraph, xd)
	}
	var k int64
	kp := nilArg() // k read on the device when computed at run time
	if v := input(n, 1); v != nil {
		if vals, ok := constInts(v); ok && len(vals) == 1 {
			k = vals[0]
		} else if c.size(v) != 8 {
			return fmt.Errorf("%w: Trilu k of %v", ErrGraph, v.Type)
		} else {
			r, err := c.ref(v)
			if err != nil {
				return err
			}
			kp = pArg(r)
		}
	}
	ta, err := ops.ParseTriluAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	upper := 0
	if ta.Upper {
		upper = 1
	}
	bs, err := c.byteSuffix(dtypeOf(n.Inputs[0]))
	if err != nil {
		return err
	}
	total := prod(yd)
	if total > 0 {
		s.launches = []launch{elemLaunch("trilu_"+bs, total, pArg(yr), pArg(xr), lArg(int64(xd[len(xd)-2])), lArg(int64(xd[len(xd)-1])), lArg(total), lArg(k), kp, iArg(upper))}
	}
	return nil
}

func emitAlias(c *compiler, s *step) error { return c.alias(s.node) }

func gatherNDArgs(n *ir.Node) error {
	if err := indexedMove(n); err != nil {
		return err
	}
	// The opset is not known here; batch_dims is the same in every one
	// that has it.
	if a, _ := ops.ParseGatherNDAttrs(n, ops.MaxOpset); a.BatchDims != 0 {
		return fmt.Errorf("%w: GatherND with batch_dims %d", ErrUnsupported, a.BatchDims)
	}
	return nil
}

// gatherND copies, for each index tuple, the slice of x it names.
func (c *compiler) gatherND(s *step) error {
	n := s.node
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	id, err := c.dims(n.Inputs[1])
	if err != nil {
		return err
	}
	if len(id) == 0 || id[len(id)-1] > len(xd) {
		return fmt.Errorf("%w: GatherND indices %v for data %v", ErrGraph, id, xd)
	}
	k := id[len(id)-1]
	ir_, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	rows, slice := prod(id[:len(id)-1]), prod(xd[k:])
	if rows*slice != prod(yd) {
		return fmt.Errorf("%w: GatherND of %v at %v gives %v", ErrGraph, xd, id, yd)
	}
	st := tensor.Strides(xd)
	meta := []int64{int64(k)}
	for _, d := range xd[:k] {
		meta = append(meta, int64(d))
	}
	for _, v := range st[:k] {
		meta = append(meta, int64(v))
	}
	bs, err := c.byteSuffix(dtypeOf(n.Inputs[0]))
	if err != nil {
		return err
	}
	if rows*slice > 0 {
		s.launches = []launch{elemLaunch("gather_nd_"+bs, rows*slice, pArg(yr), pArg(xr), pArg(ir_), pArg(c.meta(meta)), lArg(rows), lArg(slice))}
	}
	return nil
}

// sizeOp writes Size's int64 scalar, known from the bound shape, by copying
// a constant.
func (c *compiler) sizeOp(s *step) error {
	n := s.node
	xd, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	if dt := n.Outputs[0].Type.DType; dt != tensor.Int64 {
		return fmt.Errorf("%w: Size of type %v", ErrGraph, dt)
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	return c.copyAll(s, tensor.Int64, yr, c.scalar(tensor.Int64, float64(prod(xd))), 1)
}

// dropoutInference: Dropout outside training (no training_mode input, or
// a constant false one).
func dropoutInference(n *ir.Node) error {
	if v := input(n, 2); v != nil && (v.Const == nil || v.Const.Len() != 1 || v.Const.Float(0) != 0) {
		return fmt.Errorf("%w: Dropout in training mode (or with training_mode computed at run time)", ErrUnsupported)
	}
	return nil
}

// dropout is Identity; its mask, when read, is all true.
func (c *compiler) dropout(s *step) error {
	n := s.node
	if err := c.alias(n); err != nil {
		return err
	}
	if m := input2(n.Outputs, 1); m != nil && c.used(m) {
		yr, yd, err := c.out(n, 1)
		if err != nil {
			return err
		}
		bs, err := c.byteSuffix(m.Type.DType)
		if err != nil {
			return err
		}
		if total := prod(yd); total > 0 {
			s.launches = []launch{elemLaunch("fill_"+bs, total, pArg(yr), lArg(total), lArg(int64(c.elemBits(m.Type.DType, 1))))}
		}
	}
	return nil
}

// oneHotArgs: indices of a type cast_any reads, a constant depth, movable
// values.
func oneHotArgs(n *ir.Node) error {
	if _, ok := castCodes[dtypeOf(n.Inputs[0])]; !ok {
		return fmt.Errorf("%w: OneHot indices of %v", ErrUnsupported, dtypeOf(n.Inputs[0]))
	}
	if d := n.Inputs[1]; d.Const == nil || d.Const.Len() != 1 {
		return fmt.Errorf("%w: OneHot depth computed at run time", ErrUnsupported)
	}
	if dt := dtypeOf(n.Inputs[2]); !movable(dt) {
		return notMovable(dt)
	}
	return nil
}

func (c *compiler) oneHot(s *step) error {
	n := s.node
	id, ir_, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	depth := int64(n.Inputs[1].Const.Float(0))
	oa, err := ops.ParseOneHotAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("OneHot", oa.Axis, len(id)+1)
	if err != nil {
		return err
	}
	if len(yd) != len(id)+1 || int64(yd[axis]) != depth {
		return fmt.Errorf("%w: OneHot of %v with depth %d gives %v", ErrGraph, id, depth, yd)
	}
	vr, err := c.ref(n.Inputs[2])
	if err != nil {
		return err
	}
	bs, err := c.byteSuffix(dtypeOf(n.Inputs[2]))
	if err != nil {
		return err
	}
	outer, inner := prod(id[:axis]), prod(id[axis:])
	if total := prod(yd); total > 0 {
		s.launches = []launch{elemLaunch("one_hot_"+bs, total, pArg(yr), pArg(ir_), iArg(castCodes[c.storedType(dtypeOf(n.Inputs[0]))]), pArg(vr),
			lArg(outer), lArg(depth), lArg(inner))}
	}
	return nil
}

func eyeLikeArgs(n *ir.Node) error {
	if dt := n.Outputs[0].Type.DType; !movable(dt) || dt == tensor.String {
		return notMovable(dt)
	}
	return nil
}

func (c *compiler) eyeLike(s *step) error {
	n := s.node
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	if len(yd) != 2 {
		return fmt.Errorf("%w: EyeLike of rank %d", ErrGraph, len(yd))
	}
	ea, err := ops.ParseEyeLikeAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	k := ea.K
	dt := n.Outputs[0].Type.DType
	bs, err := c.byteSuffix(dt)
	if err != nil {
		return err
	}
	if total := prod(yd); total > 0 {
		s.launches = []launch{elemLaunch("eye_"+bs, total, pArg(yr), lArg(int64(yd[0])), lArg(int64(yd[1])), lArg(k), lArg(int64(c.elemBits(dt, 1))))}
	}
	return nil
}
