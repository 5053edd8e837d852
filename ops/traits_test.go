package ops_test

import (
	"slices"
	"testing"

	"github.com/kilnai/kiln/ops"
	_ "github.com/kilnai/kiln/ops/all"
)

// TestTraits: the ops that declare each trait are exactly those the memory
// planner (engine/memplan.go) treated as views when it kept its own lists.
func TestTraits(t *testing.T) {
	for _, tt := range []struct {
		trait ops.Traits
		want  []string
	}{
		{ops.ViewOfInput0, []string{"Flatten", "Identity", "Reshape", "Squeeze", "Unsqueeze"}},
		{ops.MayViewInput0, []string{"Cast", "CastLike", "DepthToSpace", "Dropout", "Max", "Mean", "Min", "SpaceToDepth", "Sum", "Transpose"}},
	} {
		var got []string
		for _, op := range ops.Types() {
			if ops.TraitsOf("", op).Has(tt.trait) {
				got = append(got, op)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("ops with traits %b: %v, want %v", tt.trait, got, tt.want)
		}
	}
	if ops.TraitsOf("", "NoSuchOp") != 0 || ops.TraitsOf("ai.onnx", "Reshape") != ops.ViewOfInput0 {
		t.Errorf("TraitsOf: unknown op %b, ai.onnx::Reshape %b", ops.TraitsOf("", "NoSuchOp"), ops.TraitsOf("ai.onnx", "Reshape"))
	}
	if (ops.ViewOfInput0|ops.MayViewInput0).Has(ops.ViewOfInput0) != true || ops.ViewOfInput0.Has(ops.MayViewInput0) {
		t.Error("Traits.Has")
	}
}
