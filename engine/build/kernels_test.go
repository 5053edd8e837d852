package build_test

import (
	"testing"

	"github.com/kilnai/kiln/engine/build"
)

// TestPlanKernels: a CPU plan names each layer's CPU kernel: the CPU
// registry's (device/cpu/kernels) for the blocked layout's reorders and
// pools, "reference" (the op's own kernel) for the others (the
// blocked convolutions' fast kernel has not moved yet).
func TestPlanKernels(t *testing.T) {
	needBlocked(t)
	for _, tc := range []struct {
		model string
		want  map[string]string // op -> kernel, for every layer of the op
	}{
		{"resnet_mini", map[string]string{"kiln::FromBlocked": "cpu.FromBlocked",
			"kiln::BlockedGlobalAveragePool": "cpu.BlockedGlobalAveragePool", "kiln::BlockedConv": "reference", "Gemm": "reference"}},
		{"squeezenet1_1", map[string]string{"kiln::FromBlocked": "cpu.FromBlocked", "kiln::BlockedMaxPool": "cpu.BlockedMaxPool", "kiln::BlockedConv": "reference"}},
	} {
		t.Run(tc.model, func(t *testing.T) {
			m := loadLevel(t, tc.model, 3, build.Options{NoTiming: true})
			seen := map[string]bool{}
			for _, l := range m.Plan().Layers {
				if l.Kernel == "" {
					t.Errorf("layer %q (%s) names no kernel", l.Name, l.Op)
				}
				if w, ok := tc.want[l.Op]; ok {
					seen[l.Op] = true
					if l.Kernel != w {
						t.Errorf("layer %q (%s): kernel %q, want %q", l.Name, l.Op, l.Kernel, w)
					}
				}
			}
			for op := range tc.want {
				if !seen[op] {
					t.Errorf("no %s layer in %s", op, tc.model)
				}
			}
		})
	}
}
