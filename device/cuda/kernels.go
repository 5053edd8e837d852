package cuda

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

//go:embed kernels/*.cu
var kernelFS embed.FS

// KernelNames lists the kernels (extern "C" __global__ functions) of the
// embedded sources.
var KernelNames = []string{
	"add_f32", "add_f16",
	"relu_f32", "relu_f16",
	"sigmoid_f32", "sigmoid_f16",
	"silu_f32", "silu_f16",
	"bias_act_f32", "bias_act_f16",
	// nn.cu: the executor's kernels, each in float32 (_f32) and half (_f16)
	"conv2d_f32", "chan_epilogue_f32", "row_epilogue_f32", "gemm_f32", "pool2d_f32",
	"reduce_rows_f32", "layernorm_f32", "softmax_f32", "attention_f32", "binary_f32", "unary_f32",
	"cast_i64_f32", "cast_i32_f32", "resize_nearest_f32", "attention_rows_f32", "binary_flat_f32",
	"conv2d_f16", "chan_epilogue_f16", "row_epilogue_f16", "gemm_f16", "pool2d_f16",
	"reduce_rows_f16", "layernorm_f16", "softmax_f16", "attention_f16", "binary_f16", "unary_f16",
	"cast_i64_f16", "cast_i32_f16", "resize_nearest_f16", "attention_rows_f16", "binary_flat_f16", "cast_f32_f16", "cast_f16_f32",
	"permute_b16", "permute_b32", "permute_b64", "copy_rows_b16", "copy_rows_b32", "copy_rows_b64",
	"gather_b16", "gather_b32", "gather_b64",
	// half only, sm_80 and later
	"attention_mma_d32_f16", "attention_mma_d64_f16", "attention_mma_d128_f16",
	"attention_mma_fa_d32_f16", "attention_mma_fa_d64_f16", "attention_mma_fa_d128_f16",
	"attention_mma_fa128_d32_f16", "attention_mma_fa128_d64_f16",
	"attention_mma_fq_d32_f16", "attention_mma_fq_d64_f16", "attention_mma_fw_d32_f16", "attention_mma_fw_d64_f16",
	"attention_mma_fw2_d32_f16", "attention_mma_fw2_d64_f16",
	// half only, 16-byte accesses
	"layernorm_vec_f16", "row_epilogue_vec_f16", "row_epilogue_res_vec_f16",
	// nn_epilogue.cu: 16-byte vectors (8 halves, 4 floats) a thread
	"chan_epilogue_vec_f32", "chan_epilogue_vec_f16", "chan_epilogue_plane_f32", "chan_epilogue_plane_f16",
	"unary_vec_f32", "unary_vec_f16", "binary_flat_vec_f32", "binary_flat_vec_f16",
	"binary_plane_f32", "binary_plane_f16",
}

// Activation codes of the bias_act kernels.
const (
	ActNone    = 0
	ActReLU    = 1
	ActSigmoid = 2
	ActSiLU    = 3
)

// KernelSource returns the embedded kernel sources as one compilation unit:
// the kernels/*.cu files in name order, each preceded by a #line directive
// so that compiler messages name the file.
func KernelSource() string {
	names, _ := fs.Glob(kernelFS, "kernels/*.cu")
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		src, _ := kernelFS.ReadFile(n)
		b.WriteString("#line 1 \"" + n + "\"\n")
		b.Write(src)
		b.WriteString("\n")
	}
	return b.String()
}

// CompileKernels compiles the embedded kernels for arch, a real
// architecture such as "sm_90" (giving a cubin) or a virtual one such as
// "compute_90" (giving PTX).
func CompileKernels(n *NVRTC, arch string) (*Compiled, error) {
	return n.Compile("kiln_kernels.cu", KernelSource(), "--gpu-architecture="+arch)
}
