package gpuexec

import (
	"fmt"
	"os"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// EnvUnverified names the environment variable that lets partitioning give
// the GPU every kernel of the registry: set to 1, the kernels that have not
// yet been run on a GPU against the CPU engine are used too.
const EnvUnverified = "KILN_CUDA_UNVERIFIED"

// verifiedOnGPU returns nil when n is one of the ops, in the element types
// and forms, whose kernels have been run on an H100 against kiln's CPU
// engine (device/cuda/NOTES.md from 2026-11-24 on: the reference models
// and TestOpsOnGPU), else an error wrapping ErrUnsupported: Supports then
// gives the node to the CPU, which computes it correctly, until a GPU run
// has checked the kernel (bench/gpu-ops.sh with KILN_CUDA_UNVERIFIED=1)
// and it is added here. KILN_CUDA_UNVERIFIED=1 turns the check off.
func verifiedOnGPU(n *ir.Node) error {
	if os.Getenv(EnvUnverified) == "1" {
		return nil
	}
	if verifiedForm(n) {
		return nil
	}
	return fmt.Errorf("%w: the CUDA kernel of %s (%s) has not been checked on a GPU yet (%s=1 uses it)",
		ErrUnsupported, opName(n), inputTypes(n), EnvUnverified)
}

// verifiedForm lists the checked kernels: float32 convolutions and
// pooling over 2-D images, float32 matrix products, float32 elementwise
// Add/Sub/Mul/Div/Max/Min/Pow of two inputs and the activations, views
// (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout), moves of 2-,
// 4- and 8-byte elements (Concat, Split, Transpose, Slice, Gather by int64
// indices), nearest Resize, Cast to float32 from int32 and int64, float32
// LayerNormalization (its output only) and Softmax, and kiln's Attention.
func verifiedForm(n *ir.Node) bool {
	in := func(i int) *ir.Value { return input(n, i) }
	switch {
	case n.Domain == "kiln" && n.OpType == "FusedConv", n.Domain == "" && n.OpType == "Conv":
		return allFloat32(n, 0, 1, 2, 3) && rankIs(in(0), 4)
	case n.Domain == "" && n.OpType == "Gemm":
		return allFloat32(n, 0, 1, 2)
	case n.Domain == "kiln" && n.OpType == "FusedMatMul", n.Domain == "" && n.OpType == "MatMul":
		return allFloat32(n, 0, 1, 2)
	case n.Domain == "" && (n.OpType == "MaxPool" || n.OpType == "AveragePool"):
		return allFloat32(n, 0) && rankIs(in(0), 4) && !usedBeyond(n, 0)
	case n.Domain == "" && (n.OpType == "GlobalAveragePool" || n.OpType == "GlobalMaxPool"):
		return allFloat32(n, 0)
	case n.Domain == "" && verifiedViews[n.OpType]:
		return !(n.OpType == "Dropout" && usedBeyond(n, 0))
	case n.Domain == "" && verifiedBinary[n.OpType] && len(n.Inputs) == 2:
		return allFloat32(n, 0, 1)
	case (n.Domain == "" || n.Domain == "kiln") && verifiedUnary[n.OpType]:
		return allFloat32(n, 0)
	case n.Domain == "" && n.OpType == "Concat":
		return len(n.Outputs) > 0 && n.Outputs[0] != nil && movedChecked(n.Outputs[0].Type.DType)
	case n.Domain == "" && (n.OpType == "Split" || n.OpType == "Transpose" || n.OpType == "Slice"):
		return in(0) != nil && movedChecked(dtypeOf(in(0)))
	case n.Domain == "" && n.OpType == "Resize":
		mode := "nearest"
		if a, ok := n.Attrs["mode"]; ok {
			mode = a.S
		}
		return mode == "nearest" && in(0) != nil && movedChecked(dtypeOf(in(0)))
	case n.Domain == "" && n.OpType == "Gather":
		return in(1) != nil && dtypeOf(in(1)) == tensor.Int64 && in(0) != nil && movedChecked(dtypeOf(in(0)))
	case n.Domain == "" && n.OpType == "Cast":
		if in(0) == nil || len(n.Outputs) == 0 || n.Outputs[0] == nil {
			return false
		}
		from, to := dtypeOf(in(0)), n.Outputs[0].Type.DType
		return from == to || to == tensor.Float32 && (from == tensor.Int64 || from == tensor.Int32)
	case (n.Domain == "" || n.Domain == "kiln") && n.OpType == "LayerNormalization":
		return allFloat32(n, 0, 1, 2) && !usedBeyond(n, 0)
	case n.Domain == "" && n.OpType == "Softmax":
		return allFloat32(n, 0)
	case n.Domain == "kiln" && n.OpType == "Attention":
		return true
	}
	return false
}

var (
	verifiedViews  = map[string]bool{"Reshape": true, "Flatten": true, "Squeeze": true, "Unsqueeze": true, "Identity": true, "Dropout": true}
	verifiedBinary = map[string]bool{"Add": true, "Sub": true, "Mul": true, "Div": true, "Max": true, "Min": true, "Pow": true}
	verifiedUnary  = map[string]bool{"Relu": true, "Sigmoid": true, "Tanh": true, "Clip": true, "LeakyRelu": true,
		"HardSigmoid": true, "HardSwish": true, "Gelu": true}
)

// allFloat32 reports whether the given inputs (absent ones skipped) are
// float32.
func allFloat32(n *ir.Node, idx ...int) bool {
	for _, i := range idx {
		if v := input(n, i); v != nil && dtypeOf(v) != tensor.Float32 {
			return false
		}
	}
	return true
}

// rankIs reports whether v has rank r (true when its shape is unknown:
// the compiler decides then).
func rankIs(v *ir.Value, r int) bool {
	return v == nil || v.Type.Shape == nil || len(v.Type.Shape) == r
}

// usedBeyond reports whether n has a named output after output i (an
// output the checked kernels did not compute).
func usedBeyond(n *ir.Node, i int) bool {
	for j, o := range n.Outputs {
		if j > i && o != nil && o.Name != "" {
			return true
		}
	}
	return false
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

// movedChecked reports whether elements of type dt were moved in the
// checked kernels (2-, 4- and 8-byte types).
func movedChecked(dt tensor.DType) bool {
	switch dt.Size() {
	case 2, 4, 8:
		return true
	}
	return false
}
