package gpuexec

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

func (c *compiler) layerNorm(s *step) error {
	n := s.node
	a := ops.AttrsOf(n)
	xd, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("LayerNormalization", a.Int("axis", -1), len(xd))
	if err != nil {
		return err
	}
	eps := a.Float("epsilon", 1e-5)
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
	if c.half && vecRows(cols) {
		// one warp per row, 16-byte accesses; a residual Add folded in
		zr := nilArg()
		if add := c.lnAdd[n]; add != nil {
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
		s.launches = []launch{{kernel: "layernorm_vec_f16", grid: cuda.Dim3{X: uint32((rows + 3) / 4), Y: 1, Z: 1}, block: cuda.Dim3{X: 128, Y: 1, Z: 1},
			args: []arg{pArg(yr), pArg(xr), zr, pArg(gr), optArg(br), lArg(rows), iArg(int(cols)), fArg(eps)}}}
		return a.Err()
	}
	s.launches = []launch{rowsLaunch(c.fk("layernorm"), rows, rowThreads(int(cols)), 0, pArg(yr), pArg(xr), pArg(gr), optArg(br), lArg(rows), iArg(int(cols)), fArg(eps))}
	return a.Err()
}

// normKernels are the normalizations.
var normKernels = []kernelDef{
	{op: "LayerNormalization", inputs: 2, f32: []int{0, 1, 2}, emit: (*compiler).layerNorm},
	{domain: "kiln", op: "LayerNormalization", inputs: 2, f32: []int{0, 1, 2}, emit: (*compiler).layerNorm},
}
