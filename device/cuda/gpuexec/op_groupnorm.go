package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// groupNormKernels are the normalizations over groups of elements that
// op_norm.go's do not cover: GroupNormalization (per-channel scale and
// bias, and the per-group ones of opset 18), MeanVarianceNormalization
// over any axes and LpNormalization (p 1 or 2) along one axis;
// kernels/op_groupnorm.cu, one block per normalized group, float32
// statistics in both precisions. Float32 only (float64 stays on the CPU).
var groupNormKernels = []kernelDef{
	{op: "GroupNormalization", inputs: 3, types: float32Only, f32: []int{1, 2}, check: groupNormCheck, emit: (*compiler).groupNorm},
	{op: "MeanVarianceNormalization", types: float32Only, emit: (*compiler).meanVarianceNorm},
	{op: "LpNormalization", types: float32Only, check: lpNormCheck, emit: (*compiler).lpNorm},
}

func groupNormCheck(n *ir.Node) error {
	// The opset is not known here; num_groups is read as in every opset
	// (the CPU's rules, ops/norm).
	if _, err := ops.ParseGroupNormAttrs(n, ops.MaxOpset); err != nil {
		return fmt.Errorf("%w: %v", ErrGraph, err)
	}
	return nil
}

func lpNormCheck(n *ir.Node) error {
	if _, err := ops.ParseLpNormAttrs(n, ops.MaxOpset); err != nil {
		return fmt.Errorf("%w: %v", ErrGraph, err)
	}
	return nil
}

func (c *compiler) groupNorm(s *step) error {
	n := s.node
	a, err := ops.ParseGroupNormAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	eps, G := a.Epsilon, int64(a.NumGroups)
	xd, xr, yr, _, err := c.inOut(n)
	if err != nil {
		return err
	}
	if len(xd) < 2 {
		return fmt.Errorf("%w: GroupNormalization of %v", ErrGraph, xd)
	}
	C := int64(xd[1])
	if G < 1 || C%G != 0 {
		return fmt.Errorf("%w: GroupNormalization: %d channels do not split into %d groups", ErrGraph, C, G)
	}
	cpg, S := C/G, prod(xd[2:])
	// scale and bias: one per channel, or (opset 18) one per group
	perGroup := 0
	sc, bi := n.Inputs[1], n.Inputs[2]
	es := c.esize(tensor.Float32)
	switch {
	case c.size(sc) == C*es && c.size(bi) == C*es:
	case a.PerGroup && c.size(sc) == G*es && c.size(bi) == G*es:
		perGroup = 1
	default:
		return fmt.Errorf("%w: GroupNormalization scale and bias of %d and %d elements for %d channels in %d groups",
			ErrGraph, c.size(sc)/es, c.size(bi)/es, C, G)
	}
	sr, err := c.ref(sc)
	if err != nil {
		return err
	}
	br, err := c.ref(bi)
	if err != nil {
		return err
	}
	rows, cols := int64(xd[0])*G, cpg*S
	if rows*cols > 0 {
		s.launches = []launch{rowsLaunch(c.fk("groupnorm"), rows, rowThreads(int(min(cols, 1024))), 0, pArg(yr), pArg(xr), pArg(sr), pArg(br),
			lArg(rows), lArg(cols), iArg(int(G)), iArg(int(cpg)), lArg(S), iArg(perGroup), fArg(eps))}
	}
	return nil
}

// mvnAxes is MeanVarianceNormalization's axes (default [0, 2, 3]; opset 1's
// across_channels adds the channels).
func mvnAxes(n *ir.Node, opset int64) ([]int64, error) {
	a, err := ops.ParseMVNAttrs(n, opset) // the CPU's rules (ops/norm)
	return a.Axes, err
}

func (c *compiler) meanVarianceNorm(s *step) error {
	n := s.node
	axes, err := mvnAxes(n, c.g.Opset())
	if err != nil {
		return err
	}
	xd, xr, yr, _, err := c.inOut(n)
	if err != nil {
		return err
	}
	red := make([]bool, len(xd))
	for _, ax := range axes {
		i, err := ops.NormAxis("MeanVarianceNormalization", ax, len(xd))
		if err != nil {
			return err
		}
		red[i] = true
	}
	// kept and reduced dims with their strides in x
	var kd, ks, rd, rs []int64
	stride := int64(1)
	strides := make([]int64, len(xd))
	for i := len(xd) - 1; i >= 0; i-- {
		strides[i] = stride
		stride *= int64(xd[i])
	}
	for i, d := range xd {
		if red[i] {
			rd, rs = append(rd, int64(d)), append(rs, strides[i])
		} else {
			kd, ks = append(kd, int64(d)), append(ks, strides[i])
		}
	}
	K, R := int64(1), int64(1)
	for _, d := range kd {
		K *= d
	}
	for _, d := range rd {
		R *= d
	}
	if K*R == 0 {
		return nil
	}
	kept, rdm := c.meta(append(kd, ks...)), c.meta(append(rd, rs...))
	s.launches = []launch{rowsLaunch(c.fk("mvn"), K, rowThreads(int(min(R, 1024))), 0, pArg(yr), pArg(xr), pArg(kept), iArg(len(kd)),
		pArg(rdm), iArg(len(rd)), lArg(K), lArg(R))}
	return nil
}

func (c *compiler) lpNorm(s *step) error {
	n := s.node
	a, err := ops.ParseLpNormAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	axis, p := a.Axis, a.P
	xd, xr, yr, _, err := c.inOut(n)
	if err != nil {
		return err
	}
	ax, err := ops.NormAxis("LpNormalization", axis, len(xd))
	if err != nil {
		return err
	}
	outer, ln, inner := axisSplit(xd, ax)
	if outer*ln*inner > 0 {
		s.launches = []launch{rowsLaunch(c.fk("lpnorm"), outer*inner, rowThreads(int(min(ln, 1024))), 0, pArg(yr), pArg(xr),
			lArg(outer), lArg(ln), lArg(inner), iArg(int(p)))}
	}
	return nil
}
