package image

import (
	"math"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// roiAlignOp is ONNX RoiAlign (opsets 10 and 16): each region of interest
// of an NCHW feature map is pooled (average or max of bilinear samples)
// into an output_height x output_width grid.
type roiAlignOp struct {
	max           bool
	outH, outW    int
	samplingRatio int
	spatialScale  float64
	halfPixel     bool
}

func prepareRoiAlign(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseRoiAlignAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &roiAlignOp{max: a.Max, outH: int(a.OutputHeight), outW: int(a.OutputWidth), samplingRatio: int(a.SamplingRatio),
		spatialScale: float64(a.SpatialScale), halfPixel: a.HalfPixel}, nil
}

func roiAlignAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseRoiAlignAttrs(n, opset) }

func (k *roiAlignOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("RoiAlign", in, 3); err != nil {
		return nil, err
	}
	x := in[0].Type
	num, c := ir.U(), ir.U()
	if s := in[1].Type.Shape; s.Rank() == 2 {
		num = s[0]
	} else if s := in[2].Type.Shape; s.Rank() == 1 {
		num = s[0]
	}
	if x.Shape.Rank() == 4 {
		c = x.Shape[1]
	} else if x.Shape.RankKnown() {
		return nil, badInput("RoiAlign: X must be 4-D, got %v", x.Shape)
	}
	return []ir.Type{{DType: x.DType, Shape: ir.Shape{num, c, ir.D(int64(k.outH)), ir.D(int64(k.outW))}}}, nil
}

// roiSample is one bilinear sample: four flat positions and their weights.
type roiSample struct {
	pos [4]int
	w   [4]float64
}

func (k *roiAlignOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "RoiAlign"
	if err := needInputs(op, in, 3); err != nil {
		return nil, err
	}
	x, rois, bi := in[0], in[1], in[2]
	if x.Rank() != 4 || !x.DType.IsFloat() {
		return nil, badInput("%s: X must be a 4-D float tensor, got %v%v", op, x.DType, x.Shape)
	}
	if rois.Rank() != 2 || rois.Shape[1] != 4 || !rois.DType.IsFloat() {
		return nil, badInput("%s: rois must be [num_rois, 4] floats, got %v%v", op, rois.DType, rois.Shape)
	}
	if bi.Rank() != 1 || bi.Shape[0] != rois.Shape[0] || !bi.DType.IsInt() {
		return nil, badInput("%s: batch_indices must be [%d] integers, got %v%v", op, rois.Shape[0], bi.DType, bi.Shape)
	}
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	nr := rois.Shape[0]
	batch := bi.Ints()
	for i, b := range batch {
		if b < 0 || b >= int64(n) {
			return nil, ops.IndexError("%s: batch_indices[%d] = %d out of range [0, %d)", op, i, b, n)
		}
	}
	out, err := makeOut(x.DType, []int{nr, c, k.outH, k.outW})
	if err != nil {
		return nil, err
	}
	if out.Len() == 0 {
		return []*tensor.Tensor{out}, nil
	}
	if h == 0 || w == 0 {
		return nil, badInput("%s: empty feature map %v", op, x.Shape)
	}
	xv := toFloat32(x)
	rv := toFloat64(rois)
	res := make([]float32, out.Len())
	plane := k.outH * k.outW
	parallel.For(nr, 1, func(lo, hi int) {
		var samples []roiSample
		for r := lo; r < hi; r++ {
			g := k.grid(rv[4*r : 4*r+4])
			count := float64(max(g.gh*g.gw, 1))
			src := xv[int(batch[r])*c*h*w : (int(batch[r])+1)*c*h*w]
			dst := res[r*c*plane : (r+1)*c*plane]
			for b := 0; b < plane; b++ {
				samples = g.samples(samples[:0], b/k.outW, b%k.outW, h, w)
				for ch := 0; ch < c; ch++ {
					data := src[ch*h*w : (ch+1)*h*w]
					if !k.max {
						acc := 0.0
						for _, s := range samples {
							acc += s.w[0]*float64(data[s.pos[0]]) + s.w[1]*float64(data[s.pos[1]]) +
								s.w[2]*float64(data[s.pos[2]]) + s.w[3]*float64(data[s.pos[3]])
						}
						dst[ch*plane+b] = float32(acc / count)
						continue
					}
					m := 0.0
					for i, s := range samples {
						v := math.Max(math.Max(s.w[0]*float64(data[s.pos[0]]), s.w[1]*float64(data[s.pos[1]])),
							math.Max(s.w[2]*float64(data[s.pos[2]]), s.w[3]*float64(data[s.pos[3]])))
						if i == 0 || v > m {
							m = v
						}
					}
					dst[ch*plane+b] = float32(m)
				}
			}
		}
	})
	storeFloat32(out, res)
	return []*tensor.Tensor{out}, nil
}

// roiGrid is the sampling of one region: its origin, bin size and the
// number of samples per bin along each axis.
type roiGrid struct {
	x0, y0, bw, bh float64
	gh, gw         int
}

// grid computes the sampling grid of region roi = [x1, y1, x2, y2].
func (k *roiAlignOp) grid(roi []float64) roiGrid {
	off := 0.0
	if k.halfPixel {
		off = 0.5
	}
	x0, y0 := roi[0]*k.spatialScale-off, roi[1]*k.spatialScale-off
	x1, y1 := roi[2]*k.spatialScale-off, roi[3]*k.spatialScale-off
	rw, rh := x1-x0, y1-y0
	if !k.halfPixel {
		rw, rh = math.Max(rw, 1), math.Max(rh, 1)
	}
	g := roiGrid{x0: x0, y0: y0, bh: rh / float64(k.outH), bw: rw / float64(k.outW)}
	g.gh, g.gw = k.samplingRatio, k.samplingRatio
	if g.gh == 0 {
		// the ceiling of the bin size, bounded so that a corrupt roi cannot
		// ask for billions of samples
		g.gh = int(math.Min(math.Max(math.Ceil(g.bh), 0), 1<<12))
		g.gw = int(math.Min(math.Max(math.Ceil(g.bw), 0), 1<<12))
	}
	return g
}

// samples appends the bilinear samples of output bin (ph, pw), row by row.
func (g roiGrid) samples(dst []roiSample, ph, pw, h, w int) []roiSample {
	for iy := 0; iy < g.gh; iy++ {
		y := g.y0 + float64(ph)*g.bh + (float64(iy)+0.5)*g.bh/float64(g.gh)
		for ix := 0; ix < g.gw; ix++ {
			x := g.x0 + float64(pw)*g.bw + (float64(ix)+0.5)*g.bw/float64(g.gw)
			dst = append(dst, bilinearSample(y, x, h, w))
		}
	}
	return dst
}

// bilinearSample returns RoiAlign's bilinear sample at (y, x): zero weights
// outside [-1, h] x [-1, w], coordinates clamped to the map otherwise.
func bilinearSample(y, x float64, h, w int) roiSample {
	if y < -1 || y > float64(h) || x < -1 || x > float64(w) || math.IsNaN(x) || math.IsNaN(y) {
		return roiSample{}
	}
	y, x = math.Max(y, 0), math.Max(x, 0)
	yl, xl := int(y), int(x)
	var yh, xh int
	if yl >= h-1 {
		yl, yh = h-1, h-1
		y = float64(yl)
	} else {
		yh = yl + 1
	}
	if xl >= w-1 {
		xl, xh = w-1, w-1
		x = float64(xl)
	} else {
		xh = xl + 1
	}
	ly, lx := y-float64(yl), x-float64(xl)
	hy, hx := 1-ly, 1-lx
	return roiSample{
		pos: [4]int{yl*w + xl, yl*w + xh, yh*w + xl, yh*w + xh},
		w:   [4]float64{hy * hx, hy * lx, ly * hx, ly * lx},
	}
}

func init() {
	ops.Register(ops.Def{Type: "RoiAlign", Attrs: roiAlignAttrs, Prepare: prepareRoiAlign})
}
