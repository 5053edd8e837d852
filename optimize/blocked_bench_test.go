package optimize

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// BenchmarkBlockedLoneConv times one convolution (with Relu) between two
// layout boundaries, a graph input and a graph output: at level 2 a
// FusedConv in NCHW, at level 3 ToBlocked + BlockedConv + FromBlocked
// (input_nchw and no ToBlocked where C < 16). It is the data for the rule
// on converting a conv whose region is itself alone (NOTES-blocked.md);
// run the levels alternately: -count 5 and benchstat, or compare the
// sub-benchmarks of one run.
func BenchmarkBlockedLoneConv(b *testing.B) {
	for _, s := range []struct {
		c, m, k, stride, group, hw int
	}{
		{3, 32, 3, 2, 1, 224},   // a stem
		{64, 64, 3, 1, 1, 56},   // resnet's 3x3
		{64, 256, 1, 1, 1, 28},  // 1x1 expansion
		{256, 64, 1, 1, 1, 14},  // 1x1 projection
		{96, 96, 3, 1, 96, 56},  // depthwise
		{128, 128, 3, 1, 1, 13}, // squeezenet's 13x13
	} {
		build := func() *ir.Graph {
			bd := ir.NewBuilder("g", 17)
			r := rand.New(rand.NewPCG(1, 1))
			x := bd.Input("x", tensor.Float32, ir.D(1), ir.D(int64(s.c)), ir.D(int64(s.hw)), ir.D(int64(s.hw)))
			y := relu(bd, conv(bd, r, x, s.c, s.m, s.k, s.group, ir.IntsAttr("strides", int64(s.stride), int64(s.stride))))
			bd.Output(y, "y")
			return bd.Graph()
		}
		for _, level := range []int{2, 3} {
			name := fmt.Sprintf("c%d_m%d_k%d_s%d_g%d_%dx%d/level%d", s.c, s.m, s.k, s.stride, s.group, s.hw, s.hw, level)
			b.Run(name, func(b *testing.B) {
				g := build()
				if err := RunFor(g, level, "cpu", nil); err != nil {
					b.Fatal(err)
				}
				e, err := engine.New(g)
				if err != nil {
					b.Fatal(err)
				}
				in := map[string]*tensor.Tensor{"x": randF32(rand.New(rand.NewPCG(2, 2)), 1, s.c, s.hw, s.hw)}
				ctx := context.Background()
				if _, err := e.Run(ctx, in); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := e.Run(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
