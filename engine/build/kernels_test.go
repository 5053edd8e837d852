package build_test

import (
	"fmt"
	"maps"
	"testing"

	"github.com/kilnai/kiln/engine/build"
)

// TestPlanKernels: a CPU plan names each layer's CPU kernel: the CPU
// registry's (device/cpu/kernels) for the blocked layout's reorders, pools
// and convolutions (level 3), resnet_mini's Conv layers (level 1, where
// the convolutions are not fused), bert_mini's FusedMatMul layers (level 2) and its
// MatMul layers with constant weights (level 1, where MatMul and Add are
// not fused), bert_mini's and resnet_mini's Gemm layers (cpu.Gemm),
// resnet_mini's kiln::QConv layers in an INT8 plan (cpu.QConv),
// "reference" (the op's own kernel) for the others (the attention
// products' B is not a constant).
func TestPlanKernels(t *testing.T) {
	needBlocked(t)
	for _, tc := range []struct {
		model string
		level int
		int8  bool              // an INT8 build (2 random calibration batches)
		want  map[string]string // op -> kernel, for every layer of the op
		// counts: op -> kernel -> number of the op's layers (all of them)
		counts map[string]map[string]int
	}{
		{model: "bert_mini", level: 2, want: map[string]string{"kiln::FusedMatMul": "cpu.FusedMatMul",
			"kiln::MultiHeadAttention": "cpu.MultiHeadAttention", "Gemm": "cpu.Gemm"}},
		{model: "bert_mini", level: 1, counts: map[string]map[string]int{
			"MatMul": {"cpu.MatMul": 16, "reference": 8}}}, // 4 x (qkv, proj, ff1, ff2); 4 x (Q K^T, P V)
		{model: "resnet_mini", level: 3, want: map[string]string{"kiln::FromBlocked": "cpu.FromBlocked",
			"kiln::BlockedGlobalAveragePool": "cpu.BlockedGlobalAveragePool", "kiln::BlockedConv": "cpu.BlockedConv", "Gemm": "cpu.Gemm"}},
		{model: "resnet_mini", level: 1, want: map[string]string{"Conv": "cpu.Conv"}},
		{model: "resnet_mini", level: 2, int8: true, want: map[string]string{"kiln::QConv": "cpu.QConv", "Gemm": "cpu.Gemm"}},
		{model: "squeezenet1_1", level: 3, want: map[string]string{"kiln::FromBlocked": "cpu.FromBlocked", "kiln::BlockedMaxPool": "cpu.BlockedMaxPool", "kiln::BlockedConv": "cpu.BlockedConv"}},
	} {
		name := fmt.Sprintf("%s level %d", tc.model, tc.level)
		if tc.int8 {
			name += " int8"
		}
		t.Run(name, func(t *testing.T) {
			o := build.Options{NoTiming: true}
			if tc.int8 {
				o.Precision, o.CalibBatches = build.INT8, 2
			}
			m := loadLevel(t, tc.model, tc.level, o)
			seen := map[string]bool{}
			got := map[string]map[string]int{}
			for _, l := range m.Plan().Layers {
				if l.Kernel == "" {
					t.Errorf("layer %q (%s) names no kernel", l.Name, l.Op)
				}
				if _, ok := tc.counts[l.Op]; ok {
					if got[l.Op] == nil {
						got[l.Op] = map[string]int{}
					}
					got[l.Op][l.Kernel]++
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
			for op, w := range tc.counts {
				if !maps.Equal(got[op], w) {
					t.Errorf("%s layers' kernels: %v, want %v", op, got[op], w)
				}
			}
		})
	}
}
