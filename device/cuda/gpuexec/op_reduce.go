package gpuexec

import (
	"fmt"
	"math"
	"slices"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// Reduce modes of reduce_axes (kernels/op_reduce.cu).
var reduceModes = map[string]int{"ReduceSum": 0, "ReduceMean": 1, "ReduceMax": 2, "ReduceMin": 3, "ReduceProd": 4,
	"ReduceL1": 5, "ReduceL2": 6, "ReduceLogSumExp": 7, "ReduceSumSquare": 8, "ReduceLogSum": 9}

// reduceKernels are the reductions over axes (float32, float16 and
// float64, computed in float32),
// ArgMax, ArgMin and CumSum.
var reduceKernels = append([]kernelDef{
	{op: "ArgMax", check: floatIn0, emit: (*compiler).argReduce},
	{op: "ArgMin", check: floatIn0, emit: (*compiler).argReduce},
	{op: "CumSum", inputs: 2, check: cumSumTypes, emit: (*compiler).cumSum},
}, reduceDefs()...)

func reduceDefs() []kernelDef {
	var defs []kernelDef
	for name := range reduceModes {
		defs = append(defs, kernelDef{op: name, check: reduceAxesConst, emit: (*compiler).reduce})
	}
	return defs
}

// floatIn0: input 0 is float32, float16 or float64 (the reduce and
// softmax_axis kernels' types).
func floatIn0(n *ir.Node) error {
	return typeIn(n, 0, tensor.Float32, tensor.Float16, tensor.Float64)
}

// reduceAxesConst: float input, and axes (when an input) a constant.
func reduceAxesConst(n *ir.Node) error {
	if err := floatIn0(n); err != nil {
		return err
	}
	if v := input(n, 1); v != nil {
		if _, ok := constInts(v); !ok {
			return fmt.Errorf("%w: %s axes computed at run time", ErrUnsupported, n.OpType)
		}
	}
	return nil
}

func cumSumTypes(n *ir.Node) error {
	if err := typeIn(n, 0, tensor.Float32, tensor.Float16, tensor.Float64, tensor.Int32, tensor.Int64); err != nil {
		return err
	}
	if _, ok := constInts(n.Inputs[1]); !ok {
		return fmt.Errorf("%w: CumSum axis computed at run time", ErrUnsupported)
	}
	return nil
}

// reduce runs ReduceX over the axes of the attribute or of input 1 (a
// constant), all axes when there are none (unless noop_with_empty_axes).
func (c *compiler) reduce(s *step) error {
	n := s.node
	a, err := ops.ParseReduceAttrs(n, c.g.Opset()) // the CPU's rules (ops/norm)
	if err != nil {
		return err
	}
	axes, noop := a.Axes, a.NoopWithEmptyAxes
	if v := input(n, 1); v != nil {
		vals, ok := constInts(v)
		if !ok {
			return fmt.Errorf("%w: %s axes computed at run time", ErrUnsupported, n.OpType)
		}
		axes = vals
	}
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	if len(axes) == 0 && noop {
		return c.alias(n)
	}
	red := make([]bool, len(xd))
	if len(axes) == 0 {
		for i := range red {
			red[i] = true
		}
	}
	for _, ax := range axes {
		i, err := ops.NormAxis(n.OpType, ax, len(xd))
		if err != nil {
			return err
		}
		red[i] = true
	}
	st := tensor.Strides(xd)
	var kd, ks, rd, rs []int64
	for i, d := range xd {
		if red[i] {
			rd, rs = append(rd, int64(d)), append(rs, int64(st[i]))
		} else {
			kd, ks = append(kd, int64(d)), append(ks, int64(st[i]))
		}
	}
	meta := append([]int64{int64(len(kd))}, kd...)
	meta = append(meta, ks...)
	meta = append(meta, int64(len(rd)))
	meta = append(append(meta, rd...), rs...)
	nred := int64(1)
	for _, d := range rd {
		nred *= d
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	nout := prod(yd)
	if nout == 0 {
		return nil
	}
	if nred > 0 && prod(xd) == 0 {
		nred = 0
	}
	sfx, err := c.suffix(dtypeOf(x))
	if err != nil {
		return err
	}
	s.launches = []launch{rowsLaunch("reduce_axes_"+sfx, nout, rowThreads(int(min(nred, math.MaxInt32))), 0,
		pArg(yr), pArg(xr), pArg(c.meta(meta)), lArg(nout), lArg(nred), iArg(reduceModes[n.OpType]))}
	return nil
}

func (c *compiler) argReduce(s *step) error {
	n := s.node
	a, err := ops.ParseArgReduceAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis(n.OpType, a.Axis, len(xd))
	if err != nil {
		return err
	}
	last := 0
	if a.SelectLastIndex {
		last = 1
	}
	mode := 0
	if n.OpType == "ArgMin" {
		mode = 1
	}
	outer, ln, inner := axisSplit(xd, axis)
	if ln == 0 {
		return fmt.Errorf("%w: %s over an empty axis", ErrGraph, n.OpType)
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	sfx, err := c.suffix(dtypeOf(x))
	if err != nil {
		return err
	}
	if outer*inner > 0 {
		s.launches = []launch{elemLaunch("argreduce_"+sfx, outer*inner, pArg(yr), pArg(xr), lArg(outer), lArg(ln), lArg(inner), iArg(mode), iArg(last))}
	}
	return nil
}

func (c *compiler) cumSum(s *step) error {
	n := s.node
	a, err := ops.ParseCumSumAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	exclusive, reverse := 0, 0
	if a.Exclusive {
		exclusive = 1
	}
	if a.Reverse {
		reverse = 1
	}
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	ax, ok := constInts(n.Inputs[1])
	if !ok || len(ax) != 1 {
		return fmt.Errorf("%w: CumSum axis %v", ErrUnsupported, ax)
	}
	axis, err := ops.NormAxis("CumSum", ax[0], len(xd))
	if err != nil {
		return err
	}
	outer, ln, inner := axisSplit(xd, axis)
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	sfx, err := c.suffix(dtypeOf(x))
	if err != nil {
		return err
	}
	if !slices.Contains([]string{"f32", "f16", "f64", "i32", "i64"}, sfx) {
		return fmt.Errorf("%w: CumSum of %v", ErrUnsupported, dtypeOf(x))
	}
	if outer*inner > 0 {
		s.launches = []launch{elemLaunch("cumsum_"+sfx, outer*inner, pArg(yr), pArg(xr), lArg(outer), lArg(ln), lArg(inner), iArg(exclusive), iArg(reverse))}
	}
	return nil
}
