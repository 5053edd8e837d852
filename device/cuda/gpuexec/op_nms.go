package gpuexec

import (
	"encoding/binary"
	"fmt"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// nmsKernels is NonMaxSuppression (opsets 10 and 11): the boxes each
// (batch, class) keeps, selected as the CPU kernel selects them (same
// order, ties in index order, IoU in double precision whatever the
// engine's precision); kernels/op_nms.cu. The number of rows of its output
// depends on the data: the output must be a graph output, not read by
// another node of the same engine (engine/partition compiles the nodes
// that read it as a later segment, for the count each run gives; see
// dynOut). max_output_boxes_per_class, iou_threshold and score_threshold
// may be constants or inputs computed at run time.
var nmsKernels = []kernelDef{
	{op: "NonMaxSuppression", since: 10, inputs: 2, check: nmsCheck, emit: (*compiler).nms, dataDependent: true},
}

// Limits of the GPU's NonMaxSuppression: boxes per batch (a row of the
// overlap mask is at most nmsMaxWords 64-bit words, kept in shared
// memory by nms_reduce), batches x classes (a grid dimension), and the
// overlap masks' memory at once (classes are done in groups within it).
const (
	nmsMaxBoxes   = 32768
	nmsMaxClasses = 65535
	nmsMaskBudget = 256 << 20
)

func nmsCheck(n *ir.Node) error {
	floats := []tensor.DType{tensor.Float32, tensor.Float16, tensor.Float64}
	if err := typeIn(n, 0, floats...); err != nil {
		return err
	}
	if dtypeOf(n.Inputs[0]) != dtypeOf(n.Inputs[1]) {
		return fmt.Errorf("%w: NonMaxSuppression with %v boxes and %v scores", ErrUnsupported, dtypeOf(n.Inputs[0]), dtypeOf(n.Inputs[1]))
	}
	for i := 2; i <= 4; i++ {
		v := input(n, i)
		if v == nil || v.Const != nil {
			continue
		}
		want := floats
		if i == 2 {
			want = []tensor.DType{tensor.Int64}
		}
		if err := typeIn(n, i, want...); err != nil {
			return err
		}
	}
	return nil
}

// nmsScalar is a threshold input as the kernels take it: a constant (its
// value, kind 0), or a runtime tensor's address and element type (kind 1
// float32, 2 binary16, 3 float64 as stored); present is false for an
// absent or empty input.
type nmsScalar struct {
	present bool
	kind    int
	val     float32
	ptr     *ref
}

// nmsInput reads input i of n: the constant's value or the runtime value's
// address.
func (c *compiler) nmsInput(n *ir.Node, i int) (nmsScalar, error) {
	v := input(n, i)
	if v == nil {
		return nmsScalar{}, nil
	}
	dims, err := c.dims(v)
	if err != nil {
		return nmsScalar{}, err
	}
	size := tensor.NumElements(dims)
	if size == 0 {
		return nmsScalar{}, nil // an empty tensor is an absent input
	}
	if size != 1 || len(dims) > 1 {
		return nmsScalar{}, fmt.Errorf("%w: NonMaxSuppression input %d has shape %v, not a scalar", ErrUnsupported, i, dims)
	}
	s := nmsScalar{present: true}
	if c.constant(v) && v.Const.DType == tensor.Float32 {
		s.val = v.Const.Float32s()[0] // exactly: half engines store float32 constants in binary16
		return s, nil
	}
	r, err := c.ref(v)
	if err != nil {
		return nmsScalar{}, err
	}
	s.ptr = &r
	switch c.storedType(dtypeOf(v)) {
	case tensor.Float32:
		s.kind = 1
	case tensor.Float16:
		s.kind = 2
	case tensor.Float64:
		s.kind = 3
	default:
		return nmsScalar{}, fmt.Errorf("%w: NonMaxSuppression input %d is %v", ErrUnsupported, i, dtypeOf(v))
	}
	return s, nil
}

func (c *compiler) nms(s *step) error {
	n := s.node
	a, err := ops.ParseNMSAttrs(n, c.g.Opset()) // the CPU's rules (ops/image)
	if err != nil {
		return err
	}
	center := int64(b2i(a.CenterPointBox))
	boxes, scores := n.Inputs[0], n.Inputs[1]
	bd, err := c.dims(boxes)
	if err != nil {
		return err
	}
	sd, err := c.dims(scores)
	if err != nil {
		return err
	}
	if len(bd) != 3 || bd[2] != 4 || len(sd) != 3 || sd[0] != bd[0] || sd[2] != bd[1] {
		return fmt.Errorf("%w: NonMaxSuppression boxes %v and scores %v (want [batches, boxes, 4] and [batches, classes, boxes])", ErrGraph, bd, sd)
	}
	nb, nbox, ncls := int64(bd[0]), int64(bd[1]), int64(sd[1])
	bc := nb * ncls
	if nbox > nmsMaxBoxes {
		return fmt.Errorf("%w: NonMaxSuppression of %d boxes (at most %d on the GPU)", ErrUnsupported, nbox, nmsMaxBoxes)
	}
	if bc > nmsMaxClasses {
		return fmt.Errorf("%w: NonMaxSuppression of %d batches x classes (at most %d on the GPU)", ErrUnsupported, bc, nmsMaxClasses)
	}
	sfx, err := c.suffix(dtypeOf(boxes))
	if err != nil {
		return err
	}
	// max_output_boxes_per_class: a constant bounds the output's rows.
	var maxc int64
	var maxp *ref
	kcap := nbox
	if v := input(n, 2); v != nil {
		dims, err := c.dims(v)
		if err != nil {
			return err
		}
		switch size := tensor.NumElements(dims); {
		case size == 0:
			kcap = 0
		case size != 1 || len(dims) > 1:
			return fmt.Errorf("%w: max_output_boxes_per_class has shape %v, not a scalar", ErrUnsupported, dims)
		case c.constant(v):
			if !v.Const.DType.IsInt() {
				return fmt.Errorf("%w: max_output_boxes_per_class is %v", ErrUnsupported, v.Const.DType)
			}
			maxc = v.Const.Int(0)
			kcap = min(max(maxc, 0), nbox)
		default:
			if dtypeOf(v) != tensor.Int64 {
				return fmt.Errorf("%w: max_output_boxes_per_class is %v at run time (int64 only)", ErrUnsupported, dtypeOf(v))
			}
			r, err := c.ref(v)
			if err != nil {
				return err
			}
			maxp = &r
		}
	} else {
		kcap = 0
	}
	iou, err := c.nmsInput(n, 3)
	if err != nil {
		return err
	}
	score, err := c.nmsInput(n, 4)
	if err != nil {
		return err
	}
	use := 0
	if score.present {
		use = 1
	}
	o := n.Outputs[0]
	if readByNode(c.g, o) {
		return fmt.Errorf("%w: NonMaxSuppression's output %q is read in the same engine: its row count is known only after a run (the partitioner compiles its readers apart)", ErrUnsupported, o.Name)
	}
	rows := bc * kcap
	id := c.newBuffer(rows*3*8 + 8)
	c.storeOf[o] = id
	y := ref{buf: bufArena, id: id}
	count := ref{buf: bufArena, id: id, off: rows * 3 * 8}
	if c.dynamic == nil {
		c.dynamic = map[*ir.Value]dynOut{}
	}
	c.dynamic[o] = dynOut{shape: []int{int(rows), 3}, count: count}

	p := c.scratch(4 * 8)
	rank := c.scratch(4 * bc * nbox)
	ncand := c.scratch(4 * bc)
	kcnt := c.scratch(4 * bc)
	s.launches = []launch{elemLaunch("nms_setup", max(bc*nbox, bc, 1), pArg(p), optArg(maxp), lArg(maxc),
		optArg(iou.ptr), iArg(iou.kind), fArg(iou.val), optArg(score.ptr), iArg(score.kind), fArg(score.val), iArg(use),
		pArg(rank), lArg(bc*nbox), pArg(ncand), pArg(kcnt), lArg(bc), pArg(count))}
	if bc == 0 || nbox == 0 || kcap == 0 {
		return nil
	}
	xb, err := c.ref(boxes)
	if err != nil {
		return err
	}
	xs, err := c.ref(scores)
	if err != nil {
		return err
	}
	sorted := c.scratch(4 * bc * nbox)
	sel := c.scratch(4 * bc * kcap)
	words := (nbox + 63) / 64
	perClass := nbox * words * 8
	group := max(1, min(bc, nmsMaskBudget/perClass))
	mask := c.scratch(group * perClass)
	s.launches = append(s.launches,
		launch{kernel: "nms_rank_" + sfx, grid: dim3(ceilDiv(nbox, 128), bc, ceilDiv(nbox, 2048)), block: dim3(128, 1, 1),
			args: []arg{pArg(xs), pArg(p), pArg(rank), pArg(ncand), lArg(nbox)}},
		elemLaunch("nms_scatter_"+sfx, bc*nbox, pArg(xs), pArg(p), pArg(rank), pArg(sorted), lArg(nbox), lArg(bc)))
	for g0 := int64(0); g0 < bc; g0 += group {
		gn := min(group, bc-g0)
		s.launches = append(s.launches,
			launch{kernel: "nms_mask_" + sfx, grid: dim3(words, words, gn), block: dim3(64, 1, 1),
				args: []arg{pArg(xb), pArg(p), pArg(sorted), pArg(ncand), pArg(mask), lArg(nbox), lArg(ncls), lArg(g0), iArg(int(center))}},
			launch{kernel: "nms_reduce", grid: dim3(gn, 1, 1), block: dim3(256, 1, 1),
				args: []arg{pArg(p), pArg(sorted), pArg(ncand), pArg(mask), pArg(sel), pArg(kcnt), lArg(nbox), lArg(kcap), lArg(g0)}})
	}
	s.launches = append(s.launches, rowsLaunch("nms_compact", bc, 256, 0, pArg(y), pArg(count), pArg(sel), pArg(kcnt),
		lArg(ncls), lArg(bc), lArg(kcap)))
	return nil
}

// constant reports whether v is a constant, not a graph input with a
// default value (which a run may override).
func (c *compiler) constant(v *ir.Value) bool {
	_, input := c.storeOf[v]
	return v.Const != nil && !input
}

// dynOut is a graph output whose number of rows depends on the data
// (NonMaxSuppression's): its storage holds shape (the most rows it can
// have) and, at count, the int64 number of rows a run wrote, which the
// context reads back before copying that many rows.
type dynOut struct {
	shape []int
	count ref
}

// readByNode reports whether a node of g reads v.
func readByNode(g *ir.Graph, v *ir.Value) bool {
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in == v {
				return true
			}
		}
	}
	return false
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func dim3(x, y, z int64) cuda.Dim3 { return cuda.Dim3{X: uint32(x), Y: uint32(y), Z: uint32(z)} }

// rowsOutput reads an output whose number of rows depends on the data:
// the count the run left in b, then that many rows from the device (the
// context is current and the stream done), over into when they fit there
// (outputTensor).
func (c *Context) rowsOutput(io ioSpec, b cuda.HostBuffer, into []byte) (*tensor.Tensor, error) {
	n := int64(binary.LittleEndian.Uint64(b.Bytes()[:8]))
	if n < 0 || n > int64(io.shape[0]) {
		return nil, fmt.Errorf("%w: output %q has %d rows, at most %d", ErrGraph, io.name, n, io.shape[0])
	}
	shape := append([]int{int(n)}, io.shape[1:]...)
	t, err := outputTensor(io.dtype, shape, into)
	if err != nil {
		return nil, err
	}
	if err := c.e.drv.MemcpyDtoH(t.Data, c.addr(io.ref)); err != nil {
		return nil, fmt.Errorf("output %q: %w", io.name, err)
	}
	return t, nil
}
