package engine_test

import (
	"context"
	"fmt"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	_ "github.com/kilnai/kiln/ops/math"
	"github.com/kilnai/kiln/tensor"
)

// An engine planned for batches of up to 8 rows, run on one execution
// context (one per serving goroutine): its intermediates share one arena.
func ExampleEngine_NewContext() {
	b := ir.NewBuilder("mlp", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(4))
	h := b.Op("Relu", []*ir.Value{b.Op("Neg", []*ir.Value{x})})
	b.Output(b.Op("Abs", []*ir.Value{b.Op("Sigmoid", []*ir.Value{h})}), "y")
	e, err := engine.NewWithOptions(b.Graph(), engine.Options{MaxShapes: map[string][]int{"x": {8, 4}}})
	if err != nil {
		panic(err)
	}
	m := e.Memory()
	fmt.Printf("%d intermediates, %d bytes, in an arena of %d bytes\n", m.Values, m.IntermediateBytes, m.ArenaBytes)

	c := e.NewContext()
	out, err := c.Run(context.Background(), map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{1, -2, 3, -4}, 1, 4)})
	if err != nil {
		panic(err)
	}
	fmt.Println(out["y"].Float32s())
	// Output:
	// 3 intermediates, 384 bytes, in an arena of 256 bytes
	// [0.5 0.880797 0.5 0.98201376]
}
