package kiln_test

import (
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
)

// TestSymbolicShapeInference forgets every declared type except the inputs'
// and checks that inference alone carries the symbolic dims through each
// shared model to its outputs.
func TestSymbolicShapeInference(t *testing.T) {
	want := map[string][]string{
		"resnet_mini":   {"[batch,1000]"},
		"mobilenet_v2":  {"[batch,1000]"},
		"squeezenet1_1": {"[batch,1000]"},
		"bert_mini":     {"[batch,seq,128]", "[batch,128]"},
		"yolo_tiny":     {"[batch,84,?]"},
	}
	for _, name := range referenceModels {
		t.Run(name, func(t *testing.T) {
			dir := needModel(t, name)
			f, err := onnx.Load(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			g, err := onnx.ToGraph(f.Model, f)
			if err != nil {
				t.Fatal(err)
			}
			inputs := map[*ir.Value]bool{}
			for _, v := range g.Inputs {
				inputs[v] = true
			}
			g.Walk(func(_ *ir.Graph, n *ir.Node) {
				for _, o := range n.Outputs {
					if o != nil {
						o.Type = ir.Type{}
					}
				}
			})
			if _, err := engine.New(g); err != nil {
				t.Fatal(err)
			}
			for i, o := range g.Outputs {
				if got := o.Type.Shape.String(); got != want[name][i] {
					t.Errorf("output %s inferred %s, want %s", o.Name, got, want[name][i])
				}
			}
		})
	}
}
