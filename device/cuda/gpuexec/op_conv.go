package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
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

// readWindow reads kernel_shape, strides, dilations, pads and auto_pad of
// a window op of rank r (1 or 2; a 1-D window's attributes apply to the
// width, the height being 1), given the input and output sizes and the
// kernel size when kernel_shape is absent.
func readWindow(n *ir.Node, r, h, w, oh, ow, kh, kw int) (window2D, error) {
	a := ops.AttrsOf(n)
	win := window2D{kh: kh, kw: kw, sh: 1, sw: 1, dh: 1, dw: 1}
	if r == 1 {
		win.kh = 1
	}
	// pair maps an attribute of r values onto (height, width).
	pair := func(name string, v []int64, hp, wp *int) error {
		switch {
		case v == nil:
		case len(v) != r:
			return fmt.Errorf("%w: %s %v for a %d-D window", ErrUnsupported, name, v, r)
		case r == 1:
			*wp = int(v[0])
		default:
			*hp, *wp = int(v[0]), int(v[1])
		}
		return nil
	}
	if err := pair("kernel_shape", a.Ints("kernel_shape", nil), &win.kh, &win.kw); err != nil {
		return win, err
	}
	if err := pair("strides", a.Ints("strides", nil), &win.sh, &win.sw); err != nil {
		return win, err
	}
	if err := pair("dilations", a.Ints("dilations", nil), &win.dh, &win.dw); err != nil {
		return win, err
	}
	switch ap := a.String("auto_pad", "NOTSET"); ap {
	case "NOTSET", "":
		if p := a.Ints("pads", nil); p != nil {
			if len(p) != 2*r {
				return win, fmt.Errorf("%w: pads %v", ErrUnsupported, p)
			}
			if r == 1 {
				win.pw, win.pew = int(p[0]), int(p[1])
			} else {
				win.ph, win.pw, win.peh, win.pew = int(p[0]), int(p[1]), int(p[2]), int(p[3])
			}
		}
	case "VALID":
	case "SAME_UPPER", "SAME_LOWER":
		th := max(0, (oh-1)*win.sh+(win.kh-1)*win.dh+1-h)
		tw := max(0, (ow-1)*win.sw+(win.kw-1)*win.dw+1-w)
		if ap == "SAME_UPPER" {
			win.ph, win.pw = th/2, tw/2
		} else {
			win.ph, win.pw = th-th/2, tw-tw/2
		}
		win.peh, win.pew = th-win.ph, tw-win.pw
	default:
		return win, fmt.Errorf("%w: auto_pad %q", ErrUnsupported, ap)
	}
	if win.kh <= 0 || win.kw <= 0 || win.sh <= 0 || win.sw <= 0 || win.dh <= 0 || win.dw <= 0 {
		return win, fmt.Errorf("%w: window %+v", ErrGraph, win)
	}
	return win, a.Err()
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
	group := int(ops.AttrsOf(n).Int("group", 1))
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
	win, err := readWindow(n, rank, H, W, OH, OW, wd[2], wd[3])
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
	{op: "Conv", inputs: 2, f32: []int{0, 1, 2}, emit: (*compiler).conv},
	{domain: "kiln", op: "FusedConv", inputs: 2, f32: []int{0, 1, 2, 3}, emit: (*compiler).conv},
	{op: "ConvTranspose", inputs: 2, f32: []int{0, 1, 2}, emit: (*compiler).convTranspose},
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
	a := ops.AttrsOf(n)
	group := int(a.Int("group", 1))
	strides := a.Ints("strides", nil)
	dil := a.Ints("dilations", nil)
	pads := a.Ints("pads", nil)
	outPad := a.Ints("output_padding", nil)
	outShape := a.Ints("output_shape", nil)
	autoPad := a.String("auto_pad", "NOTSET")
	if err := a.Err(); err != nil {
		return err
	}
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
		st[j], dl[j] = at(strides, i, 1), at(dil, i, 1)
		if st[j] < 1 || dl[j] < 1 {
			return fmt.Errorf("%w: ConvTranspose strides %v dilations %v", ErrGraph, strides, dil)
		}
		full := st[j]*(in[j]-1) + at(outPad, i, 0) + (k[j]-1)*dl[j] + 1
		split := func(total int) int {
			total = max(total, 0)
			if autoPad == "SAME_UPPER" {
				return total / 2
			}
			return total - total/2
		}
		switch {
		case outShape != nil:
			pb[j] = split(full - out[j])
		case autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER":
			pb[j] = split(full - out[j])
		case autoPad == "VALID":
		default:
			pb[j] = at(pads, i, 0)
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
