package ops_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/tensor"
)

// attrCase is one node given to ops.ParseAttrs (as every device's kernel
// reads it): the typed attributes it must give, or the attribute its
// error must name.
type attrCase struct {
	name  string
	op    string
	attrs []*ir.Attr
	opset int64
	want  any
	bad   string // the attribute the error names; "" for no error
}

func runAttrCases(t *testing.T, cases []attrCase) {
	t.Helper()
	for _, tt := range cases {
		runAttrCase(t, tt, 0)
	}
}

// runAttrCase runs one case on a node with outs outputs.
func runAttrCase(t *testing.T, tt attrCase, outs int) {
	t.Helper()
	t.Run(tt.name, func(t *testing.T) {
		n := &ir.Node{Name: "n", OpType: tt.op, Attrs: map[string]*ir.Attr{}}
		if d, op, ok := strings.Cut(tt.op, "::"); ok { // "kiln::FusedConv"
			n.Domain, n.OpType = d, op
		}
		for i := range outs {
			n.Outputs = append(n.Outputs, &ir.Value{Name: fmt.Sprint("y", i)})
		}
		for _, a := range tt.attrs {
			n.Attrs[a.Name] = a
		}
		got, err := ops.ParseAttrs(n, tt.opset)
		if tt.bad != "" {
			if !errors.Is(err, ops.ErrBadAttr) || !strings.Contains(err.Error(), `"`+tt.bad+`"`) {
				t.Fatalf("ParseAttrs: %v, want a bad attribute %q", err, tt.bad)
			}
			// the CPU kernel's Prepare refuses the node with the same error
			if _, perr := ops.Prepare(n, tt.opset); perr == nil || !strings.Contains(perr.Error(), err.Error()[strings.Index(err.Error(), "bad attribute"):]) {
				t.Errorf("Prepare: %v, want %v", perr, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseAttrs: %v", err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseAttrs = %#v, want %#v", got, tt.want)
		}
	})
}

func intsA(name string, v ...int64) *ir.Attr { return ir.IntsAttr(name, v...) }
func intA(name string, v int64) *ir.Attr     { return &ir.Attr{Name: name, Type: ir.AttrInt, I: v} }
func floatA(name string, v float32) *ir.Attr {
	return &ir.Attr{Name: name, Type: ir.AttrFloat, F: v}
}
func strA(name, v string) *ir.Attr { return &ir.Attr{Name: name, Type: ir.AttrString, S: v} }

// TestShapeAttrs: the data movement ops' typed attributes, with the ONNX
// defaults and rules of each opset.
func TestShapeAttrs(t *testing.T) {
	runAttrCases(t, []attrCase{
		{"transpose default", "Transpose", nil, 13, ops.TransposeAttrs{}, ""},
		{"transpose perm", "Transpose", []*ir.Attr{intsA("perm", 0, 2, 1)}, 13, ops.TransposeAttrs{Perm: []int64{0, 2, 1}}, ""},
		{"transpose not a permutation", "Transpose", []*ir.Attr{intsA("perm", 0, 0, 1)}, 13, nil, "perm"},
		{"transpose perm out of range", "Transpose", []*ir.Attr{intsA("perm", 0, 3)}, 13, nil, "perm"},
		{"transpose mistyped perm", "Transpose", []*ir.Attr{intA("perm", 1)}, 13, nil, "perm"},
		{"gather default", "Gather", nil, 13, ops.AxisAttrs{}, ""},
		{"gather axis -1", "Gather", []*ir.Attr{intA("axis", -1)}, 13, ops.AxisAttrs{Axis: -1}, ""},
		{"gatherelements axis 1", "GatherElements", []*ir.Attr{intA("axis", 1)}, 13, ops.AxisAttrs{Axis: 1}, ""},
		{"gather mistyped axis", "Gather", []*ir.Attr{floatA("axis", 1)}, 13, nil, "axis"},
		{"onehot default", "OneHot", nil, 11, ops.AxisAttrs{Axis: -1}, ""},
		{"gathernd default", "GatherND", nil, 13, ops.GatherNDAttrs{}, ""},
		{"gathernd batch_dims", "GatherND", []*ir.Attr{intA("batch_dims", 1)}, 13, ops.GatherNDAttrs{BatchDims: 1}, ""},
		{"gathernd negative batch_dims", "GatherND", []*ir.Attr{intA("batch_dims", -1)}, 13, nil, "batch_dims"},
		{"scatterelements default", "ScatterElements", nil, 18, ops.ScatterElementsAttrs{Reduction: "none"}, ""},
		{"scatterelements add opset 16", "ScatterElements", []*ir.Attr{strA("reduction", "add"), intA("axis", 1)}, 16, ops.ScatterElementsAttrs{Axis: 1, Reduction: "add"}, ""},
		{"scatterelements add opset 13", "ScatterElements", []*ir.Attr{strA("reduction", "add")}, 13, nil, "reduction"},
		{"scatterelements max opset 16", "ScatterElements", []*ir.Attr{strA("reduction", "max")}, 16, nil, "reduction"},
		{"scatterelements max opset 18", "ScatterElements", []*ir.Attr{strA("reduction", "max")}, 18, ops.ScatterElementsAttrs{Reduction: "max"}, ""},
		{"scatter ignores reduction", "Scatter", []*ir.Attr{intA("axis", 1)}, 9, ops.ScatterElementsAttrs{Axis: 1, Reduction: "none"}, ""},
		{"scatternd mul opset 16", "ScatterND", []*ir.Attr{strA("reduction", "mul")}, 16, ops.ScatterNDAttrs{Reduction: "mul"}, ""},
		{"scatternd bogus", "ScatterND", []*ir.Attr{strA("reduction", "sum")}, 18, nil, "reduction"},
		{"depthtospace default", "DepthToSpace", []*ir.Attr{intA("blocksize", 2)}, 13, ops.DepthSpaceAttrs{BlockSize: 2}, ""},
		{"depthtospace CRD", "DepthToSpace", []*ir.Attr{intA("blocksize", 3), strA("mode", "CRD")}, 13, ops.DepthSpaceAttrs{BlockSize: 3, CRD: true}, ""},
		{"depthtospace bad mode", "DepthToSpace", []*ir.Attr{intA("blocksize", 2), strA("mode", "XYZ")}, 13, nil, "mode"},
		{"spacetodepth ignores mode", "SpaceToDepth", []*ir.Attr{intA("blocksize", 2), strA("mode", "CRD")}, 13, ops.DepthSpaceAttrs{BlockSize: 2}, ""},
		{"spacetodepth no blocksize", "SpaceToDepth", nil, 13, nil, "blocksize"},
		{"depthtospace blocksize 0", "DepthToSpace", []*ir.Attr{intA("blocksize", 0)}, 13, nil, "blocksize"},
		{"pad opset 11", "Pad", nil, 11, ops.PadAttrs{Mode: "constant"}, ""},
		{"pad opset 2", "Pad", []*ir.Attr{intsA("pads", 0, 1, 0, 1), floatA("value", 2), strA("mode", "edge")}, 2, ops.PadAttrs{Mode: "edge", FromAttrs: true, Pads: []int64{0, 1, 0, 1}, Value: 2}, ""},
		{"pad opset 1 paddings", "Pad", []*ir.Attr{intsA("paddings", 1, 1)}, 1, ops.PadAttrs{Mode: "constant", FromAttrs: true, Pads: []int64{1, 1}}, ""},
		{"pad opset 2 no pads", "Pad", []*ir.Attr{intsA("paddings", 1, 1)}, 2, nil, "pads"},
		{"pad wrap opset 19", "Pad", []*ir.Attr{strA("mode", "wrap")}, 19, ops.PadAttrs{Mode: "wrap"}, ""},
		{"pad wrap opset 18", "Pad", []*ir.Attr{strA("mode", "wrap")}, 18, nil, "mode"},
		{"trilu default", "Trilu", nil, 14, ops.TriluAttrs{Upper: true}, ""},
		{"trilu lower", "Trilu", []*ir.Attr{intA("upper", 0)}, 14, ops.TriluAttrs{}, ""},
		{"eyelike default", "EyeLike", nil, 9, ops.EyeLikeAttrs{}, ""},
		{"eyelike k dtype", "EyeLike", []*ir.Attr{intA("k", -1), intA("dtype", int64(tensor.Int32))}, 9, ops.EyeLikeAttrs{K: -1, DType: tensor.Int32}, ""},
		{"eyelike string", "EyeLike", []*ir.Attr{intA("dtype", int64(tensor.String))}, 9, nil, "dtype"},
		{"reversesequence default", "ReverseSequence", nil, 10, ops.ReverseSequenceAttrs{BatchAxis: 1}, ""},
		{"reversesequence swapped", "ReverseSequence", []*ir.Attr{intA("batch_axis", 0), intA("time_axis", 1)}, 10, ops.ReverseSequenceAttrs{TimeAxis: 1}, ""},
		{"reversesequence same axes", "ReverseSequence", []*ir.Attr{intA("batch_axis", 0)}, 10, nil, "batch_axis"},
		{"slice opset 13", "Slice", []*ir.Attr{intsA("starts", 1)}, 13, ops.SliceAttrs{}, ""},
		{"slice opset 1", "Slice", []*ir.Attr{intsA("starts", 1, 0), intsA("ends", 3, -1), intsA("axes", 0, 2)}, 1, ops.SliceAttrs{FromAttrs: true, Starts: []int64{1, 0}, Ends: []int64{3, -1}, Axes: []int64{0, 2}}, ""},
		{"slice opset 1 no ends", "Slice", []*ir.Attr{intsA("starts", 1)}, 1, nil, "starts"},
		{"slice opset 1 lengths", "Slice", []*ir.Attr{intsA("starts", 1), intsA("ends", 2, 3)}, 1, nil, "ends"},
		{"flatten default", "Flatten", nil, 13, ops.FlattenAttrs{Axis: 1}, ""},
		{"flatten axis 0", "Flatten", []*ir.Attr{intA("axis", 0)}, 13, ops.FlattenAttrs{}, ""},
		{"squeeze opset 11 all", "Squeeze", nil, 11, ops.SqueezeAttrs{FromAttrs: true}, ""},
		{"unsqueeze opset 11", "Unsqueeze", []*ir.Attr{intsA("axes", 0, -1)}, 11, ops.SqueezeAttrs{FromAttrs: true, Axes: []int64{0, -1}}, ""},
		{"unsqueeze opset 11 no axes", "Unsqueeze", nil, 11, nil, "axes"},
		{"unsqueeze opset 13", "Unsqueeze", nil, 13, ops.SqueezeAttrs{}, ""},
		{"shape opset 13 ignores start", "Shape", []*ir.Attr{intA("start", 1)}, 13, ops.ShapeAttrs{End: 1 << 62}, ""},
		{"shape opset 15", "Shape", []*ir.Attr{intA("start", 1), intA("end", -1)}, 15, ops.ShapeAttrs{Start: 1, End: -1}, ""},
		{"compress no axis", "Compress", nil, 11, ops.OptionalAxisAttrs{}, ""},
		{"compress axis", "Compress", []*ir.Attr{intA("axis", -1)}, 11, ops.OptionalAxisAttrs{HasAxis: true, Axis: -1}, ""},
		{"unique default", "Unique", nil, 11, ops.OptionalAxisAttrs{Sorted: true}, ""},
		{"unique unsorted axis", "Unique", []*ir.Attr{intA("sorted", 0), intA("axis", 1)}, 11, ops.OptionalAxisAttrs{HasAxis: true, Axis: 1}, ""},
	})
}

// TestTypedOps: the ops whose attributes are typed (Def.Attrs), for
// engine/ONE-ENGINE.md's count, and the ops that are not: exactly those
// ONNX gives no attributes (beyond opset 1-5's "consumed_inputs", which
// has no effect), so that an op added with attributes must be typed or
// listed here as an exception.
func TestTypedOps(t *testing.T) {
	var typed, untyped []string
	for _, op := range ops.Types() {
		if d, _ := ops.Lookup("", op); d.Attrs != nil {
			typed = append(typed, op)
		} else {
			untyped = append(untyped, op)
		}
	}
	noAttrs := []string{"Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "BitwiseNot", "Ceil", "Cos", "Cosh",
		"Det", "DynamicQuantizeLinear", "Erf", "Exp", "Expand", "Floor", "GlobalAveragePool", "GlobalMaxPool", "Identity",
		"IsNaN", "Log", "MatMul", "MatMulInteger", "Max", "Mean", "Min", "Mish", "Neg", "NonZero", "Not",
		"OptionalGetElement", "OptionalHasElement", "PRelu", "QLinearMatMul", "Range", "Reciprocal", "Relu", "Round",
		"SequenceAt", "SequenceConstruct", "SequenceErase", "SequenceInsert", "SequenceLength", "Sigmoid", "Sign", "Sin",
		"Sinh", "Size", "Softplus", "Softsign", "Sqrt", "Sum", "Tan", "Tanh", "Tile", "Where"}
	if !slices.Equal(untyped, noAttrs) {
		t.Errorf("untyped ops (%d): %v\nwant only the ops without attributes %v", len(untyped), untyped, noAttrs)
	}
	want := []string{"Add", "And", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Bernoulli", "BitShift",
		"BitwiseAnd", "BitwiseOr", "BitwiseXor", "BlackmanWindow", "Cast", "CastLike", "Celu", "Clip", "Compress", "Concat",
		"ConcatFromSequence", "Constant", "ConstantOfShape", "Conv", "ConvInteger", "ConvTranspose", "CumSum", "DFT",
		"DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "EyeLike", "Flatten", "GRU",
		"Gather", "GatherElements", "GatherND", "Gelu", "Gemm", "GlobalLpPool", "Greater", "GreaterOrEqual", "GridSample",
		"GroupNormalization", "HammingWindow", "HannWindow", "HardSigmoid", "HardSwish", "Hardmax", "If",
		"InstanceNormalization", "IsInf", "LRN", "LSTM", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual",
		"LogSoftmax", "Loop", "LpNormalization", "LpPool", "MaxPool", "MaxRoiPool", "MaxUnpool",
		"MeanVarianceNormalization", "MelWeightMatrix", "Mod", "Mul", "Multinomial", "NegativeLogLikelihoodLoss",
		"NonMaxSuppression", "OneHot", "Optional", "Or", "Pad", "Pow", "QLinearConv", "QuantizeLinear", "RNN",
		"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "ReduceL1", "ReduceL2", "ReduceLogSum",
		"ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Reshape",
		"Resize", "ReverseSequence", "RoiAlign", "STFT", "Scan", "Scatter", "ScatterElements", "ScatterND", "Selu",
		"SequenceEmpty", "SequenceMap", "Shape", "Shrink", "Slice", "Softmax", "SoftmaxCrossEntropyLoss", "SpaceToDepth",
		"Split", "SplitToSequence", "Squeeze", "StringNormalizer", "Sub", "TfIdfVectorizer", "ThresholdedRelu", "TopK",
		"Transpose", "Trilu", "Unique", "Unsqueeze", "Upsample", "Xor"}
	if !slices.Equal(typed, want) {
		t.Errorf("typed ops (%d of %d): %v\nwant %v", len(typed), len(ops.Types()), typed, want)
	}
	t.Logf("%d of %d default-domain ops have typed attributes; the other %d have none", len(typed), len(ops.Types()), len(untyped))
	// kiln's own ops (the optimizer's fused forms) are all typed
	for _, op := range []string{"Attention", "FusedConv", "FusedMatMul", "Gelu", "LayerNormalization", "MultiHeadAttention",
		"QConv", "QMatMul", "SkipLayerNormalization"} {
		if d, ok := ops.Lookup("kiln", op); !ok || d.Attrs == nil {
			t.Errorf("kiln::%s: registered %v, typed %v", op, ok, ok && d.Attrs != nil)
		}
	}
}
