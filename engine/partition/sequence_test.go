package partition

import (
	"context"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestSequenceOnCPUSegment: a device runs the tensor layers around a
// sequence (Relu before SplitToSequence, Mul after ConcatFromSequence),
// the sequence layers fall back to a CPU segment between them, and the
// sequence is a graph output of the partitioned program too.
func TestSequenceOnCPUSegment(t *testing.T) {
	b := ir.NewBuilder("seq", 17)
	x := b.Input("x", tensor.Float32, ir.D(4), ir.D(2))
	r := b.Op("Relu", []*ir.Value{x})
	pieces := b.Op("SplitToSequence", []*ir.Value{r})
	c := b.Op("ConcatFromSequence", []*ir.Value{pieces}, ir.IntAttr("axis", 0))
	b.Output(b.Op("Mul", []*ir.Value{c, c}), "y")
	b.Output(pieces, "pieces")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	x0 := &fakeExec{name: "fake", ops: gpuOps}
	prog, r0, err := Compile(g, x0, device.ExecOptions{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if r0.OnDevice != 2 || len(r0.Fallbacks) != 2 {
		t.Errorf("%d layers on the device, fallbacks %v; want Relu and Mul on it, the sequence layers on the CPU", r0.OnDevice, r0.Fallbacks)
	}
	xs := []float32{-1, 2, 3, -4, 5, 6, -7, 8}
	out, err := prog.Run(context.Background(), map[string]*tensor.Tensor{"x": tensor.FromFloat32(xs, 4, 2)})
	if err != nil {
		t.Fatal(err)
	}
	y := out["y"]
	if y == nil || tensor.ShapeString(y.Shape) != "4x2" {
		t.Fatalf("y = %v, want 4x2", y)
	}
	for i, v := range y.Float32s() {
		if w := max(xs[i], 0) * max(xs[i], 0); v != w {
			t.Fatalf("y[%d] = %g, want %g", i, v, w)
		}
	}
	if p := out["pieces"]; !p.IsSequence() || len(p.Elems) != 4 || tensor.ShapeString(p.Elems[3].Shape) != "1x2" {
		t.Fatalf("pieces = %v, want a sequence of 4 rows", p)
	}
}
