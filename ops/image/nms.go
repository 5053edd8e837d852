package image

import (
	"math"
	"sort"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// nmsOp is ONNX NonMaxSuppression (opsets 10 and 11): greedy selection of
// boxes by descending score, per batch and class, dropping boxes that
// overlap a selected one by more than iou_threshold.
type nmsOp struct {
	centerPointBox bool
}

func prepareNMS(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseNMSAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &nmsOp{centerPointBox: a.CenterPointBox}, nil
}

func nmsAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseNMSAttrs(n, opset) }

func (k *nmsOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("NonMaxSuppression", in, 2); err != nil {
		return nil, err
	}
	return []ir.Type{{DType: tensor.Int64, Shape: ir.Shape{ir.U(), ir.D(3)}}}, nil
}

// box is a box as [ymin, xmin, ymax, xmax] with min <= max.
type box struct{ y0, x0, y1, x1 float64 }

func (b box) area() float64 { return (b.x1 - b.x0) * (b.y1 - b.y0) }

// suppresses reports whether a and b overlap with IoU above threshold.
func suppresses(a, b box, threshold float64) bool {
	ix0, ix1 := math.Max(a.x0, b.x0), math.Min(a.x1, b.x1)
	if ix1 <= ix0 {
		return false
	}
	iy0, iy1 := math.Max(a.y0, b.y0), math.Min(a.y1, b.y1)
	if iy1 <= iy0 {
		return false
	}
	inter := (ix1 - ix0) * (iy1 - iy0)
	a1, a2 := a.area(), b.area()
	union := a1 + a2 - inter
	if inter <= 0 || a1 <= 0 || a2 <= 0 || union <= 0 {
		return false
	}
	return inter/union > threshold
}

func (k *nmsOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "NonMaxSuppression"
	if err := needInputs(op, in, 2); err != nil {
		return nil, err
	}
	boxes, scores := in[0], in[1]
	if boxes.Rank() != 3 || boxes.Shape[2] != 4 {
		return nil, badInput("%s: boxes must be [batches, boxes, 4], got %v", op, boxes.Shape)
	}
	if scores.Rank() != 3 || scores.Shape[0] != boxes.Shape[0] || scores.Shape[2] != boxes.Shape[1] {
		return nil, badInput("%s: scores must be [%d, classes, %d], got %v", op, boxes.Shape[0], boxes.Shape[1], scores.Shape)
	}
	if !boxes.DType.IsFloat() || !scores.DType.IsFloat() {
		return nil, badInput("%s: boxes and scores must be float, got %v and %v", op, boxes.DType, scores.DType)
	}
	var maxOut int64
	if t := input(in, 2); t != nil && t.Len() > 0 {
		v, err := scalarInt(op, "max_output_boxes_per_class", t)
		if err != nil {
			return nil, err
		}
		maxOut = max(v, 0)
	}
	iou := 0.0
	if t := input(in, 3); t != nil && t.Len() > 0 {
		v, err := scalarFloat(op, "iou_threshold", t)
		if err != nil {
			return nil, err
		}
		iou = v
	}
	useScore, scoreMin := false, 0.0
	if t := input(in, 4); t != nil && t.Len() > 0 {
		v, err := scalarFloat(op, "score_threshold", t)
		if err != nil {
			return nil, err
		}
		useScore, scoreMin = true, v
	}
	nb, nc, nbox := boxes.Shape[0], scores.Shape[1], boxes.Shape[1]
	bv, sv := toFloat64(boxes), toFloat64(scores)
	all := make([]box, len(bv)/4)
	for i := range all {
		c := bv[4*i : 4*i+4]
		if k.centerPointBox {
			hw, hh := c[2]/2, c[3]/2
			all[i] = box{y0: c[1] - hh, x0: c[0] - hw, y1: c[1] + hh, x1: c[0] + hw}
		} else {
			all[i] = box{y0: math.Min(c[0], c[2]), x0: math.Min(c[1], c[3]), y1: math.Max(c[0], c[2]), x1: math.Max(c[1], c[3])}
		}
	}
	var sel []int64
	cand := make([]int, 0, nbox)
	var kept []int
	for b := 0; b < nb && maxOut > 0; b++ {
		bb := all[b*nbox : (b+1)*nbox]
		for c := 0; c < nc; c++ {
			s := sv[(b*nc+c)*nbox : (b*nc+c+1)*nbox]
			cand = cand[:0]
			for i, v := range s {
				if !useScore || v > scoreMin {
					cand = append(cand, i)
				}
			}
			sort.SliceStable(cand, func(i, j int) bool { return s[cand[i]] > s[cand[j]] })
			kept = kept[:0]
			for _, i := range cand {
				if int64(len(kept)) >= maxOut {
					break
				}
				ok := true
				for _, j := range kept {
					if suppresses(bb[i], bb[j], iou) {
						ok = false
						break
					}
				}
				if ok {
					kept = append(kept, i)
					sel = append(sel, int64(b), int64(c), int64(i))
				}
			}
		}
	}
	out, err := makeOut(tensor.Int64, []int{len(sel) / 3, 3})
	if err != nil {
		return nil, err
	}
	copy(out.Int64s(), sel)
	return []*tensor.Tensor{out}, nil
}

func init() {
	ops.Register(ops.Def{Type: "NonMaxSuppression", Attrs: nmsAttrs, Prepare: prepareNMS})
}
