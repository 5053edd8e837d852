package nn

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// maxUnpoolOp is ONNX MaxUnpool: it scatters X into a zero tensor at the
// flat positions I (as computed by MaxPool's Indices output).
type maxUnpoolOp struct{ win window }

func prepareMaxUnpool(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseMaxUnpoolAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &maxUnpoolOp{win: windowOf(&a.WindowAttrs)}, nil
}

func maxUnpoolAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseMaxUnpoolAttrs(n, opset) }

// outDims returns the default output spatial size of one dim.
func (k *maxUnpoolOp) outDim(i, in int) int {
	r := len(k.win.kernel)
	pb, pe := 0, 0
	if k.win.pads != nil {
		pb, pe = k.win.pads[i], k.win.pads[i+r]
	}
	return (in-1)*at(k.win.strides, i, 1) + k.win.kernel[i] - pb - pe
}

func (k *maxUnpoolOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("MaxUnpool", in, 2); err != nil {
		return nil, err
	}
	xs := in[0].Type.Shape
	if os := value(in, 2); os != nil {
		if os.Const != nil {
			s := os.Const.Ints()
			out := make(ir.Shape, len(s))
			for i, d := range s {
				out[i] = ir.D(d)
			}
			return []ir.Type{{DType: in[0].Type.DType, Shape: out}}, nil
		}
		if os.ShapeValue != nil {
			return []ir.Type{{DType: in[0].Type.DType, Shape: append(ir.Shape{}, os.ShapeValue...)}}, nil
		}
		var out ir.Shape
		if xs != nil {
			out = make(ir.Shape, len(xs))
			for i := range out {
				out[i] = ir.U()
			}
		}
		return []ir.Type{{DType: in[0].Type.DType, Shape: out}}, nil
	}
	if xs == nil {
		return []ir.Type{{DType: in[0].Type.DType}}, nil
	}
	if len(xs) != len(k.win.kernel)+2 {
		return nil, badInput("MaxUnpool input %v for kernel_shape %v", xs, k.win.kernel)
	}
	out := ir.Shape{xs[0], xs[1]}
	for i, d := range xs[2:] {
		if d.Known() {
			out = append(out, ir.D(int64(k.outDim(i, int(d.Val)))))
		} else {
			out = append(out, ir.U())
		}
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: out}}, nil
}

func (k *maxUnpoolOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("MaxUnpool", in, 2); err != nil {
		return nil, err
	}
	x, ix := in[0], in[1]
	if x.Rank() != len(k.win.kernel)+2 {
		return nil, badInput("MaxUnpool input %v for kernel_shape %v", x.Shape, k.win.kernel)
	}
	if err := k.win.check(len(k.win.kernel)); err != nil {
		return nil, err
	}
	if ix.DType != tensor.Int64 || !sameShape(ix.Shape, x.Shape) {
		return nil, badInput("MaxUnpool indices %v%v for input %v", ix.DType, ix.Shape, x.Shape)
	}
	// Scatter into the shape the attributes imply, then place that at the
	// origin of output_shape when it is given (as the ONNX reference does).
	inferred := []int{x.Shape[0], x.Shape[1]}
	for i, d := range x.Shape[2:] {
		inferred = append(inferred, k.outDim(i, d))
	}
	size := x.DType.Size()
	if size == 0 {
		return nil, badInput("MaxUnpool of %v", x.DType)
	}
	y, err := makeOut(x.DType, inferred)
	if err != nil {
		return nil, err
	}
	total := y.Len()
	idx := ix.Int64s()
	for _, p := range idx {
		if p < 0 || p >= int64(total) {
			return nil, ops.IndexError("MaxUnpool index %d out of range for output %v", p, inferred)
		}
	}
	for i, p := range idx {
		copy(y.Data[int(p)*size:int(p+1)*size], x.Data[i*size:(i+1)*size])
	}
	os := input(in, 2)
	if os == nil {
		return []*tensor.Tensor{y}, nil
	}
	if os.Rank() != 1 || !os.DType.IsInt() || os.Len() != x.Rank() {
		return nil, badInput("MaxUnpool output_shape %v%v for input %v", os.DType, os.Shape, x.Shape)
	}
	outShape := ints64(os.Ints())
	for i, d := range outShape {
		if d < inferred[i] {
			return nil, badInput("MaxUnpool output_shape %v is smaller than %v", outShape, inferred)
		}
	}
	res, err := makeOut(x.DType, outShape)
	if err != nil {
		return nil, err
	}
	if total == 0 {
		return []*tensor.Tensor{res}, nil
	}
	// copy rows of the last dim
	r := len(inferred)
	last := inferred[r-1] * size
	ost := tensor.Strides(outShape)
	coord := make([]int, r-1)
	for row := 0; row < total/inferred[r-1]; row++ {
		off := 0
		for d, c := range coord {
			off += c * ost[d]
		}
		copy(res.Data[off*size:off*size+last], y.Data[row*last:(row+1)*last])
		for d := r - 2; d >= 0; d-- {
			coord[d]++
			if coord[d] < inferred[d] {
				break
			}
			coord[d] = 0
		}
	}
	return []*tensor.Tensor{res}, nil
}

// sameShape reports whether two shapes are equal.
func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// maxRoiPoolOp is ONNX MaxRoiPool: max pooling of regions of interest
// (Fast R-CNN). rois is [R, 5]: batch index, x1, y1, x2, y2.
type maxRoiPoolOp struct {
	ph, pw int
	scale  float32
}

func prepareMaxRoiPool(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseMaxRoiPoolAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &maxRoiPoolOp{ph: int(a.PooledShape[0]), pw: int(a.PooledShape[1]), scale: a.SpatialScale}, nil
}

func maxRoiPoolAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseMaxRoiPoolAttrs(n, opset) }

func (k *maxRoiPoolOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("MaxRoiPool", in, 2); err != nil {
		return nil, err
	}
	r, c := ir.U(), ir.U()
	if s := in[1].Type.Shape; len(s) == 2 {
		r = s[0]
	}
	if s := in[0].Type.Shape; len(s) == 4 {
		c = s[1]
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: ir.Shape{r, c, ir.D(int64(k.ph)), ir.D(int64(k.pw))}}}, nil
}

func (k *maxRoiPoolOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("MaxRoiPool", in, 2); err != nil {
		return nil, err
	}
	x, rois := in[0], in[1]
	if x.Rank() != 4 || !x.DType.IsFloat() {
		return nil, badInput("MaxRoiPool input %v%v, want float [N,C,H,W]", x.DType, x.Shape)
	}
	if rois.Rank() != 2 || rois.Shape[1] != 5 || !rois.DType.IsFloat() {
		return nil, badInput("MaxRoiPool rois %v%v, want float [R,5]", rois.DType, rois.Shape)
	}
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	nr := rois.Shape[0]
	if _, err := checkedNumel([]int{nr, c, k.ph, k.pw}); err != nil {
		return nil, err
	}
	xf := toFloat32(x)
	rf := toFloat32(rois)
	yf := make([]float32, nr*c*k.ph*k.pw)
	for r := 0; r < nr; r++ {
		roi := rf[r*5 : r*5+5]
		b := int(roi[0])
		if b < 0 || b >= n {
			return nil, badInput("MaxRoiPool roi %d has batch index %g, input batch %d", r, roi[0], n)
		}
		x1 := int(math.Round(float64(roi[1] * k.scale)))
		y1 := int(math.Round(float64(roi[2] * k.scale)))
		x2 := int(math.Round(float64(roi[3] * k.scale)))
		y2 := int(math.Round(float64(roi[4] * k.scale)))
		rh := max(y2-y1+1, 1)
		rw := max(x2-x1+1, 1)
		bh := float64(rh) / float64(k.ph)
		bw := float64(rw) / float64(k.pw)
		for ch := 0; ch < c; ch++ {
			plane := xf[(b*c+ch)*h*w : (b*c+ch+1)*h*w]
			out := yf[(r*c+ch)*k.ph*k.pw:]
			for i := 0; i < k.ph; i++ {
				hs := min(max(int(math.Floor(float64(i)*bh))+y1, 0), h)
				he := min(max(int(math.Ceil(float64(i+1)*bh))+y1, 0), h)
				for j := 0; j < k.pw; j++ {
					ws := min(max(int(math.Floor(float64(j)*bw))+x1, 0), w)
					we := min(max(int(math.Ceil(float64(j+1)*bw))+x1, 0), w)
					if he <= hs || we <= ws {
						out[i*k.pw+j] = 0
						continue
					}
					m := float32(math.Inf(-1))
					for yy := hs; yy < he; yy++ {
						for xx := ws; xx < we; xx++ {
							if v := plane[yy*w+xx]; v > m {
								m = v
							}
						}
					}
					out[i*k.pw+j] = m
				}
			}
		}
	}
	return one(fromFloat32(x.DType, []int{nr, c, k.ph, k.pw}, yf))
}

func init() {
	ops.Register(ops.Def{Type: "MaxUnpool", Attrs: maxUnpoolAttrs, Prepare: prepareMaxUnpool})
	ops.Register(ops.Def{Type: "MaxRoiPool", Attrs: maxRoiPoolAttrs, Prepare: prepareMaxRoiPool})
}
