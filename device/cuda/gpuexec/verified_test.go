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

// TestUnverifiedFallBack: every kernel of the registry has been checked on
// a GPU, so by default (KILN_CUDA_UNVERIFIED unset) the registry decides;
// a kernel marked unchecked (here Erf's and CumSum's, marked for the
// test) leaves its node to the CPU with a reason naming the variable,
// unless the variable is 1.
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
	mark := func(op string, unchecked bool) {
		k := opKey{"", op}
		defs := append([]kernelDef(nil), registry[k]...)
		for i := range defs {
			defs[i].unchecked = unchecked
		}
		registry[k] = defs
	}
	for _, c := range []struct {
		env, op   string
		unchecked bool // marked unchecked for the case
		verified  bool
	}{
		{"", "Conv", false, true}, {"", "Erf", false, true}, {"", "CumSum", false, true},
		{"", "Resize/linear", false, true}, {"", "Resize/nearest", false, true},
		{"", "Erf", true, false}, {"", "CumSum", true, false}, {"0", "CumSum", true, false},
		{"1", "Erf", true, true}, {"1", "CumSum", true, true},
	} {
		t.Setenv(EnvUnverified, c.env)
		n := byName[c.op]
		if n == nil {
			t.Fatalf("no %s node", c.op)
		}
		mark(n.OpType, c.unchecked)
		err := Supports(n, g)
		mark(n.OpType, false)
		switch {
		case c.verified && err != nil:
			t.Errorf("%s=%q, unchecked %v: %s refused: %v", EnvUnverified, c.env, c.unchecked, c.op, err)
		case !c.verified && (err == nil || !errors.Is(err, device.ErrUnsupported) || !strings.Contains(err.Error(), "has not been checked on a GPU yet (KILN_CUDA_UNVERIFIED=1 uses it)")):
			t.Errorf("%s=%q: %s: %v, want a refusal naming %s", EnvUnverified, c.env, c.op, err, EnvUnverified)
		}
	}
}
