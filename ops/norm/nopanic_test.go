package norm

import (
	"fmt"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// TestNoPanic runs every operator on odd inputs (empty dims, zero
// channels, wrong types and ranks, missing inputs): errors are fine, panics
// are not.
func TestNoPanic(t *testing.T) {
	shapes := [][]int{nil, {}, {0}, {3}, {0, 3}, {3, 0}, {2, 0, 2}, {1, 1}, {2, 3, 0, 2}, {2, 3, 2, 2}}
	dtypes := []tensor.DType{tensor.Float32, tensor.Float16, tensor.Int64, tensor.Bool, tensor.String}
	mk := func(dt tensor.DType, shape []int) *tensor.Tensor {
		if shape == nil {
			return nil
		}
		x := tensor.New(dt, shape...)
		for i := range x.Len() {
			if dt != tensor.String {
				x.SetFloat(i, float64(i%3))
			}
		}
		return x
	}
	type opCase struct {
		op    string
		nIn   int
		nOut  int
		attrs []*ir.Attr
	}
	cases := []opCase{
		{"Softmax", 1, 1, nil}, {"LogSoftmax", 1, 1, nil}, {"Hardmax", 1, 1, []*ir.Attr{opstest.Int("axis", 0)}},
		{"ReduceSum", 2, 1, nil}, {"ReduceMean", 2, 1, nil}, {"ReduceMax", 2, 1, nil}, {"ReduceLogSumExp", 2, 1, nil},
		{"ReduceProd", 2, 1, []*ir.Attr{opstest.Int("keepdims", 0)}}, {"ReduceL2", 2, 1, []*ir.Attr{opstest.Int("noop_with_empty_axes", 1)}},
		{"ArgMax", 1, 1, nil}, {"ArgMin", 1, 1, []*ir.Attr{opstest.Int("axis", -1)}},
		{"TopK", 2, 2, nil}, {"CumSum", 2, 1, []*ir.Attr{opstest.Int("reverse", 1)}},
		{"BatchNormalization", 5, 1, nil}, {"BatchNormalization", 5, 3, []*ir.Attr{opstest.Int("training_mode", 1)}},
		{"InstanceNormalization", 3, 1, nil}, {"GroupNormalization", 3, 1, []*ir.Attr{opstest.Int("num_groups", 1)}},
		{"LayerNormalization", 3, 3, nil}, {"LayerNormalization", 3, 3, []*ir.Attr{opstest.Int("axis", 0)}},
		{"LpNormalization", 1, 1, []*ir.Attr{opstest.Int("axis", 0)}}, {"MeanVarianceNormalization", 1, 1, nil},
		{"LRN", 1, 1, []*ir.Attr{opstest.Int("size", 3)}},
		{"NegativeLogLikelihoodLoss", 3, 1, nil}, {"SoftmaxCrossEntropyLoss", 3, 2, []*ir.Attr{opstest.String("reduction", "none")}},
	}
	for _, c := range cases {
		for _, opset := range []int64{11, 13, 18, 21} {
			k, err := ops.Prepare(opstest.Node(c.op, c.nIn, c.nOut, c.attrs...), opset)
			if err != nil {
				continue
			}
			for _, dt := range dtypes {
				for _, s0 := range shapes {
					for _, s1 := range shapes {
						in := []*tensor.Tensor{mk(dt, s0)}
						for i := 1; i < c.nIn; i++ {
							sdt := tensor.Float32
							if i == 1 && (c.op == "TopK" || c.op == "CumSum" || c.op[:3] == "Red" || c.op[len(c.op)-4:] == "Loss") {
								sdt = tensor.Int64
							}
							in = append(in, mk(sdt, s1))
						}
						vals := make([]*ir.Value, len(in))
						for i, x := range in {
							if x != nil {
								vals[i] = &ir.Value{Name: "x", Type: ops.TypeOf(x), Const: x}
							}
						}
						func() {
							defer func() {
								if r := recover(); r != nil {
									t.Errorf("%s opset %d on %v: panic: %v", c.op, opset, describe(in), r)
								}
							}()
							_, _ = k.Infer(vals)
							_, _ = k.Run(nil, in)
						}()
					}
				}
			}
		}
	}
}

func describe(in []*tensor.Tensor) string {
	s := ""
	for _, x := range in {
		if x == nil {
			s += "nil "
		} else {
			s += fmt.Sprintf("%v%v ", x.DType, x.Shape)
		}
	}
	return s
}
