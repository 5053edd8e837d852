package optimize

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// sharedModels is where CI keeps the reference models.
const sharedModels = "../../shared/models"

var referenceModels = []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "bert_mini", "yolo_tiny"}

// loadModel reads a shared model into a graph; it skips the test when the
// model is absent.
func loadModel(tb testing.TB, name string) (*ir.Graph, string) {
	tb.Helper()
	dir := filepath.Join(sharedModels, name)
	path := filepath.Join(dir, "model.onnx")
	if _, err := os.Stat(path); err != nil {
		tb.Skipf("needs %s (the shared reference models): %v", path, err)
	}
	f, err := onnx.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	g, err := onnx.ToGraph(f.Model, f)
	if err != nil {
		tb.Fatal(err)
	}
	return g, dir
}

// loadDataSet reads test_data_set_0 of a model for engine e.
func loadDataSet(t testing.TB, e *engine.Engine, dir string) (map[string]*tensor.Tensor, []*tensor.Tensor) {
	t.Helper()
	set := filepath.Join(dir, "test_data_set_0")
	inputs := map[string]*tensor.Tensor{}
	names := e.Inputs()
	for i := 0; ; i++ {
		p := filepath.Join(set, fmt.Sprintf("input_%d.pb", i))
		if _, err := os.Stat(p); err != nil {
			break
		}
		x, name, err := onnx.ReadTensorFile(p)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, v := range names {
			found = found || v.Name == name
		}
		if !found {
			if i >= len(names) {
				t.Fatalf("%s: the model takes %d inputs", p, len(names))
			}
			name = names[i].Name
		}
		inputs[name] = x
	}
	var want []*tensor.Tensor
	for i := 0; ; i++ {
		p := filepath.Join(set, fmt.Sprintf("output_%d.pb", i))
		if _, err := os.Stat(p); err != nil {
			break
		}
		x, _, err := onnx.ReadTensorFile(p)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, x)
	}
	return inputs, want
}

// TestModels runs the whole pipeline on every shared model and checks the
// optimized engine against the reference outputs, and on the CNNs that
// every BatchNorm was folded and every Conv fused with what follows it.
func TestModels(t *testing.T) {
	for _, name := range referenceModels {
		t.Run(name, func(t *testing.T) {
			if testing.Short() && name == "yolo_tiny" {
				t.Skip("short mode")
			}
			g, dir := loadModel(t, name)
			before := len(g.Nodes)
			perPass := map[string]int{}
			if err := Run(g, 2, func(pass, msg string) { perPass[pass]++ }); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d nodes -> %d; rewrites per pass %v; ops %v", before, len(g.Nodes), perPass, opCounts(g))
			again := 0
			if err := Run(g, 2, func(pass, msg string) { again++; t.Logf("second run: %s: %s", pass, msg) }); err != nil {
				t.Fatal(err)
			}
			if again != 0 {
				t.Errorf("a second Run still rewrote the graph %d times", again)
			}
			e, err := engine.New(g)
			if err != nil {
				t.Fatal(err)
			}
			in, want := loadDataSet(t, e, dir)
			got, err := e.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range want {
				o := g.Outputs[i].Name
				if c := compare(got[o], w, 1e-3, 1e-4); !c.OK {
					t.Errorf("output %q: %s", o, c.Reason)
				}
			}
			switch name {
			case "resnet_mini", "mobilenet_v2":
				checkCNNFused(t, g)
			case "bert_mini":
				ops := opCounts(g)
				if ops["kiln::FusedMatMul"] == 0 || ops["Erf"] != 0 || ops["kiln::Gelu"] != 0 || ops["Softmax"] != 0 || ops["kiln::Attention"] == 0 {
					t.Errorf("bert_mini: MatMul+Add, GELU and attention not all fused: %v", ops)
				}
			}
		})
	}
}

// checkCNNFused checks that g has no BatchNormalization and no plain Conv
// left, and that no activation or Add reads a fused conv's output.
func checkCNNFused(t *testing.T, g *ir.Graph) {
	t.Helper()
	ops := opCounts(g)
	if ops["BatchNormalization"] != 0 || ops["Conv"] != 0 || ops["kiln::FusedConv"] == 0 {
		t.Errorf("ops after optimization: %v", ops)
	}
	acts, residual := 0, 0
	for _, n := range g.Nodes {
		if n.OpType != "FusedConv" {
			continue
		}
		if a := n.Attrs["activation"]; a != nil && a.S != "" {
			acts++
		}
		if n.Input(3) != nil {
			residual++
		}
	}
	for _, n := range g.Nodes {
		switch n.OpType {
		case "Relu", "Clip", "Sigmoid", "HardSwish", "Add", "Mul":
			for _, v := range n.Inputs {
				if v != nil && v.Producer != nil && v.Producer.OpType == "FusedConv" {
					t.Errorf("%s reads %s, unfused", n, v.Producer)
				}
			}
		}
	}
	if acts == 0 || residual == 0 {
		t.Errorf("%d fused activations, %d fused residual Adds", acts, residual)
	}
	t.Logf("%d fused convs, %d with an activation, %d with a residual Add", ops["kiln::FusedConv"], acts, residual)
}

// modelDirs returns the names of the models in sharedModels (the folders
// holding a model.onnx); it skips the test when there are none.
func modelDirs(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(sharedModels)
	if err != nil {
		t.Skipf("needs the shared reference models in %s: %v", sharedModels, err)
	}
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(sharedModels, e.Name(), "model.onnx")); e.IsDir() && err == nil {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		t.Skipf("needs the shared reference models in %s: none found", sharedModels)
	}
	return names
}

// runModel builds an engine for g and runs it on the model's first data
// set, returning the outputs in the graph's order.
func runModel(t *testing.T, g *ir.Graph, dir string) []*tensor.Tensor {
	t.Helper()
	e, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := loadDataSet(t, e, dir)
	got, err := e.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*tensor.Tensor, len(g.Outputs))
	for i, v := range g.Outputs {
		out[i] = got[v.Name]
	}
	return out
}

// TestModelsPassByPass checks, on every model of sharedModels, that the
// unoptimized engine and the engines after each elimination pass alone (with
// dce), after each level-2 pass with the level-1 ones, and after all of
// level 2 compute the same outputs on the model's test input.
func TestModelsPassByPass(t *testing.T) {
	configs := [][]string{{"transpose", "dce"}, {"reshape", "dce"}, {"concat", "dce"}, passNames(Passes(2))}
	if !testing.Short() {
		configs = append(configs, passNames(Passes(1)))
		for _, p := range Passes(2)[len(Passes(1)):] {
			configs = append(configs, append(passNames(Passes(1)), p.Name()))
		}
	}
	for _, name := range modelDirs(t) {
		t.Run(name, func(t *testing.T) {
			if testing.Short() && name == "yolo_tiny" {
				t.Skip("short mode")
			}
			g, dir := loadModel(t, name)
			want := runModel(t, g, dir)
			for _, passes := range configs {
				g, _ := loadModel(t, name)
				if err := RunPasses(g, lookupAll(t, passes), nil); err != nil {
					t.Fatalf("%v: %v", passes, err)
				}
				got := runModel(t, g, dir)
				for i, w := range want {
					if c := compare(got[i], w, 1e-4, 1e-5); !c.OK {
						t.Errorf("after %v, output %q: %s", passes, g.Outputs[i].Name, c.Reason)
					}
				}
			}
		})
	}
}

func passNames(ps []Pass) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Name())
	}
	return s
}

// TestModelFusions checks what the level-2 passes must make of the
// reference models, as kiln inspect shows it: on the CNNs no
// BatchNormalization left, every Conv a kiln::FusedConv, and no activation
// or residual Add left alone reading a fused conv's output; on bert_mini
// LayerNormalization, GELU (kiln::Gelu or a FusedMatMul epilogue) and
// kiln::Attention in place of the decomposed chains, and the shape
// arithmetic of its Reshapes folded away; on yolo_tiny the Concats of its
// C2f blocks elided.
func TestModelFusions(t *testing.T) {
	count := func(g *ir.Graph, ops ...string) int {
		c := opCounts(g)
		n := 0
		for _, op := range ops {
			n += c[op]
		}
		return n
	}
	for _, tc := range []struct {
		name  string
		check func(t *testing.T, before, after *ir.Graph)
	}{
		{"resnet_mini", checkConvsFused},
		{"mobilenet_v2", checkConvsFused},
		{"bert_mini", func(t *testing.T, before, after *ir.Graph) {
			ops := opCounts(after)
			if n := count(after, "LayerNormalization", "kiln::LayerNormalization"); n != count(before, "LayerNormalization", "kiln::LayerNormalization")+count(before, "ReduceMean")/2 || n == 0 {
				t.Errorf("%d LayerNormalization nodes: %v", n, ops)
			}
			gelus := ops["kiln::Gelu"] + ops["Gelu"]
			for _, n := range after.Nodes {
				if a := n.Attrs["activation"]; n.OpType == "FusedMatMul" && a != nil && a.S == "Gelu" {
					gelus++
				}
			}
			if gelus == 0 || gelus != count(before, "Erf") {
				t.Errorf("%d GELUs for %d Erf: %v", gelus, count(before, "Erf"), ops)
			}
			if ops["kiln::Attention"] == 0 || ops["kiln::Attention"] != count(before, "Softmax") {
				t.Errorf("%d kiln::Attention for %d Softmax: %v", ops["kiln::Attention"], count(before, "Softmax"), ops)
			}
			if n := count(after, "ReduceMean", "Erf", "Softmax", "Sqrt", "Pow", "Div", "Concat"); n != 0 {
				t.Errorf("%d ReduceMean/Erf/Softmax/Sqrt/Pow/Div/Concat left: %v", n, ops)
			}
			for _, n := range after.Nodes {
				if isOp(n, "Reshape") && !isConst(after, n.Input(1)) {
					t.Errorf("%s still computes its shape at run time", n)
				}
			}
		}},
		{"yolo_tiny", func(t *testing.T, before, after *ir.Graph) {
			if testing.Short() {
				t.Skip("short mode")
			}
			checkConvsFused(t, before, after)
			if b, a := slicesConcatenated(before), slicesConcatenated(after); a*4 > b {
				t.Errorf("%d Concat inputs were Slices before, %d after: the C2f ones should go", b, a)
			}
			for _, n := range after.Nodes {
				if isOp(n, "Reshape") && !isConst(after, n.Input(1)) {
					t.Errorf("%s still computes its shape at run time", n)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := loadModel(t, tc.name)
			after, _ := loadModel(t, tc.name)
			if err := Run(after, 2, nil); err != nil {
				t.Fatal(err)
			}
			tc.check(t, before, after)
		})
	}
}

// slicesConcatenated counts the Concat inputs of g that are Slice outputs.
func slicesConcatenated(g *ir.Graph) int {
	n := 0
	for _, c := range g.Nodes {
		if isOp(c, "Concat") {
			for _, v := range c.Inputs {
				if v != nil && isOp(v.Producer, "Slice") {
					n++
				}
			}
		}
	}
	return n
}

// checkConvsFused checks that after has no BatchNormalization, as many
// kiln::FusedConv as before had Conv and no plain Conv, and that no
// activation or Add is the only reader of a FusedConv's output that has no
// activation yet (after one, the fused op can take neither: its residual
// is added before the activation).
func checkConvsFused(t *testing.T, before, after *ir.Graph) {
	t.Helper()
	b, a := opCounts(before), opCounts(after)
	if a["BatchNormalization"] != 0 || a["Conv"] != 0 || a["kiln::FusedConv"] != b["Conv"] {
		t.Errorf("%d Conv before; after: %v", b["Conv"], a)
	}
	u := usesOf(after)
	for _, n := range after.Nodes {
		switch n.OpType {
		case "Relu", "Clip", "Sigmoid", "HardSwish", "HardSigmoid", "LeakyRelu", "Gelu", "Add", "Mul":
		default:
			continue
		}
		for _, v := range n.Inputs {
			if v == nil {
				continue
			}
			if p := v.Producer; p != nil && p.OpType == "FusedConv" && !hasEpilogue(p) && u.only(v) == n {
				t.Errorf("%s alone reads %s: not fused", n, p)
			}
		}
	}
}

// BenchmarkModels times the engine of every shared model on its test input
// built from the graph as loaded (unoptimized), after the level-2 passes
// without the ones issue 3 added last (transpose, reshape, concat,
// qkvmerge: before), and after all of level 2 (optimized); it reports the
// node count of each graph as the metric "nodes".
func BenchmarkModels(b *testing.B) {
	newer := map[string]bool{"transpose": true, "reshape": true, "concat": true, "qkvmerge": true}
	var older []Pass
	for _, p := range Passes(2) {
		if !newer[p.Name()] {
			older = append(older, p)
		}
	}
	entries, err := os.ReadDir(sharedModels)
	if err != nil {
		b.Skipf("needs the shared reference models in %s: %v", sharedModels, err)
	}
	for _, m := range entries {
		for _, bc := range []struct {
			name   string
			passes []Pass
		}{{"unoptimized", nil}, {"before", older}, {"optimized", Passes(2)}} {
			b.Run(m.Name()+"/"+bc.name, func(b *testing.B) {
				g, dir := loadModel(b, m.Name())
				if err := RunPasses(g, bc.passes, nil); err != nil {
					b.Fatal(err)
				}
				e, err := engine.New(g)
				if err != nil {
					b.Fatal(err)
				}
				in, _ := loadDataSet(b, e, dir)
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := e.Run(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(g.Nodes)), "nodes")
			})
		}
	}
}

// TestModelsOtherShapes runs every shared model on random inputs of other
// sizes than its data set's (batch 3, sequence 7, images 96x128), without
// and with the level-2 passes: the constant shapes the passes write for
// symbolic dimensions must hold for any size.
func TestModelsOtherShapes(t *testing.T) {
	bind := map[string]int{"batch": 3, "seq": 7, "h": 96, "w": 128}
	for _, name := range modelDirs(t) {
		t.Run(name, func(t *testing.T) {
			if testing.Short() && name == "yolo_tiny" {
				t.Skip("short mode")
			}
			g, _ := loadModel(t, name)
			r := rand.New(rand.NewPCG(11, 11))
			in := map[string]*tensor.Tensor{}
			for _, v := range g.Inputs {
				if v.Const != nil {
					continue
				}
				dims := make([]int, len(v.Type.Shape))
				for i, d := range v.Type.Shape {
					n, ok := bind[d.Sym]
					switch {
					case d.Known():
						n = int(d.Val)
					case !ok:
						t.Skipf("input %v: no size for dimension %d", v, i)
					}
					dims[i] = n
				}
				switch v.Type.DType {
				case tensor.Float32:
					in[v.Name] = randF32(r, dims...)
				case tensor.Int64:
					x := tensor.New(tensor.Int64, dims...)
					for i := range x.Int64s() {
						x.Int64s()[i] = r.Int64N(100) // token ids; 1 or 0 for a mask
						if strings.Contains(v.Name, "mask") {
							x.Int64s()[i] = int64(min(1, i%5))
						}
					}
					in[v.Name] = x
				default:
					t.Skipf("input %v: no random values of this type", v)
				}
			}
			want := runGraph(t, g, in)
			opt, _ := loadModel(t, name)
			if err := Run(opt, 2, nil); err != nil {
				t.Fatal(err)
			}
			got := runGraph(t, opt, in)
			for _, v := range g.Outputs {
				if c := compare(got[v.Name], want[v.Name], 1e-4, 1e-5); !c.OK {
					t.Errorf("output %q: %s", v.Name, c.Reason)
				}
			}
		})
	}
}
