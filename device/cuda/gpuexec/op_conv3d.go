package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ops"
)

// window3D is a 3-D window: kernel, strides, dilations, begin and end pads,
// per spatial axis (D, H, W).
type window3D struct{ k, s, d, pb, pe [3]int }

// readWindow3D resolves a 3-D window op's typed attributes
// (ops.WindowAttrs) given the input and output spatial sizes and the
// kernel's size when kernel_shape is absent (convolutions).
func readWindow3D(a *ops.WindowAttrs, in, out, kdef [3]int) (window3D, error) {
	w := window3D{k: kdef, s: [3]int{1, 1, 1}, d: [3]int{1, 1, 1}}
	if name := a.Fits(3); name != "" {
		return w, fmt.Errorf("%w: %s of a window op for a 3-D window", ErrUnsupported, name)
	}
	for i := range 3 {
		if a.KernelShape != nil {
			w.k[i] = int(a.KernelShape[i])
		}
		w.s[i], w.d[i] = int(a.Stride(i)), int(a.Dilation(i))
	}
	for i := range 3 {
		switch {
		case a.AutoPad == ops.AutoPadNotSet:
			pb, pe := a.Pad(i, 3)
			w.pb[i], w.pe[i] = int(pb), int(pe)
		case a.AutoPad.Same():
			w.pb[i], w.pe[i] = a.AutoPad.Split((out[i]-1)*w.s[i] + (w.k[i]-1)*w.d[i] + 1 - in[i])
		}
	}
	for i := range 3 {
		if w.k[i] <= 0 || w.s[i] <= 0 || w.d[i] <= 0 || w.pb[i] < 0 || w.pe[i] < 0 {
			return w, fmt.Errorf("%w: 3-D window %+v", ErrGraph, w)
		}
	}
	return w, nil
}

// geometry3D is the int64 array the 3-D kernels read (kernels/op_conv3d.cu).
func geometry3D(xd, yd []int, w window3D, group int) []int64 {
	g := []int64{int64(xd[0]), int64(xd[1]), int64(xd[2]), int64(xd[3]), int64(xd[4]),
		int64(yd[1]), int64(yd[2]), int64(yd[3]), int64(yd[4])}
	for _, v := range [][3]int{w.k, w.s, w.pb, w.d} {
		g = append(g, int64(v[0]), int64(v[1]), int64(v[2]))
	}
	return append(g, int64(group))
}

// conv3d runs a 3-D Conv (groups, pads, strides, dilations, bias) as a
// direct kernel; conv hands it 5-D inputs.
func (c *compiler) conv3d(s *step) error {
	n := s.node
	if n.Domain != "" {
		return fmt.Errorf("%w: fused 3-D convolution", ErrUnsupported)
	}
	x, wv := n.Inputs[0], n.Inputs[1]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	wd, err := c.dims(wv)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	if len(wd) != 5 || len(yd) != 5 {
		return fmt.Errorf("%w: 3-D convolution weights %v, output %v", ErrGraph, wd, yd)
	}
	ca, err := ops.ParseConvAttrs(n, c.g.Opset()) // the CPU's rules (ops/nn)
	if err != nil {
		return err
	}
	if err := kernelFits(&ca.WindowAttrs, wd[2:]); err != nil {
		return err
	}
	group := int(ca.Group)
	C, M := xd[1], yd[1]
	if group < 1 || C%group != 0 || M%group != 0 || wd[1]*group != C || wd[0] != M {
		return fmt.Errorf("%w: weights %v for input %v with %d groups", ErrGraph, wd, xd, group)
	}
	win, err := readWindow3D(&ca.WindowAttrs, [3]int{xd[2], xd[3], xd[4]}, [3]int{yd[2], yd[3], yd[4]}, [3]int{wd[2], wd[3], wd[4]})
	if err != nil {
		return err
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	wr, err := c.ref(wv)
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
	sfx, err := c.suffix(dtypeOf(x))
	if err != nil {
		return err
	}
	if total := prod(yd); total > 0 {
		s.launches = []launch{elemLaunch("conv3d_"+sfx, total, pArg(yr), pArg(xr), pArg(wr), optArg(br),
			pArg(c.meta(geometry3D(xd, yd, win, group))))}
	}
	return nil
}

// pool3d runs a 3-D MaxPool or AveragePool (pads, strides, dilations,
// count_include_pad; ceil_mode through the output size); pool hands it
// 5-D inputs.
func (c *compiler) pool3d(s *step) error {
	n := s.node
	if len(n.Outputs) > 1 && n.Outputs[1] != nil && c.used(n.Outputs[1]) {
		return fmt.Errorf("%w: MaxPool's indices of a 3-D pooling", ErrUnsupported)
	}
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	if len(yd) != 5 {
		return fmt.Errorf("%w: 3-D pooling output %v", ErrGraph, yd)
	}
	pa, err := ops.ParsePoolAttrs(n, c.g.Opset()) // the CPU's rules (ops/nn)
	if err != nil {
		return err
	}
	win, err := readWindow3D(&pa.WindowAttrs, [3]int{xd[2], xd[3], xd[4]}, [3]int{yd[2], yd[3], yd[4]}, [3]int{})
	if err != nil {
		return err
	}
	mode := poolMode(n.OpType, &pa)
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	sfx, err := c.suffix(dtypeOf(x))
	if err != nil {
		return err
	}
	if total := prod(yd); total > 0 {
		s.launches = []launch{elemLaunch("pool3d_"+sfx, total, pArg(yr), pArg(xr), pArg(c.meta(geometry3D(xd, yd, win, xd[1]))),
			lArg(int64(win.pe[0])), lArg(int64(win.pe[1])), lArg(int64(win.pe[2])), iArg(mode))}
	}
	return nil
}
