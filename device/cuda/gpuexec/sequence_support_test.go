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

// TestSupportsRefusesSequences: a node that reads or writes a sequence or
// an optional value (or holds a subgraph that does) stays on the CPU, with
// the reason; the tensor nodes around it still run on the GPU.
func TestSupportsRefusesSequences(t *testing.T) {
	seqT := ir.SequenceOf(ir.Type{DType: tensor.Float32, Shape: ir.KnownShape(2, 3)})
	b := ir.NewBuilder("seq", 17)
	seq := b.Input("seq", tensor.Float32)
	seq.Type = seqT
	pos := b.Const("pos", tensor.FromInt64([]int64{0}))
	at := b.Op("SequenceAt", []*ir.Value{seq, pos})
	relu := b.Op("Relu", []*ir.Value{at})
	id := b.Op("Identity", []*ir.Value{seq})
	opt := b.Op("Optional", []*ir.Value{relu})
	b.Output(relu, "")
	b.Output(id, "")
	b.Output(opt, "")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"SequenceAt": `"seq" has type sequence(float32[2,3]): sequence and optional values run on the CPU`,
		"Identity":   `"seq" has type sequence(float32[2,3]): sequence and optional values run on the CPU`,
		"Optional":   `has type optional(float32[2,3]): sequence and optional values run on the CPU`,
		"Relu":       "",
	}
	for _, n := range g.Nodes {
		w, ok := want[n.OpType]
		if !ok {
			continue
		}
		err := Supports(n, g)
		switch {
		case w == "" && err != nil:
			t.Errorf("%v: %v, want supported", n, err)
		case w != "" && (err == nil || !strings.Contains(err.Error(), w)):
			t.Errorf("%v: %v, want an error saying %q", n, err, w)
		case w != "" && !errors.Is(err, device.ErrUnsupported):
			t.Errorf("%v: %v does not wrap device.ErrUnsupported", n, err)
		}
	}
}
