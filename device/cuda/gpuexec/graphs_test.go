package gpuexec

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
)

// The tests' way to graphs: the package itself reads no ONNX and runs no
// optimizer (kiln's builder hands it optimized graphs and the folding
// passes, device.ExecOptions.Fold).

// FileGraphs (tests and examples) is the GraphFunc of an ONNX file: it loads the file, sets the
// inputs' shapes, optimizes at the given level (2 for kiln's fusions) and
// infers every shape.
func FileGraphs(path string, level int) GraphFunc {
	return func(shapes map[string][]int) (*ir.Graph, func(), error) {
		f, err := onnx.Load(path)
		if err != nil {
			return nil, nil, err
		}
		done := func() { f.Close() }
		g, err := onnx.ToGraph(f.Model, f)
		if err != nil {
			done()
			return nil, nil, err
		}
		for _, v := range g.Inputs {
			if s, ok := shapes[v.Name]; ok {
				v.Type.Shape = ir.KnownShape(s...)
			}
		}
		err = optimize.Run(g, level, nil)
		if err == nil {
			_, err = ops.InferGraph(g)
		}
		if err != nil {
			done()
			return nil, nil, err
		}
		return g, done, nil
	}
}

// graphBytes is a graph encoded as an ONNX model, for tests that rebuild
// it per shape.
type graphBytes struct {
	b   []byte
	err error
}

func onnxBytes(g *ir.Graph) graphBytes {
	m, err := onnx.FromGraph(g, "kiln")
	if err != nil {
		return graphBytes{err: err}
	}
	return graphBytes{b: m.Marshal()}
}
