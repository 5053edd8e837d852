package partition

import (
	"context"
	"slices"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// ddExec is fakeExec whose op types in dd have outputs that depend on the
// data (DataDependent).
type ddExec struct {
	*fakeExec
	dd map[string]bool
}

func (x ddExec) DataDependent(n *ir.Node, g *ir.Graph) bool { return x.dd[n.OpType] }

// nonZeroNet is x[batch,8] -> Relu -> NonZero -> Cast(float) -> Sigmoid ->
// "positions", and Relu -> Mul(w) -> "scaled" (listed after NonZero,
// independent of it).
func nonZeroNet(t *testing.T) *ir.Graph {
	t.Helper()
	b := ir.NewBuilder("nonzero", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(8))
	r := b.Op("Relu", []*ir.Value{x})
	nz := b.Op("NonZero", []*ir.Value{r})
	c := b.Op("Cast", []*ir.Value{nz}, ir.IntAttr("to", int64(tensor.Float32)))
	b.Output(b.Op("Sigmoid", []*ir.Value{c}), "positions")
	b.Output(b.Op("Mul", []*ir.Value{r, b.Const("w", tensor.FromFloat32([]float32{0.5}, 1))}), "scaled")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestDataDependentSegments: a device node whose outputs depend on the
// data (DataDependent) ends its device segment: the device nodes that read
// it form the next device segment, nothing falls back, the program matches
// the CPU for inputs that select different counts, and an executor that
// does not say so keeps one segment.
func TestDataDependentSegments(t *testing.T) {
	g := nonZeroNet(t)
	devOps := map[string]bool{"Relu": true, "NonZero": true, "Cast": true, "Sigmoid": true, "Mul": true}
	for _, tc := range []struct {
		name string
		x    device.Executor
		segs [][]string
	}{
		{"data-dependent NonZero", ddExec{&fakeExec{name: "fake", ops: devOps}, map[string]bool{"NonZero": true}},
			[][]string{{"Relu_1", "NonZero_1", "Mul_1"}, {"Cast_1", "Sigmoid_1"}}},
		{"no DataDependent", &fakeExec{name: "fake", ops: devOps},
			[][]string{{"Relu_1", "NonZero_1", "Cast_1", "Sigmoid_1", "Mul_1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog, r, err := Compile(g, tc.x, device.ExecOptions{}, Options{Strict: true})
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			if len(r.Fallbacks) != 0 || r.OnDevice != r.Layers {
				t.Errorf("report %s, want every layer on the device", r.Summary())
			}
			var got [][]string
			for _, s := range r.Segments {
				if s.Device != "fake" {
					t.Errorf("segment on %s", s.Device)
				}
				got = append(got, s.Nodes)
			}
			if !slices.EqualFunc(got, tc.segs, slices.Equal[[]string]) {
				t.Errorf("segments %v, want %v", got, tc.segs)
			}
			for seed := range uint64(3) {
				in := randomInput(1+int(seed), seed)
				out, err := prog.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				sameOutputs(t, out, reference(t, g, in))
			}
		})
	}
}
