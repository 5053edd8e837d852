package build_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/kilnai/kiln"
	cpukernels "github.com/kilnai/kiln/device/cpu/kernels"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// TestPlanKernels: a CPU plan names each layer's CPU kernel: the CPU
// registry's (device/cpu/kernels) for the blocked layout's reorders, pools
// and convolutions (level 3), resnet_mini's Conv layers (level 1, where
// the convolutions are not fused), bert_mini's FusedMatMul layers (level 2) and its
// MatMul layers with constant weights (level 1, where MatMul and Add are
// not fused), bert_mini's and resnet_mini's Gemm layers (cpu.Gemm),
// resnet_mini's kiln::QConv layers in an INT8 plan (cpu.QConv),
// "reference" (the op's own kernel) for the others (the attention
// products' B is not a constant). Most cases build without tactic timing
// (fast); the timed ones build as `kiln build` does by default (opt level
// 2, tactics timed) and must name the same kernels, with tactics recorded:
// the tactic stage times the registry's kernels, so what it chooses is a
// tactic of the registry kernel, not the op's reference. Which layers have
// tactics depends on the CPU (tacticLayers): the test requires a recorded
// tactic for each of those and for no other.
func TestPlanKernels(t *testing.T) {
	needBlocked(t)
	for _, tc := range []struct {
		model string
		level int
		int8  bool              // an INT8 build (2 random calibration batches)
		timed bool              // tactics timed, as kiln build's defaults do
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
		{model: "resnet_mini", level: 2, timed: true, want: map[string]string{"kiln::BlockedConv": "cpu.BlockedConv", "Gemm": "cpu.Gemm"}},
		{model: "bert_mini", level: 2, timed: true, want: map[string]string{"kiln::FusedMatMul": "cpu.FusedMatMul"}},
		{model: "squeezenet1_1", level: 3, want: map[string]string{"kiln::FromBlocked": "cpu.FromBlocked", "kiln::BlockedMaxPool": "cpu.BlockedMaxPool", "kiln::BlockedConv": "cpu.BlockedConv"}},
	} {
		name := fmt.Sprintf("%s level %d", tc.model, tc.level)
		if tc.int8 {
			name += " int8"
		}
		if tc.timed {
			name += " timed"
		}
		t.Run(name, func(t *testing.T) {
			if tc.timed && testing.Short() {
				t.Skip("-short: the timed build times every layer's tactics")
			}
			o := build.Options{NoTiming: !tc.timed}
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
			if tc.timed {
				// A tactic is recorded for each layer whose kernel offers
				// two or more on this CPU, one of those; which layers do
				// depends on the CPU (BlockedConv's Winograd tactic needs
				// AVX-512: without it resnet_mini has no such layer and
				// its timed build rightly records none).
				offered := tacticLayers(t, m)
				recorded := map[string]bool{}
				for _, ts := range m.Plan().Tactics {
					for _, tt := range ts {
						recorded[tt.Layer] = true
						if c, ok := offered[tt.Layer]; !ok {
							t.Errorf("tactic %q recorded for layer %q, which has no tactics to time", tt.Tactic, tt.Layer)
						} else if !slices.Contains(c, tt.Tactic) {
							t.Errorf("tactic %q recorded for layer %q, not one of its tactics %v", tt.Tactic, tt.Layer, c)
						}
					}
				}
				for l, c := range offered {
					if !recorded[l] {
						t.Errorf("the timed build recorded no tactic for layer %q (tactics %v)", l, c)
					}
				}
				t.Logf("%d layers with tactics on this CPU, %d recorded", len(offered), len(recorded))
			}
			for op, w := range tc.counts {
				if !maps.Equal(got[op], w) {
					t.Errorf("%s layers' kernels: %v, want %v", op, got[op], w)
				}
			}
		})
	}
}

// tacticLayers returns the tactics of each layer of m's plan that the
// tactic stage times on this CPU: as tactic.Select finds them, the layers
// whose CPU registry kernel offers two tactics or more at the shapes timed
// (the first profile's opt shapes, else the graph's own), constant layers
// left out.
func tacticLayers(t *testing.T, m *kiln.Model) map[string][]string {
	t.Helper()
	g := m.Engine().Graph().Clone()
	if ps := m.Plan().Profiles; len(ps) > 0 {
		opt := ps[0].Shapes(1)
		for _, v := range g.Inputs {
			if s, ok := opt[v.Name]; ok {
				shape := make(ir.Shape, len(s))
				for i, d := range s {
					shape[i] = ir.D(int64(d))
				}
				v.Type.Shape = shape
			}
		}
	}
	kernels, err := ops.InferGraphWith(g, cpukernels.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	offered := map[string][]string{}
	for _, n := range g.Nodes {
		tk, ok := kernels[n].(ops.Tactical)
		if !ok || (len(n.Outputs) > 0 && !slices.ContainsFunc(n.Outputs, func(o *ir.Value) bool { return o != nil && o.Const == nil })) {
			continue // no registry tactics, or folded (the engine does not run it)
		}
		if ts := tk.Tactics(n.Inputs); len(ts) >= 2 {
			offered[n.Name] = ts
		}
	}
	return offered
}
