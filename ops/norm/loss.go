package norm

import (
	"fmt"
	"math"
	"slices"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// lossOp is NegativeLogLikelihoodLoss (input holds log-probabilities) or
// SoftmaxCrossEntropyLoss (input holds scores; its log-softmax over the
// class axis is the optional second output). Input is [N, C, d1, ...],
// target [N, d1, ...] of class indices; the optional weight [C] weighs each
// class; targets equal to ignore_index contribute nothing. reduction "none"
// gives the loss of every target, "sum" their sum, "mean" their weighted
// mean.
type lossOp struct {
	name      string
	softmax   bool
	reduction string
	ignore    int64
	hasIgnore bool
}

func prepareLoss(softmax bool) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseLossAttrs(n, opset)
		k := &lossOp{name: "NegativeLogLikelihoodLoss", softmax: softmax, reduction: a.Reduction, hasIgnore: a.HasIgnore, ignore: a.IgnoreIndex}
		if softmax {
			k.name = "SoftmaxCrossEntropyLoss"
		}
		return k, err
	}
}

// lossAttrs is the Def.Attrs of the losses.
func lossAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseLossAttrs(n, opset) }

func (k *lossOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues(k.name, in, 2); err != nil {
		return nil, err
	}
	x, t := in[0].Type, in[1].Type
	if x.DType != tensor.Undefined && !isFloatType(x.DType) {
		return nil, fmt.Errorf("%w: %s of %v", ops.ErrBadInput, k.name, x.DType)
	}
	if t.DType != tensor.Undefined && t.DType != tensor.Int32 && t.DType != tensor.Int64 {
		return nil, fmt.Errorf("%w: %s target of %v, want int32 or int64", ops.ErrBadInput, k.name, t.DType)
	}
	if x.Shape != nil && len(x.Shape) < 2 {
		return nil, fmt.Errorf("%w: %s input of rank %d, want >= 2", ops.ErrBadInput, k.name, len(x.Shape))
	}
	if x.Shape != nil && t.Shape != nil && len(t.Shape) != len(x.Shape)-1 {
		return nil, fmt.Errorf("%w: %s target of rank %d for input of rank %d", ops.ErrBadInput, k.name, len(t.Shape), len(x.Shape))
	}
	loss := ir.Type{DType: x.DType, Shape: ir.Scalar()}
	if k.reduction == "none" {
		loss.Shape = t.Shape.Clone()
		if loss.Shape == nil && x.Shape != nil {
			loss.Shape = append(ir.Shape{x.Shape[0]}, x.Shape[2:]...)
		}
	}
	return []ir.Type{loss, {DType: x.DType, Shape: x.Shape.Clone()}}, nil
}

func (k *lossOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needTensors(k.name, in, 2); err != nil {
		return nil, err
	}
	x, target, weight := in[0], in[1], input(in, 2)
	if err := needFloat(k.name, "input", x); err != nil {
		return nil, err
	}
	if weight != nil {
		if err := needFloat(k.name, "weight", weight); err != nil {
			return nil, err
		}
	}
	if target.DType != tensor.Int32 && target.DType != tensor.Int64 {
		return nil, fmt.Errorf("%w: %s target of %v, want int32 or int64", ops.ErrBadInput, k.name, target.DType)
	}
	if x.Rank() < 2 {
		return nil, fmt.Errorf("%w: %s input of rank %d, want >= 2", ops.ErrBadInput, k.name, x.Rank())
	}
	n, c, d := x.Shape[0], x.Shape[1], product(x.Shape[2:])
	tshape := append([]int{n}, x.Shape[2:]...)
	if !slices.Equal(target.Shape, tshape) {
		return nil, fmt.Errorf("%w: %s target of shape %v for input %v, want %v", ops.ErrBadInput, k.name, target.Shape, x.Shape, tshape)
	}
	if weight != nil && (weight.Rank() != 1 || weight.Len() != c) {
		return nil, fmt.Errorf("%w: %s weight of shape %v, want [%d]", ops.ErrBadInput, k.name, weight.Shape, c)
	}
	var logp floatOut
	var lp []float64
	if k.softmax {
		var err error
		if logp, err = newFloatOut(nil, x.DType, x.Shape); err != nil {
			return nil, err
		}
		if logp.f64 != nil {
			softmaxGeneric(kindLogSoftmax, x.Float64s(), logp.f64, n, c, d, math.Exp)
			lp = logp.f64
		} else {
			softmaxGeneric(kindLogSoftmax, float32s(x), logp.f32, n, c, d, expf)
			lp = float64s(logp.done())
		}
	} else {
		lp = float64s(x)
	}
	var w []float64
	if weight != nil {
		w = float64s(weight)
	}
	tv := target.Ints()
	losses := make([]float64, n*d)
	var sum, wsum float64
	for b := 0; b < n; b++ {
		for i := 0; i < d; i++ {
			t := tv[b*d+i]
			if k.hasIgnore && t == k.ignore {
				continue
			}
			if t < 0 || t >= int64(c) {
				return nil, ops.IndexError("%s target %d out of range [0, %d)", k.name, t, c)
			}
			wt := 1.0
			if w != nil {
				wt = w[t]
			}
			l := -lp[(b*c+int(t))*d+i] * wt
			losses[b*d+i] = l
			sum += l
			wsum += wt
		}
	}
	var loss floatOut
	var err error
	switch k.reduction {
	case "none":
		if loss, err = newFloatOut(nil, x.DType, tshape); err != nil {
			return nil, err
		}
		for i, l := range losses {
			loss.set(i, l)
		}
	default:
		if loss, err = newFloatOut(nil, x.DType, []int{}); err != nil {
			return nil, err
		}
		if k.reduction == "mean" {
			sum /= wsum
		}
		loss.set(0, sum)
	}
	res := []*tensor.Tensor{loss.done()}
	if logp.t != nil {
		res = append(res, logp.done())
	}
	return res, nil
}

// set stores v at element i of the output's buffer.
func (o *floatOut) set(i int, v float64) {
	if o.f64 != nil {
		o.f64[i] = v
	} else {
		o.f32[i] = float32(v)
	}
}

func init() {
	ops.Register(ops.Def{Type: "NegativeLogLikelihoodLoss", Attrs: lossAttrs, Prepare: prepareLoss(false)})
	ops.Register(ops.Def{Type: "SoftmaxCrossEntropyLoss", Attrs: lossAttrs, Prepare: prepareLoss(true)})
}
