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

// TestKernelsRegistryGlobalPool: a blocked global average pool runs the
// registry's kernel and matches the ONNX GlobalAveragePool of the same
// input (the registry's NCHW kernel, cpu.GlobalAveragePool).
func TestKernelsRegistryGlobalPool(t *testing.T) {
	shape := []int{2, 21, 5, 6}
	b := ir.NewBuilder("gap", 18)
	x := b.Input("x", tensor.Float32, ir.KnownShape(shape...)...)
	b.Graph().Opsets["kiln"] = 1
	bl := b.Op("ToBlocked", []*ir.Value{x})
	bl.Producer.Domain = "kiln"
	p := b.Op("BlockedGlobalAveragePool", []*ir.Value{bl})
	p.Producer.Domain, p.Producer.Name = "kiln", "pool"
	back := b.Op("FromBlocked", []*ir.Value{p}, ir.IntAttr("channels", int64(shape[1])))
	back.Producer.Domain = "kiln"
	b.Output(back, "y")
	b.Output(b.Op("GlobalAveragePool", []*ir.Value{x}), "want")
	e, err := New(b.Graph())
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Kernels()["pool"]; got != "cpu.BlockedGlobalAveragePool" {
		t.Errorf("pool's kernel %q, want cpu.BlockedGlobalAveragePool", got)
	}
	out, err := e.Run(context.Background(), map[string]*tensor.Tensor{"x": ramp(tensor.NumElements(shape), 0.01, shape...)})
	if err != nil {
		t.Fatal(err)
	}
	y, want := out["y"], out["want"]
	if !slices.Equal(y.Shape, want.Shape) {
		t.Fatalf("y %v, want %v", y.Shape, want.Shape)
	}
	for i, w := range want.Float32s() {
		if d := float64(y.Float32s()[i] - w); abs(d) > 1e-5*max(1, abs(float64(w))) {
			t.Fatalf("y[%d] = %v, GlobalAveragePool %v", i, y.Float32s()[i], w)
		}
	}
}
