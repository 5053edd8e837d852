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

// supportGraph is x -> Relu -> LpNormalization -> Cast(bfloat16) -> Cast(float32) ->
// Split (both halves read) -> Add -> TopK (values and indices read), with a
// Shape -> Reshape on the way, and a MaxPool of another input whose indices
// are read: the nodes TestSupports asks about.
func supportGraph(t *testing.T) *ir.Graph {
	t.Helper()
	b := ir.NewBuilder("support", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(8))
	r := b.Op("Relu", []*ir.Value{x})
	axis := b.Const("axis", tensor.FromInt64([]int64{1}, 1))
	_ = axis
	c := b.Op("LpNormalization", []*ir.Value{r}, ir.IntAttr("axis", 1))
	i32 := b.Op("Cast", []*ir.Value{c}, ir.IntAttr("to", int64(tensor.BFloat16)))
	f32 := b.Op("Cast", []*ir.Value{i32}, ir.IntAttr("to", int64(tensor.Float32)))
	sh := b.Op("Shape", []*ir.Value{f32})
	re := b.Op("Reshape", []*ir.Value{f32, sh})
	halves := b.OpN("Split", 2, []*ir.Value{re}, ir.IntAttr("axis", 1), ir.IntAttr("num_outputs", 2))
	sum := b.Op("Add", []*ir.Value{halves[0], halves[1]})
	k := b.Const("k", tensor.FromInt64([]int64{2}, 1))
	top := b.OpN("TopK", 2, []*ir.Value{sum, k})
	// A mask the size of x, from x's shape: folds once shapes are bound.
	mask := b.Op("ConstantOfShape", []*ir.Value{b.Op("Shape", []*ir.Value{x})})
	b.Output(mask, "mask")
	b.Output(top[0], "values")
	b.Output(top[1], "indices")
	img := b.Input("img", tensor.Float32, ir.D(1), ir.D(1), ir.D(4), ir.D(4))
	pool := b.OpN("MaxPool", 2, []*ir.Value{img}, ir.IntsAttr("kernel_shape", 2, 2))
	b.Output(pool[0], "pooled")
	b.Output(pool[1], "argmax")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestSupports checks, node by node, the executor's answer: ops without a
// CUDA implementation (LpNormalization), a cast it has no kernel for, and the
// ops it runs, including a Shape and a ConstantOfShape of it that fold
// once shapes are bound; a second output read where the op has none on the
// GPU (MaxPool's indices).
func TestSupports(t *testing.T) {
	WithoutKernel(t, "LpNormalization") // an op the GPU lacks
	g := supportGraph(t)
	want := map[string]string{ // op (first of its type) -> "" or a phrase of the reason
		"Relu":            "",
		"LpNormalization": "op LpNormalization has no CUDA implementation",
		"Cast":            "Cast from float32 to bfloat16",
		"Shape":           "",
		"Reshape":         "",
		"Split":           "",
		"Add":             "",
		"TopK":            "",
		"MaxPool":         `output 1 ("argmax") of MaxPool has no CUDA implementation`,
		"ConstantOfShape": "",
	}
	seen := map[string]bool{}
	for _, n := range g.Nodes {
		if seen[n.OpType] {
			continue
		}
		seen[n.OpType] = true
		w, ok := want[n.OpType]
		if !ok {
			t.Fatalf("unexpected node %v", n)
		}
		err := Supports(n, g)
		switch {
		case w == "" && err != nil:
			t.Errorf("%v: %v, want supported", n, err)
		case w != "" && (err == nil || !strings.Contains(err.Error(), w)):
			t.Errorf("%v: %v, want an error saying %q", n, err, w)
		case w != "" && (!errors.Is(err, ErrUnsupported) || !errors.Is(err, device.ErrUnsupported)):
			t.Errorf("%v: %v wraps neither ErrUnsupported nor device.ErrUnsupported", n, err)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("saw ops %v, want %v", seen, want)
	}
}

// TestSupportsMatchesCompile checks that Supports and the compiler make
// one decision: for graphs of one node each, compile fails exactly when
// Supports refuses, with the same reason.
func TestSupportsMatchesCompile(t *testing.T) {
	WithoutKernel(t, "LpNormalization") // an op the GPU lacks
	tests := []struct {
		name  string
		build func(b *ir.Builder, x *ir.Value) *ir.Value
		ok    bool
	}{
		{"relu", func(b *ir.Builder, x *ir.Value) *ir.Value { return b.Op("Relu", []*ir.Value{x}) }, true},
		{"cumsum", func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("CumSum", []*ir.Value{x, b.Const("axis", tensor.FromInt64([]int64{1}, 1))})
		}, true},
		{"lp normalization", func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("LpNormalization", []*ir.Value{x}, ir.IntAttr("axis", 1))
		}, false},
		{"hardsigmoid", func(b *ir.Builder, x *ir.Value) *ir.Value { return b.Op("HardSigmoid", []*ir.Value{x}) }, true},
		{"cast to int64", func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Cast", []*ir.Value{x}, ir.IntAttr("to", int64(tensor.Int64)))
		}, true},
		{"cast to bfloat16", func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Cast", []*ir.Value{x}, ir.IntAttr("to", int64(tensor.BFloat16)))
		}, false},
		{"clip with a computed bound", func(b *ir.Builder, x *ir.Value) *ir.Value {
			lo := b.Op("ReduceMin", []*ir.Value{x}, ir.IntAttr("keepdims", 0))
			return b.Op("Clip", []*ir.Value{x, lo})
		}, true},
		{"transpose", func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Transpose", []*ir.Value{x}, ir.IntsAttr("perm", 1, 0))
		}, true},
		{"split with a used second output", func(b *ir.Builder, x *ir.Value) *ir.Value {
			h := b.OpN("Split", 2, []*ir.Value{x}, ir.IntAttr("axis", 1), ir.IntAttr("num_outputs", 2))
			return b.Op("Add", []*ir.Value{h[0], h[1]})
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ir.NewBuilder(tt.name, 17)
			x := b.Input("x", tensor.Float32, ir.D(2), ir.D(8))
			b.Output(tt.build(b, x), "y")
			g := b.Graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			var refused error
			for _, n := range g.Nodes {
				if err := Supports(n, g); err != nil && refused == nil {
					refused = err
				}
			}
			_, cerr := compile(g, false, false)
			if tt.ok != (refused == nil) {
				t.Errorf("Supports: %v, want supported %v", refused, tt.ok)
			}
			if (refused == nil) != (cerr == nil) {
				t.Fatalf("Supports says %v, compile says %v", refused, cerr)
			}
			if refused != nil && !strings.Contains(cerr.Error(), refused.Error()) {
				t.Errorf("compile's reason %q is not Supports' %q", cerr, refused)
			}
		})
	}
}

// TestSupportsLimits checks the limits the compiler finds on attributes,
// ranks and shapes, which Supports learns by compiling the node alone
// (symbolic sizes probed): they send the node to the CPU instead of
// failing the build.
func TestSupportsLimits(t *testing.T) {
	f := func(v ...float32) *tensor.Tensor { return tensor.FromFloat32(v, len(v)) }
	tests := []struct {
		name  string
		shape []ir.Dim
		build func(b *ir.Builder, x *ir.Value) *ir.Value
		want  string // "" when supported
	}{
		{"nearest resize", []ir.Dim{ir.S("n"), ir.D(3), ir.S("h"), ir.S("w")}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Resize", []*ir.Value{x, nil, b.Const("", f(1, 1, 2, 2))}, &ir.Attr{Name: "mode", Type: ir.AttrString, S: "nearest"})
		}, ""},
		{"linear resize", []ir.Dim{ir.S("n"), ir.D(3), ir.S("h"), ir.S("w")}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Resize", []*ir.Value{x, nil, b.Const("", f(1, 1, 2, 2))}, &ir.Attr{Name: "mode", Type: ir.AttrString, S: "linear"})
		}, ""},
		{"cubic resize, align_corners", []ir.Dim{ir.S("n"), ir.D(3), ir.S("h"), ir.S("w")}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Resize", []*ir.Value{x, nil, b.Const("", f(1, 1, 2, 0.5))}, &ir.Attr{Name: "mode", Type: ir.AttrString, S: "cubic"},
				&ir.Attr{Name: "coordinate_transformation_mode", Type: ir.AttrString, S: "align_corners"})
		}, ""},
		{"tf_crop_and_resize", []ir.Dim{ir.S("n"), ir.D(3), ir.S("h"), ir.S("w")}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Resize", []*ir.Value{x, b.Const("", f(0, 0, 0, 0, 1, 1, 1, 1)), b.Const("", f(1, 1, 2, 2))}, &ir.Attr{Name: "mode", Type: ir.AttrString, S: "linear"},
				&ir.Attr{Name: "coordinate_transformation_mode", Type: ir.AttrString, S: "tf_crop_and_resize"})
		}, "tf_crop_and_resize"},
		{"2-D convolution", []ir.Dim{ir.S("n"), ir.D(3), ir.S("h"), ir.S("w")}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Conv", []*ir.Value{x, b.Const("", tensor.New(tensor.Float32, 4, 3, 3, 3))}, ir.IntsAttr("kernel_shape", 3, 3))
		}, ""},
		{"3-D convolution", []ir.Dim{ir.D(1), ir.D(3), ir.D(8), ir.D(8), ir.D(8)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Conv", []*ir.Value{x, b.Const("", tensor.New(tensor.Float32, 4, 3, 3, 3, 3))}, ir.IntsAttr("kernel_shape", 3, 3, 3))
		}, ""},
		{"4-D convolution", []ir.Dim{ir.D(1), ir.D(3), ir.D(4), ir.D(4), ir.D(4), ir.D(4)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Conv", []*ir.Value{x, b.Const("", tensor.New(tensor.Float32, 4, 3, 3, 3, 3, 3))}, ir.IntsAttr("kernel_shape", 3, 3, 3, 3))
		}, "4-D convolution"},
		{"ConvTranspose 2-D", []ir.Dim{ir.S("n"), ir.D(3), ir.S("h"), ir.S("w")}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("ConvTranspose", []*ir.Value{x, b.Const("", tensor.New(tensor.Float32, 3, 4, 2, 2))}, ir.IntsAttr("strides", 2, 2))
		}, ""},
		{"ConvTranspose 3-D", []ir.Dim{ir.D(1), ir.D(3), ir.D(4), ir.D(4), ir.D(4)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("ConvTranspose", []*ir.Value{x, b.Const("", tensor.New(tensor.Float32, 3, 2, 2, 2, 2))})
		}, "3-D ConvTranspose"},
		{"1-D convolution", []ir.Dim{ir.S("n"), ir.D(3), ir.S("l")}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Conv", []*ir.Value{x, b.Const("", tensor.New(tensor.Float32, 4, 3, 5))}, ir.IntsAttr("pads", 2, 2))
		}, ""},
		{"1-D max pooling", []ir.Dim{ir.S("n"), ir.D(3), ir.S("l")}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("MaxPool", []*ir.Value{x}, ir.IntsAttr("kernel_shape", 3), ir.IntAttr("ceil_mode", 1), ir.IntsAttr("strides", 2))
		}, ""},
		{"3-D average pooling", []ir.Dim{ir.D(1), ir.D(3), ir.D(4), ir.D(4), ir.D(4)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("AveragePool", []*ir.Value{x}, ir.IntsAttr("kernel_shape", 2, 2, 2))
		}, ""},
		{"4-D average pooling", []ir.Dim{ir.D(1), ir.D(3), ir.D(4), ir.D(4), ir.D(4), ir.D(4)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("AveragePool", []*ir.Value{x}, ir.IntsAttr("kernel_shape", 2, 2, 2, 2))
		}, "4-D pooling"},
		{"ReduceMean over constant axes", []ir.Dim{ir.S("n"), ir.D(10)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("ReduceMean", []*ir.Value{x, b.Const("", tensor.FromInt64([]int64{1}, 1))})
		}, ""},
		{"ScatterND with reduction add", []ir.Dim{ir.D(4), ir.D(3)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("ScatterND", []*ir.Value{x, b.Const("", tensor.FromInt64([]int64{1}, 1, 1)), b.Const("", tensor.New(tensor.Float32, 1, 3))}, ir.StringAttr("reduction", "add"))
		}, `reduction "add"`},
		{"BatchNormalization in training mode", []ir.Dim{ir.D(2), ir.D(3), ir.D(4)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			c := func() *ir.Value { return b.Const("", tensor.New(tensor.Float32, 3)) }
			return b.Op("BatchNormalization", []*ir.Value{x, c(), c(), c(), c()}, ir.IntAttr("training_mode", 1))
		}, "training mode"},
		{"Pad reflect", []ir.Dim{ir.S("n"), ir.D(5)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Pad", []*ir.Value{x, b.Const("", tensor.FromInt64([]int64{0, 2, 0, 1}, 4))}, ir.StringAttr("mode", "reflect"))
		}, ""},
		{"Where of bools", []ir.Dim{ir.S("n"), ir.D(5)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Where", []*ir.Value{b.Op("Less", []*ir.Value{x, b.Const("", tensor.FromFloat32([]float32{0}))}), x, b.Op("Neg", []*ir.Value{x})})
		}, ""},
		{"Cast to bfloat16", []ir.Dim{ir.S("n"), ir.D(5)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Cast", []*ir.Value{x}, ir.IntAttr("to", int64(tensor.BFloat16)))
		}, "Cast from float32 to bfloat16"},
		{"Resize with axes", []ir.Dim{ir.S("n"), ir.D(3), ir.S("h"), ir.S("w")}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Resize", []*ir.Value{x, nil, b.Const("", f(2, 2))}, &ir.Attr{Name: "mode", Type: ir.AttrString, S: "linear"}, ir.IntsAttr("axes", 2, 3))
		}, "Resize with axes"},
		{"softmax over the last axis", []ir.Dim{ir.S("n"), ir.D(10)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Softmax", []*ir.Value{x}, ir.IntAttr("axis", -1))
		}, ""},
		{"softmax over the first axis", []ir.Dim{ir.S("n"), ir.D(10)}, func(b *ir.Builder, x *ir.Value) *ir.Value {
			return b.Op("Softmax", []*ir.Value{x}, ir.IntAttr("axis", 0))
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ir.NewBuilder(tt.name, 17)
			x := b.Input("x", tensor.Float32, tt.shape...)
			b.Output(tt.build(b, x), "y")
			g := b.Graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			err := Supports(g.Nodes[0], g)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("%v, want supported", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, device.ErrUnsupported)):
				t.Errorf("%v, want an error saying %q", err, tt.want)
			}
		})
	}
}
