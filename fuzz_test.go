package kiln_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
)

// FuzzLoadModel feeds arbitrary bytes to the whole loading pipeline (decode,
// import, validation, shape inference, constant folding) and, when a model
// loads, runs it on small zero inputs: any outcome but a panic is fine.
func FuzzLoadModel(f *testing.F) {
	f.Add(examples.TinyCNNModel)
	for _, name := range []string{"test_add", "test_conv_with_strides_padding", "test_if", "test_reshape_negative_dim", "test_gather_0"} {
		if b, err := os.ReadFile(filepath.Join("/usr/share/libonnx-testdata/data/node", name, "model.onnx")); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := kiln.LoadBytes(b)
		if err != nil {
			return
		}
		defer m.Close()
		inputs := map[string]*kiln.Tensor{}
		for _, in := range m.Inputs() {
			shape := make([]int, len(in.Shape))
			n := 1
			for i, d := range in.Shape {
				shape[i] = max(d, 1)
				n *= shape[i]
			}
			if n > 1<<16 || in.DType == kiln.String {
				return
			}
			x, err := kiln.NewTensor(in.DType, shape...)
			if err != nil {
				return
			}
			inputs[in.Name] = x
		}
		_, _ = m.Run(context.Background(), inputs)
	})
}
