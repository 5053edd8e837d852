package gpuexec

// elemSuffix names the element types of the typed kernels (op_*.cu): float
// types by their precision, integers by sign and width, bool as u8.
var elemSuffixes = []string{"f32", "f16", "f64", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"}

// opKernelNames lists the kernels of the op family sources
// (kernels/op_*.cu), which the registry's kernels launch besides those of
// cuda.KernelNames.
func opKernelNames() []string {
	var names []string
	add := func(base string, sfx ...string) {
		for _, s := range sfx {
			names = append(names, base+"_"+s)
		}
	}
	add("ew_binary", elemSuffixes...)
	add("ew_compare", elemSuffixes...)
	add("ew_unary", "f32", "f16", "i8", "i16", "i32", "i64", "u8")
	add("ew_isclass", "f32", "f16")
	add("where", "b8", "b16", "b32", "b64")
	names = append(names, "cast_any", "permute_b8", "copy_rows_b8", "gather_b8")
	for _, b := range []string{"tile", "pad", "gather_elements", "scatter_elements", "scatter_nd", "gather_nd", "fill", "one_hot", "eye", "trilu"} {
		add(b, "b8", "b16", "b32", "b64")
	}
	for _, b := range []string{"reduce_axes", "argreduce", "softmax_axis", "instnorm", "batchnorm", "row_stats", "nll_loss"} {
		add(b, "f32", "f16", "f64")
	}
	for _, b := range []string{"conv_transpose2d", "resize_taps", "quantize", "dequantize", "lrn", "grid_sample"} {
		add(b, "f32", "f16")
	}
	add("cumsum", "f32", "f16", "f64", "i32", "i64")
	return names
}
