package nn

import (
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/tensor"
)

// The geometry of the convolutions, exported for the CPU registry's fast
// kernels (device/cpu/kernels: cpu.Conv, cpu.FusedConv, cpu.BlockedConv),
// so that both paths resolve a node's window the same way.

// ConvShape is a convolution's resolved geometry (input, weights, window;
// read only).
type ConvShape = convShape

// Conv2D returns the cpu.Conv2D parameters of a 2-D convolution, or false
// when s is not one cpu.Conv2D computes.
func (s *convShape) Conv2D() (cpu.Conv2DParams, bool) { return conv2DParams(s) }

// Generic computes the float32 convolution of s by im2col and GEMM (any
// rank; every element of y written).
func (s *convShape) Generic(x, w, bias, y []float32) { convGeneric(s, x, w, bias, y) }

// ConvGeometry is implemented by the reference kernels of Conv and
// kiln::FusedConv.
type ConvGeometry interface {
	// ConvSetup checks the shapes of X, W and the optional bias b and
	// returns the geometry and the output shape (both read only).
	ConvSetup(x, w, b *tensor.Tensor) (*ConvShape, []int, error)
	// ConvShapeOf is the geometry of input shape xs and weight shape ws,
	// false when they do not make a convolution of the node.
	ConvShapeOf(xs, ws []int) (*ConvShape, bool)
}

var (
	_ ConvGeometry = (*convOp)(nil)
	_ ConvGeometry = (*fusedConvOp)(nil)
)

// ConvSetup resolves the geometry for each call, as Conv's Run does.
func (k *convOp) ConvSetup(x, w, b *tensor.Tensor) (*ConvShape, []int, error) {
	return convSetup("Conv", &k.win, k.group, x, w, b)
}

// ConvSetup reuses the geometry of the last shapes run.
func (k *fusedConvOp) ConvSetup(x, w, b *tensor.Tensor) (*ConvShape, []int, error) {
	return k.setup.get("FusedConv", &k.win, k.group, x, w, b)
}

func (k *convOp) ConvShapeOf(xs, ws []int) (*ConvShape, bool) {
	if len(xs) < 3 || len(ws) != len(xs) || k.group < 1 || xs[1] != ws[1]*k.group || ws[0]%k.group != 0 {
		return nil, false
	}
	g, err := k.win.resolve(xs[2:], ws[2:])
	if err != nil {
		return nil, false
	}
	return &convShape{n: xs[0], c: xs[1], m: ws[0], group: k.group, g: g}, true
}

// BlockedConvGeometry is implemented by kiln::BlockedConv's reference
// kernel (BlockedParams, blocked.go).
type BlockedConvGeometry interface {
	BlockedParams(xs, ws []int) (cpu.Conv2DParams, []int, error)
}

var _ BlockedConvGeometry = (*blockedConvOp)(nil)

// Dims returns the batch, the input and output channels and the group of
// s.
func (s *convShape) Dims() (n, c, m, group int) { return s.n, s.c, s.m, s.group }

// Sizes returns the spatial element counts of input and output and the
// kernel size.
func (s *convShape) Sizes() (inSize, outSize, kSize int) { return s.sizes() }

// Pointwise reports whether s is a plain 1x1 product (unit kernel and
// stride, no padding): the input is its own im2col matrix.
func (s *convShape) Pointwise() bool { return s.pointwise() }

// OutW is the size of the output's last spatial axis (a run of im2col).
func (s *convShape) OutW() int { return s.g.out[s.g.rank()-1] }

// Im2colQuads is im2col over 4-byte elements (kiln::QConv's channel quads:
// four int8 channels in one uint32): the columns of output runs [r0, r1)
// of cq quads of one image x ([cq, in...]) into col ([cq*kSize,
// (r1-r0)*OutW]); padding reads as zero.
func (s *convShape) Im2colQuads(x []uint32, cq int, col []uint32, r0, r1 int, parallel bool) {
	im2col(s.g, x, cq, col, r0, r1, parallel)
}

// QConvGeometry is implemented by kiln::QConv's reference kernel
// (qfused.go), for the CPU registry's cpu.QConv.
type QConvGeometry interface {
	// QConvSetup checks QConv's run-time inputs as the reference does and
	// returns the geometry, the output shape and the combined scales
	// x_scale*WScale[m] of the output channels.
	QConvSetup(in []*tensor.Tensor) (s *ConvShape, outShape []int, scales []float32, err error)
}

var _ QConvGeometry = (*qConvOp)(nil)
