package gpuexec

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// layerNormAxis is LayerNormalization node n's first normalized axis for
// an input of the given rank, as the CPU reads it (kiln's fused
// LayerNormalization is the opset 17 one).
func (c *compiler) layerNormAxis(n *ir.Node, rank int) (int, error) {
	a, err := ops.ParseLayerNormAttrs(n, max(c.g.Opset(), 17))
	if err != nil {
		return 0, err
	}
	return ops.NormAxis("LayerNormalization", a.Axis, rank)
}

func (c *compiler) layerNorm(s *step) error {
	n := s.node
	// the CPU's rules (ops/norm); kiln's fused LayerNormalization is the
	// opset 17 one
	a, err := ops.ParseLayerNormAttrs(n, max(c.g.Opset(), 17))
	if err != nil {
		return err
	}
	xd, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("LayerNormalization", a.Axis, len(xd))
	if err != nil {
		return err
	}
	eps := a.Epsilon
	rows, cols := prod(xd[:axis]), prod(xd[axis:])
	if cols > math.MaxInt32 {
		return fmt.Errorf("%w: LayerNormalization over %d elements", ErrUnsupported, cols)
	}
	var xr ref
	if c.lnAdd[n] == nil { // else the Add's inputs, below
		if xr, err = c.ref(n.Inputs[0]); err != nil {
			return err
		}
	}
	g := input(n, 1)
	if g == nil || c.size(g) != cols*c.esize(tensor.Float32) {
		return fmt.Errorf("%w: LayerNormalization scale must have the %d elements of a row", ErrUnsupported, cols)
	}
	gr, err := c.ref(g)
	if err != nil {
		return err
	}
	var br *ref
	if b := input(n, 2); b != nil {
		if c.size(b) != cols*c.esize(tensor.Float32) {
			return fmt.Errorf("%w: LayerNormalization bias must have the %d elements of a row", ErrUnsupported, cols)
		}
		r, err := c.ref(b)
		if err != nil {
			return err
		}
		br = &r
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	if c.statsUsed(n) {
		if err := c.layerNormStats(s, xr, rows, cols, eps); err != nil {
			return err
		}
	}
	if p := c.embedLN[n]; p != nil { // an embedding lookup and sum (embed.go)
		if err := c.embedLayerNorm(s, p, yr, gr, br, rows, cols, eps); err != nil {
			return err
		}
		return nil
	}
	if c.half && vecRows(cols) {
		// one warp per row, 16-byte accesses; a residual Add folded in
		zr := nilArg()
		if add := c.lnAdd[n]; add != nil && c.lnResid(add, &xr, &zr) {
			// the product of one of the Add's inputs added the other
		} else if add != nil {
			r0, err := c.ref(add.Inputs[0])
			if err != nil {
				return err
			}
			r1, err := c.ref(add.Inputs[1])
			if err != nil {
				return err
			}
			c.use(add.Inputs[0])
			c.use(add.Inputs[1])
			xr, zr = r0, pArg(r1)
		}
		s.launches = append(s.launches, launch{kernel: lnVecKernel(cols), grid: cuda.Dim3{X: uint32((rows + 3) / 4), Y: 1, Z: 1}, block: cuda.Dim3{X: 128, Y: 1, Z: 1},
			args: []arg{pArg(yr), pArg(xr), zr, pArg(gr), optArg(br), lArg(rows), iArg(int(cols)), fArg(eps)}})
		return nil
	}
	s.launches = append(s.launches, rowsLaunch(c.fk("layernorm"), rows, rowThreads(int(cols)), 0, pArg(yr), pArg(xr), pArg(gr), optArg(br), lArg(rows), iArg(int(cols)), fArg(eps)))
	return nil
}

// lnVecKernel is the one-warp-per-row LayerNorm kernel for rows of cols
// halves (vecRows): layernorm_vec_f16 (gamma and beta loaded with the row)
// up to 1024, layernorm_vec8_f16 (kernels/op_layernorm.cu) up to 2048.
func lnVecKernel(cols int64) string {
	if cols <= 32*8*4 {
		return "layernorm_vec_f16"
	}
	return "layernorm_vec8_f16"
}

// lnResid plans add's residual into the product computing one of its
// inputs (residualInto); then the normalization reads that input alone
// (xr, and no z).
func (c *compiler) lnResid(add *ir.Node, xr *ref, zr *arg) bool {
	i := c.residualInto(add)
	if i < 0 {
		return false
	}
	r, err := c.ref(add.Inputs[i])
	if err != nil {
		return false
	}
	c.use(add.Inputs[0])
	c.use(add.Inputs[1])
	*xr, *zr = r, nilArg()
	if a := c.producerStep(add.Outputs[0]); a >= 0 { // kiln inspect says how
		if p := c.producerStep(add.Inputs[i]); p >= 0 {
			c.p.steps[a].inPlace += ", the residual added by " + c.p.steps[p].node.Name
		}
	}
	return true
}

// normKernels are the normalizations and the losses built on them.
var normKernels = []kernelDef{
	{op: "LayerNormalization", inputs: 2, outputs: 3, types: float32Only, f32: []int{1, 2}, emit: (*compiler).layerNorm},
	{domain: "kiln", op: "LayerNormalization", inputs: 2, outputs: 3, types: float32Only, f32: []int{1, 2}, emit: (*compiler).layerNorm},
	{op: "InstanceNormalization", inputs: 3, types: float32Only, f32: []int{1, 2}, emit: (*compiler).instanceNorm},
	{op: "BatchNormalization", inputs: 5, types: float32Only, f32: []int{1, 2, 3, 4}, check: batchNormInference, emit: (*compiler).batchNorm},
	{op: "LRN", types: float32Only, emit: (*compiler).lrn},
	{op: "NegativeLogLikelihoodLoss", inputs: 2, check: lossTypes, emit: (*compiler).nllLoss},
	{op: "SoftmaxCrossEntropyLoss", inputs: 2, outputs: 2, check: lossTypes, emit: (*compiler).nllLoss},
}

func batchNormInference(n *ir.Node) error {
	// The opset is not known here: training_mode is read as from opset
	// 14 (batchNorm checks the node's own opset's rule).
	if a, _ := ops.ParseBatchNormAttrs(n, ops.MaxOpset); a.Training {
		return fmt.Errorf("%w: BatchNormalization in training mode", ErrUnsupported)
	}
	return nil
}

// lossTypes: float scores (and weights), int64 targets.
func lossTypes(n *ir.Node) error {
	if err := typeIn(n, 0, tensor.Float32, tensor.Float16, tensor.Float64); err != nil {
		return err
	}
	if err := typeIn(n, 1, tensor.Int64); err != nil {
		return err
	}
	return sameTypeIn(n, 2)
}

// statsUsed reports whether a LayerNormalization's Mean or InvStdDev is
// read.
func (c *compiler) statsUsed(n *ir.Node) bool {
	for _, o := range n.Outputs[1:] {
		if o != nil && c.used(o) {
			return true
		}
	}
	return false
}

// layerNormStats writes a LayerNormalization's Mean and InvStdDev outputs
// (those read) with row_stats.
func (c *compiler) layerNormStats(s *step, xr ref, rows, cols int64, eps float32) error {
	n := s.node
	var outs [2]arg
	for i := range outs {
		outs[i] = nilArg()
		if o := input2(n.Outputs, i+1); o != nil && c.used(o) {
			r, _, err := c.out(n, i+1)
			if err != nil {
				return err
			}
			outs[i] = pArg(r)
		}
	}
	s.launches = append(s.launches, rowsLaunch(c.fk("row_stats"), rows, rowThreads(int(cols)), 0, outs[0], outs[1], pArg(xr), lArg(rows), iArg(int(cols)), fArg(eps)))
	return nil
}

// input2 is vs[i], or nil.
func input2(vs []*ir.Value, i int) *ir.Value {
	if i < len(vs) {
		return vs[i]
	}
	return nil
}

func (c *compiler) instanceNorm(s *step) error {
	n := s.node
	xd, xr, yr, _, err := c.inOut(n)
	if err != nil {
		return err
	}
	if len(xd) < 2 {
		return fmt.Errorf("%w: InstanceNormalization of %v", ErrGraph, xd)
	}
	a, err := ops.ParseInstanceNormAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	eps := a.Epsilon
	sr, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	br, err := c.ref(n.Inputs[2])
	if err != nil {
		return err
	}
	rows, cols := int64(xd[0])*int64(xd[1]), prod(xd[2:])
	if cols > math.MaxInt32 {
		return fmt.Errorf("%w: InstanceNormalization over %d elements", ErrUnsupported, cols)
	}
	if rows*cols > 0 {
		s.launches = []launch{rowsLaunch(c.fk("instnorm"), rows, rowThreads(int(cols)), 0, pArg(yr), pArg(xr), pArg(sr), pArg(br), lArg(rows), iArg(int(cols)), iArg(xd[1]), fArg(eps))}
	}
	return nil
}

func (c *compiler) batchNorm(s *step) error {
	n := s.node
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	if len(xd) < 2 {
		return fmt.Errorf("%w: BatchNormalization of %v", ErrGraph, xd)
	}
	a, err := ops.ParseBatchNormAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	if a.Training { // before opset 14: more than one output named, is_test 0
		return fmt.Errorf("%w: BatchNormalization in training mode", ErrUnsupported)
	}
	for i := 1; i <= 4; i++ { // the kernel reads one value per channel
		pd, err := c.dims(n.Inputs[i])
		if err != nil {
			return err
		}
		if prod(pd) != int64(xd[1]) {
			return fmt.Errorf("%w: BatchNormalization input %d has %d elements for %d channels (statistics per activation, spatial=0)", ErrUnsupported, i, prod(pd), xd[1])
		}
	}
	eps := a.Epsilon
	var r [4]ref
	for i := range r {
		if r[i], err = c.ref(n.Inputs[i+1]); err != nil {
			return err
		}
	}
	total := prod(yd)
	if total > 0 {
		s.launches = []launch{elemLaunch(c.fk("batchnorm"), total, pArg(yr), pArg(xr), pArg(r[0]), pArg(r[1]), pArg(r[2]), pArg(r[3]),
			lArg(total), lArg(prod(xd[2:])), iArg(xd[1]), fArg(eps))}
	}
	return nil
}

// nllLoss runs NegativeLogLikelihoodLoss, and SoftmaxCrossEntropyLoss as
// LogSoftmax over the classes (into its log_prob output, or scratch)
// followed by it.
func (c *compiler) nllLoss(s *step) error {
	n := s.node
	a, err := ops.ParseLossAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	reduction := map[string]int{"none": 0, "sum": 1, "mean": 2}[a.Reduction]
	hasIgnore := 0
	var ignore int64
	if a.HasIgnore {
		hasIgnore, ignore = 1, a.IgnoreIndex
	}
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	if len(xd) < 2 {
		return fmt.Errorf("%w: %s of scores %v", ErrGraph, n.OpType, xd)
	}
	N, C, D := int64(xd[0]), int64(xd[1]), prod(xd[2:])
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	tr, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	var wr *ref
	if w := input(n, 2); w != nil {
		r, err := c.ref(w)
		if err != nil {
			return err
		}
		wr = &r
	}
	sfx, err := c.suffix(dtypeOf(x))
	if err != nil {
		return err
	}
	if n.OpType == "SoftmaxCrossEntropyLoss" {
		var lp ref
		if o := input2(n.Outputs, 1); o != nil && c.used(o) {
			if lp, _, err = c.out(n, 1); err != nil {
				return err
			}
		} else {
			lp = c.scratch(prod(xd) * c.esize(dtypeOf(x)))
		}
		if N*D > 0 && C > 0 {
			s.launches = append(s.launches, elemLaunch("softmax_axis_"+sfx, N*D, pArg(lp), pArg(xr), lArg(N), lArg(C), lArg(D), iArg(1)))
		}
		xr = lp
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	if reduction == 0 {
		if total := prod(yd); total > 0 {
			s.launches = append(s.launches, elemLaunch("nll_loss_"+sfx, total, pArg(yr), pArg(xr), pArg(tr), optArg(wr), lArg(N), lArg(C), lArg(D), lArg(ignore), iArg(hasIgnore), iArg(0)))
		}
		return nil
	}
	s.launches = append(s.launches, launch{kernel: "nll_loss_" + sfx, grid: cuda.Dim3{X: 1, Y: 1, Z: 1}, block: cuda.Dim3{X: 256, Y: 1, Z: 1},
		args: []arg{pArg(yr), pArg(xr), pArg(tr), optArg(wr), lArg(N), lArg(C), lArg(D), lArg(ignore), iArg(hasIgnore), iArg(reduction)}})
	return nil
}

// lrn runs LRN across the channels of x [N, C, ...].
func (c *compiler) lrn(s *step) error {
	n := s.node
	a, err := ops.ParseLRNAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	size, alpha, beta, bias := a.Size, a.Alpha, a.Beta, a.Bias
	if size < 1 {
		return fmt.Errorf("%w: LRN size %d", ErrGraph, size)
	}
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	if len(xd) < 2 {
		return fmt.Errorf("%w: LRN of %v", ErrGraph, xd)
	}
	if total := prod(yd); total > 0 {
		s.launches = []launch{elemLaunch(c.fk("lrn"), total, pArg(yr), pArg(xr), lArg(int64(xd[0])), iArg(xd[1]), lArg(prod(xd[2:])),
			iArg(size), fArg(alpha/float32(size)), fArg(beta), fArg(bias))}
	}
	return nil
}
