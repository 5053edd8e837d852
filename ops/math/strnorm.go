package math

import (
	"fmt"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// stringNormalizer is ONNX StringNormalizer: it drops stop words from a [C]
// or [1, C] string tensor and optionally changes the case of the rest. When
// nothing is left, the output is one empty string ([1] or [1, 1]).
type stringNormalizer struct {
	caseChange    string // LOWER, UPPER or NONE
	caseSensitive bool
	stop          map[string]bool // lower-cased unless caseSensitive
}

func (k *stringNormalizer) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs("StringNormalizer", in, 1, 1); err != nil {
		return nil, err
	}
	t := in[0].Type
	if t.DType != tensor.Undefined && t.DType != tensor.String {
		return nil, badType("StringNormalizer", t.DType)
	}
	if t.Shape == nil {
		return []ir.Type{{DType: tensor.String}}, nil
	}
	if r := len(t.Shape); r < 1 || r > 2 {
		return nil, fmt.Errorf("%w: StringNormalizer of rank %d, want [C] or [1, C]", ops.ErrBadInput, r)
	}
	s := t.Shape.Clone()
	if len(k.stop) > 0 {
		s[len(s)-1] = ir.U()
	}
	return []ir.Type{{DType: tensor.String, Shape: s}}, nil
}

func (k *stringNormalizer) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := checkTensors("StringNormalizer", in, 1, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if x.DType != tensor.String {
		return nil, badType("StringNormalizer", x.DType)
	}
	r := len(x.Shape)
	if r < 1 || r > 2 || (r == 2 && x.Shape[0] != 1) {
		return nil, fmt.Errorf("%w: StringNormalizer of shape %v, want [C] or [1, C]", ops.ErrBadInput, x.Shape)
	}
	var kept []string
	for _, s := range x.Strings[:x.Len()] {
		key := s
		if !k.caseSensitive {
			key = strings.ToLower(s)
		}
		if k.stop[key] {
			continue
		}
		switch k.caseChange {
		case "LOWER":
			s = strings.ToLower(s)
		case "UPPER":
			s = strings.ToUpper(s)
		}
		kept = append(kept, s)
	}
	if len(kept) == 0 {
		kept = []string{""}
	}
	shape := []int{len(kept)}
	if r == 2 {
		shape = []int{1, len(kept)}
	}
	return []*tensor.Tensor{{DType: tensor.String, Shape: shape, Strings: kept}}, nil
}

func init() {
	ops.Register(ops.Def{Type: "StringNormalizer", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseStringNormalizerAttrs(n, opset) }, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseStringNormalizerAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		k := &stringNormalizer{caseChange: a.CaseChange, caseSensitive: a.CaseSensitive, stop: map[string]bool{}}
		for _, w := range a.Stopwords {
			if !k.caseSensitive {
				w = strings.ToLower(w)
			}
			k.stop[w] = true
		}
		return k, nil
	}})
}
