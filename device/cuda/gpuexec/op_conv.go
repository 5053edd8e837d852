package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ops"
)

// convCall is a convolution that cuDNN may run: y = conv(x, w), followed
// by post (bias, residual, activation) in place.
type convCall struct {
	x, w, y                ref
	n, c, h, wd, m, oh, ow int
	kh, kw, sh, sw, ph, pw int
	dh, dw, group          int
	post                   launch
	// nhwc: x, y and z are NHWC, w is [M, KH, KW, C] (layout.go).
	nhwc bool
	// fusable: cuDNN's fused call can run y = act(conv + z + bias) instead
	// of conv + post (NHWC, the activation none or ReLU): bias is the bias
	// (zeros when the node has none), z the residual or nil.
	fusable bool
	relu    bool
	bias    ref
	z       *ref
}

// window2D is a 2-D window: kernel, strides, dilations, begin pads (ph, pw)
// and end pads (peh, pew).
type window2D struct{ kh, kw, sh, sw, dh, dw, ph, pw, peh, pew int }

// readWindow resolves the typed window attributes (ops.WindowAttrs, the
// CPU's parse) of a window op of rank r (1 or 2; a 1-D window's
// attributes apply to the width, the height being 1), given the input and
// output sizes and the kernel size when kernel_shape is absent.
func readWindow(a *ops.WindowAttrs, r, h, w, oh, ow, kh, kw int) (window2D, error) {
	win := window2D{kh: kh, kw: kw, sh: 1, sw: 1, dh: 1, dw: 1}
	if r == 1 {
		win.kh = 1
	}
	if name := a.Fits(r); name != "" {
		return win, fmt.Errorf("%w: %s of a window op for a %d-D window", ErrUnsupported, name, r)
	}
	// pair maps an attribute of r values onto (height, width).
	pair := func(v []int64, hp, wp *int) {
		switch {
		case v == nil:
		case r == 1:
			*wp = int(v[0])
		default:
			*hp, *wp = int(v[0]), int(v[1])
		}
	}
	pair(a.KernelShape, &win.kh, &win.kw)
	pair(a.Strides, &win.sh, &win.sw)
	pair(a.Dilations, &win.dh, &win.dw)
	switch {
	case a.AutoPad == ops.AutoPadNotSet && a.Pads != nil:
		if r == 1 {
			win.pw, win.pew = int(a.Pads[0]), int(a.Pads[1])
		} else {
			win.ph, win.pw, win.peh, win.pew = int(a.Pads[0]), int(a.Pads[1]), int(a.Pads[2]), int(a.Pads[3])
		}
	case a.AutoPad.Same():
		win.ph, win.peh = a.AutoPad.Split((oh-1)*win.sh + (win.kh-1)*win.dh + 1 - h)
		win.pw, win.pew = a.AutoPad.Split((ow-1)*win.sw + (win.kw-1)*win.dw + 1 - w)
	}
	if win.kh <= 0 || win.kw <= 0 || win.sh <= 0 || win.sw <= 0 || win.dh <= 0 || win.dw <= 0 {
		return win, fmt.Errorf("%w: window %+v", ErrGraph, win)
	}
	return win, nil
}

// kernelFits checks kernel_shape, when given, against the weights'
// spatial dims wd (the CPU kernel refuses a mismatch).
func kernelFits(a *ops.WindowAttrs, wd []int) error {
	if a.KernelShape == nil {
		return nil
	}
	for i, k := range a.KernelShape {
		if i >= len(wd) || int64(wd[i]) != k {
			return fmt.Errorf("%w: kernel_shape %v for weights of spatial dims %v", ErrGraph, a.KernelShape, wd)
		}
	}
	return nil
}

// as2D views the dims of a 1-D window op's tensor ([N, C, L]) as 2-D ([N,
// C, 1, L]); 2-D dims are returned as they are.
func as2D(d []int) []int {
	if len(d) == 3 {
		return []int{d[0], d[1], 1, d[2]}
	}
	return d
}

func (c *compiler) conv(s *step) error {
	n := s.node
	x, w := n.Inputs[0], n.Inputs[1]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	wd, err := c.dims(w)
	if err != nil {
		return err
	}
	if len(xd) == 5 {
		return c.conv3d(s) // op_conv3d.go
	}
	if (len(xd) != 4 && len(xd) != 3) || len(wd) != len(xd) {
		return fmt.Errorf("%w: %d-D convolution (only 1-D, 2-D and 3-D have a CUDA implementation)", ErrUnsupported, len(xd)-2)
	}
	rank := len(xd) - 2
	xd, wd = as2D(xd), as2D(wd)
	act := activation{}
	if n.Domain == "kiln" {
		if act, err = fusedActivation(n); err != nil {
			return err
		}
	}
	ca, err := ops.ParseConvAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	if err := kernelFits(&ca.WindowAttrs, wd[len(wd)-rank:]); err != nil {
		return err
	}
	group := int(ca.Group)
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	nhwc := c.layout.conv[n]
	var wr ref
	if nhwc {
		wr = c.nhwcWeights(w)
	} else if wr, err = c.ref(w); err != nil {
		return err
	}
	var br, zr *ref
	if b := input(n, 2); b != nil {
		r, err := c.ref(b)
		if err != nil {
			return err
		}
		br = &r
	}
	if z := input(n, 3); z != nil && n.Domain == "kiln" {
		r, err := c.ref(z)
		if err != nil {
			return err
		}
		if c.size(z) != c.bytes(n.Outputs[0]) {
			return fmt.Errorf("%w: residual %v does not match the output %v", ErrUnsupported, z.Type, n.Outputs[0].Type)
		}
		zr = &r
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	yd = as2D(yd)
	N, C, H, W := xd[0], xd[1], xd[2], xd[3]
	M, OH, OW := yd[1], yd[2], yd[3]
	if group < 1 || C%group != 0 || M%group != 0 || wd[1]*group != C || wd[0] != M {
		return fmt.Errorf("%w: weights %v for input %v with %d groups", ErrGraph, wd, xd, group)
	}
	win, err := readWindow(&ca.WindowAttrs, rank, H, W, OH, OW, wd[2], wd[3])
	if err != nil {
		return err
	}
	total := int64(N) * int64(M) * int64(OH) * int64(OW)
	if nhwc {
		return c.convNHWC(s, xr, wr, yr, br, zr, act, win, N, C, H, W, M, OH, OW)
	}
	s.launches = []launch{elemLaunch(c.fk("conv2d"), total,
		pArg(yr), pArg(xr), pArg(wr), optArg(br), optArg(zr),
		iArg(N), iArg(C), iArg(H), iArg(W), iArg(M), iArg(OH), iArg(OW),
		iArg(win.kh), iArg(win.kw), iArg(win.sh), iArg(win.sw), iArg(win.ph), iArg(win.pw),
		iArg(win.dh), iArg(win.dw), iArg(group), iArg(act.code), fArg(act.p0), fArg(act.p1))}
	if win.ph == win.peh && win.pw == win.pew {
		s.conv = &convCall{x: xr, w: wr, y: yr, n: N, c: C, h: H, wd: W, m: M, oh: OH, ow: OW,
			kh: win.kh, kw: win.kw, sh: win.sh, sw: win.sw, ph: win.ph, pw: win.pw, dh: win.dh, dw: win.dw, group: group}
		if br != nil || zr != nil || act.code != actNone {
			s.conv.post = c.chanEpilogue(yr, br, zr, act, N, M, int64(OH)*int64(OW)) // epilogue.go
		}
	}
	return nil
}

// convNHWC emits a convolution planned NHWC (layout.go): kiln's direct
// NHWC kernel, and for cuDNN the NHWC convolution with the epilogue as
// a channels-last chan_epilogue (hw = 1: chanEpilogue picks the vector
// kernel), or the fused call.
func (c *compiler) convNHWC(s *step, xr, wr, yr ref, br, zr *ref, act activation, win window2D, N, C, H, W, M, OH, OW int) error {
	total := int64(N) * int64(M) * int64(OH) * int64(OW)
	s.launches = []launch{elemLaunch("conv2d_nhwc_f16", total,
		pArg(yr), pArg(xr), pArg(wr), optArg(br), optArg(zr),
		iArg(N), iArg(C), iArg(H), iArg(W), iArg(M), iArg(OH), iArg(OW),
		iArg(win.kh), iArg(win.kw), iArg(win.sh), iArg(win.sw), iArg(win.ph), iArg(win.pw),
		iArg(win.dh), iArg(win.dw), iArg(act.code), fArg(act.p0), fArg(act.p1))}
	if win.ph != win.peh || win.pw != win.pew {
		return nil // cuDNN pads alike on both sides
	}
	cc := &convCall{x: xr, w: wr, y: yr, n: N, c: C, h: H, wd: W, m: M, oh: OH, ow: OW,
		kh: win.kh, kw: win.kw, sh: win.sh, sw: win.sw, ph: win.ph, pw: win.pw, dh: win.dh, dw: win.dw, group: 1, nhwc: true}
	if br != nil || zr != nil || act.code != actNone {
		cc.post = c.chanEpilogue(yr, br, zr, act, N*OH*OW, M, 1) // channels-last: epilogue.go
		if act.code == actNone || act.code == actRelu {
			cc.fusable, cc.relu, cc.z = true, act.code == actRelu, zr
			if br != nil {
				cc.bias = *br
			} else {
				cc.bias = ref{buf: bufWeights, off: c.addWeights(make([]byte, 2*M))}
			}
		}
	}
	s.conv = cc
	return nil
}

// convKernels are the convolutions: cuDNN where it is there, else kiln's
// direct kernels.
var convKernels = []kernelDef{
	{op: "Conv", inputs: 2, types: float32Only, f32: []int{1, 2}, emit: (*compiler).conv},
	{domain: "kiln", op: "FusedConv", inputs: 2, types: float32Only, f32: []int{1, 2, 3}, emit: (*compiler).conv},
	{op: "ConvTranspose", inputs: 2, types: float32Only, f32: []int{1, 2}, emit: (*compiler).convTranspose},
}

// convTranspose runs a 1-D or 2-D ConvTranspose (groups, pads, strides,
// dilations, output_padding, output_shape, auto_pad) as a direct kernel:
// each output element gathers the inputs that the transposed convolution
// scatters into it. The output size comes from shape inference; the begin
// pads as the CPU kernel computes them.
func (c *compiler) convTranspose(s *step) error {
	n := s.node
	x, w := n.Inputs[0], n.Inputs[1]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	wd, err := c.dims(w)
	if err != nil {
		return err
	}
	r := len(xd) - 2
	if r < 1 || r > 2 || len(wd) != len(xd) {
		return fmt.Errorf("%w: %d-D ConvTranspose (only 1-D and 2-D have a CUDA implementation)", ErrUnsupported, r)
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	a, err := ops.ParseConvTransposeAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	if name := a.Fits(r); name != "" {
		return fmt.Errorf("%w: ConvTranspose %s for a %d-D window", ErrUnsupported, name, r)
	}
	if a.OutputPadding != nil && len(a.OutputPadding) != r {
		return fmt.Errorf("%w: ConvTranspose output_padding %v for a %d-D window", ErrGraph, a.OutputPadding, r)
	}
	if err := kernelFits(&a.WindowAttrs, wd[2:]); err != nil {
		return err
	}
	group, outPad := int(a.Group), a.OutputPadding
	at := func(v []int64, i int, def int) int {
		if i < len(v) {
			return int(v[i])
		}
		return def
	}
	N, C, M := xd[0], xd[1], yd[1]
	if group < 1 || C%group != 0 || wd[0] != C || wd[1]*group != M {
		return fmt.Errorf("%w: ConvTranspose weights %v for input %v with %d groups", ErrGraph, wd, xd, group)
	}
	// spatial geometry, 1-D as 2-D of height 1
	var in, out, k, st, dl, pb [2]int
	for i := range 2 {
		in[i], out[i], k[i], st[i], dl[i] = 1, 1, 1, 1, 1
	}
	for i := range r {
		j := i + 2 - r
		in[j], out[j], k[j] = xd[2+i], yd[2+i], wd[2+i]
		st[j], dl[j] = int(a.Stride(i)), int(a.Dilation(i))
		full := st[j]*(in[j]-1) + at(outPad, i, 0) + (k[j]-1)*dl[j] + 1
		switch {
		case a.OutputShape != nil || a.AutoPad.Same():
			pb[j], _ = a.AutoPad.Split(full - out[j]) // as the CPU kernel splits it
		case a.AutoPad == ops.AutoPadValid:
		default:
			pb[j] = at(a.Pads, i, 0)
		}
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	wr, err := c.ref(w)
	if err != nil {
		return err
	}
	var br *ref
	if b := input(n, 2); b != nil {
		r, err := c.ref(b)
		if err != nil {
			return err
		}
		br = &r
	}
	total := int64(N) * int64(M) * int64(out[0]) * int64(out[1])
	if total == 0 {
		return nil
	}
	s.launches = []launch{elemLaunch(c.fk("conv_transpose2d"), total, pArg(yr), pArg(xr), pArg(wr), optArg(br),
		iArg(N), iArg(C), iArg(in[0]), iArg(in[1]), iArg(M), iArg(out[0]), iArg(out[1]), iArg(k[0]), iArg(k[1]),
		iArg(st[0]), iArg(st[1]), iArg(pb[0]), iArg(pb[1]), iArg(dl[0]), iArg(dl[1]), iArg(group))}
	return nil
}
