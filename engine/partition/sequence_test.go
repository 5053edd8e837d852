package partition

import (
	"context"
	"errors"
	"strings"
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

// TestSequenceInputNeverOnDevice: whatever the device claims (one that
// says it runs the sequence ops, one that answers nothing), the nodes
// that read or write a sequence stay on the CPU with the partitioner's
// reason, no device segment reads or hands on a sequence, and the program
// matches the CPU engine on a graph whose input is a sequence.
func TestSequenceInputNeverOnDevice(t *testing.T) {
	b := ir.NewBuilder("seqin", 17)
	s := b.Input("s", tensor.Float32)
	s.Type = ir.SequenceOf(ir.Type{DType: tensor.Float32, Shape: ir.KnownShape(2, 3)})
	at := b.Op("SequenceAt", []*ir.Value{s, b.Const("pos", tensor.FromInt64([]int64{1}))})
	b.Output(b.Op("Relu", []*ir.Value{at}), "y")
	b.Output(b.Op("SequenceLength", []*ir.Value{s}), "n")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	claims := map[string]bool{"Relu": true, "SequenceAt": true, "SequenceLength": true}
	in := map[string]*tensor.Tensor{"s": tensor.NewSequence([]*tensor.Tensor{
		tensor.FromFloat32([]float32{1, -2, 3, -4, 5, -6}, 2, 3),
		tensor.FromFloat32([]float32{-1, 2, -3, 4, -5, 6}, 2, 3),
	})}
	for _, tt := range []struct {
		name string
		x    device.Executor
	}{
		{"claims sequence ops", &fakeExec{name: "fake", ops: claims}},
		{"no Supports", noSupport{&fakeExec{name: "fake"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prog, r, err := Compile(g, tt.x, device.ExecOptions{}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			if r.OnDevice != 1 || len(r.Fallbacks) != 2 {
				t.Fatalf("%s; fallbacks %v: want Relu on the device and the sequence layers on the CPU", r.Summary(), r.Fallbacks)
			}
			for _, f := range r.Fallbacks {
				if !errors.Is(f.Reason, device.ErrUnsupported) || !strings.Contains(f.Reason.Error(), `"s" is a sequence(float32[2,3]): sequence and optional values run on the CPU`) {
					t.Errorf("%s (%s) falls back because %v, want the partitioner's reason", f.Node, f.Op, f.Reason)
				}
			}
			types := map[string]ir.Type{}
			g.Walk(func(_ *ir.Graph, n *ir.Node) {
				for _, v := range append(append([]*ir.Value(nil), n.Inputs...), n.Outputs...) {
					if v != nil {
						types[v.Name] = v.Type
					}
				}
			})
			for _, seg := range r.Segments {
				if seg.Device == CPU {
					continue
				}
				for _, name := range append(append([]string(nil), seg.Inputs...), seg.Outputs...) {
					if !types[name].IsTensor() {
						t.Errorf("device segment %v passes %s (%v)", seg.Nodes, name, types[name])
					}
				}
			}
			out, err := prog.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if y := out["y"]; y == nil || tensor.ShapeString(y.Shape) != "2x3" || y.Float32s()[1] != 2 || y.Float32s()[0] != 0 {
				t.Errorf("y = %v, want Relu of the second element", y)
			}
			if n := out["n"]; n == nil || n.Int64s()[0] != 2 {
				t.Errorf("n = %v, want 2", n)
			}
		})
	}
}
