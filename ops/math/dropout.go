package math

import (
	"fmt"
	"math/rand/v2"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// dropout is ONNX Dropout. At inference (before opset 12 always; from 12
// unless the training_mode input is true, or when the ratio is 0) the output
// is the input and the optional mask is all true. In training mode each
// element is kept with probability 1-ratio and scaled by 1/(1-ratio).
type dropout struct {
	opset int64
	ratio float64 // attribute, before opset 12
	seed  *uint64
}

// randomDropout is a Dropout with a training_mode input: it may drop
// elements at random, so it is never folded at load time.
type randomDropout struct{ *dropout }

// NonDeterministic marks the kernel as random.
func (randomDropout) NonDeterministic() {}

func (k *dropout) maskType(x tensor.DType) tensor.DType {
	if k.opset < 10 {
		return x
	}
	return tensor.Bool
}

func (k *dropout) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs("Dropout", in, 1, 3); err != nil {
		return nil, err
	}
	dt := in[0].Type.DType
	if dt != tensor.Undefined && !dt.IsFloat() {
		return nil, badType("Dropout", dt)
	}
	return []ir.Type{{DType: dt, Shape: in[0].Type.Shape.Clone()}, {DType: k.maskType(dt), Shape: in[0].Type.Shape.Clone()}}, nil
}

func (k *dropout) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := checkTensors("Dropout", in, 1, 3); err != nil {
		return nil, err
	}
	x := in[0]
	if !x.DType.IsFloat() {
		return nil, badType("Dropout", x.DType)
	}
	ratio, training := k.ratio, false
	if k.opset >= 12 {
		ratio = 0.5
		if len(in) > 1 && in[1] != nil {
			if in[1].Len() != 1 || !in[1].DType.IsFloat() {
				return nil, fmt.Errorf("%w: Dropout ratio must be a float scalar, got %v%v", ops.ErrBadInput, in[1].DType, in[1].Shape)
			}
			ratio = in[1].Float(0)
		}
		if len(in) > 2 && in[2] != nil {
			if in[2].Len() != 1 || in[2].DType != tensor.Bool {
				return nil, fmt.Errorf("%w: Dropout training_mode must be a bool scalar, got %v%v", ops.ErrBadInput, in[2].DType, in[2].Shape)
			}
			training = in[2].Float(0) != 0
		}
	}
	if ratio < 0 || ratio > 1 || ratio != ratio {
		return nil, fmt.Errorf("%w: Dropout ratio %g outside [0, 1]", ops.ErrBadInput, ratio)
	}
	mask, err := tensor.Make(k.maskType(x.DType), x.Shape)
	if err != nil {
		return nil, err
	}
	if !training || ratio == 0 {
		if mask.DType == tensor.Bool {
			b := elems[bool](mask)
			for i := range b {
				b[i] = true
			}
		} else {
			store(mask, ones(mask.Len()))
		}
		return []*tensor.Tensor{x, mask}, nil
	}
	var rng *rand.Rand
	if k.seed != nil {
		rng = rand.New(rand.NewPCG(*k.seed, 0))
	} else {
		rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	out, err := tensor.Make(x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	scale := 1 / (1 - ratio)
	v := numbers[float64](x)
	keep := elems[bool](mask)
	for i := range v {
		keep[i] = rng.Float64() >= ratio
		if keep[i] {
			v[i] *= scale
		} else {
			v[i] = 0
		}
	}
	store(out, v)
	return []*tensor.Tensor{out, mask}, nil
}

func ones(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

func init() {
	ops.Register(ops.Def{Type: "Dropout", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseDropoutAttrs(n, opset) }, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseDropoutAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		k := &dropout{opset: opset, ratio: float64(a.Ratio)}
		if a.Seed != nil {
			s := uint64(*a.Seed)
			k.seed = &s
		}
		if opset < 12 {
			k.ratio = 0 // inference: identity
		}
		if opset >= 12 && n.Input(2) != nil {
			return randomDropout{k}, nil
		}
		return k, nil
	}, Traits: ops.MayViewInput0})
}
