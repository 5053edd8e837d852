package ops_test

import (
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestNormAttrs: the normalization ops' typed attributes.
func TestNormAttrs(t *testing.T) {
	out := func(names ...string) []*ir.Value {
		var vs []*ir.Value
		for _, n := range names {
			vs = append(vs, &ir.Value{Name: n})
		}
		return vs
	}
	runAttrCases(t, []attrCase{
		{"layernorm default", "LayerNormalization", nil, 17, ops.LayerNormAttrs{Axis: -1, Epsilon: 1e-5, StashType: tensor.Float32}, ""},
		{"layernorm axis eps", "LayerNormalization", []*ir.Attr{intA("axis", 1), floatA("epsilon", 1e-6)}, 17, ops.LayerNormAttrs{Axis: 1, Epsilon: 1e-6, StashType: tensor.Float32}, ""},
		{"layernorm negative epsilon", "LayerNormalization", []*ir.Attr{floatA("epsilon", -1)}, 17, nil, "epsilon"},
		{"layernorm int stash", "LayerNormalization", []*ir.Attr{intA("stash_type", int64(tensor.Int32))}, 17, nil, "stash_type"},
		{"batchnorm default", "BatchNormalization", nil, 15, ops.BatchNormAttrs{Epsilon: 1e-5, Momentum: 0.9}, ""},
		{"batchnorm training", "BatchNormalization", []*ir.Attr{intA("training_mode", 1)}, 15, ops.BatchNormAttrs{Epsilon: 1e-5, Momentum: 0.9, Training: true}, ""},
		{"batchnorm training 2", "BatchNormalization", []*ir.Attr{intA("training_mode", 2)}, 15, nil, "training_mode"},
		{"batchnorm opset 9", "BatchNormalization", []*ir.Attr{floatA("momentum", 0.5)}, 9, ops.BatchNormAttrs{Epsilon: 1e-5, Momentum: 0.5, LegacyOutputs: true}, ""},
		{"batchnorm negative epsilon", "BatchNormalization", []*ir.Attr{floatA("epsilon", -1e-3)}, 15, nil, "epsilon"},
		{"instancenorm default", "InstanceNormalization", nil, 6, ops.EpsilonAttrs{Epsilon: 1e-5}, ""},
		{"instancenorm negative epsilon", "InstanceNormalization", []*ir.Attr{floatA("epsilon", -1)}, 6, nil, "epsilon"},
		{"lrn", "LRN", []*ir.Attr{intA("size", 3)}, 13, ops.LRNAttrs{Size: 3, Alpha: 1e-4, Beta: 0.75, Bias: 1}, ""},
		{"lrn no size", "LRN", nil, 13, nil, "size"},
		{"lrn size 0", "LRN", []*ir.Attr{intA("size", 0)}, 13, nil, "size"},
		{"nll default", "NegativeLogLikelihoodLoss", nil, 13, ops.LossAttrs{Reduction: "mean"}, ""},
		{"sce ignore", "SoftmaxCrossEntropyLoss", []*ir.Attr{strA("reduction", "sum"), intA("ignore_index", -1)}, 13, ops.LossAttrs{Reduction: "sum", HasIgnore: true, IgnoreIndex: -1}, ""},
		{"nll bad reduction", "NegativeLogLikelihoodLoss", []*ir.Attr{strA("reduction", "max")}, 13, nil, "reduction"},
		{"groupnorm opset 18", "GroupNormalization", []*ir.Attr{intA("num_groups", 4)}, 18, ops.GroupNormAttrs{Epsilon: 1e-5, NumGroups: 4, PerGroup: true}, ""},
		{"groupnorm opset 21", "GroupNormalization", []*ir.Attr{intA("num_groups", 2), floatA("epsilon", 1e-3)}, 21, ops.GroupNormAttrs{Epsilon: 1e-3, NumGroups: 2}, ""},
		{"groupnorm no num_groups", "GroupNormalization", nil, 21, nil, "num_groups"},
		{"groupnorm num_groups 0", "GroupNormalization", []*ir.Attr{intA("num_groups", 0)}, 21, nil, "num_groups"},
		{"lpnorm default", "LpNormalization", nil, 1, ops.LpNormAttrs{Axis: -1, P: 2}, ""},
		{"lpnorm p 3", "LpNormalization", []*ir.Attr{intA("p", 3)}, 1, nil, "p"},
		{"mvn default", "MeanVarianceNormalization", nil, 13, ops.MVNAttrs{Axes: []int64{0, 2, 3}}, ""},
		{"mvn opset 1 across channels", "MeanVarianceNormalization", []*ir.Attr{intA("across_channels", 1)}, 1, ops.MVNAttrs{Axes: []int64{0, 1, 2, 3}}, ""},
		{"mvn opset 13 ignores across channels", "MeanVarianceNormalization", []*ir.Attr{intA("across_channels", 1), intsA("axes", 1)}, 13, ops.MVNAttrs{Axes: []int64{1}}, ""},
	})
	// before opset 14, training mode is more than one output named and is_test 0
	for _, tt := range []struct {
		outs   []*ir.Value
		isTest int64
		want   bool
	}{
		{out("y"), 0, false},
		{out("y", "mean", "var"), 0, true},
		{out("y", "mean", "var"), 1, false},
		{append(out("y"), nil, &ir.Value{}), 0, false},
	} {
		n := &ir.Node{Name: "bn", OpType: "BatchNormalization", Outputs: tt.outs, Attrs: map[string]*ir.Attr{"is_test": intA("is_test", tt.isTest)}}
		a, err := ops.ParseBatchNormAttrs(n, 7)
		if err != nil || a.Training != tt.want {
			t.Errorf("BatchNormalization-7 with %d outputs, is_test %d: training %v (%v), want %v", len(tt.outs), tt.isTest, a.Training, err, tt.want)
		}
	}
}
