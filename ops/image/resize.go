package image

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// interpMode is Resize's mode attribute.
type interpMode int

const (
	modeNearest interpMode = iota
	modeLinear
	modeCubic
)

// coordMode is Resize's coordinate_transformation_mode attribute.
type coordMode int

const (
	ctmHalfPixel coordMode = iota
	ctmHalfPixelSymmetric
	ctmPytorchHalfPixel
	ctmAlignCorners
	ctmAsymmetric
	ctmTFHalfPixelForNN
	ctmTFCropAndResize
)

var coordModes = map[string]coordMode{
	"half_pixel":           ctmHalfPixel,
	"half_pixel_symmetric": ctmHalfPixelSymmetric,
	"pytorch_half_pixel":   ctmPytorchHalfPixel,
	"align_corners":        ctmAlignCorners,
	"asymmetric":           ctmAsymmetric,
	"tf_half_pixel_for_nn": ctmTFHalfPixelForNN,
	"tf_crop_and_resize":   ctmTFCropAndResize,
}

// nearestMode is Resize's nearest_mode attribute; nearestSimple is the rule
// of Upsample and Resize-10 (floor when enlarging, ceil when shrinking).
type nearestMode int

const (
	nearestRoundPreferFloor nearestMode = iota
	nearestRoundPreferCeil
	nearestFloor
	nearestCeil
	nearestSimple
)

var nearestModes = map[string]nearestMode{
	"round_prefer_floor": nearestRoundPreferFloor,
	"round_prefer_ceil":  nearestRoundPreferCeil,
	"floor":              nearestFloor,
	"ceil":               nearestCeil,
}

// aspectPolicy is Resize's keep_aspect_ratio_policy attribute.
type aspectPolicy int

const (
	policyStretch aspectPolicy = iota
	policyNotLarger
	policyNotSmaller
)

// resizeOp is ONNX Resize (opsets 10 to 19) and the deprecated Upsample
// (opsets 7 to 10): N-D nearest, (multi)linear and cubic interpolation.
type resizeOp struct {
	op             string
	mode           interpMode
	ctm            coordMode
	nearest        nearestMode
	cubicA         float64
	excludeOutside bool
	extrapolation  float64
	antialias      bool
	axes           []int64 // nil: all axes
	policy         aspectPolicy
	attrScales     []float64 // Upsample-7's scales attribute
	// input positions of roi, scales and sizes; -1 where the form has none
	roiIn, scalesIn, sizesIn int
}

var interpModes = map[string]interpMode{"nearest": modeNearest, "linear": modeLinear, "cubic": modeCubic}

func prepareResize(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseResizeAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &resizeOp{op: "Resize", mode: interpModes[a.Mode], cubicA: float64(a.CubicCoeffA), roiIn: -1, scalesIn: 1, sizesIn: -1}
	if a.Legacy {
		// Resize-10: scales input, asymmetric coordinates, Upsample's nearest rule.
		k.ctm, k.nearest = ctmAsymmetric, nearestSimple
		return k, nil
	}
	k.roiIn, k.scalesIn, k.sizesIn = 1, 2, 3
	k.ctm = coordModes[a.CoordinateTransformationMode]
	k.nearest = nearestModes[a.NearestMode]
	k.excludeOutside = a.ExcludeOutside
	k.extrapolation = float64(a.ExtrapolationValue)
	k.antialias = a.Antialias
	k.axes = a.Axes
	switch a.KeepAspectRatioPolicy {
	case "not_larger":
		k.policy = policyNotLarger
	case "not_smaller":
		k.policy = policyNotSmaller
	}
	return k, nil
}

func resizeAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseResizeAttrs(n, opset) }

func prepareUpsample(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseUpsampleAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &resizeOp{op: "Upsample", mode: interpModes[a.Mode], cubicA: -0.75, roiIn: -1, scalesIn: 1, sizesIn: -1,
		ctm: ctmAsymmetric, nearest: nearestSimple}
	if a.Scales != nil {
		k.scalesIn = -1
		for _, v := range a.Scales {
			k.attrScales = append(k.attrScales, float64(v))
		}
	}
	return k, nil
}

func upsampleAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseUpsampleAttrs(n, opset) }

// resizePlan is what one Resize call computes: output shape, per-axis
// scales and the region of interest (starts then ends, one per axis).
type resizePlan struct {
	in, out []int
	scales  []float64
	roi     []float64
}

// present returns in[i] when the op has such an input and it is non-empty.
func present(in []*tensor.Tensor, i int) *tensor.Tensor {
	if i < 0 {
		return nil
	}
	t := input(in, i)
	if t == nil || t.Len() == 0 {
		return nil
	}
	return t
}

// normAxes returns the axes the op resizes, normalized, for an input of rank r.
func (k *resizeOp) normAxes(r int) ([]int, error) {
	if k.axes == nil {
		axes := make([]int, r)
		for i := range axes {
			axes[i] = i
		}
		return axes, nil
	}
	axes := make([]int, len(k.axes))
	seen := make([]bool, r)
	for i, a := range k.axes {
		if a < int64(-r) || a >= int64(r) {
			return nil, badInput("%s: axis %d out of range for rank %d", k.op, a, r)
		}
		if a < 0 {
			a += int64(r)
		}
		if seen[a] {
			return nil, badInput("%s: repeated axis %d", k.op, a)
		}
		seen[a] = true
		axes[i] = int(a)
	}
	return axes, nil
}

// maxDim bounds an output dimension computed from a scale.
const maxDim = 1 << 40

func (k *resizeOp) plan(x *tensor.Tensor, in []*tensor.Tensor) (*resizePlan, error) {
	r := x.Rank()
	if r == 0 {
		return nil, badInput("%s: input must have rank at least 1", k.op)
	}
	axes, err := k.normAxes(r)
	if err != nil {
		return nil, err
	}
	p := &resizePlan{in: x.Shape, out: append([]int{}, x.Shape...), scales: make([]float64, r)}
	for i := range p.scales {
		p.scales[i] = 1
	}
	scales, sizes := present(in, k.scalesIn), present(in, k.sizesIn)
	var sv []float64
	switch {
	case k.attrScales != nil:
		sv = k.attrScales
	case scales != nil && sizes != nil:
		return nil, badInput("%s: only one of scales and sizes may be given", k.op)
	case scales != nil:
		if !scales.DType.IsFloat() || scales.Rank() != 1 {
			return nil, badInput("%s: scales must be a 1-D float tensor, got %v%v", k.op, scales.DType, scales.Shape)
		}
		sv = make([]float64, scales.Len())
		for i := range sv {
			sv[i] = scales.Float(i)
		}
	case sizes == nil:
		return nil, badInput("%s: one of scales and sizes is required", k.op)
	}
	if sv != nil {
		if len(sv) != len(axes) {
			return nil, badInput("%s: %d scales for %d axes (input shape %v)", k.op, len(sv), len(axes), x.Shape)
		}
		for i, s := range sv {
			if !(s > 0) || math.IsInf(s, 0) {
				return nil, badInput("%s: invalid scale %g", k.op, s)
			}
			d := axes[i]
			o := s * float64(x.Shape[d])
			if o >= maxDim {
				return nil, badInput("%s: scale %g makes dimension %d too large", k.op, s, d)
			}
			p.scales[d], p.out[d] = s, int(o)
		}
	} else {
		if !sizes.DType.IsInt() || sizes.Rank() != 1 {
			return nil, badInput("%s: sizes must be a 1-D int64 tensor, got %v%v", k.op, sizes.DType, sizes.Shape)
		}
		if sizes.Len() != len(axes) {
			return nil, badInput("%s: %d sizes for %d axes (input shape %v)", k.op, sizes.Len(), len(axes), x.Shape)
		}
		for i, d := range axes {
			s := sizes.Int(i)
			if s < 0 || s >= maxDim {
				return nil, badInput("%s: invalid size %d", k.op, s)
			}
			if x.Shape[d] == 0 {
				if s != 0 {
					return nil, badInput("%s: cannot resize empty dimension %d to %d", k.op, d, s)
				}
				continue
			}
			p.out[d] = int(s)
			p.scales[d] = float64(s) / float64(x.Shape[d])
		}
		if k.policy != policyStretch {
			scale := p.scales[axes[0]]
			for _, d := range axes[1:] {
				if k.policy == policyNotLarger {
					scale = math.Min(scale, p.scales[d])
				} else {
					scale = math.Max(scale, p.scales[d])
				}
			}
			for _, d := range axes {
				p.scales[d] = scale
				p.out[d] = int(scale*float64(x.Shape[d]) + 0.5)
			}
		}
	}
	if err := tensor.CheckShape(p.out); err != nil {
		return nil, badInput("%s: output shape: %v", k.op, err)
	}
	if k.ctm == ctmTFCropAndResize {
		p.roi = make([]float64, 2*r)
		for i := 0; i < r; i++ {
			p.roi[r+i] = 1
		}
		if roi := present(in, k.roiIn); roi != nil {
			if !roi.DType.IsFloat() || roi.Len() != 2*len(axes) {
				return nil, badInput("%s: roi must hold %d floats, got %v%v", k.op, 2*len(axes), roi.DType, roi.Shape)
			}
			for i, d := range axes {
				p.roi[d] = roi.Float(i)
				p.roi[r+d] = roi.Float(len(axes) + i)
			}
		}
	}
	return p, nil
}

func (k *resizeOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues(k.op, in, 1); err != nil {
		return nil, err
	}
	x := in[0].Type
	out := ir.Type{DType: x.DType}
	sizes := k.sizesIn >= 0 && value(in, k.sizesIn) != nil
	var sv []float64
	var sz []ir.Dim
	if k.attrScales != nil {
		sv = k.attrScales
	} else if c := constOf(value(in, k.scalesIn)); k.scalesIn >= 0 && c != nil && c.Len() > 0 && c.DType.IsFloat() {
		sv = toFloat64(c)
	}
	if sizes && sv == nil {
		v := in[k.sizesIn]
		if c := v.Const; c != nil && c.Len() > 0 && c.DType.IsInt() {
			for _, s := range c.Ints() {
				sz = append(sz, ir.D(s))
			}
		} else if v.ShapeValue != nil && k.policy == policyStretch {
			sz = v.ShapeValue
		}
	}
	rank := x.Shape.Rank()
	n := len(sv) + len(sz)
	if rank < 0 {
		if k.axes != nil || n == 0 {
			return []ir.Type{out}, nil
		}
		rank = n
		x.Shape = make(ir.Shape, rank)
		for i := range x.Shape {
			x.Shape[i] = ir.U()
		}
	}
	axes, err := k.normAxes(rank)
	if err != nil {
		return nil, err
	}
	out.Shape = x.Shape.Clone()
	switch {
	case n == 0:
		for _, d := range axes {
			out.Shape[d] = ir.U()
		}
	case n != len(axes):
		return nil, badInput("%s: %d scales or sizes for %d axes (input shape %v)", k.op, n, len(axes), x.Shape)
	case sv != nil:
		for i, d := range axes {
			s, dim := sv[i], x.Shape[d]
			switch {
			case s == 1:
			case dim.Known() && s > 0 && s*float64(dim.Val) < maxDim:
				out.Shape[d] = ir.D(int64(s * float64(dim.Val)))
			default:
				out.Shape[d] = ir.U()
			}
		}
	case k.policy == policyStretch:
		for i, d := range axes {
			out.Shape[d] = sz[i]
		}
	default:
		scale := math.NaN()
		for i, d := range axes {
			if !x.Shape[d].Known() || x.Shape[d].Val == 0 || !sz[i].Known() {
				scale = math.NaN()
				break
			}
			s := float64(sz[i].Val) / float64(x.Shape[d].Val)
			if i == 0 || (k.policy == policyNotLarger && s < scale) || (k.policy == policyNotSmaller && s > scale) {
				scale = s
			}
		}
		for _, d := range axes {
			if math.IsNaN(scale) {
				out.Shape[d] = ir.U()
			} else {
				out.Shape[d] = ir.D(int64(scale*float64(x.Shape[d].Val) + 0.5))
			}
		}
	}
	return []ir.Type{out}, nil
}

func (k *resizeOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs(k.op, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	p, err := k.plan(x, in)
	if err != nil {
		return nil, err
	}
	for d, o := range p.out {
		if o > 0 && p.in[d] == 0 {
			return nil, badInput("%s: cannot resize empty dimension %d to %d", k.op, d, o)
		}
	}
	// Every path below writes every output element, so the output may come
	// from the execution context's arena (contents undefined) instead of
	// the heap; strings stay on the heap.
	var out *tensor.Tensor
	if x.DType == tensor.String {
		out, err = makeOut(x.DType, p.out)
	} else if out, err = ops.NewOutput(env, x.DType, p.out); err != nil {
		err = fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	if err != nil {
		return nil, err
	}
	if out.Len() == 0 {
		return []*tensor.Tensor{out}, nil
	}
	if k.mode == modeNearest {
		return []*tensor.Tensor{out}, k.runNearest(x, out, p)
	}
	if !isNumeric(x.DType) {
		return nil, badInput("%s: %v input is not supported with linear or cubic mode", k.op, x.DType)
	}
	return []*tensor.Tensor{out}, k.runInterp(x, out, p)
}

func init() {
	ops.Register(ops.Def{Type: "Resize", Attrs: resizeAttrs, Prepare: prepareResize})
	ops.Register(ops.Def{Type: "Upsample", Attrs: upsampleAttrs, Prepare: prepareUpsample})
}
