package gpuexec

import (
	"fmt"
	"os"

	"github.com/kilnai/kiln/ir"
)

// EnvUnverified names the environment variable that lets partitioning give
// the GPU the kernels that have not yet been run on a GPU against kiln's
// CPU engine (a kernelDef marked unchecked): set to 1, they are used too.
const EnvUnverified = "KILN_CUDA_UNVERIFIED"

// Every kernel of the registry has run on an H100 against the CPU engine
// (2026-12-06, device/cuda/NOTES.md): bench/gpu-ops.sh passed the ONNX node
// suite with every kernel (885 of 885 node tests, 702 of them entirely on
// the GPU) and the op-family cases of TestNewOpsOnGPU in float32 and
// float16. The long tail's GroupNormalization, MeanVarianceNormalization,
// LpNormalization, Upsample, LpPool, GlobalLpPool, Einsum, RNN, GRU, LSTM,
// MaxUnpool, DFT and Det passed their TestNewOpsOnGPU cases in float32 and
// float16 on an H100 the same day (commit eeada3c), and STFT, RoiAlign,
// MaxRoiPool, ReverseSequence, MatMulInteger, QLinearMatMul, ConvInteger
// and QLinearConv in a later run (commit 19cb49e). A kernel added since
// is marked unchecked in its family table until such a run has checked
// it; partitioning leaves its nodes to the CPU, which computes them
// correctly, and says why.
//
// Tactics that replace a library call by a kiln kernel not yet run on a
// GPU are opt-in the same way, each with a variable of its own that
// KILN_CUDA_UNVERIFIED=1 stands for: the INT8 MaxPool and GlobalAveragePool
// (KILN_CUDA_INT8_POOL, KILN_CUDA_INT8_GPOOL, op_pool_i8.go) and the INT8
// 3x3 convolution conv3_i8u2 (KILN_CUDA_INT8_CONV3, op_conv3_i8x.go); =0
// keeps each out.

// verifiedOnGPU returns nil when d has been checked on a GPU (or
// KILN_CUDA_UNVERIFIED=1), else an error wrapping ErrUnsupported that
// names the variable.
func verifiedOnGPU(n *ir.Node, d kernelDef) error {
	if !d.unchecked || os.Getenv(EnvUnverified) == "1" {
		return nil
	}
	return fmt.Errorf("%w: the CUDA kernel of %s (%s) has not been checked on a GPU yet (%s=1 uses it)",
		ErrUnsupported, opName(n), inputTypes(n), EnvUnverified)
}

// inputTypes lists n's input element types, "float32, int64".
func inputTypes(n *ir.Node) string {
	s := ""
	for i, v := range n.Inputs {
		if i > 0 {
			s += ", "
		}
		if v == nil {
			s += "-"
		} else {
			s += dtypeOf(v).String()
		}
	}
	return s
}
