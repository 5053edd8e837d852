// Command slobatch writes the model of the SLO batching benchmark
// (bench/slo-batching.sh MODEL=mlp): a multilayer perceptron whose engine
// cost per request falls with the batch on a CPU, as served models' does.
// Its layers are Gemm + Relu over WIDTH x WIDTH float32 weights (4 MiB each
// at 1024): a batch of one is a matrix-vector product, bound by reading
// the weights, while a batch of 32 reads them once for 32 requests and is
// bound by arithmetic, so batching pays.
//
// usage: go run ./bench/slobatch -o DIR [-width 1024] [-layers 4]
//
// It writes DIR/model.onnx (input "x" float32 [batch,WIDTH], output "y"
// float32 [batch,WIDTH]), with weights drawn from a fixed seed, so the same
// flags write the same bytes; nothing large is committed.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run parses args, writes the model and returns the exit status: 0 when
// written, 2 on bad flags or an error (said on stderr).
func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("slobatch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "folder to write model.onnx into (created when missing)")
	width := fs.Int("width", 1024, "width of every layer: WIDTH x WIDTH weights (16..8192)")
	layers := fs.Int("layers", 4, "number of Gemm + Relu layers (1..64)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := write(*out, *width, *layers); err != nil {
		fmt.Fprintln(stderr, "slobatch:", err)
		return 2
	}
	return 0
}

// write builds the MLP and writes it to dir/model.onnx.
func write(dir string, width, layers int) error {
	switch {
	case dir == "":
		return errors.New("-o DIR is required")
	case width < 16 || width > 8192:
		return fmt.Errorf("-width %d: want 16..8192", width)
	case layers < 1 || layers > 64:
		return fmt.Errorf("-layers %d: want 1..64", layers)
	}
	m, err := onnx.FromGraph(MLP(width, layers), "kiln")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "model.onnx"), m.Marshal(), 0o644)
}

// MLP builds the model: layers of y = Relu(x·Wᵀ + b), W width x width,
// weights uniform within ±sqrt(3/width) (unit variance through a layer, so
// the activations neither vanish nor grow) from a fixed seed.
func MLP(width, layers int) *ir.Graph {
	rng := rand.New(rand.NewPCG(2026, 14))
	scale := math.Sqrt(3 / float64(width))
	randT := func(s float64, shape ...int) *tensor.Tensor {
		t := tensor.New(tensor.Float32, shape...)
		for i := range t.Float32s() {
			t.Float32s()[i] = float32((rng.Float64()*2 - 1) * s)
		}
		return t
	}
	b := ir.NewBuilder("mlp", 17)
	h := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(int64(width)))
	for l := range layers {
		w := b.Const(fmt.Sprintf("fc%d.weight", l), randT(scale, width, width))
		bias := b.Const(fmt.Sprintf("fc%d.bias", l), randT(0.1, width))
		h = b.Op("Gemm", []*ir.Value{h, w, bias}, ir.IntAttr("transB", 1))
		h = b.Op("Relu", []*ir.Value{h})
	}
	b.Output(h, "y")
	h.Type = ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("batch"), ir.D(int64(width))}}
	return b.Graph()
}
