package gpuexec

import (
	"bytes"
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
// trailing dimensions, as the kernels do. Resize reads its mode as the CPU
// does (any case, "bilinear" for linear), and refuses what its kernels do
// not run.
func TestTypedAttrsSupport(t *testing.T) {
	t.Run("batchnorm", testBatchNormSupport)
	t.Run("resize", testResizeSupport)
	t.Run("concat", testConcatAxis)
	t.Run("window", testWindowAttrs)
	t.Run("upsample", testUpsampleTaps)
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

func testResizeSupport(t *testing.T) {
	for _, tt := range []struct {
		name   string
		opset  int64
		attrs  []*ir.Attr
		refuse string
	}{
		{"linear upper case", 13, []*ir.Attr{ir.StringAttr("mode", "LINEAR")}, ""},
		{"bilinear", 13, []*ir.Attr{ir.StringAttr("mode", "bilinear")}, ""},
		{"cubic", 13, []*ir.Attr{ir.StringAttr("mode", "cubic")}, ""},
		{"opset 10 linear", 10, []*ir.Attr{ir.StringAttr("mode", "linear")}, ""},
		{"axes", 18, []*ir.Attr{ir.IntsAttr("axes", 2, 3)}, "axes"},
		{"not_larger", 18, []*ir.Attr{ir.StringAttr("keep_aspect_ratio_policy", "not_larger")}, "keep_aspect_ratio_policy"},
		{"tf_crop_and_resize", 13, []*ir.Attr{ir.StringAttr("coordinate_transformation_mode", "tf_crop_and_resize")}, "tf_crop_and_resize"},
		{"nearest exclude_outside", 13, []*ir.Attr{ir.IntAttr("exclude_outside", 1)}, "exclude_outside"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := ir.NewBuilder("resize", tt.opset)
			x := b.Input("x", tensor.Float32, ir.D(1), ir.D(2), ir.D(4), ir.D(4))
			sc := b.Const("scales", tensor.FromFloat32([]float32{1, 1, 2, 2}, 4))
			in := []*ir.Value{x, nil, sc}
			if tt.opset < 11 {
				in = []*ir.Value{x, sc}
			}
			if tt.opset >= 18 && len(tt.attrs) > 0 && tt.attrs[0].Name == "axes" {
				in[2] = b.Const("scales2", tensor.FromFloat32([]float32{2, 2}, 2))
			}
			b.Output(b.Op("Resize", in, tt.attrs...), "y")
			g := b.Graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			checkSupport(t, g, tt.refuse)
		})
	}
}

// testConcatAxis: Concat before opset 4 without an axis concatenates
// along axis 1 on the CPU; the CUDA copies did along axis 0. They now
// read ops.ConcatAttrs: the copies' rows are the batch, their columns
// each input's channels times the pixels.
func testConcatAxis(t *testing.T) {
	for _, tt := range []struct {
		name  string
		opset int64
		attrs []*ir.Attr
		yc    int64 // y's channels
		outer int64
		cols  []int64
	}{
		{"opset 3 default axis", 3, nil, 5, 2, []int64{12, 20}},
		{"opset 13 axis 1", 13, []*ir.Attr{ir.IntAttr("axis", 1)}, 5, 2, []int64{12, 20}},
		{"opset 13 axis -1", 13, []*ir.Attr{ir.IntAttr("axis", -1)}, 3, 6, []int64{4, 4}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := ir.NewBuilder("concat", tt.opset)
			x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3), ir.D(4))
			y := b.Input("y", tensor.Float32, ir.D(2), ir.D(tt.yc), ir.D(4))
			b.Output(b.Op("Concat", []*ir.Value{x, y}, tt.attrs...), "z")
			g := b.Graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			p, err := compile(g, false, false)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, s := range p.steps {
				for _, l := range s.launches {
					if s.node.OpType != "Concat" {
						continue
					}
					if l.args[2].i != tt.outer {
						t.Errorf("copy of %d rows, want %d", l.args[2].i, tt.outer)
					}
					got = append(got, l.args[3].i)
				}
			}
			if len(got) != len(tt.cols) || got[0] != tt.cols[0] || got[1] != tt.cols[1] {
				t.Errorf("copies of %v columns, want %v", got, tt.cols)
			}
		})
	}
}

// testWindowAttrs: the convolutions' and pools' windows come from
// ops.WindowAttrs, and a kernel_shape that is not the weights' (the CPU kernel refuses it
// when it runs) fails the compile.
func testWindowAttrs(t *testing.T) {
	for _, tt := range []struct {
		name   string
		op     string
		attrs  []*ir.Attr
		refuse string
		bad    bool
	}{
		{"conv", "Conv", []*ir.Attr{ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1)}, "", false},
		{"conv same_lower", "Conv", []*ir.Attr{ir.StringAttr("auto_pad", "SAME_LOWER")}, "", false},
		{"conv kernel_shape not the weights'", "Conv", []*ir.Attr{ir.IntsAttr("kernel_shape", 2, 2)}, "", true},
		{"maxpool", "MaxPool", []*ir.Attr{ir.IntsAttr("kernel_shape", 3, 3), ir.IntAttr("ceil_mode", 1), ir.IntsAttr("strides", 2, 2)}, "", false},
		{"averagepool pads", "AveragePool", []*ir.Attr{ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("pads", 1, 1, 1, 1), ir.IntAttr("count_include_pad", 1)}, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := ir.NewBuilder("window", 13)
			x := b.Input("x", tensor.Float32, ir.D(1), ir.D(4), ir.D(8), ir.D(8))
			in := []*ir.Value{x}
			if tt.op == "Conv" {
				in = append(in, b.Const("w", tensor.FromFloat32(make([]float32, 4*4*3*3), 4, 4, 3, 3)))
			}
			b.Output(b.Op(tt.op, in, tt.attrs...), "y")
			g := b.Graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			checkSupport(t, g, tt.refuse)
			_, err := compile(g, false, false)
			if tt.bad != (err != nil) {
				t.Fatalf("compile: %v, want an error %v", err, tt.bad)
			}
			if tt.bad && !errors.Is(err, ErrGraph) {
				t.Fatalf("compile: %v, want an ErrGraph", err)
			}
		})
	}
}

// testUpsampleTaps: Upsample's linear taps are Resize-10's, whatever
// Resize attributes the node carries (the CPU reads none of them; the
// CUDA executor read cubic_coeff_a, exclude_outside and antialias from
// the node).
func testUpsampleTaps(t *testing.T) {
	weights := func(attrs ...*ir.Attr) []byte {
		b := ir.NewBuilder("upsample", 9)
		x := b.Input("x", tensor.Float32, ir.D(1), ir.D(2), ir.D(4), ir.D(4))
		sc := b.Const("scales", tensor.FromFloat32([]float32{1, 1, 0.5, 0.5}, 4))
		b.Output(b.Op("Upsample", []*ir.Value{x, sc}, append([]*ir.Attr{ir.StringAttr("mode", "linear")}, attrs...)...), "y")
		g := b.Graph()
		if _, err := ops.InferGraph(g); err != nil {
			t.Fatal(err)
		}
		p, err := compile(g, false, false)
		if err != nil {
			t.Fatal(err)
		}
		return p.weights
	}
	plain := weights()
	if got := weights(ir.IntAttr("antialias", 1), ir.FloatAttr("cubic_coeff_a", -0.5)); !bytes.Equal(got, plain) {
		t.Errorf("taps with Resize's attributes %v, want %v", got, plain)
	}
}
