// Command gen writes the bundled example models and their test data:
// examples/tinycnn/model.onnx and test_data_set_0/{input,output}_0.pb.
// Run it with "go generate ./examples".
package main

import (
	"context"
	"log"
	"os"
	"path/filepath"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/onnx"
)

func main() {
	dir := "tinycnn"
	if _, err := os.Stat("examples.go"); err != nil {
		dir = filepath.Join("examples", "tinycnn") // run from the repo root
	}
	m, err := onnx.FromGraph(examples.TinyCNN(), "kiln")
	if err != nil {
		log.Fatal(err)
	}
	b := m.Marshal()
	if err := os.MkdirAll(filepath.Join(dir, "test_data_set_0"), 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), b, 0o644); err != nil {
		log.Fatal(err)
	}
	model, err := kiln.LoadBytes(b)
	if err != nil {
		log.Fatal(err)
	}
	in := examples.TinyCNNInput(2)
	out, err := model.Run(context.Background(), map[string]*kiln.Tensor{"image": in})
	if err != nil {
		log.Fatal(err)
	}
	if err := onnx.SaveTensor(filepath.Join(dir, "test_data_set_0", "input_0.pb"), "image", in); err != nil {
		log.Fatal(err)
	}
	if err := onnx.SaveTensor(filepath.Join(dir, "test_data_set_0", "output_0.pb"), "probabilities", out["probabilities"]); err != nil {
		log.Fatal(err)
	}
}
