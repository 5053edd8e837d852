package serve

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// seqModel returns a model that splits x (float32[6]) into a sequence of
// pieces of 2 and concatenates them back into y; with seqOut the sequence
// itself is an output too.
func seqModel(t *testing.T, seqOut bool) []byte {
	t.Helper()
	b := ir.NewBuilder("seq", 17)
	x := b.Input("x", tensor.Float32, ir.D(6))
	two := b.Const("two", tensor.FromInt64([]int64{2}))
	pieces := b.Op("SplitToSequence", []*ir.Value{x, two})
	b.Output(b.Op("ConcatFromSequence", []*ir.Value{pieces}, ir.IntAttr("axis", 0)), "y")
	if seqOut {
		pieces.Type = ir.SequenceOf(ir.Type{DType: tensor.Float32, Shape: ir.KnownShape(2)})
		b.Output(pieces, "pieces")
	}
	mp, err := onnx.FromGraph(b.Graph(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return mp.Marshal()
}

// TestServeSequenceValues: sequences inside a served model's graph are
// fine; a model with a sequence output is refused at load with an error
// that names the output (the KServe protocols carry only tensors).
func TestServeSequenceValues(t *testing.T) {
	dir := t.TempDir()
	for name, seqOut := range map[string]bool{"inside": false, "seqout": true} {
		p := filepath.Join(dir, name, "1")
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "model.onnx"), seqModel(t, seqOut), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := New(Options{Repository: dir})
	t.Cleanup(func() { s.Shutdown(context.Background()) })

	err := s.Load("seqout")
	if err == nil || !errors.Is(err, repository.ErrModel) || !strings.Contains(err.Error(), `output "pieces" is a sequence value`) {
		t.Fatalf("loading a model with a sequence output: %v, want a repository.ErrModel naming output \"pieces\"", err)
	}

	if err := s.Load("inside"); err != nil {
		t.Fatal(err)
	}
	x := tensor.FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 6)
	res, err := s.Infer(context.Background(), &InferRequest{Model: "inside", Inputs: map[string]*tensor.Tensor{"x": x}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Name != "y" {
		t.Fatalf("outputs %v, want y", res.Outputs)
	}
	y := res.Outputs[0].Tensor
	if y == nil || tensor.ShapeString(y.Shape) != "6" || y.Float32s()[5] != 6 {
		t.Fatalf("y = %v, want x back", y)
	}
}
