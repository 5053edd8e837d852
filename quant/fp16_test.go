package quant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// fp16MLP is x[batch,8] -> MatMul(W) -> Add(B) -> Relu -> LayerNorm -> y,
// with the Relu output also a graph output ("relu") and a Shape of x
// ("shape"). A second MatMul (W2) reads the Relu output into output "z".
func fp16MLP(t *testing.T) *ir.Graph {
	t.Helper()
	b := ir.NewBuilder("mlp", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(8))
	w := b.Const("W", fp16Ramp(8, 6))
	m := b.Op("MatMul", []*ir.Value{x, w})
	a := b.Op("Add", []*ir.Value{m, b.Const("B", fp16Ramp(6))})
	r := b.Op("Relu", []*ir.Value{a})
	ln := b.Op("LayerNormalization", []*ir.Value{r, b.Const("gamma", fp16Ramp(6)), b.Const("beta", fp16Ramp(6))})
	z := b.Op("MatMul", []*ir.Value{r, b.Const("W2", fp16Ramp(6, 3))})
	s := b.Op("Shape", []*ir.Value{x})
	b.Output(ln, "y")
	b.Output(r, "relu")
	b.Output(z, "z")
	b.Output(s, "shape")
	return b.Graph()
}

// fp16Ramp returns a float32 tensor of the given shape holding values
// spread over [-1, 1].
func fp16Ramp(shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Float32, shape...)
	v := t.Float32s()
	for i := range v {
		v[i] = float32(math.Sin(float64(i)*1.7 + float64(len(v))))
	}
	return t
}

func fp16Node(g *ir.Graph, name string) *ir.Node {
	for _, n := range g.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func fp16Run(t *testing.T, g *ir.Graph, in map[string]*tensor.Tensor, observe engine.Observer) map[string]*tensor.Tensor {
	t.Helper()
	e, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.RunObserved(context.Background(), in, observe)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fp16Cosine returns the cosine similarity of a and b (1 when both are
// zero) and their largest absolute difference.
func fp16Cosine(a, b *tensor.Tensor) (cos, maxAbs float64) {
	var dot, na, nb float64
	for i, n := 0, a.Len(); i < n; i++ {
		x, y := a.Float(i), b.Float(i)
		dot += x * y
		na += x * x
		nb += y * y
		maxAbs = max(maxAbs, math.Abs(x-y))
	}
	if na == 0 && nb == 0 {
		return 1, maxAbs
	}
	return dot / math.Sqrt(na*nb), maxAbs
}

func TestFP16ConvertSmallGraph(t *testing.T) {
	g := fp16MLP(t)
	rep, err := FP16Convert(g, FP16Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	// initializers keep their names and turn float16
	for _, v := range g.Initializers {
		if v.Const.DType != tensor.Float16 || v.Type.DType != tensor.Float16 {
			t.Errorf("initializer %s is %v (%v), want float16", v.Name, v.Const.DType, v.Type.DType)
		}
	}
	if len(g.Initializers) != 5 {
		t.Errorf("%d initializers, want 5", len(g.Initializers))
	}
	// the boundary keeps float32 types and names
	if g.Inputs[0].Name != "x" || g.Inputs[0].Type.DType != tensor.Float32 {
		t.Errorf("input is %v, want x:float32", g.Inputs[0])
	}
	for _, v := range g.Outputs {
		want := tensor.Float32
		if v.Name == "shape" {
			want = tensor.Int64
		}
		if v.Type.DType != want {
			t.Errorf("output %v, want %v", v, want)
		}
	}
	// x -> fp16, and fp16 -> fp32 before the three float outputs
	if rep.Casts != 4 {
		t.Errorf("%d casts, want 4", rep.Casts)
	}
	casts := 0
	for _, n := range g.Nodes {
		if n.OpType == "Cast" {
			casts++
		}
		if n.OpType == "Shape" && n.Inputs[0] != g.Inputs[0] {
			t.Errorf("Shape reads %v, want the graph input itself (no Cast)", n.Inputs[0])
		}
	}
	if casts != rep.Casts {
		t.Errorf("graph has %d casts, report says %d", casts, rep.Casts)
	}
	mm := fp16Node(g, "MatMul_1")
	if mm.Inputs[0].Type.DType != tensor.Float16 || mm.Outputs[0].Type.DType != tensor.Float16 {
		t.Errorf("MatMul reads %v and writes %v, want float16", mm.Inputs[0], mm.Outputs[0])
	}
	if rep.WeightBytesAfter*2 != rep.WeightBytesBefore {
		t.Errorf("weights %d -> %d bytes, want halved", rep.WeightBytesBefore, rep.WeightBytesAfter)
	}
	want := map[string]string{"MatMul_1": "fp16", "Add_1": "fp16", "Relu_1": "fp16", "LayerNormalization_1": "fp16", "MatMul_2": "fp16", "Shape_1": ""}
	for _, l := range rep.Layers {
		if p, ok := want[l.Name]; !ok || p != l.Precision {
			t.Errorf("layer %s (%s) is %q, want %q", l.Name, l.OpType, l.Precision, p)
		}
	}
	if len(rep.Layers) != len(want) {
		t.Errorf("%d layers reported, want %d", len(rep.Layers), len(want))
	}
	// it runs, close to float32
	in := map[string]*tensor.Tensor{"x": fp16Ramp(3, 8)}
	got := fp16Run(t, g, in, nil)
	ref := fp16Run(t, fp16MLP(t), in, nil)
	for name, w := range ref {
		if got[name].DType != w.DType {
			t.Fatalf("output %s is %v, want %v", name, got[name].DType, w.DType)
		}
		cos, maxAbs := fp16Cosine(got[name], w)
		t.Logf("%s: cosine %.6f, max abs error %.3g", name, cos, maxAbs)
		if cos < 0.999 {
			t.Errorf("output %s: cosine %.6f < 0.999", name, cos)
		}
	}
}

// TestFP16KeepFP32 keeps one layer in float32 and checks that it reads and
// writes float32 tensors while its neighbours run in float16.
func TestFP16KeepFP32(t *testing.T) {
	g := fp16MLP(t)
	rep, err := FP16Convert(g, FP16Options{KeepFP32: []string{"Add_1"}})
	if err != nil {
		t.Fatal(err)
	}
	add := fp16Node(g, "Add_1")
	for _, v := range append(append([]*ir.Value{}, add.Inputs...), add.Outputs...) {
		if v.Type.DType != tensor.Float32 {
			t.Errorf("kept layer Add_1 has %v, want float32", v)
		}
	}
	// B feeds only the kept layer: it stays float32
	for _, v := range g.Initializers {
		if want := map[bool]tensor.DType{true: tensor.Float32, false: tensor.Float16}[v.Name == "B"]; v.Const.DType != want {
			t.Errorf("initializer %s is %v, want %v", v.Name, v.Const.DType, want)
		}
	}
	// x->16, MatMul out ->32, Add out ->16, and the three outputs
	if rep.Casts != 6 {
		t.Errorf("%d casts, want 6", rep.Casts)
	}
	for _, l := range rep.Layers {
		if (l.Name == "Add_1") != (l.Precision == FP16PrecisionSingle) {
			t.Errorf("layer %s is %q", l.Name, l.Precision)
		}
	}
	seen := map[string]tensor.DType{}
	fp16Run(t, g, map[string]*tensor.Tensor{"x": fp16Ramp(2, 8)}, func(v *ir.Value, x *tensor.Tensor) {
		if v.Producer != nil {
			seen[v.Producer.Name] = x.DType
		}
	})
	if seen["Add_1"] != tensor.Float32 || seen["MatMul_1"] != tensor.Float16 || seen["Relu_1"] != tensor.Float16 {
		t.Errorf("computed types: Add_1 %v (want float32), MatMul_1 %v, Relu_1 %v (want float16)", seen["Add_1"], seen["MatMul_1"], seen["Relu_1"])
	}
}

// TestFP16SharedInitializer: an initializer read by a float16 layer and a
// float32 one keeps its float32 value and gains a float16 copy.
func TestFP16SharedInitializer(t *testing.T) {
	build := func() *ir.Graph {
		b := ir.NewBuilder("shared", 13)
		x := b.Input("x", tensor.Float32, ir.D(2), ir.D(4))
		w := b.Const("W", fp16Ramp(4, 4))
		h := b.Op("MatMul", []*ir.Value{x, w})
		y := b.Op("MatMul", []*ir.Value{h, w})
		b.Output(y, "y")
		return b.Graph()
	}
	g := build()
	rep, err := FP16Convert(g, FP16Options{KeepFP32: []string{"MatMul_2"}})
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]tensor.DType{}
	for _, v := range g.Initializers {
		types[v.Name] = v.Const.DType
	}
	if len(types) != 2 || types["W"] != tensor.Float32 || types["W_fp16"] != tensor.Float16 {
		t.Errorf("initializers %v, want W float32 and W_fp16 float16", types)
	}
	if rep.WeightBytesAfter != rep.WeightBytesBefore*3/2 {
		t.Errorf("weights %d -> %d bytes", rep.WeightBytesBefore, rep.WeightBytesAfter)
	}
	in := map[string]*tensor.Tensor{"x": fp16Ramp(2, 4)}
	got := fp16Run(t, g, in, nil)["y"]
	want := fp16Run(t, build(), in, nil)["y"]
	if cos, maxAbs := fp16Cosine(got, want); got.DType != tensor.Float32 || cos < 0.999 {
		t.Errorf("y = %v, want %v (cosine %.6f, max abs error %.3g)", got, want, cos, maxAbs)
	}
}

// TestFP16Constants: a float32 Constant beyond float16's range is clamped
// to +-65504 (so that 0*c stays 0 instead of NaN, as in attention masks),
// and a Cast to float becomes a Cast to float16.
func TestFP16Constants(t *testing.T) {
	b := ir.NewBuilder("mask", 13)
	mask := b.Input("mask", tensor.Int64, ir.D(4))
	big := b.Op("Constant", nil, &ir.Attr{Name: "value", Type: ir.AttrTensor, T: tensor.FromFloat32([]float32{-3.4e38}, 1)})
	f := b.Op("Cast", []*ir.Value{mask}, ir.IntAttr("to", int64(tensor.Float32)))
	inv := b.Op("Sub", []*ir.Value{b.Const("one", tensor.FromFloat32([]float32{1}, 1)), f})
	y := b.Op("Mul", []*ir.Value{inv, big})
	b.Output(y, "y")
	g := b.Graph()
	if _, err := FP16Convert(g, FP16Options{}); err != nil {
		t.Fatal(err)
	}
	if to := fp16Node(g, "Cast_1").Attrs["to"].I; tensor.DType(to) != tensor.Float16 {
		t.Errorf("Cast to %v, want float16", tensor.DType(to))
	}
	got := fp16Run(t, g, map[string]*tensor.Tensor{"mask": tensor.FromInt64([]int64{1, 1, 0, 1}, 4)}, nil)["y"]
	want := []float32{0, 0, -65504, 0}
	for i, w := range want {
		if v := got.Float32s()[i]; v != w {
			t.Fatalf("y = %v, want %v", got, want)
		}
	}
}

func TestFP16ConvertErrors(t *testing.T) {
	tests := []struct {
		name string
		g    *ir.Graph
		opt  FP16Options
	}{
		{"nil graph", nil, FP16Options{}},
		{"unknown layer", fp16MLP(t), FP16Options{KeepFP32: []string{"Add_1", "nope"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := FP16Convert(tt.g, tt.opt); !errors.Is(err, ErrFP16) {
				t.Fatalf("err = %v, want ErrFP16", err)
			}
		})
	}
}

func TestFP16Narrow(t *testing.T) {
	in := []float32{0, 1, -2.5, 1e-9, 70000, -3.4e38, float32(math.Inf(1)), float32(math.NaN()), 65504, 0.1}
	want := []float32{0, 1, -2.5, 0, 65504, -65504, float32(math.Inf(1)), float32(math.NaN()), 65504, 0.099975586}
	got := fp16Narrow(tensor.FromFloat32(in, len(in)))
	for i, w := range want {
		g := tensor.HalfToFloat32(got.Halfs()[i])
		if g != w && !(math.IsNaN(float64(g)) && math.IsNaN(float64(w))) {
			t.Errorf("%g -> %g, want %g", in[i], g, w)
		}
	}
}

// fp16SharedModels is where CI keeps the reference models.
const fp16SharedModels = "../../shared/models"

// fp16LoadModel reads a shared model and its first test data set; it skips
// the test when the model is absent.
func fp16LoadModel(t *testing.T, name string) (*ir.Graph, map[string]*tensor.Tensor, []*tensor.Tensor) {
	t.Helper()
	dir := filepath.Join(fp16SharedModels, name)
	f, err := onnx.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Skipf("needs %s/model.onnx (the shared reference models): %v", dir, err)
	}
	t.Cleanup(func() { f.Close() })
	g, err := onnx.ToGraph(f.Model, f)
	if err != nil {
		t.Fatal(err)
	}
	var inputs []*ir.Value
	for _, v := range g.Inputs {
		if v.Const == nil {
			inputs = append(inputs, v)
		}
	}
	set := filepath.Join(dir, "test_data_set_0")
	in := map[string]*tensor.Tensor{}
	for i := 0; ; i++ {
		x, name, err := onnx.ReadTensorFile(filepath.Join(set, fmt.Sprintf("input_%d.pb", i)))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if name == "" && i < len(inputs) {
			name = inputs[i].Name
		}
		in[name] = x
	}
	var want []*tensor.Tensor
	for i := 0; ; i++ {
		x, _, err := onnx.ReadTensorFile(filepath.Join(set, fmt.Sprintf("output_%d.pb", i)))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, x)
	}
	return g, in, want
}

// TestFP16Models converts every shared model, optimized (and, outside
// short mode, unoptimized) and checks its outputs against the float32
// reference outputs: cosine similarity at least 0.999 per output.
func TestFP16Models(t *testing.T) {
	for _, name := range []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "bert_mini", "yolo_tiny"} {
		for _, opt := range []bool{true, false} {
			label := name + "/optimized"
			if !opt {
				label = name + "/unoptimized"
			}
			t.Run(label, func(t *testing.T) {
				if !opt && testing.Short() {
					t.Skip("short mode: optimized graphs only")
				}
				g, in, want := fp16LoadModel(t, name)
				if opt {
					if err := optimize.Run(g, 2, nil); err != nil {
						t.Fatal(err)
					}
				}
				rep, err := FP16Convert(g, FP16Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Log(rep)
				if rep.Count(FP16PrecisionSingle) != 0 {
					t.Errorf("%d layers stayed fp32", rep.Count(FP16PrecisionSingle))
				}
				e, err := engine.New(g)
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				out, err := e.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				elapsed := time.Since(start)
				for i, v := range e.Outputs() {
					if i >= len(want) {
						break
					}
					got := out[v.Name]
					if got.DType != want[i].DType || got.Len() != want[i].Len() {
						t.Fatalf("output %s is %v%v, want %v%v", v.Name, got.DType, got.Shape, want[i].DType, want[i].Shape)
					}
					cos, maxAbs := fp16Cosine(got, want[i])
					t.Logf("output %s: cosine %.6f, max abs error %.4g (run %v)", v.Name, cos, maxAbs, elapsed.Round(time.Millisecond))
					if cos < 0.999 || math.IsNaN(cos) {
						t.Errorf("output %s: cosine %.6f < 0.999", v.Name, cos)
					}
				}
			})
		}
	}
}

// TestFP16Subgraph: a node with subgraphs stays float32 and the values its
// branches capture reach them as float32.
func TestFP16Subgraph(t *testing.T) {
	build := func() *ir.Graph {
		b := ir.NewBuilder("if", 13)
		x := b.Input("x", tensor.Float32, ir.D(4))
		cond := b.Input("cond", tensor.Bool)
		r := b.Op("Relu", []*ir.Value{x})
		g := b.Graph()
		branch := func(name, op string) *ir.Graph {
			sg := &ir.Graph{Name: name, Parent: g}
			c := sg.Capture(r)
			out := &ir.Value{Name: name + "_out"}
			sg.Nodes = []*ir.Node{{Name: name + "_op", OpType: op, Inputs: []*ir.Value{c}, Outputs: []*ir.Value{out}}}
			sg.Outputs = []*ir.Value{out}
			return sg
		}
		y := b.Op("If", []*ir.Value{cond}, ir.GraphAttr("then_branch", branch("then", "Neg")), ir.GraphAttr("else_branch", branch("else", "Identity")))
		z := b.Op("Mul", []*ir.Value{y, x})
		b.Output(z, "z")
		return g
	}
	g := build()
	rep, err := FP16Convert(g, FP16Options{})
	if err != nil {
		t.Fatal(err)
	}
	prec := map[string]string{}
	for _, l := range rep.Layers {
		prec[l.OpType] = l.Precision
	}
	if prec["If"] != FP16PrecisionSingle || prec["Relu"] != FP16PrecisionHalf || prec["Mul"] != FP16PrecisionHalf {
		t.Errorf("precisions %v", prec)
	}
	for _, n := range g.Nodes {
		for _, sg := range n.Subgraphs() {
			if c := sg.Captures[0]; c.Outer.Type.DType != tensor.Float32 {
				t.Errorf("%s captures %v, want float32", sg.Name, c.Outer)
			}
		}
	}
	x := tensor.FromFloat32([]float32{-1, 0.5, 2, -3}, 4)
	for _, c := range []bool{true, false} {
		cond := tensor.New(tensor.Bool)
		cond.Bools()[0] = c
		in := map[string]*tensor.Tensor{"x": x, "cond": cond}
		got := fp16Run(t, g, in, nil)["z"]
		want := fp16Run(t, build(), in, nil)["z"]
		if cos, maxAbs := fp16Cosine(got, want); cos < 0.999 || maxAbs > 1e-3 {
			t.Errorf("cond %v: z = %v, want %v", c, got, want)
		}
	}
}

// TestFP16ConvertTwice: converting a converted graph changes nothing.
func TestFP16ConvertTwice(t *testing.T) {
	g := fp16MLP(t)
	if _, err := FP16Convert(g, FP16Options{}); err != nil {
		t.Fatal(err)
	}
	in := map[string]*tensor.Tensor{"x": fp16Ramp(3, 8)}
	first := fp16Run(t, g, in, nil)
	nodes := len(g.Nodes)
	rep, err := FP16Convert(g, FP16Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Casts != 0 || len(g.Nodes) != nodes || rep.WeightBytesAfter != rep.WeightBytesBefore {
		t.Errorf("second conversion: %v, %d nodes (was %d)", rep, len(g.Nodes), nodes)
	}
	second := fp16Run(t, g, in, nil)
	for name, w := range first {
		if string(second[name].Data) != string(w.Data) {
			t.Errorf("output %s changed", name)
		}
	}
}

// TestFP16ConcurrentRuns runs one float16 engine from several goroutines
// (the adapter's cached weights and scratch buffers are shared; run with
// -race).
func TestFP16ConcurrentRuns(t *testing.T) {
	g := fp16MLP(t)
	if _, err := FP16Convert(g, FP16Options{}); err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]*tensor.Tensor{"x": fp16Ramp(256, 8)} // buffers big enough to be recycled
	want, err := e.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		go func() {
			for i := 0; i < 20; i++ {
				got, err := e.Run(context.Background(), in)
				if err != nil {
					errs <- err
					return
				}
				for name, x := range want {
					if string(got[name].Data) != string(x.Data) {
						errs <- fmt.Errorf("run %d: output %s differs", i, name)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < 8; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestFP16KeepFP32Overrides(t *testing.T) {
	tests := []struct {
		spec    string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"Add_1:fp32", []string{"Add_1"}, false},
		{"b:fp32, a:FP32", []string{"a", "b"}, false},
		{"Add_1:int8", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			layers, err := ParseLayerPrecisions(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := FP16KeepFP32(layers)
			if tt.wantErr {
				if !errors.Is(err, ErrFP16) {
					t.Fatalf("err = %v, want ErrFP16", err)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("FP16KeepFP32(%q) = %v, %v; want %v", tt.spec, got, err, tt.want)
			}
		})
	}
	if _, err := FP16KeepFP32(map[string]Precision{"x": FP16PrecisionHalf}); err != nil {
		t.Errorf("fp16 override: %v", err)
	}
}

func TestFP16ReportString(t *testing.T) {
	g := fp16MLP(t)
	rep, err := FP16Convert(g, FP16Options{KeepFP32: []string{"Add_1"}})
	if err != nil {
		t.Fatal(err)
	}
	s := rep.String()
	for _, want := range []string{"FP16: 4 layers in fp16, 1 in fp32, 6 casts inserted", "fp32  Add_1 (Add): kept in fp32"} {
		if !strings.Contains(s, want) {
			t.Errorf("report %q lacks %q", s, want)
		}
	}
	b, err := json.Marshal(rep)
	if err != nil || !strings.Contains(string(b), `{"name":"Add_1","op":"Add","precision":"fp32"`) {
		t.Errorf("JSON %s, %v", b, err)
	}
}

// TestFP16Decide: FP16Decide takes FP16Convert's decisions (the same
// layers, precisions and reasons) without touching the graph, and
// LayerPrecision gives them by name for a device, layers without float
// values (the Shape) left out.
func TestFP16Decide(t *testing.T) {
	for _, keep := range [][]string{nil, {"Add_1"}, {"Add_1", "MatMul_2"}} {
		t.Run(strings.Join(keep, ","), func(t *testing.T) {
			g := fp16MLP(t)
			before := len(g.Nodes)
			dec, err := FP16Decide(g, FP16Options{KeepFP32: keep})
			if err != nil {
				t.Fatal(err)
			}
			if len(g.Nodes) != before {
				t.Errorf("FP16Decide changed the graph: %d nodes, had %d", len(g.Nodes), before)
			}
			for _, v := range g.Initializers {
				if v.Const.DType != tensor.Float32 {
					t.Errorf("FP16Decide narrowed initializer %s", v.Name)
				}
			}
			conv, err := FP16Convert(fp16MLP(t), FP16Options{KeepFP32: keep})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(dec.Layers) != fmt.Sprint(conv.Layers) {
				t.Errorf("decided %v, converted %v", dec.Layers, conv.Layers)
			}
			lp := dec.LayerPrecision()
			for _, l := range dec.Layers {
				if _, ok := lp[l.Name]; l.OpType == "Shape" && (ok || l.Precision != FP16PrecisionNone) {
					t.Errorf("the Shape %s is decided %q, in LayerPrecision %v", l.Name, l.Precision, ok)
				}
				want := l.Precision
				if slices.Contains(keep, l.Name) && want != FP16PrecisionSingle {
					t.Errorf("kept layer %s decided %q", l.Name, want)
				}
				if got := lp[l.Name]; want != FP16PrecisionNone && got != want {
					t.Errorf("LayerPrecision[%s] = %q, want %q", l.Name, got, want)
				}
			}
		})
	}
	if _, err := FP16Decide(fp16MLP(t), FP16Options{KeepFP32: []string{"nope"}}); !errors.Is(err, ErrFP16) {
		t.Errorf("unknown layer: error %v, want ErrFP16", err)
	}
}
