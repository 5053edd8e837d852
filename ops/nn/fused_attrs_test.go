package nn

import (
	"slices"
	"testing"

	"github.com/kilnai/kiln/ops"
)

// TestFusedActivationNames: the activations ops.ReadEpilogueAttrs accepts
// (read by the CPU and the CUDA kernels) are exactly the Act* constants
// the kernels switch on.
func TestFusedActivationNames(t *testing.T) {
	want := []string{ActNone, ActRelu, ActClip, ActSigmoid, ActSiLU, ActHardSwish, ActLeakyRelu, ActHardSigmoid, ActGelu, ActGeluTanh}
	if !slices.Equal(ops.FusedActivations, want) {
		t.Errorf("ops.FusedActivations = %q, want %q", ops.FusedActivations, want)
	}
}
