package ops_test

import (
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

func floatsA(name string, v ...float32) *ir.Attr {
	return &ir.Attr{Name: name, Type: ir.AttrFloats, Floats: v}
}

// TestConvPoolAttrs: the convolutions', the pools' and Gemm's typed
// attributes, with the ONNX defaults and each opset's rules.
func TestConvPoolAttrs(t *testing.T) {
	win := ops.WindowAttrs{KernelShape: []int64{3, 3}, Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}}
	pool := []*ir.Attr{intsA("kernel_shape", 3, 3), intsA("strides", 2, 2), intsA("pads", 1, 1, 1, 1)}
	runAttrCases(t, []attrCase{
		{"conv default", "Conv", nil, 11, ops.ConvAttrs{Group: 1}, ""},
		{"conv opset 1", "Conv", []*ir.Attr{intA("group", 2), intsA("dilations", 2)}, 1, ops.ConvAttrs{WindowAttrs: ops.WindowAttrs{Dilations: []int64{2}}, Group: 2}, ""},
		{"conv same_lower", "Conv", []*ir.Attr{strA("auto_pad", "SAME_LOWER"), intsA("pads", 1, 1)}, 11, ops.ConvAttrs{WindowAttrs: ops.WindowAttrs{AutoPad: ops.AutoPadSameLower, Pads: []int64{1, 1}}, Group: 1}, ""},
		{"conv empty auto_pad", "Conv", []*ir.Attr{strA("auto_pad", "")}, 11, ops.ConvAttrs{Group: 1}, ""},
		{"conv empty pads", "Conv", []*ir.Attr{intsA("pads")}, 11, ops.ConvAttrs{WindowAttrs: ops.WindowAttrs{Pads: []int64{}}, Group: 1}, ""},
		{"conv ignores ceil_mode", "Conv", []*ir.Attr{intA("ceil_mode", 1)}, 11, ops.ConvAttrs{Group: 1}, ""},
		{"conv group 0", "Conv", []*ir.Attr{intA("group", 0)}, 11, nil, "group"},
		{"conv bad auto_pad", "Conv", []*ir.Attr{strA("auto_pad", "SAME")}, 11, nil, "auto_pad"},
		{"conv stride 0", "Conv", []*ir.Attr{intsA("strides", 1, 0)}, 11, nil, "strides"},
		{"conv dilation 0", "Conv", []*ir.Attr{intsA("dilations", 0)}, 11, nil, "dilations"},
		{"conv negative pad", "Conv", []*ir.Attr{intsA("pads", 0, -1)}, 11, nil, "pads"},
		{"conv odd pads", "Conv", []*ir.Attr{intsA("pads", 0, 1, 1)}, 11, nil, "pads"},
		{"conv kernel 0", "Conv", []*ir.Attr{intsA("kernel_shape", 3, 0)}, 11, nil, "kernel_shape"},
		{"conv strides for kernel", "Conv", []*ir.Attr{intsA("kernel_shape", 3, 3), intsA("strides", 1)}, 11, nil, "strides"},
		{"conv pads for kernel", "Conv", []*ir.Attr{intsA("kernel_shape", 3), intsA("pads", 1, 1, 1, 1)}, 11, nil, "pads"},
		{"conv mistyped group", "Conv", []*ir.Attr{floatA("group", 1)}, 11, nil, "group"},
		{"convinteger", "ConvInteger", []*ir.Attr{intsA("kernel_shape", 1, 1)}, 10, ops.ConvAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{1, 1}}, Group: 1}, ""},
		{"qlinearconv group", "QLinearConv", []*ir.Attr{intA("group", 4)}, 10, ops.ConvAttrs{Group: 4}, ""},
		{"qlinearconv group -1", "QLinearConv", []*ir.Attr{intA("group", -1)}, 10, nil, "group"},
		{"convtranspose default", "ConvTranspose", nil, 11, ops.ConvTransposeAttrs{Group: 1}, ""},
		{"convtranspose output", "ConvTranspose", []*ir.Attr{intsA("output_padding", 1, 0), intsA("output_shape", 9, 9), strA("auto_pad", "SAME_UPPER")}, 1,
			ops.ConvTransposeAttrs{WindowAttrs: ops.WindowAttrs{AutoPad: ops.AutoPadSameUpper}, Group: 1, OutputPadding: []int64{1, 0}, OutputShape: []int64{9, 9}}, ""},
		{"convtranspose negative output_padding", "ConvTranspose", []*ir.Attr{intsA("output_padding", -1)}, 11, nil, "output_padding"},
		{"convtranspose negative output_shape", "ConvTranspose", []*ir.Attr{intsA("output_shape", 4, -4)}, 11, nil, "output_shape"},
		{"convtranspose group 0", "ConvTranspose", []*ir.Attr{intA("group", 0)}, 11, nil, "group"},
		{"maxpool", "MaxPool", pool, 12, ops.PoolAttrs{WindowAttrs: win}, ""},
		{"maxpool opset 1", "MaxPool", []*ir.Attr{intsA("kernel_shape", 2)}, 1, ops.PoolAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{2}}}, ""},
		{"maxpool ceil storage", "MaxPool", []*ir.Attr{intsA("kernel_shape", 2), intA("ceil_mode", 1), intA("storage_order", 1), intsA("dilations", 2)}, 10,
			ops.PoolAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{2}, Dilations: []int64{2}, CeilMode: true}, StorageOrder: 1}, ""},
		{"maxpool storage_order 2", "MaxPool", []*ir.Attr{intsA("kernel_shape", 2), intA("storage_order", 2)}, 8, nil, "storage_order"},
		{"maxpool no kernel", "MaxPool", nil, 12, nil, "kernel_shape"},
		{"maxpool empty kernel", "MaxPool", []*ir.Attr{intsA("kernel_shape")}, 12, ops.PoolAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{}}}, ""},
		{"maxpool ignores count_include_pad", "MaxPool", []*ir.Attr{intsA("kernel_shape", 2), intA("count_include_pad", 1)}, 12, ops.PoolAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{2}}}, ""},
		{"averagepool count_include_pad", "AveragePool", []*ir.Attr{intsA("kernel_shape", 2), intA("count_include_pad", 1)}, 7,
			ops.PoolAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{2}}, CountIncludePad: true}, ""},
		{"averagepool valid", "AveragePool", []*ir.Attr{intsA("kernel_shape", 2, 2), strA("auto_pad", "VALID")}, 19,
			ops.PoolAttrs{WindowAttrs: ops.WindowAttrs{AutoPad: ops.AutoPadValid, KernelShape: []int64{2, 2}}}, ""},
		{"averagepool ignores storage_order", "AveragePool", []*ir.Attr{intsA("kernel_shape", 2), intA("storage_order", 5)}, 11, ops.PoolAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{2}}}, ""},
		{"averagepool dilations for kernel", "AveragePool", []*ir.Attr{intsA("kernel_shape", 2), intsA("dilations", 1, 1)}, 19, nil, "dilations"},
		{"lppool opset 1 float p", "LpPool", []*ir.Attr{intsA("kernel_shape", 2), floatA("p", 3)}, 1, ops.PoolAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{2}}, P: 3}, ""},
		{"lppool default p", "LpPool", []*ir.Attr{intsA("kernel_shape", 2)}, 18, ops.PoolAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{2}}, P: 2}, ""},
		{"lppool int p", "LpPool", []*ir.Attr{intsA("kernel_shape", 2), intA("p", 1)}, 11, ops.PoolAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{2}}, P: 1}, ""},
		{"lppool p 0", "LpPool", []*ir.Attr{intsA("kernel_shape", 2), intA("p", 0)}, 11, nil, "p"},
		{"lppool mistyped p", "LpPool", []*ir.Attr{intsA("kernel_shape", 2), strA("p", "2")}, 11, nil, "p"},
		{"globallppool default", "GlobalLpPool", nil, 2, ops.LpPoolAttrs{P: 2}, ""},
		{"globallppool float p", "GlobalLpPool", []*ir.Attr{floatA("p", 1.5)}, 1, ops.LpPoolAttrs{P: 1.5}, ""},
		{"globallppool p -1", "GlobalLpPool", []*ir.Attr{intA("p", -1)}, 2, nil, "p"},
		{"gemm default", "Gemm", nil, 13, ops.GemmAttrs{Alpha: 1, Beta: 1}, ""},
		{"gemm all", "Gemm", []*ir.Attr{floatA("alpha", 0.5), floatA("beta", 0), intA("transA", 1), intA("transB", 1)}, 11, ops.GemmAttrs{Alpha: 0.5, TransA: true, TransB: true}, ""},
		{"gemm opset 6 broadcast", "Gemm", []*ir.Attr{intA("broadcast", 1)}, 6, ops.GemmAttrs{Alpha: 1, Beta: 1, Broadcast: true}, ""},
		{"gemm mistyped alpha", "Gemm", []*ir.Attr{intA("alpha", 2)}, 13, nil, "alpha"},
		{"gemm mistyped broadcast", "Gemm", []*ir.Attr{floatA("broadcast", 1)}, 6, nil, "broadcast"},
	})
}

// TestResizeConcatAttrs: Resize's, Upsample's, Concat's and Split's typed
// attributes, with the ONNX defaults and each opset's rules.
func TestResizeConcatAttrs(t *testing.T) {
	def := ops.ResizeAttrs{Mode: "nearest", CoordinateTransformationMode: "half_pixel", NearestMode: "round_prefer_floor",
		CubicCoeffA: -0.75, KeepAspectRatioPolicy: "stretch"}
	with := func(f func(*ops.ResizeAttrs)) ops.ResizeAttrs { r := def; f(&r); return r }
	runAttrCases(t, []attrCase{
		{"resize opset 10", "Resize", nil, 10, ops.ResizeAttrs{Legacy: true, Mode: "nearest", CoordinateTransformationMode: "asymmetric", CubicCoeffA: -0.75, KeepAspectRatioPolicy: "stretch"}, ""},
		{"resize opset 10 linear", "Resize", []*ir.Attr{strA("mode", "linear"), strA("coordinate_transformation_mode", "bogus")}, 10,
			ops.ResizeAttrs{Legacy: true, Mode: "linear", CoordinateTransformationMode: "asymmetric", CubicCoeffA: -0.75, KeepAspectRatioPolicy: "stretch"}, ""},
		{"resize opset 10 cubic", "Resize", []*ir.Attr{strA("mode", "cubic")}, 10, nil, "mode"},
		{"resize opset 11 default", "Resize", nil, 11, def, ""},
		{"resize opset 13 default", "Resize", nil, 13, def, ""},
		{"resize bilinear", "Resize", []*ir.Attr{strA("mode", "BILINEAR")}, 13, with(func(r *ops.ResizeAttrs) { r.Mode = "linear" }), ""},
		{"resize cubic", "Resize", []*ir.Attr{strA("mode", "cubic"), floatA("cubic_coeff_a", -0.5), intA("exclude_outside", 1), strA("coordinate_transformation_mode", "align_corners")}, 11,
			with(func(r *ops.ResizeAttrs) {
				r.Mode, r.CubicCoeffA, r.ExcludeOutside, r.CoordinateTransformationMode = "cubic", -0.5, true, "align_corners"
			}), ""},
		{"resize crop", "Resize", []*ir.Attr{strA("coordinate_transformation_mode", "tf_crop_and_resize"), floatA("extrapolation_value", 2), strA("nearest_mode", "ceil")}, 13,
			with(func(r *ops.ResizeAttrs) {
				r.CoordinateTransformationMode, r.ExtrapolationValue, r.NearestMode = "tf_crop_and_resize", 2, "ceil"
			}), ""},
		{"resize opset 18", "Resize", []*ir.Attr{strA("mode", "linear"), intA("antialias", 1), intsA("axes", 2, 3), strA("keep_aspect_ratio_policy", "not_larger")}, 18,
			with(func(r *ops.ResizeAttrs) {
				r.Mode, r.Antialias, r.Axes, r.KeepAspectRatioPolicy = "linear", true, []int64{2, 3}, "not_larger"
			}), ""},
		{"resize half_pixel_symmetric", "Resize", []*ir.Attr{strA("coordinate_transformation_mode", "half_pixel_symmetric")}, 19,
			with(func(r *ops.ResizeAttrs) { r.CoordinateTransformationMode = "half_pixel_symmetric" }), ""},
		{"resize bad mode", "Resize", []*ir.Attr{strA("mode", "area")}, 13, nil, "mode"},
		{"resize bad ctm", "Resize", []*ir.Attr{strA("coordinate_transformation_mode", "corners")}, 13, nil, "coordinate_transformation_mode"},
		{"resize bad nearest_mode", "Resize", []*ir.Attr{strA("nearest_mode", "round")}, 13, nil, "nearest_mode"},
		{"resize antialias nearest", "Resize", []*ir.Attr{intA("antialias", 1)}, 18, nil, "antialias"},
		{"resize repeated axes", "Resize", []*ir.Attr{intsA("axes", 1, 1)}, 18, nil, "axes"},
		{"resize bad policy", "Resize", []*ir.Attr{strA("keep_aspect_ratio_policy", "fit")}, 18, nil, "keep_aspect_ratio_policy"},
		{"resize mistyped cubic_coeff_a", "Resize", []*ir.Attr{intA("cubic_coeff_a", 1)}, 13, nil, "cubic_coeff_a"},
		{"upsample opset 7", "Upsample", []*ir.Attr{floatsA("scales", 1, 1, 2, 2)}, 7, ops.UpsampleAttrs{Mode: "nearest", Scales: []float32{1, 1, 2, 2}}, ""},
		{"upsample opset 9", "Upsample", []*ir.Attr{strA("mode", "bilinear"), floatsA("scales", 2)}, 9, ops.UpsampleAttrs{Mode: "linear"}, ""},
		{"upsample opset 7 no scales", "Upsample", nil, 7, nil, "scales"},
		{"upsample opset 7 scale 0", "Upsample", []*ir.Attr{floatsA("scales", 1, 0)}, 7, nil, "scales"},
		{"upsample cubic", "Upsample", []*ir.Attr{strA("mode", "cubic")}, 9, nil, "mode"},
		{"concat opset 1 default", "Concat", nil, 1, ops.ConcatAttrs{Axis: 1}, ""},
		{"concat opset 4 axis", "Concat", []*ir.Attr{intA("axis", 0)}, 4, ops.ConcatAttrs{}, ""},
		{"concat opset 13 negative", "Concat", []*ir.Attr{intA("axis", -1)}, 13, ops.ConcatAttrs{Axis: -1}, ""},
		{"concat opset 4 no axis", "Concat", nil, 4, nil, "axis"},
		{"concat mistyped axis", "Concat", []*ir.Attr{floatA("axis", 1)}, 13, nil, "axis"},
	})
	for _, tt := range []struct {
		name  string
		outs  int
		opset int64
		attrs []*ir.Attr
		want  any
		bad   string
	}{
		{"split opset 1 input", 2, 1, nil, ops.SplitAttrs{SplitInput: 1}, ""},
		{"split opset 1 attribute", 2, 1, []*ir.Attr{intsA("split", 1, 3)}, ops.SplitAttrs{Split: []int64{1, 3}, SplitInput: -1}, ""},
		{"split opset 2 equal", 3, 2, []*ir.Attr{intA("axis", 1)}, ops.SplitAttrs{Axis: 1, SplitInput: -1}, ""},
		{"split opset 11 sizes", 2, 11, []*ir.Attr{intA("axis", -1), intsA("split", 2, 2)}, ops.SplitAttrs{Axis: -1, Split: []int64{2, 2}, SplitInput: -1}, ""},
		{"split opset 13 ignores attribute", 2, 13, []*ir.Attr{intsA("split", 2, 2, 2)}, ops.SplitAttrs{SplitInput: 1}, ""},
		{"split opset 18 num_outputs", 3, 18, []*ir.Attr{intA("num_outputs", 3)}, ops.SplitAttrs{SplitInput: 1, NumOutputs: 3}, ""},
		{"split opset 13 ignores num_outputs", 2, 13, []*ir.Attr{intA("num_outputs", 3)}, ops.SplitAttrs{SplitInput: 1}, ""},
		{"split num_outputs for outputs", 2, 18, []*ir.Attr{intA("num_outputs", 3)}, nil, "num_outputs"},
		{"split sizes for outputs", 3, 11, []*ir.Attr{intsA("split", 2, 2)}, nil, "split"},
		{"split negative size", 2, 11, []*ir.Attr{intsA("split", -1, 5)}, nil, "split"},
	} {
		runAttrCase(t, attrCase{tt.name, "Split", tt.attrs, tt.opset, tt.want, tt.bad}, tt.outs)
	}
}

// TestQuantRoiAttrs: QuantizeLinear's, DequantizeLinear's, MaxUnpool's,
// RoiAlign's and MaxRoiPool's typed attributes.
func TestQuantRoiAttrs(t *testing.T) {
	runAttrCases(t, []attrCase{
		{"quantize default", "QuantizeLinear", nil, 13, ops.QuantAxisAttrs{Axis: 1, Saturate: true}, ""},
		{"quantize opset 10 axis", "QuantizeLinear", []*ir.Attr{intA("axis", 0)}, 10, ops.QuantAxisAttrs{Saturate: true}, ""},
		{"quantize opset 19 ignores block_size", "QuantizeLinear", []*ir.Attr{intA("block_size", 4), intA("saturate", 0)}, 19, ops.QuantAxisAttrs{Axis: 1}, ""},
		{"quantize opset 21", "QuantizeLinear", []*ir.Attr{intA("block_size", 4), intA("output_dtype", int64(tensor.Int8))}, 21,
			ops.QuantAxisAttrs{Axis: 1, BlockSize: 4, OutputDType: tensor.Int8, Saturate: true}, ""},
		{"quantize output_dtype int32", "QuantizeLinear", []*ir.Attr{intA("output_dtype", int64(tensor.Int32))}, 21, nil, "output_dtype"},
		{"quantize mistyped saturate", "QuantizeLinear", []*ir.Attr{floatA("saturate", 1)}, 13, nil, "saturate"},
		{"dequantize block_size -1", "DequantizeLinear", []*ir.Attr{intA("block_size", -1)}, 21, nil, "block_size"},
		{"dequantize axis", "DequantizeLinear", []*ir.Attr{intA("axis", -1), intA("output_dtype", 99)}, 21, ops.QuantAxisAttrs{Axis: -1}, ""},
		{"maxunpool", "MaxUnpool", []*ir.Attr{intsA("kernel_shape", 2, 2), intsA("strides", 2, 2)}, 11,
			ops.MaxUnpoolAttrs{ops.WindowAttrs{KernelShape: []int64{2, 2}, Strides: []int64{2, 2}}}, ""},
		{"maxunpool no kernel", "MaxUnpool", []*ir.Attr{intsA("strides", 2, 2)}, 11, nil, "kernel_shape"},
		{"maxunpool negative pad", "MaxUnpool", []*ir.Attr{intsA("kernel_shape", 2), intsA("pads", -1, 0)}, 11, nil, "pads"},
		{"roialign opset 10", "RoiAlign", nil, 10, ops.RoiAlignAttrs{OutputHeight: 1, OutputWidth: 1, SpatialScale: 1}, ""},
		{"roialign opset 16", "RoiAlign", []*ir.Attr{strA("mode", "max"), intA("output_height", 7), intA("output_width", 5), intA("sampling_ratio", 2), floatA("spatial_scale", 0.25)}, 16,
			ops.RoiAlignAttrs{Max: true, OutputHeight: 7, OutputWidth: 5, SamplingRatio: 2, SpatialScale: 0.25, HalfPixel: true}, ""},
		{"roialign opset 16 output_half_pixel", "RoiAlign", []*ir.Attr{strA("coordinate_transformation_mode", "output_half_pixel")}, 16,
			ops.RoiAlignAttrs{OutputHeight: 1, OutputWidth: 1, SpatialScale: 1}, ""},
		{"roialign bad mode", "RoiAlign", []*ir.Attr{strA("mode", "sum")}, 16, nil, "mode"},
		{"roialign output_height 0", "RoiAlign", []*ir.Attr{intA("output_height", 0)}, 16, nil, "output_height"},
		{"roialign sampling_ratio 2000", "RoiAlign", []*ir.Attr{intA("sampling_ratio", 2000)}, 16, nil, "sampling_ratio"},
		{"roialign bad ctm", "RoiAlign", []*ir.Attr{strA("coordinate_transformation_mode", "asymmetric")}, 16, nil, "coordinate_transformation_mode"},
		{"maxroipool", "MaxRoiPool", []*ir.Attr{intsA("pooled_shape", 6, 6), floatA("spatial_scale", 0.5)}, 1, ops.MaxRoiPoolAttrs{PooledShape: [2]int64{6, 6}, SpatialScale: 0.5}, ""},
		{"maxroipool no pooled_shape", "MaxRoiPool", nil, 1, nil, "pooled_shape"},
		{"maxroipool pooled_shape 0", "MaxRoiPool", []*ir.Attr{intsA("pooled_shape", 6, 0)}, 1, nil, "pooled_shape"},
	})
}

// TestImageAttrs: NonMaxSuppression's, DFT's, STFT's, GridSample's and
// Einsum's typed attributes.
func TestImageAttrs(t *testing.T) {
	runAttrCases(t, []attrCase{
		{"nms default", "NonMaxSuppression", nil, 11, ops.NMSAttrs{}, ""},
		{"nms center", "NonMaxSuppression", []*ir.Attr{intA("center_point_box", 1)}, 11, ops.NMSAttrs{CenterPointBox: true}, ""},
		{"nms center 2", "NonMaxSuppression", []*ir.Attr{intA("center_point_box", 2)}, 11, nil, "center_point_box"},
		{"dft opset 17", "DFT", nil, 17, ops.DFTAttrs{Axis: 1}, ""},
		{"dft opset 17 axis", "DFT", []*ir.Attr{intA("axis", 2), intA("inverse", 1), intA("onesided", 1)}, 17, ops.DFTAttrs{Axis: 2, Inverse: true, Onesided: true}, ""},
		{"dft opset 20 ignores axis", "DFT", []*ir.Attr{intA("axis", 2)}, 20, ops.DFTAttrs{Axis: -2, AxisInput: true}, ""},
		{"dft mistyped inverse", "DFT", []*ir.Attr{floatA("inverse", 1)}, 17, nil, "inverse"},
		{"stft default", "STFT", nil, 17, ops.STFTAttrs{Onesided: true}, ""},
		{"stft two-sided", "STFT", []*ir.Attr{intA("onesided", 0)}, 17, ops.STFTAttrs{}, ""},
		{"gridsample opset 16", "GridSample", nil, 16, ops.GridSampleAttrs{Mode: "linear", PaddingMode: "zeros"}, ""},
		{"gridsample opset 20", "GridSample", []*ir.Attr{strA("mode", "cubic"), strA("padding_mode", "reflection"), intA("align_corners", 1)}, 20,
			ops.GridSampleAttrs{Mode: "cubic", PaddingMode: "reflection", AlignCorners: true}, ""},
		{"gridsample bicubic", "GridSample", []*ir.Attr{strA("mode", "bicubic"), strA("padding_mode", "border")}, 16, ops.GridSampleAttrs{Mode: "cubic", PaddingMode: "border"}, ""},
		{"gridsample nearest", "GridSample", []*ir.Attr{strA("mode", "nearest")}, 20, ops.GridSampleAttrs{Mode: "nearest", PaddingMode: "zeros"}, ""},
		{"gridsample bad mode", "GridSample", []*ir.Attr{strA("mode", "area")}, 20, nil, "mode"},
		{"gridsample bad padding", "GridSample", []*ir.Attr{strA("padding_mode", "wrap")}, 20, nil, "padding_mode"},
		{"einsum", "Einsum", []*ir.Attr{strA("equation", "ij, jk -> ik")}, 12, ops.EinsumAttrs{Equation: "ij, jk -> ik"}, ""},
		{"einsum mistyped", "Einsum", []*ir.Attr{intA("equation", 1)}, 12, nil, "equation"},
	})
}

func stringsA(name string, v ...string) *ir.Attr {
	return &ir.Attr{Name: name, Type: ir.AttrStrings, Strings: v}
}

// TestRNNAttrs: RNN's, GRU's and LSTM's typed attributes: the default
// activations per op and direction, one direction's list repeated for
// two, layout from opset 14.
func TestRNNAttrs(t *testing.T) {
	runAttrCases(t, []attrCase{
		{"rnn default", "RNN", nil, 14, ops.RNNAttrs{Directions: 1, Activations: []string{"Tanh"}}, ""},
		{"gru bidirectional", "GRU", []*ir.Attr{strA("direction", "bidirectional"), intA("hidden_size", 4), intA("linear_before_reset", 1)}, 14,
			ops.RNNAttrs{HiddenSize: 4, Directions: 2, Activations: []string{"Sigmoid", "Tanh", "Sigmoid", "Tanh"}, LinearBeforeReset: true}, ""},
		{"lstm reverse", "LSTM", []*ir.Attr{strA("direction", "reverse"), intA("input_forget", 1), floatA("clip", 3), intA("layout", 1)}, 14,
			ops.RNNAttrs{Directions: 1, Reverse: true, Layout: 1, Clip: 3, Activations: []string{"Sigmoid", "Tanh", "Tanh"}, InputForget: true}, ""},
		{"lstm opset 7 ignores layout", "LSTM", []*ir.Attr{intA("layout", 1)}, 7, ops.RNNAttrs{Directions: 1, Activations: []string{"Sigmoid", "Tanh", "Tanh"}}, ""},
		{"rnn one list for two directions", "RNN", []*ir.Attr{strA("direction", "bidirectional"), stringsA("activations", "Relu"), floatsA("activation_alpha", 0.5)}, 14,
			ops.RNNAttrs{Directions: 2, Activations: []string{"Relu", "Relu"}, ActivationAlpha: []float32{0.5}}, ""},
		{"gru activations for directions", "GRU", []*ir.Attr{stringsA("activations", "Sigmoid")}, 14, nil, "activations"},
		{"rnn bad direction", "RNN", []*ir.Attr{strA("direction", "both")}, 14, nil, "direction"},
		{"rnn layout 2", "RNN", []*ir.Attr{intA("layout", 2)}, 14, nil, "layout"},
		{"rnn clip 0", "RNN", []*ir.Attr{floatA("clip", 0)}, 14, nil, "clip"},
		{"rnn hidden_size -1", "RNN", []*ir.Attr{intA("hidden_size", -1)}, 14, nil, "hidden_size"},
	})
}
