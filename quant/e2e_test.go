package quant

import (
	"context"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// needINT8Ops skips the test when kiln::QConv and kiln::QMatMul are not
// registered (ops/nn/qfused.go).
func needINT8Ops(t testing.TB) {
	t.Helper()
	for _, op := range []string{"QConv", "QMatMul"} {
		if _, ok := ops.Lookup(Domain, op); !ok {
			t.Skipf("needs the INT8 op kiln::%s (ops/nn)", op)
		}
	}
}

// MinCosine is the cosine similarity every output of an INT8 engine must
// keep against FP32 in these tests.
const minCosine = 0.99

func TestINT8SmallNet(t *testing.T) {
	needINT8Ops(t)
	ctx := context.Background()
	ref, err := engine.New(convNet(t))
	if err != nil {
		t.Fatal(err)
	}
	batches, err := RandomBatches(ref.Inputs(), map[string][]int{"x": {2, 3, 8, 8}}, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []Method{Entropy, MinMax, Percentile} {
		t.Run(m.String(), func(t *testing.T) {
			tab, err := Calibrate(ctx, ref, batches, m, CalibOptions{})
			if err != nil {
				t.Fatal(err)
			}
			g := convNet(t)
			rep, err := QuantizeINT8(g, tab, INT8Options{})
			if err != nil {
				t.Fatal(err)
			}
			if q, _ := rep.Count(); q != 4 {
				t.Fatalf("%d int8 layers, want 4:\n%v", q, rep)
			}
			qe, err := engine.New(g)
			if err != nil {
				t.Fatal(err)
			}
			acc, err := Compare(ctx, ref, qe, batches)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%v%v", rep, acc)
			if c := acc.MinCosine(); c < minCosine {
				t.Errorf("cosine %v < %v", c, minCosine)
			}
			if acc.Outputs[0].MaxAbs == 0 {
				t.Error("the INT8 engine computes exactly the FP32 outputs: is it quantizing?")
			}
		})
	}
}

// TestImportQDQRuns checks that the imported INT8 layers compute what the
// explicit Q/DQ graph computes with the reference operators.
func TestImportQDQRuns(t *testing.T) {
	needINT8Ops(t)
	ctx := context.Background()
	ref, err := engine.New(qdqNet(t))
	if err != nil {
		t.Fatal(err)
	}
	g := qdqNet(t)
	if _, err := ImportQDQ(g); err != nil {
		t.Fatal(err)
	}
	qe, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	batches, err := RandomBatches(ref.Inputs(), map[string][]int{"x": {2, 4, 6, 6}}, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := Compare(ctx, ref, qe, batches)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%v", acc)
	for _, o := range acc.Outputs {
		// the same integers times the same scales: only float rounding
		// (and an input landing exactly on -128) may differ.
		if o.MaxRel > 1e-4 || o.Cosine < 0.99999 {
			t.Errorf("%s: max rel %g, cosine %v: the INT8 layers do not compute the Q/DQ graph", o.Name, o.MaxRel, o.Cosine)
		}
	}
}

// loadOptimized reads a shared model and optimizes it at level 2.
func loadOptimized(t testing.TB, dir string) *ir.Graph {
	t.Helper()
	f, err := onnx.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	g, err := onnx.ToGraph(f.Model, f)
	if err != nil {
		t.Fatal(err)
	}
	if err := optimize.Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestINT8Models quantizes the shared models (resnet_mini and mobilenet_v2;
// the other three too unless -short) after calibrating on their test data
// plus random batches, and requires every output to keep a cosine
// similarity of at least 0.99 with FP32.
func TestINT8Models(t *testing.T) {
	needINT8Ops(t)
	models := []string{"resnet_mini", "mobilenet_v2"}
	if !testing.Short() {
		models = append(models, "squeezenet1_1", "yolo_tiny", "bert_mini")
	}
	for _, name := range models {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("..", "..", "shared", "models", name)
			if _, err := os.Stat(filepath.Join(dir, "model.onnx")); err != nil {
				t.Skipf("needs %s (the shared reference models): %v", dir, err)
			}
			ctx := context.Background()
			ref, err := engine.New(loadOptimized(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			batches, err := LoadBatches(dir, ref.Inputs())
			if err != nil {
				t.Fatal(err)
			}
			nRandom := 3
			if testing.Short() {
				nRandom = 1
			}
			shapes := map[string][]int{} // random batches shaped like the test data
			for name, x := range batches[0] {
				shapes[name] = x.Shape
			}
			random, err := RandomBatches(ref.Inputs(), shapes, nRandom, 1)
			if err != nil {
				t.Fatal(err)
			}
			batches = append(batches, random...)
			tab, err := Calibrate(ctx, ref, batches, Entropy, CalibOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// the cache round trip is exact
			path := filepath.Join(t.TempDir(), name+".calib")
			if err := WriteTable(path, tab); err != nil {
				t.Fatal(err)
			}
			if tab, err = ReadTable(path); err != nil {
				t.Fatal(err)
			}
			g := loadOptimized(t, dir)
			rep, err := QuantizeINT8(g, tab, INT8Options{})
			if err != nil {
				t.Fatal(err)
			}
			q, f := rep.Count()
			if q == 0 || q < 3*f {
				t.Errorf("%d int8 and %d fp32 layers: the rule keeps too much in FP32\n%v", q, f, rep)
			}
			qe, err := engine.New(g)
			if err != nil {
				t.Fatal(err)
			}
			acc, err := Compare(ctx, ref, qe, batches)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d int8 layers, %d fp32\n%v", q, f, acc)
			for _, o := range acc.Outputs {
				if o.Cosine < minCosine || math.IsNaN(o.Cosine) {
					t.Errorf("%s: cosine %v < %v", o.Name, o.Cosine, minCosine)
				}
			}
		})
	}
}

var _ Runner = (*engine.Engine)(nil)

var _ = tensor.Float32

func TestCompareLayers(t *testing.T) {
	needINT8Ops(t)
	ctx := context.Background()
	ref, err := engine.New(convNet(t))
	if err != nil {
		t.Fatal(err)
	}
	batches, err := RandomBatches(ref.Inputs(), map[string][]int{"x": {2, 3, 8, 8}}, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Calibrate(ctx, ref, batches, MinMax, CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := convNet(t)
	if _, err := QuantizeINT8(g, tab, INT8Options{}); err != nil {
		t.Fatal(err)
	}
	qe, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := CompareLayers(ctx, ref, qe, batches)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%v", rep)
	if len(rep.Layers) != len(g.Nodes) {
		t.Fatalf("%d values compared, want one per node (%d)", len(rep.Layers), len(g.Nodes))
	}
	first := rep.Layers[0]
	if first.Node != "first" || first.Cosine != 1 || first.MaxAbs != 0 || first.Elements != 2*2*8*8*8 {
		t.Errorf("the FP32 first layer: %+v", first)
	}
	mid := rep.Layers[1]
	if mid.Op != "QConv" || mid.Cosine >= 1 || mid.Cosine < 0.99 || mid.MaxAbs == 0 {
		t.Errorf("the INT8 mid layer: %+v", mid)
	}
	if w := rep.Worst(); w.Cosine > mid.Cosine || !strings.Contains(rep.String(), "QConv") {
		t.Errorf("worst %+v", w)
	}
	if _, err := CompareLayers(ctx, ref, qe, nil); err == nil {
		t.Error("no batches: no error")
	}
}

// TestImportQDQAfterOptimize imports the QDQ network after optimize.Run has
// folded its weights' DequantizeLinear and fused its activations.
func TestImportQDQAfterOptimize(t *testing.T) {
	needINT8Ops(t)
	ctx := context.Background()
	ref, err := engine.New(qdqNet(t))
	if err != nil {
		t.Fatal(err)
	}
	g := qdqNet(t)
	if err := optimize.Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := ImportQDQ(g)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%v", rep)
	if q, f := rep.Count(); q != 4 || f != 1 {
		t.Errorf("%d int8 and %d fp32 layers, want 4 and 1 (the asymmetric one)", q, f)
	}
	qe, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	batches, err := RandomBatches(ref.Inputs(), map[string][]int{"x": {2, 4, 6, 6}}, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := Compare(ctx, ref, qe, batches)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%v", acc)
	for _, o := range acc.Outputs {
		// weights quantized again from their float values: a channel whose
		// int8 weights did not reach 127 gets a slightly different grid.
		if o.Cosine < 0.999 {
			t.Errorf("%s: cosine %v", o.Name, o.Cosine)
		}
	}
}

// TestQuantizeINT8KeepsReferenceEngine checks that an FP32 engine built on
// the graph before QuantizeINT8 still computes the same outputs after it, so
// one graph serves calibration, quantization and the accuracy report.
func TestQuantizeINT8KeepsReferenceEngine(t *testing.T) {
	needINT8Ops(t)
	ctx := context.Background()
	g := convNet(t)
	ref, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	batches, err := RandomBatches(ref.Inputs(), map[string][]int{"x": {2, 3, 8, 8}}, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	before, err := ref.Run(ctx, batches[0])
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Calibrate(ctx, ref, batches, Entropy, CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := QuantizeINT8(g, tab, INT8Options{}); err != nil {
		t.Fatal(err)
	}
	qe, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	after, err := ref.Run(ctx, batches[0])
	if err != nil {
		t.Fatal(err)
	}
	if string(before["y"].Data) != string(after["y"].Data) {
		t.Error("the FP32 engine's outputs changed with the rewrite of its graph")
	}
	acc, err := Compare(ctx, ref, qe, batches)
	if err != nil {
		t.Fatal(err)
	}
	if acc.MinCosine() < minCosine || acc.Outputs[0].MaxAbs == 0 {
		t.Errorf("INT8 engine on the rewritten graph:\n%v", acc)
	}
}

// insertQDQ makes g (as imported, unoptimized) explicitly quantized the way
// QDQ exporters do: every Conv with constant float weights reads
// DequantizeLinear(QuantizeLinear(x, s, 0), s, 0), s from the table, and
// DequantizeLinear(int8 weights, per-channel scales, axis 0).
func insertQDQ(t *testing.T, g *ir.Graph, tab *Table) int {
	t.Helper()
	count := 0
	var nodes []*ir.Node
	for _, n := range g.Nodes {
		w := n.Input(1)
		s, ok := tab.Scale(n.Input(0).Name)
		if n.OpType != "Conv" || w == nil || w.Const == nil || w.Const.DType != tensor.Float32 || !ok {
			nodes = append(nodes, n)
			continue
		}
		name := func(s string) string { return n.Name + "/" + s }
		constant := func(nm string, x *tensor.Tensor) *ir.Value {
			v := &ir.Value{Name: name(nm), Const: x, Type: ir.Type{DType: x.DType, Shape: ir.KnownShape(x.Shape...)}}
			g.Initializers = append(g.Initializers, v)
			return v
		}
		sc, zp := constant("x_scale", tensor.Scalar(tensor.Float32, float64(s))), constant("x_zp", tensor.Scalar(tensor.Int8, 0))
		q := &ir.Node{Name: name("q"), OpType: "QuantizeLinear", Inputs: []*ir.Value{n.Inputs[0], sc, zp}}
		q.Outputs = []*ir.Value{{Name: name("xq"), Producer: q}}
		dq := &ir.Node{Name: name("dq"), OpType: "DequantizeLinear", Inputs: []*ir.Value{q.Outputs[0], sc, zp}}
		dq.Outputs = []*ir.Value{{Name: name("xdq"), Producer: dq}}
		wq, ws := quantizeRows(w.Const.Float32s(), w.Const.Shape[0])
		wt := tensor.New(tensor.Int8, w.Const.Shape...)
		copy(wt.Int8s(), wq)
		wzp := tensor.New(tensor.Int8, len(ws))
		wdq := &ir.Node{Name: name("wdq"), OpType: "DequantizeLinear", Attrs: map[string]*ir.Attr{"axis": ir.IntAttr("axis", 0)},
			Inputs: []*ir.Value{constant("w_int8", wt), constant("w_scale", tensor.FromFloat32(ws, len(ws))), constant("w_zp", wzp)}}
		wdq.Outputs = []*ir.Value{{Name: name("wdq_out"), Producer: wdq}}
		n.Inputs[0], n.Inputs[1] = dq.Outputs[0], wdq.Outputs[0]
		nodes = append(nodes, q, dq, wdq, n)
		count++
	}
	g.Nodes = nodes
	return count
}

// TestImportQDQModel builds an explicitly quantized resnet_mini (Q/DQ around
// every convolution, before BatchNorm folding, as exporters write them),
// then runs the builder's order: optimize.Run, ImportQDQ. The INT8 engine
// must compute what the Q/DQ graph computes with the reference operators.
func TestImportQDQModel(t *testing.T) {
	needINT8Ops(t)
	dir := filepath.Join("..", "..", "shared", "models", "resnet_mini")
	if _, err := os.Stat(filepath.Join(dir, "model.onnx")); err != nil {
		t.Skipf("needs %s (the shared reference models): %v", dir, err)
	}
	ctx := context.Background()
	load := func() *ir.Graph {
		f, err := onnx.Load(filepath.Join(dir, "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		g, err := onnx.ToGraph(f.Model, f)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	raw, err := engine.New(load())
	if err != nil {
		t.Fatal(err)
	}
	batches, err := LoadBatches(dir, raw.Inputs())
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Calibrate(ctx, raw, batches, MinMax, CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	qdq := load()
	n := insertQDQ(t, qdq, tab)
	ref, err := engine.New(qdq)
	if err != nil {
		t.Fatal(err)
	}
	g := load()
	insertQDQ(t, g, tab)
	if err := optimize.Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := ImportQDQ(g)
	if err != nil {
		t.Fatal(err)
	}
	if q, _ := rep.Count(); q != n {
		t.Errorf("%d of %d Q/DQ convolutions imported as INT8:\n%v", q, n, rep)
	}
	for _, x := range g.Nodes {
		if x.OpType == "QuantizeLinear" || x.OpType == "DequantizeLinear" {
			t.Errorf("%s (%s) is left", x.Name, x.OpType)
		}
	}
	qe, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := Compare(ctx, ref, qe, batches)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d Q/DQ convolutions\n%v", n, acc)
	for _, o := range acc.Outputs {
		if o.Cosine < 0.9999 || o.Top1 != 1 {
			t.Errorf("%s: cosine %v, top-1 %v: the INT8 layers do not compute the Q/DQ graph", o.Name, o.Cosine, o.Top1)
		}
	}
}

// TestINT8Conv1D quantizes a 1-D convolution (rank-3 weights).
func TestINT8Conv1D(t *testing.T) {
	needINT8Ops(t)
	ctx := context.Background()
	build := func() *ir.Graph {
		r := rand.New(rand.NewSource(11))
		b := ir.NewBuilder("conv1d", 13)
		b.Graph().Opsets[Domain] = 1
		x := b.Input("x", tensor.Float32, ir.D(2), ir.D(6), ir.D(20))
		c := kilnOp(b, "FusedConv", []*ir.Value{x, b.Const("w", randTensor(r, 0.3, 8, 6, 3)), b.Const("b", randTensor(r, 0.1, 8))},
			ir.IntsAttr("pads", 1, 1), ir.IntsAttr("strides", 2))
		c.Producer.Name = "conv1d"
		b.Output(b.Op("Relu", []*ir.Value{c}), "y")
		return b.Graph()
	}
	ref, err := engine.New(build())
	if err != nil {
		t.Fatal(err)
	}
	batches, err := RandomBatches(ref.Inputs(), nil, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Calibrate(ctx, ref, batches, Entropy, CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := build()
	rep, err := QuantizeINT8(g, tab, INT8Options{})
	if err != nil {
		t.Fatal(err)
	}
	if q, _ := rep.Count(); q != 1 {
		t.Fatalf("the 1-D convolution stayed in float:\n%v", rep)
	}
	qe, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := Compare(ctx, ref, qe, batches)
	if err != nil {
		t.Fatal(err)
	}
	if acc.MinCosine() < minCosine || acc.Outputs[0].MaxAbs == 0 {
		t.Errorf("1-D INT8 convolution:\n%v", acc)
	}
}

func TestSensitivity(t *testing.T) {
	needINT8Ops(t)
	ctx := context.Background()
	g := convNet(t)
	ref, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	batches, err := RandomBatches(ref.Inputs(), map[string][]int{"x": {2, 3, 8, 8}}, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Calibrate(ctx, ref, batches, Entropy, CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := GraphHash(g)
	nodes := append([]*ir.Node(nil), g.Nodes...)
	rep, err := Sensitivity(ctx, g, tab, batches, INT8Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%v", rep)
	if GraphHash(g) != before || len(g.Nodes) != len(nodes) {
		t.Fatal("Sensitivity changed the graph")
	}
	for i, n := range g.Nodes {
		if n != nodes[i] || n.Outputs[0].Producer != n {
			t.Fatalf("node %d (%s) is not the original", i, n.Name)
		}
	}
	names := map[string]bool{}
	for i, l := range rep.Layers {
		names[l.Name] = true
		if l.Cosine >= 1 || l.Cosine < 0.99 {
			t.Errorf("%s: cosine %v", l.Name, l.Cosine)
		}
		if i > 0 && l.Cosine < rep.Layers[i-1].Cosine {
			t.Error("not sorted, most sensitive first")
		}
	}
	if len(names) != 4 || !names["mid"] || !names["res"] || !names["dw"] || !names["fc"] {
		t.Errorf("layers %v, want the 4 INT8 layers", names)
	}
	if len(rep.Below(1)) != 4 || len(rep.Below(0)) != 0 {
		t.Errorf("Below: %v %v", rep.Below(1), rep.Below(0))
	}
	worst := rep.Layers[0].Name
	q, err := QuantizeINT8(g, tab, INT8Options{Layers: rep.Below(rep.Layers[0].Cosine + 1e-12)})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range q.Layers {
		if d.Name == worst && d.Precision != PrecisionFP32 {
			t.Errorf("the most sensitive layer %s is %s", worst, d.Precision)
		}
	}
}
