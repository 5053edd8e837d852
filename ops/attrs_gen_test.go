package ops_test

import (
	"math"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

func tensorA(name string, v *tensor.Tensor) *ir.Attr {
	return &ir.Attr{Name: name, Type: ir.AttrTensor, T: v}
}
func graphA(name string, g *ir.Graph) *ir.Attr {
	return &ir.Attr{Name: name, Type: ir.AttrGraph, G: g}
}

// scalarF32 and scalarI64 are the rank-0 tensors Constant's value_float
// and value_int make.
func scalarF32(v float32) *tensor.Tensor {
	t := tensor.FromFloat32([]float32{v})
	t.Shape = []int{}
	return t
}

func scalarI64(v int64) *tensor.Tensor {
	t := tensor.FromInt64([]int64{v})
	t.Shape = []int{}
	return t
}

// TestGenAttrs: the typed attributes of the ops that make a tensor from
// their attributes (Constant, ConstantOfShape, the random generators, the
// windows), Reshape's and CastLike's, with the ONNX defaults per opset.
func TestGenAttrs(t *testing.T) {
	two := tensor.FromInt64([]int64{2}, 1)
	i32 := tensor.New(tensor.Int32, 1)
	empty := tensor.FromFloat32(nil, 0)
	short := &tensor.Tensor{DType: tensor.Float32, Shape: []int{1}}
	runAttrCases(t, []attrCase{
		{"constant value", "Constant", []*ir.Attr{tensorA("value", two)}, 13, ops.ConstantAttrs{Value: two}, ""},
		{"constant value_float", "Constant", []*ir.Attr{floatA("value_float", 1.5)}, 13, ops.ConstantAttrs{Value: scalarF32(1.5)}, ""},
		{"constant value_floats", "Constant", []*ir.Attr{floatsA("value_floats", 1, 2)}, 13, ops.ConstantAttrs{Value: tensor.FromFloat32([]float32{1, 2}, 2)}, ""},
		{"constant value_int", "Constant", []*ir.Attr{intA("value_int", 7)}, 13, ops.ConstantAttrs{Value: scalarI64(7)}, ""},
		{"constant value_ints", "Constant", []*ir.Attr{intsA("value_ints", 3, 4, 5)}, 13, ops.ConstantAttrs{Value: tensor.FromInt64([]int64{3, 4, 5}, 3)}, ""},
		{"constant value_string", "Constant", []*ir.Attr{strA("value_string", "a")}, 13, ops.ConstantAttrs{Value: &tensor.Tensor{DType: tensor.String, Shape: []int{}, Strings: []string{"a"}}}, ""},
		{"constant value_strings", "Constant", []*ir.Attr{stringsA("value_strings", "a", "b")}, 13, ops.ConstantAttrs{Value: &tensor.Tensor{DType: tensor.String, Shape: []int{2}, Strings: []string{"a", "b"}}}, ""},
		{"constant no value", "Constant", nil, 13, nil, "value"},
		{"constant two values", "Constant", []*ir.Attr{tensorA("value", two), intA("value_int", 1)}, 13, nil, "value_int"},
		{"constant sparse", "Constant", []*ir.Attr{{Name: "sparse_value", Type: ir.AttrTensor}}, 13, nil, "sparse_value"},
		{"constant mistyped value_int", "Constant", []*ir.Attr{floatA("value_int", 1)}, 13, nil, "value_int"},
		{"constant empty value", "Constant", []*ir.Attr{{Name: "value", Type: ir.AttrTensor}}, 13, nil, "value"},
		{"constantofshape default", "ConstantOfShape", nil, 9, ops.ConstantOfShapeAttrs{Value: tensor.New(tensor.Float32)}, ""},
		{"constantofshape int32", "ConstantOfShape", []*ir.Attr{tensorA("value", i32)}, 9, ops.ConstantOfShapeAttrs{Value: i32}, ""},
		{"constantofshape two elements", "ConstantOfShape", []*ir.Attr{tensorA("value", tensor.FromFloat32([]float32{1, 2}, 2))}, 9, nil, "value"},
		{"constantofshape no elements", "ConstantOfShape", []*ir.Attr{tensorA("value", empty)}, 9, nil, "value"},
		{"constantofshape short data", "ConstantOfShape", []*ir.Attr{tensorA("value", short)}, 9, nil, "value"},
		{"reshape opset 13", "Reshape", nil, 13, ops.ReshapeAttrs{}, ""},
		{"reshape allowzero", "Reshape", []*ir.Attr{intA("allowzero", 1)}, 14, ops.ReshapeAttrs{AllowZero: true}, ""},
		{"reshape opset 13 ignores shape", "Reshape", []*ir.Attr{intsA("shape", 2, 3)}, 13, ops.ReshapeAttrs{}, ""},
		{"reshape opset 1 shape", "Reshape", []*ir.Attr{intsA("shape", 2, -1)}, 1, ops.ReshapeAttrs{FromAttrs: true, Shape: []int64{2, -1}}, ""},
		{"reshape opset 4 no shape", "Reshape", nil, 4, nil, "shape"},
		{"reshape mistyped allowzero", "Reshape", []*ir.Attr{floatA("allowzero", 1)}, 14, nil, "allowzero"},
		{"castlike opset 15", "CastLike", []*ir.Attr{intA("saturate", 0)}, 15, ops.CastLikeAttrs{}, ""},
		{"castlike opset 19 default", "CastLike", nil, 19, ops.CastLikeAttrs{Saturate: true}, ""},
		{"castlike opset 19 saturate 0", "CastLike", []*ir.Attr{intA("saturate", 0)}, 19, ops.CastLikeAttrs{}, ""},
		{"castlike mistyped saturate", "CastLike", []*ir.Attr{strA("saturate", "yes")}, 19, nil, "saturate"},
		{"randomnormal default", "RandomNormal", []*ir.Attr{intsA("shape", 2, 3)}, 1, ops.RandomAttrs{Scale: 1, DType: tensor.Float32, Shape: []int64{2, 3}}, ""},
		{"randomnormal seeded", "RandomNormal", []*ir.Attr{intsA("shape", 2), floatA("seed", 5), floatA("mean", 1), intA("dtype", int64(tensor.Float64))}, 1, ops.RandomAttrs{Mean: 1, Scale: 1, Seeded: true, Seed: 5, DType: tensor.Float64, Shape: []int64{2}}, ""},
		{"randomnormal no shape", "RandomNormal", nil, 1, nil, "shape"},
		{"randomnormal negative shape", "RandomNormal", []*ir.Attr{intsA("shape", 2, -1)}, 1, nil, "shape"},
		{"randomnormal int dtype", "RandomNormal", []*ir.Attr{intsA("shape", 2), intA("dtype", int64(tensor.Int32))}, 1, nil, "dtype"},
		{"randomuniform default", "RandomUniform", []*ir.Attr{intsA("shape", 4)}, 1, ops.RandomAttrs{High: 1, DType: tensor.Float32, Shape: []int64{4}}, ""},
		{"randomuniform empty range", "RandomUniform", []*ir.Attr{intsA("shape", 4), floatA("low", 2), floatA("high", 1)}, 1, nil, "high"},
		{"randomuniformlike default", "RandomUniformLike", nil, 1, ops.RandomAttrs{High: 1}, ""},
		{"randomuniformlike empty range", "RandomUniformLike", []*ir.Attr{floatA("low", 2)}, 1, nil, "high"},
		{"randomnormallike dtype", "RandomNormalLike", []*ir.Attr{intA("dtype", int64(tensor.Float16))}, 1, ops.RandomAttrs{Scale: 1, DType: tensor.Float16}, ""},
		{"randomnormallike string dtype", "RandomNormalLike", []*ir.Attr{intA("dtype", int64(tensor.String))}, 1, nil, "dtype"},
		{"bernoulli default", "Bernoulli", nil, 15, ops.RandomAttrs{}, ""},
		{"bernoulli bool", "Bernoulli", []*ir.Attr{intA("dtype", int64(tensor.Bool)), floatA("seed", 1)}, 15, ops.RandomAttrs{DType: tensor.Bool, Seeded: true, Seed: 1}, ""},
		{"bernoulli string", "Bernoulli", []*ir.Attr{intA("dtype", int64(tensor.String))}, 15, nil, "dtype"},
		{"multinomial default", "Multinomial", nil, 7, ops.RandomAttrs{DType: tensor.Int32, SampleSize: 1}, ""},
		{"multinomial int64", "Multinomial", []*ir.Attr{intA("dtype", int64(tensor.Int64)), intA("sample_size", 4)}, 7, ops.RandomAttrs{DType: tensor.Int64, SampleSize: 4}, ""},
		{"multinomial float", "Multinomial", []*ir.Attr{intA("dtype", int64(tensor.Float32))}, 7, nil, "dtype"},
		{"multinomial sample_size 0", "Multinomial", []*ir.Attr{intA("sample_size", 0)}, 7, nil, "sample_size"},
		{"hannwindow default", "HannWindow", nil, 17, ops.WindowFnAttrs{DType: tensor.Float32, Periodic: true}, ""},
		{"hammingwindow symmetric double", "HammingWindow", []*ir.Attr{intA("periodic", 0), intA("output_datatype", int64(tensor.Float64))}, 17, ops.WindowFnAttrs{DType: tensor.Float64}, ""},
		{"blackmanwindow bool", "BlackmanWindow", []*ir.Attr{intA("output_datatype", int64(tensor.Bool))}, 17, nil, "output_datatype"},
		{"melweightmatrix default", "MelWeightMatrix", nil, 17, ops.WindowFnAttrs{DType: tensor.Float32}, ""},
		{"melweightmatrix int", "MelWeightMatrix", []*ir.Attr{intA("output_datatype", int64(tensor.Int64))}, 17, ops.WindowFnAttrs{DType: tensor.Int64}, ""},
		{"melweightmatrix string", "MelWeightMatrix", []*ir.Attr{intA("output_datatype", int64(tensor.String))}, 17, nil, "output_datatype"},
	})
}

// TestControlAttrs: the control-flow, sequence and optional ops' typed
// attributes.
func TestControlAttrs(t *testing.T) {
	g := &ir.Graph{Name: "body"}
	h := &ir.Graph{Name: "else"}
	optType := ir.Type{DType: tensor.Float32}
	runAttrCases(t, []attrCase{
		{"if", "If", []*ir.Attr{graphA("then_branch", g), graphA("else_branch", h)}, 13, ops.IfAttrs{Then: g, Else: h}, ""},
		{"if no else", "If", []*ir.Attr{graphA("then_branch", g)}, 13, nil, "else_branch"},
		{"if mistyped then", "If", []*ir.Attr{intA("then_branch", 1), graphA("else_branch", h)}, 13, nil, "then_branch"},
		{"loop", "Loop", []*ir.Attr{graphA("body", g)}, 13, ops.BodyAttrs{Body: g}, ""},
		{"loop no body", "Loop", nil, 13, nil, "body"},
		{"sequencemap no body", "SequenceMap", nil, 17, nil, "body"},
		{"scan opset 9 default", "Scan", []*ir.Attr{graphA("body", g), intA("num_scan_inputs", 1)}, 9, ops.ScanAttrs{Body: g, NumScanInputs: 1}, ""},
		{"scan opset 11 lists", "Scan", []*ir.Attr{graphA("body", g), intA("num_scan_inputs", 2), intsA("scan_input_axes", 0, 1),
			intsA("scan_input_directions", 1, 0), intsA("scan_output_axes", -1), intsA("scan_output_directions", 1)}, 11,
			ops.ScanAttrs{Body: g, NumScanInputs: 2, InputAxes: []int64{0, 1}, InputDirections: []int64{1, 0}, OutputAxes: []int64{-1}, OutputDirections: []int64{1}}, ""},
		{"scan opset 8 directions", "Scan", []*ir.Attr{graphA("body", g), intA("num_scan_inputs", 1), intsA("directions", 1), intsA("scan_input_axes", 2)}, 8,
			ops.ScanAttrs{Body: g, NumScanInputs: 1, Opset8: true, InputDirections: []int64{1}}, ""},
		{"scan no num_scan_inputs", "Scan", []*ir.Attr{graphA("body", g)}, 11, nil, "num_scan_inputs"},
		{"scan direction 2", "Scan", []*ir.Attr{graphA("body", g), intA("num_scan_inputs", 1), intsA("scan_input_directions", 2)}, 11, nil, "scan_input_directions"},
		{"scan opset 8 direction -1", "Scan", []*ir.Attr{graphA("body", g), intA("num_scan_inputs", 1), intsA("directions", -1)}, 8, nil, "directions"},
		{"scan output direction 3", "Scan", []*ir.Attr{graphA("body", g), intA("num_scan_inputs", 1), intsA("scan_output_directions", 3)}, 11, nil, "scan_output_directions"},
		{"sequenceempty default", "SequenceEmpty", nil, 11, ops.SequenceEmptyAttrs{DType: tensor.Float32}, ""},
		{"sequenceempty int64", "SequenceEmpty", []*ir.Attr{intA("dtype", int64(tensor.Int64))}, 11, ops.SequenceEmptyAttrs{DType: tensor.Int64}, ""},
		{"sequenceempty bad dtype", "SequenceEmpty", []*ir.Attr{intA("dtype", 99)}, 11, nil, "dtype"},
		{"splittosequence default", "SplitToSequence", nil, 11, ops.SplitToSequenceAttrs{KeepDims: true}, ""},
		{"splittosequence axis", "SplitToSequence", []*ir.Attr{intA("axis", -1), intA("keepdims", 0)}, 11, ops.SplitToSequenceAttrs{Axis: -1}, ""},
		{"concatfromsequence", "ConcatFromSequence", []*ir.Attr{intA("axis", 1)}, 11, ops.ConcatFromSequenceAttrs{Axis: 1}, ""},
		{"concatfromsequence new_axis", "ConcatFromSequence", []*ir.Attr{intA("axis", -1), intA("new_axis", 1)}, 11, ops.ConcatFromSequenceAttrs{Axis: -1, NewAxis: true}, ""},
		{"concatfromsequence no axis", "ConcatFromSequence", nil, 11, nil, "axis"},
		{"concatfromsequence new_axis 2", "ConcatFromSequence", []*ir.Attr{intA("axis", 0), intA("new_axis", 2)}, 11, nil, "new_axis"},
		{"optional type", "Optional", []*ir.Attr{{Name: "type", Type: ir.AttrType1, Types: []ir.Type{optType}}}, 15, ops.OptionalAttrs{Type: &optType}, ""},
		{"optional no input no type", "Optional", nil, 15, nil, "type"},
		{"optional two types", "Optional", []*ir.Attr{{Name: "type", Type: ir.AttrTypes, Types: []ir.Type{optType, optType}}}, 15, nil, "type"},
	})
}

// TestTextAttrs: StringNormalizer's and TfIdfVectorizer's typed
// attributes, and TfIdfVectorizer's consistency rules.
func TestTextAttrs(t *testing.T) {
	tf := func(extra ...*ir.Attr) []*ir.Attr {
		return append([]*ir.Attr{strA("mode", "TF"), intA("min_gram_length", 1), intA("max_gram_length", 2)}, extra...)
	}
	runAttrCases(t, []attrCase{
		{"stringnormalizer default", "StringNormalizer", nil, 10, ops.StringNormalizerAttrs{CaseChange: "NONE"}, ""},
		{"stringnormalizer lower", "StringNormalizer", []*ir.Attr{strA("case_change_action", "LOWER"), intA("is_case_sensitive", 1), stringsA("stopwords", "a"), strA("locale", "en_US")}, 10,
			ops.StringNormalizerAttrs{CaseChange: "LOWER", CaseSensitive: true, Stopwords: []string{"a"}, Locale: "en_US"}, ""},
		{"stringnormalizer bad action", "StringNormalizer", []*ir.Attr{strA("case_change_action", "TITLE")}, 10, nil, "case_change_action"},
		{"tfidf", "TfIdfVectorizer", tf(intsA("ngram_counts", 0, 2), intsA("pool_int64s", 1, 2, 1, 2), intsA("ngram_indexes", 0, 1, 2)), 9,
			ops.TfIdfVectorizerAttrs{Mode: "TF", MinGramLength: 1, MaxGramLength: 2, NgramCounts: []int64{0, 2}, PoolInt64s: []int64{1, 2, 1, 2}, NgramIndexes: []int64{0, 1, 2}}, ""},
		{"tfidf strings weights", "TfIdfVectorizer", tf(intsA("ngram_counts", 0), stringsA("pool_strings", "a", "b"), intsA("ngram_indexes", 1, 0), floatsA("weights", 0.5, 2)), 9,
			ops.TfIdfVectorizerAttrs{Mode: "TF", MinGramLength: 1, MaxGramLength: 2, NgramCounts: []int64{0}, PoolStrings: []string{"a", "b"}, NgramIndexes: []int64{1, 0}, Weights: []float32{0.5, 2}}, ""},
		{"tfidf no mode", "TfIdfVectorizer", []*ir.Attr{intA("min_gram_length", 1), intA("max_gram_length", 1)}, 9, nil, "mode"},
		{"tfidf gram lengths", "TfIdfVectorizer", []*ir.Attr{strA("mode", "IDF"), intA("min_gram_length", 2), intA("max_gram_length", 1)}, 9, nil, "max_gram_length"},
		{"tfidf negative skip", "TfIdfVectorizer", tf(intA("max_skip_count", -1)), 9, nil, "max_skip_count"},
		{"tfidf two pools", "TfIdfVectorizer", tf(intsA("pool_int64s", 1), stringsA("pool_strings", "a")), 9, nil, "pool_int64s"},
		{"tfidf no pool", "TfIdfVectorizer", tf(), 9, nil, "pool_int64s"},
		{"tfidf odd 2-grams", "TfIdfVectorizer", tf(intsA("ngram_counts", 0, 1), intsA("pool_int64s", 1, 2, 3, 4), intsA("ngram_indexes", 0, 1)), 9, nil, "ngram_counts"},
		{"tfidf indexes count", "TfIdfVectorizer", tf(intsA("ngram_counts", 0), intsA("pool_int64s", 1, 2), intsA("ngram_indexes", 0)), 9, nil, "ngram_indexes"},
		{"tfidf index range", "TfIdfVectorizer", tf(intsA("ngram_counts", 0), intsA("pool_int64s", 1), intsA("ngram_indexes", -1)), 9, nil, "ngram_indexes"},
		{"tfidf weights count", "TfIdfVectorizer", tf(intsA("ngram_counts", 0), intsA("pool_int64s", 1), intsA("ngram_indexes", 0), floatsA("weights", 1, 2)), 9, nil, "weights"},
	})
}

// TestFusedAttrs: the typed attributes of kiln's own ops (domain "kiln",
// written by the optimizer): a convolution's window and group, the
// activation epilogue, the quantization scales, the attention heads.
func TestFusedAttrs(t *testing.T) {
	inf := float32(math.Inf(1))
	conv := ops.ConvAttrs{Group: 1}
	conv2 := ops.ConvAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{3, 3}, Strides: []int64{2, 2}}, Group: 2}
	runAttrCases(t, []attrCase{
		{"fusedconv default", "kiln::FusedConv", nil, 1, ops.FusedConvAttrs{ConvAttrs: conv}, ""},
		{"fusedconv relu", "kiln::FusedConv", []*ir.Attr{intsA("kernel_shape", 3, 3), intsA("strides", 2, 2), intA("group", 2), strA("activation", "Relu")}, 1,
			ops.FusedConvAttrs{ConvAttrs: conv2, EpilogueAttrs: ops.EpilogueAttrs{Activation: "Relu"}}, ""},
		{"fusedconv clip default", "kiln::FusedConv", []*ir.Attr{strA("activation", "Clip")}, 1,
			ops.FusedConvAttrs{ConvAttrs: conv, EpilogueAttrs: ops.EpilogueAttrs{Activation: "Clip", P0: -inf, P1: inf}}, ""},
		{"fusedconv group 0", "kiln::FusedConv", []*ir.Attr{intA("group", 0)}, 1, nil, "group"},
		{"fusedconv bad activation", "kiln::FusedConv", []*ir.Attr{strA("activation", "Swish")}, 1, nil, "activation"},
		{"fusedconv empty clip", "kiln::FusedConv", []*ir.Attr{strA("activation", "Clip"), floatsA("activation_params", 6, 0)}, 1, nil, "activation_params"},
		{"fusedconv bad stride", "kiln::FusedConv", []*ir.Attr{intsA("strides", 0, 1)}, 1, nil, "strides"},
		{"fusedmatmul leakyrelu", "kiln::FusedMatMul", []*ir.Attr{strA("activation", "LeakyRelu")}, 1,
			ops.FusedMatMulAttrs{EpilogueAttrs: ops.EpilogueAttrs{Activation: "LeakyRelu", P0: 0.01}}, ""},
		{"fusedmatmul mistyped params", "kiln::FusedMatMul", []*ir.Attr{strA("activation", "HardSigmoid"), floatA("activation_params", 1)}, 1, nil, "activation_params"},
		{"qconv", "kiln::QConv", []*ir.Attr{floatA("x_scale", 0.5), intsA("kernel_shape", 3, 3), intsA("strides", 2, 2), intA("group", 2)}, 1,
			ops.QConvAttrs{ConvAttrs: conv2, XScale: 0.5}, ""},
		{"qconv no x_scale", "kiln::QConv", nil, 1, nil, "x_scale"},
		{"qconv zero x_scale", "kiln::QConv", []*ir.Attr{floatA("x_scale", 0)}, 1, nil, "x_scale"},
		{"qconv infinite x_scale", "kiln::QConv", []*ir.Attr{floatA("x_scale", inf)}, 1, nil, "x_scale"},
		{"qmatmul", "kiln::QMatMul", []*ir.Attr{floatA("a_scale", 0.25), strA("activation", "Relu")}, 1,
			ops.QMatMulAttrs{EpilogueAttrs: ops.EpilogueAttrs{Activation: "Relu"}, AScale: 0.25}, ""},
		{"qmatmul no a_scale", "kiln::QMatMul", nil, 1, nil, "a_scale"},
		{"mha", "kiln::MultiHeadAttention", []*ir.Attr{intA("num_heads", 12)}, 1, ops.MultiHeadAttentionAttrs{NumHeads: 12}, ""},
		{"mha scale", "kiln::MultiHeadAttention", []*ir.Attr{intA("num_heads", 2), floatA("scale", 0.125)}, 1, ops.MultiHeadAttentionAttrs{NumHeads: 2, Scale: 0.125, ScaleSet: true}, ""},
		{"mha no heads", "kiln::MultiHeadAttention", nil, 1, nil, "num_heads"},
		{"skiplayernorm default", "kiln::SkipLayerNormalization", nil, 1, ops.EpsilonAttrs{Epsilon: 1e-5}, ""},
		{"skiplayernorm negative epsilon", "kiln::SkipLayerNormalization", []*ir.Attr{floatA("epsilon", -1)}, 1, nil, "epsilon"},
		{"gelu tanh", "kiln::Gelu", []*ir.Attr{strA("approximate", "tanh")}, 1, ops.ActivationAttrs{Tanh: true}, ""},
		{"gelu bad approximate", "kiln::Gelu", []*ir.Attr{strA("approximate", "erf")}, 1, nil, "approximate"},
		{"layernorm as opset 17", "kiln::LayerNormalization", nil, 1, ops.LayerNormAttrs{Axis: -1, Epsilon: 1e-5, StashType: tensor.Float32}, ""},
		{"attention", "kiln::Attention", nil, 1, ops.FusedAttentionAttrs{Scale: 1}, ""},
	})
}
