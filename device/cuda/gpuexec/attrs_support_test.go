package gpuexec

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestTypedAttrsSupport: the CUDA executor decides from the op's typed
// attributes (ops.Parse*Attrs) with the node's opset, as the CPU kernel
// does: BatchNormalization before opset 14 with its statistics outputs
// named and is_test 0 is training mode on the CPU, so the GPU refuses it
// (it runs inference only); with is_test 1, or from opset 14 without
// training_mode, it runs it. An Add before opset 7 broadcasting from an
// axis (ops.BroadcastAttrs) is refused too; without the axis it lines up
// trailing dimensions, as the kernels do.
func TestTypedAttrsSupport(t *testing.T) {
	t.Run("batchnorm", testBatchNormSupport)
	for _, tt := range []struct {
		name   string
		opset  int64
		attrs  []*ir.Attr
		refuse string
	}{
		{"add opset 6 axis", 6, []*ir.Attr{ir.IntAttr("broadcast", 1), ir.IntAttr("axis", 1)}, "broadcasting from axis 1"},
		{"add opset 6 trailing", 6, []*ir.Attr{ir.IntAttr("broadcast", 1)}, ""},
		{"add opset 13", 13, nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := ir.NewBuilder("add", tt.opset)
			x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3), ir.D(4), ir.D(3))
			c := b.Const("c", tensor.FromFloat32([]float32{1, 2, 3}, 3))
			b.Output(b.Op("Add", []*ir.Value{x, c}, tt.attrs...), "y")
			g := b.Graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			checkSupport(t, g, tt.refuse)
		})
	}
}

// checkSupport checks the executor's answer for g's last node: nil when
// refuse is "", else an ErrUnsupported saying refuse.
func checkSupport(t *testing.T, g *ir.Graph, refuse string) {
	t.Helper()
	err := Supports(g.Nodes[len(g.Nodes)-1], g)
	switch {
	case refuse == "" && err != nil:
		t.Fatalf("Supports: %v, want nil", err)
	case refuse != "" && (!errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), refuse)):
		t.Fatalf("Supports: %v, want an ErrUnsupported saying %q", err, refuse)
	}
}

func testBatchNormSupport(t *testing.T) {
	for _, tt := range []struct {
		name   string
		opset  int64
		attrs  []*ir.Attr
		outs   int
		refuse string
	}{
		{"opset 9 training", 9, nil, 3, "training mode"},
		{"opset 9 is_test", 9, []*ir.Attr{ir.IntAttr("is_test", 1)}, 3, ""},
		{"opset 9 one output", 9, nil, 1, ""},
		{"opset 15 inference", 15, nil, 1, ""},
		{"opset 15 training_mode", 15, []*ir.Attr{ir.IntAttr("training_mode", 1)}, 1, "training mode"},
		{"opset 7 per activation", 7, []*ir.Attr{ir.IntAttr("spatial", 0)}, 1, "per activation"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := ir.NewBuilder("bn", tt.opset)
			x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3), ir.D(4), ir.D(4))
			ins := []*ir.Value{x}
			for _, p := range []string{"scale", "bias", "mean", "var"} {
				if tt.name == "opset 7 per activation" { // one value per channel and pixel
					ins = append(ins, b.Const(p, tensor.FromFloat32(make([]float32, 3*4*4), 3, 4, 4)))
					continue
				}
				ins = append(ins, b.Const(p, tensor.FromFloat32([]float32{1, 1, 1}, 3)))
			}
			ys := b.OpN("BatchNormalization", tt.outs, ins, tt.attrs...)
			b.Output(ys[0], "y")
			g := b.Graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			checkSupport(t, g, tt.refuse)
		})
	}
}
