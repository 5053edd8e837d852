package gpuexec

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestUnverifiedFallBack: by default (KILN_CUDA_UNVERIFIED unset), a node
// whose kernel has not been run on a GPU yet goes to the CPU with a reason
// naming the variable, and the checked forms stay on the GPU; with the
// variable set to 1 the registry decides alone.
func TestUnverifiedFallBack(t *testing.T) {
	b := ir.NewBuilder("verified", 17)
	x := b.Input("x", tensor.Float32, ir.D(1), ir.D(3), ir.D(8), ir.D(8))
	w := b.Const("w", tensor.New(tensor.Float32, 4, 3, 3, 3))
	c := b.Op("Conv", []*ir.Value{x, w}, ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("pads", 1, 1, 1, 1))
	r := b.Op("Relu", []*ir.Value{c})
	e := b.Op("Erf", []*ir.Value{r})
	cs := b.Op("CumSum", []*ir.Value{e, b.Const("axis", tensor.FromInt64([]int64{3}, 1))})
	lin := b.Op("Resize", []*ir.Value{cs, nil, b.Const("scales", tensor.FromFloat32([]float32{1, 1, 2, 2}, 4))}, ir.StringAttr("mode", "linear"))
	near := b.Op("Resize", []*ir.Value{lin, nil, b.Const("scales2", tensor.FromFloat32([]float32{1, 1, 2, 2}, 4))}, ir.StringAttr("mode", "nearest"))
	b.Output(near, "y")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	byName := map[string]*ir.Node{}
	for _, n := range g.Nodes {
		if byName[n.OpType] == nil || n.OpType == "Resize" {
			key := n.OpType
			if n.OpType == "Resize" {
				key += "/" + n.Attrs["mode"].S
			}
			byName[key] = n
		}
	}
	for _, c := range []struct {
		env      string
		op       string
		verified bool
	}{
		{"", "Conv", true}, {"", "Relu", true}, {"", "Resize/nearest", true},
		{"", "Erf", false}, {"", "CumSum", false}, {"", "Resize/linear", false},
		{"1", "Erf", true}, {"1", "CumSum", true}, {"1", "Resize/linear", true},
	} {
		t.Setenv(EnvUnverified, c.env)
		n := byName[c.op]
		if n == nil {
			t.Fatalf("no %s node", c.op)
		}
		err := Supports(n, g)
		switch {
		case c.verified && err != nil:
			t.Errorf("%s=%q: %s refused: %v", EnvUnverified, c.env, c.op, err)
		case !c.verified && (err == nil || !errors.Is(err, device.ErrUnsupported) || !strings.Contains(err.Error(), "has not been checked on a GPU yet (KILN_CUDA_UNVERIFIED=1 uses it)")):
			t.Errorf("%s=%q: %s: %v, want a refusal naming %s", EnvUnverified, c.env, c.op, err, EnvUnverified)
		}
	}
}
