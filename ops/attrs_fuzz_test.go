package ops_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/tensor"
)

// fuzzAttrNames are the attribute names the typed parsers read.
var fuzzAttrNames = []string{"axis", "axes", "perm", "batch_dims", "reduction", "blocksize", "mode", "pads",
	"paddings", "value", "upper", "k", "dtype", "epsilon", "stash_type", "momentum", "training_mode", "is_test",
	"spatial", "num_groups", "p", "across_channels", "size", "alpha", "beta", "bias", "ignore_index",
	"keepdims", "noop_with_empty_axes", "select_last_index", "largest", "sorted", "exclusive", "reverse",
	"gamma", "approximate", "lambd", "min", "max", "fmod", "direction", "detect_positive", "detect_negative",
	"to", "ratio", "seed", "start", "end", "starts", "ends", "batch_axis", "time_axis",
	"auto_pad", "kernel_shape", "strides", "dilations", "group", "ceil_mode", "count_include_pad", "storage_order",
	"output_padding", "output_shape", "transA", "transB", "broadcast", "coordinate_transformation_mode", "nearest_mode",
	"cubic_coeff_a", "exclude_outside", "extrapolation_value", "antialias", "keep_aspect_ratio_policy", "scales",
	"split", "num_outputs", "block_size", "output_dtype", "saturate", "pooled_shape", "spatial_scale", "output_height",
	"output_width", "sampling_ratio", "center_point_box", "inverse", "onesided", "padding_mode", "align_corners",
	"equation", "hidden_size", "direction", "layout", "clip", "activations", "activation_alpha", "activation_beta",
	"linear_before_reset", "input_forget", "value_float", "value_floats", "value_int", "value_ints", "value_string",
	"value_strings", "sparse_value", "allowzero", "shape", "saturate", "mean", "scale", "low", "high", "sample_size",
	"periodic", "output_datatype", "then_branch", "else_branch", "body", "num_scan_inputs", "scan_input_axes",
	"scan_input_directions", "scan_output_axes", "scan_output_directions", "directions", "new_axis", "type",
	"case_change_action", "is_case_sensitive", "stopwords", "locale", "min_gram_length", "max_gram_length",
	"max_skip_count", "ngram_counts", "ngram_indexes", "pool_int64s", "pool_strings", "weights", "activation",
	"activation_params", "x_scale", "a_scale", "num_heads"}

// FuzzParseAttrs: every typed op's parser, given any attributes of any
// type at any opset, returns its struct or an error wrapping
// ops.ErrBadAttr, and never panics; the CPU's Prepare agrees on whether
// the attributes are bad.
func FuzzParseAttrs(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 5}, int64(13))
	f.Add([]byte{2, 3, 1, 0, 0, 1, 255}, int64(9))
	f.Add([]byte{7, 12, 4, 128, 3, 250, 9, 1}, int64(18))
	var typed []string
	for _, op := range ops.Types() {
		if d, _ := ops.Lookup("", op); d.Attrs != nil {
			typed = append(typed, op)
		}
	}
	for _, op := range []string{"Attention", "FusedConv", "FusedMatMul", "Gelu", "LayerNormalization", "MultiHeadAttention",
		"QConv", "QMatMul", "SkipLayerNormalization"} {
		typed = append(typed, "kiln::"+op)
	}
	f.Fuzz(func(t *testing.T, b []byte, opset int64) {
		if len(b) < 1 {
			return
		}
		opset = ops.MinOpset + (opset%ops.MaxOpset+ops.MaxOpset)%ops.MaxOpset
		n := &ir.Node{Name: "n", OpType: typed[int(b[0])%len(typed)], Attrs: map[string]*ir.Attr{}}
		if d, op, ok := strings.Cut(n.OpType, "::"); ok {
			n.Domain, n.OpType = d, op
		}
		for b = b[1:]; len(b) >= 3; b = b[3:] {
			name := fuzzAttrNames[int(b[0])%len(fuzzAttrNames)]
			v := int64(int8(b[2]))
			a := &ir.Attr{Name: name}
			switch b[1] % 9 {
			case 0:
				a.Type, a.I = ir.AttrInt, v
			case 1:
				a.Type, a.F = ir.AttrFloat, float32(v)/4
			case 2:
				a.Type, a.S = ir.AttrString, []string{"none", "add", "max", "CRD", "DCR", "wrap", "edge", "tanh", "LEFT", "RIGHT", "sum", "",
					"SAME_UPPER", "VALID", "linear", "cubic", "align_corners", "tf_crop_and_resize", "floor", "not_larger",
					"bidirectional", "reverse", "Relu", "forward"}[int(b[2])%24]
			case 3:
				a.Type, a.Ints = ir.AttrInts, []int64{v % 4, (v / 4) % 4, 1}[:1+int(b[2])%3]
			case 4:
				a.Type, a.Floats = ir.AttrFloats, []float32{float32(v)}
			case 5:
				a.Type, a.Strings = ir.AttrStrings, []string{"a", "LOWER", "", "b"}[:int(b[2])%5]
			case 6: // a tensor whose storage may not match its shape
				a.Type, a.T = ir.AttrTensor, &tensor.Tensor{DType: tensor.DType(b[2] % 20), Shape: []int{int(b[2]) % 3}, Data: make([]byte, int(b[2]/20)%9)}
			case 7:
				a.Type, a.G = ir.AttrGraph, &ir.Graph{Name: "g"}
			case 8:
				a.Type, a.Types = ir.AttrType1, []ir.Type{{DType: tensor.DType(b[2] % 20)}}
			}
			n.Attrs[name] = a
		}
		_, err := ops.ParseAttrs(n, opset)
		if err != nil && !errors.Is(err, ops.ErrBadAttr) {
			t.Fatalf("%s opset %d: %v, want an error wrapping ErrBadAttr", n.OpType, opset, err)
		}
		if _, perr := ops.Prepare(n, opset); err != nil && perr == nil {
			t.Fatalf("%s opset %d: ParseAttrs fails (%v), Prepare does not", n.OpType, opset, err)
		}
	})
}
