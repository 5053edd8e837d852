package optimize

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln/conformance"
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
				if c := conformance.Compare(got[o], w, 1e-3, 1e-4); !c.OK {
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
