package engine

import (
	"context"
	"slices"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// TestKernelsRegistry: the engine prepares each node through the CPU
// registry (device/cpu/kernels): a fast kernel where one supports the node,
// named in Kernels, the op's reference kernel elsewhere; the graph computes
// the same either way (a round trip through the blocked layout is exact).
func TestKernelsRegistry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		dt    tensor.DType
		shape []int
		want  map[string]string
	}{
		{"float32", tensor.Float32, []int{2, 19, 3, 5}, map[string]string{"to": "cpu.ToBlocked", "from": "cpu.FromBlocked", "relu": "reference"}},
		{"one channel", tensor.Float32, []int{1, 1, 4, 4}, map[string]string{"to": "cpu.ToBlocked", "from": "cpu.FromBlocked", "relu": "reference"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := ir.NewBuilder("reg", 18)
			x := b.Input("x", tc.dt, ir.KnownShape(tc.shape...)...)
			g := b.Graph()
			g.Opsets["kiln"] = 1
			bl := b.Op("ToBlocked", []*ir.Value{x})
			bl.Producer.Domain, bl.Producer.Name = "kiln", "to"
			back := b.Op("FromBlocked", []*ir.Value{bl}, ir.IntAttr("channels", int64(tc.shape[1])))
			back.Producer.Domain, back.Producer.Name = "kiln", "from"
			y := b.Op("Relu", []*ir.Value{back})
			y.Producer.Name = "relu"
			b.Output(y, "y")
			e, err := New(g)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Kernels(); len(got) != len(tc.want) {
				t.Errorf("Kernels() = %v, want %v", got, tc.want)
			} else {
				for k, v := range tc.want {
					if got[k] != v {
						t.Errorf("Kernels()[%q] = %q, want %q", k, got[k], v)
					}
				}
			}
			in := ramp(tensor.NumElements(tc.shape), 0.25, tc.shape...)
			for i, v := range in.Float32s() {
				if i%3 == 0 {
					in.Float32s()[i] = -v
				}
			}
			out, err := e.Run(context.Background(), map[string]*tensor.Tensor{"x": in})
			if err != nil {
				t.Fatal(err)
			}
			want := make([]float32, len(in.Float32s()))
			for i, v := range in.Float32s() {
				want[i] = max(v, 0)
			}
			if !slices.Equal(out["y"].Float32s(), want) || !slices.Equal(out["y"].Shape, tc.shape) {
				t.Errorf("y = %v %v, want relu(x)", out["y"].Shape, out["y"].Float32s()[:8])
			}
		})
	}
}
