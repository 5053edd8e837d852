package shape

import (
	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// triluOp is ONNX Trilu: the upper (or lower) triangle of the last two axes
// from diagonal k (input 1, default 0) on, the rest zero.
type triluOp struct{ upper bool }

func prepareTrilu(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseTriluAttrs(n, opset)
	return &triluOp{upper: a.Upper}, err
}

// triluAttrs is Trilu's Def.Attrs.
func triluAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseTriluAttrs(n, opset) }

func (k *triluOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("Trilu", in, 1); err != nil {
		return nil, err
	}
	if s := in[0].Type.Shape; s != nil && len(s) < 2 {
		return nil, badInput("Trilu: input shape %v, want rank >= 2", s)
	}
	return []ir.Type{in[0].Type}, nil
}

func (k *triluOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData("Trilu", x); err != nil {
		return nil, err
	}
	r := x.Rank()
	if r < 2 {
		return nil, badInput("Trilu: input shape %v, want rank >= 2", x.Shape)
	}
	var diag int64
	if kt := arg(in, 1); kt != nil {
		kv, err := intVector("Trilu", "k", kt)
		if err != nil {
			return nil, err
		}
		if len(kv) != 1 {
			return nil, badInput("Trilu: k must be a scalar, got %v", kt.Shape)
		}
		diag = kv[0]
	}
	y, err := tensor.Make(x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	N, M := x.Shape[r-2], x.Shape[r-1]
	diag = min(max(diag, -int64(N)-1), int64(M)+1) // same result, no overflow
	rows := prod(x.Shape[:r-1])
	if M == 0 {
		return []*tensor.Tensor{y}, nil
	}
	parallel.For(rows, max(1, copyGrain/M), func(lo, hi int) {
		for row := lo; row < hi; row++ {
			i := int64(row % N)
			var j0, j1 int64 // kept columns [j0, j1)
			if k.upper {
				j0, j1 = min(max(i+diag, 0), int64(M)), int64(M)
			} else {
				j0, j1 = 0, min(max(i+diag+1, 0), int64(M))
			}
			if j1 > j0 {
				copyElems(y, row*M+int(j0), x, row*M+int(j0), int(j1-j0))
			}
		}
	})
	return []*tensor.Tensor{y}, nil
}

// reverseSequenceOp is ONNX ReverseSequence: for each batch entry b, the
// first seq_lens[b] steps along the time axis are reversed.
type reverseSequenceOp struct{ batchAxis, timeAxis int }

func prepareReverseSequence(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseReverseSequenceAttrs(n, opset)
	return &reverseSequenceOp{batchAxis: a.BatchAxis, timeAxis: a.TimeAxis}, err
}

func (k *reverseSequenceOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("ReverseSequence", in, 2); err != nil {
		return nil, err
	}
	if s := in[0].Type.Shape; s != nil && len(s) < 2 {
		return nil, badInput("ReverseSequence: input shape %v, want rank >= 2", s)
	}
	return []ir.Type{in[0].Type}, nil
}

func (k *reverseSequenceOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData("ReverseSequence", x); err != nil {
		return nil, err
	}
	if x.Rank() < 2 {
		return nil, badInput("ReverseSequence: input shape %v, want rank >= 2", x.Shape)
	}
	lens, err := intVector("ReverseSequence", "sequence_lens", arg(in, 1))
	if err != nil {
		return nil, err
	}
	B, T := x.Shape[k.batchAxis], x.Shape[k.timeAxis]
	if len(lens) != B {
		return nil, badInput("ReverseSequence: %d sequence lengths for batch %d", len(lens), B)
	}
	y, err := tensor.Make(x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	inner := prod(x.Shape[2:])
	st := strides(x.Shape)
	bs, ts := st[k.batchAxis], st[k.timeAxis]
	for b := 0; b < B; b++ {
		l := lens[b]
		if l < 0 || l > int64(T) {
			return nil, badInput("ReverseSequence: sequence length %d for time dimension %d", l, T)
		}
		for t := 0; t < T; t++ {
			src := t
			if int64(t) < l {
				src = int(l) - 1 - t
			}
			copyElems(y, b*bs+t*ts, x, b*bs+src*ts, inner)
		}
	}
	return []*tensor.Tensor{y}, nil
}

func init() {
	ops.Register(ops.Def{Type: "Trilu", Attrs: triluAttrs, Traits: ops.HasFloat16, Prepare: prepareTrilu})
	ops.Register(ops.Def{Type: "ReverseSequence", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseReverseSequenceAttrs(n, opset) }, Traits: ops.HasFloat16, Prepare: prepareReverseSequence})
}
