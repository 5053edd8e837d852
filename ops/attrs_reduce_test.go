package ops_test

import (
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// TestReduceAttrs: the reductions', ArgMax's, TopK's and CumSum's typed
// attributes, with the opset rules of each.
func TestReduceAttrs(t *testing.T) {
	runAttrCases(t, []attrCase{
		{"reducemean opset 13", "ReduceMean", []*ir.Attr{intsA("axes", 1, 2)}, 13, ops.ReduceAttrs{Axes: []int64{1, 2}, KeepDims: true}, ""},
		{"reducemean opset 18", "ReduceMean", nil, 18, ops.ReduceAttrs{AxesInput: true, KeepDims: true}, ""},
		{"reducesum opset 13", "ReduceSum", []*ir.Attr{intA("keepdims", 0)}, 13, ops.ReduceAttrs{AxesInput: true}, ""},
		{"reducesum opset 11", "ReduceSum", []*ir.Attr{intsA("axes")}, 11, ops.ReduceAttrs{KeepDims: true}, ""},
		{"reducemax noop", "ReduceMax", []*ir.Attr{intA("noop_with_empty_axes", 1)}, 18, ops.ReduceAttrs{AxesInput: true, KeepDims: true, NoopWithEmptyAxes: true}, ""},
		{"reducel2 keepdims 2", "ReduceL2", []*ir.Attr{intA("keepdims", 2)}, 13, nil, "keepdims"},
		{"reduceprod noop 3", "ReduceProd", []*ir.Attr{intA("noop_with_empty_axes", 3)}, 18, nil, "noop_with_empty_axes"},
		{"argmax default", "ArgMax", nil, 13, ops.ArgReduceAttrs{KeepDims: true}, ""},
		{"argmin last", "ArgMin", []*ir.Attr{intA("axis", -1), intA("keepdims", 0), intA("select_last_index", 1)}, 12, ops.ArgReduceAttrs{Axis: -1, SelectLastIndex: true}, ""},
		{"argmax last 2", "ArgMax", []*ir.Attr{intA("select_last_index", 2)}, 12, nil, "select_last_index"},
		{"topk opset 11", "TopK", nil, 11, ops.TopKAttrs{Axis: -1, K: -1, Largest: true, Sorted: true}, ""},
		{"topk smallest", "TopK", []*ir.Attr{intA("largest", 0), intA("sorted", 0), intA("axis", 0)}, 11, ops.TopKAttrs{K: -1}, ""},
		{"topk opset 1 k", "TopK", []*ir.Attr{intA("k", 3)}, 1, ops.TopKAttrs{Axis: -1, K: 3, Largest: true, Sorted: true}, ""},
		{"topk opset 1 no k", "TopK", nil, 1, nil, "k"},
		{"topk negative k", "TopK", []*ir.Attr{intA("k", -2)}, 9, nil, "k"},
		{"topk largest 5", "TopK", []*ir.Attr{intA("largest", 5)}, 11, nil, "largest"},
		{"cumsum default", "CumSum", nil, 14, ops.CumSumAttrs{}, ""},
		{"cumsum both", "CumSum", []*ir.Attr{intA("exclusive", 1), intA("reverse", 1)}, 14, ops.CumSumAttrs{Exclusive: true, Reverse: true}, ""},
		{"cumsum reverse 2", "CumSum", []*ir.Attr{intA("reverse", 2)}, 14, nil, "reverse"},
	})
}
