package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// qconvKernels are the ONNX 8-bit convolutions: ConvInteger (int32 out)
// and QLinearConv (int32 bias, requantized to int8 or uint8), 1-D and 2-D,
// groups, pads, strides and dilations, int8 or uint8 operands, w's zero
// point and scale per tensor or per output channel, read on the device
// (kernels/op_qconv.cu, a direct convolution a thread per output, int32
// accumulation). kiln's own INT8 path (kiln build --int8) goes through
// cuDNN instead; these run models exported already quantized.
var qconvKernels = []kernelDef{
	{op: "ConvInteger", inputs: 2, check: qconvCheck, emit: (*compiler).qconv},
	{op: "QLinearConv", inputs: 7, check: qconvCheck, emit: (*compiler).qconv},
}

// qconvIn are the positions of x, w, their zero points and (QLinear) the
// scales, the output's zero point and the bias.
type qconvIn struct{ x, w, xz, wz, xs, ws, ys, yz, b int }

func qconvInputs(n *ir.Node) qconvIn {
	if n.OpType == "ConvInteger" {
		return qconvIn{x: 0, w: 1, xz: 2, wz: 3, xs: -1, ws: -1, ys: -1, yz: -1, b: -1}
	}
	return qconvIn{x: 0, xs: 1, xz: 2, w: 3, ws: 4, wz: 5, ys: 6, yz: 7, b: 8}
}

func qconvCheck(n *ir.Node) error {
	p := qconvInputs(n)
	for _, i := range []int{p.x, p.w, p.yz} {
		if i < 0 {
			continue
		}
		if err := typeIn(n, i, eightBit...); err != nil {
			return err
		}
	}
	if v := input(n, p.xz); v != nil && dtypeOf(v) != dtypeOf(n.Inputs[p.x]) {
		return fmt.Errorf("%w: %s x_zero_point is %v, x %v", ErrUnsupported, n.OpType, dtypeOf(v), dtypeOf(n.Inputs[p.x]))
	}
	if v := input(n, p.wz); v != nil && dtypeOf(v) != dtypeOf(n.Inputs[p.w]) {
		return fmt.Errorf("%w: %s w_zero_point is %v, w %v", ErrUnsupported, n.OpType, dtypeOf(v), dtypeOf(n.Inputs[p.w]))
	}
	if p.b >= 0 {
		if err := typeIn(n, p.b, tensor.Int32); err != nil {
			return err
		}
	}
	if p.xs >= 0 {
		return float32In(n, p.xs, p.ws, p.ys)
	}
	return nil
}

func (c *compiler) qconv(s *step) error {
	n := s.node
	p := qconvInputs(n)
	ca, err := ops.ParseConvAttrs(n, c.g.Opset()) // the CPU's rules (ops/nn)
	if err != nil {
		return err
	}
	group := int(ca.Group)
	xd, err := c.dims(n.Inputs[p.x])
	if err != nil {
		return err
	}
	wd, err := c.dims(n.Inputs[p.w])
	if err != nil {
		return err
	}
	yd, err := c.dims(n.Outputs[0])
	if err != nil {
		return err
	}
	if len(xd) != 3 && len(xd) != 4 {
		return fmt.Errorf("%w: %d-D %s (only 1-D and 2-D have a CUDA implementation)", ErrUnsupported, len(xd)-2, n.OpType)
	}
	if len(wd) != len(xd) || len(yd) != len(xd) || group < 1 || xd[1]%group != 0 || wd[0]%group != 0 || wd[1]*group != xd[1] {
		return fmt.Errorf("%w: %s of x %v and w %v in %d groups", ErrGraph, n.OpType, xd, wd, group)
	}
	rank := len(xd) - 2
	x4, w4, y4 := as2D(xd), as2D(wd), as2D(yd)
	if err := kernelFits(&ca.WindowAttrs, w4[4-rank:]); err != nil {
		return err
	}
	win, err := readWindow(&ca.WindowAttrs, rank, x4[2], x4[3], y4[2], y4[3], w4[2], w4[3])
	if err != nil {
		return err
	}
	M := wd[0]
	refAt := func(i int) (*ref, int, error) {
		if i < 0 || input(n, i) == nil {
			return nil, 0, nil
		}
		v := input(n, i)
		r, err := c.ref(v)
		if err != nil {
			return nil, 0, err
		}
		d, err := c.dims(v)
		if err != nil {
			return nil, 0, err
		}
		return &r, int(prod(d)), nil
	}
	var refs [9]*ref
	var counts [9]int
	for i, at := range []int{p.x, p.w, p.xz, p.wz, p.xs, p.ws, p.ys, p.yz, p.b} {
		if refs[i], counts[i], err = refAt(at); err != nil {
			return err
		}
	}
	for i, want := range []int{2: 1, 3: M, 4: 1, 5: M, 6: 1, 7: 1, 8: M} {
		if i >= 2 && refs[i] != nil && counts[i] != want && (counts[i] != 1 || i == 8) {
			return fmt.Errorf("%w: %s zero point, scale or bias of %d elements (want 1 or %d)", ErrGraph, n.OpType, counts[i], want)
		}
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	ydt := 0 // int32
	if p.yz >= 0 {
		switch dtypeOf(n.Outputs[0]) {
		case tensor.Int8:
			ydt = 1
		case tensor.Uint8:
			ydt = 2
		default:
			return fmt.Errorf("%w: QLinearConv to %v", ErrGraph, dtypeOf(n.Outputs[0]))
		}
	}
	sfx := map[tensor.DType]string{tensor.Int8: "i8", tensor.Uint8: "u8"}
	k := "qconv2d_" + sfx[dtypeOf(n.Inputs[p.x])] + sfx[dtypeOf(n.Inputs[p.w])] + "_f32"
	if c.half {
		k = k[:len(k)-3] + "f16"
	}
	if total := prod(yd); total > 0 {
		s.launches = []launch{elemLaunch(k, total, pArg(yr), pArg(*refs[0]), pArg(*refs[1]), optArg(refs[2]), optArg(refs[3]),
			optArg(refs[4]), optArg(refs[5]), optArg(refs[6]), optArg(refs[7]), optArg(refs[8]), iArg(ydt),
			iArg(x4[0]), iArg(x4[1]), iArg(x4[2]), iArg(x4[3]), iArg(M), iArg(y4[2]), iArg(y4[3]), iArg(w4[2]), iArg(w4[3]),
			iArg(win.sh), iArg(win.sw), iArg(win.ph), iArg(win.pw), iArg(win.dh), iArg(win.dw), iArg(group), iArg(counts[3]), iArg(counts[5]))}
	}
	return nil
}
