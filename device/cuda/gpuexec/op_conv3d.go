package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// window3D is a 3-D window: kernel, strides, dilations, begin and end pads,
// per spatial axis (D, H, W).
type window3D struct{ k, s, d, pb, pe [3]int }

// readWindow3D reads a 3-D window op's attributes (kernel_shape, strides,
// dilations, pads, auto_pad) given the input and output spatial sizes and
// the kernel's size when kernel_shape is absent (convolutions).
func readWindow3D(n *ir.Node, in, out, kdef [3]int) (window3D, error) {
	a := ops.AttrsOf(n)
	w := window3D{k: kdef, s: [3]int{1, 1, 1}, d: [3]int{1, 1, 1}}
	three := func(name string, dst *[3]int) error {
		v := a.Ints(name, nil)
		if v == nil {
			return nil
		}
		if len(v) != 3 {
			return fmt.Errorf("%w: %s %v for a 3-D window", ErrUnsupported, name, v)
		}
		for i := range 3 {
			dst[i] = int(v[i])
		}
		return nil
	}
	for _, f := range []struct {
		name string
		dst  *[3]int
	}{{"kernel_shape", &w.k}, {"strides", &w.s}, {"dilations", &w.d}} {
		if err := three(f.name, f.dst); err != nil {
			return w, err
		}
	}
	switch ap := a.String("auto_pad", "NOTSET"); ap {
	case "NOTSET", "":
		if p := a.Ints("pads", nil); p != nil {
			if len(p) != 6 {
				return w, fmt.Errorf("%w: pads %v", ErrUnsupported, p)
			}
			for i := range 3 {
				w.pb[i], w.pe[i] = int(p[i]), int(p[i+3])
			}
		}
	case "VALID":
	case "SAME_UPPER", "SAME_LOWER":
		for i := range 3 {
			t := max(0, (out[i]-1)*w.s[i]+(w.k[i]-1)*w.d[i]+1-in[i])
			w.pb[i] = t / 2
			if ap == "SAME_LOWER" {
				w.pb[i] = t - t/2
			}
			w.pe[i] = t - w.pb[i]
		}
	default:
		return w, fmt.Errorf("%w: auto_pad %q", ErrUnsupported, ap)
	}
	for i := range 3 {
		if w.k[i] <= 0 || w.s[i] <= 0 || w.d[i] <= 0 || w.pb[i] < 0 || w.pe[i] < 0 {
			return w, fmt.Errorf("%w: 3-D window %+v", ErrGraph, w)
		}
	}
	return w, a.Err()
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
	group := int(ops.AttrsOf(n).Int("group", 1))
	C, M := xd[1], yd[1]
	if group < 1 || C%group != 0 || M%group != 0 || wd[1]*group != C || wd[0] != M {
		return fmt.Errorf("%w: weights %v for input %v with %d groups", ErrGraph, wd, xd, group)
	}
	win, err := readWindow3D(n, [3]int{xd[2], xd[3], xd[4]}, [3]int{yd[2], yd[3], yd[4]}, [3]int{wd[2], wd[3], wd[4]})
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
	win, err := readWindow3D(n, [3]int{xd[2], xd[3], xd[4]}, [3]int{yd[2], yd[3], yd[4]}, [3]int{})
	if err != nil {
		return err
	}
	mode := 0
	if n.OpType == "AveragePool" {
		mode = 1
		if ops.AttrsOf(n).Int("count_include_pad", 0) != 0 {
			mode = 2
		}
	}
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
