package optimize

import (
	"math"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func TestConcat(t *testing.T) {
	passes := []string{"concat", "dce"}
	// slices builds Neg(Concat(Slices of Relu(x) along axis)), x of shape
	// [2,6,h], the Slices taking [b[2i], b[2i+1]).
	slices := func(axis int64, bounds ...int64) func() *ir.Graph {
		return func() *ir.Graph {
			b := ir.NewBuilder("g", 17)
			x := b.Op("Relu", []*ir.Value{b.Input("x", tensor.Float32, ir.D(2), ir.D(6), ir.S("h"))})
			var parts []*ir.Value
			for i := 0; i+1 < len(bounds); i += 2 {
				parts = append(parts, b.Op("Slice", []*ir.Value{x, ints(b, bounds[i]), ints(b, bounds[i+1]), ints(b, axis)}))
			}
			b.Output(b.Op("Neg", []*ir.Value{b.Op("Concat", parts, ir.IntAttr("axis", axis))}), "y")
			return b.Graph()
		}
	}
	split := func(splitAxis, concatAxis int64, order ...int) func() *ir.Graph {
		return func() *ir.Graph {
			b := ir.NewBuilder("g", 17)
			x := b.Op("Relu", []*ir.Value{b.Input("x", tensor.Float32, ir.D(2), ir.D(6), ir.D(6))})
			parts := b.OpN("Split", 3, []*ir.Value{x, ints(b, 2, 2, 2)}, ir.IntAttr("axis", splitAxis))
			var cat []*ir.Value
			for _, i := range order {
				cat = append(cat, parts[i])
			}
			b.Output(b.Op("Neg", []*ir.Value{b.Op("Concat", cat, ir.IntAttr("axis", concatAxis))}), "y")
			return b.Graph()
		}
	}
	bind := map[string]int{"h": 3}
	elided := map[string]int{"Relu": 1, "Neg": 1}
	runCases(t, []passCase{
		{name: "one input", passes: passes, want: elided, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Op("Relu", []*ir.Value{b.Input("x", tensor.Float32, ir.D(2), ir.D(3))})
				b.Output(b.Op("Neg", []*ir.Value{b.Op("Concat", []*ir.Value{x}, ir.IntAttr("axis", 1))}), "y")
				return b.Graph()
			}},
		{name: "split in order", build: split(1, 1, 0, 1, 2), passes: passes, want: elided, inits: 0},
		{name: "split negative axis", build: split(1, -2, 0, 1, 2), passes: passes, want: elided, inits: 0},
		{name: "split reordered stays", build: split(1, 1, 1, 0, 2), passes: passes, want: map[string]int{"Relu": 1, "Split": 1, "Concat": 1, "Neg": 1}, inits: 1},
		{name: "split other axis stays", build: split(2, 1, 0, 1, 2), passes: passes, want: map[string]int{"Relu": 1, "Split": 1, "Concat": 1, "Neg": 1}, inits: 1},
		{name: "slices cover", build: slices(1, 0, 2, 2, 6), passes: passes, want: elided, inits: 0, bind: bind},
		{name: "slices past the end", build: slices(1, 0, 1, 1, 3, 3, math.MaxInt64), passes: passes, want: elided, inits: 0, bind: bind},
		{name: "overlap stays", build: slices(1, 0, 4, 2, 6), passes: passes, bind: bind, inits: 6,
			want: map[string]int{"Relu": 1, "Slice": 2, "Concat": 1, "Neg": 1}},
		{name: "negative bounds", build: slices(1, 0, -4, -4, 6), passes: passes, want: elided, inits: 0, bind: bind},
		{name: "slices of a symbolic axis", build: slices(2, 0, 1, 1, math.MaxInt64), passes: passes, want: elided, inits: 0, bind: bind},
		{name: "gap stays", build: slices(1, 0, 2, 3, 6), passes: passes, bind: bind, inits: 6,
			want: map[string]int{"Relu": 1, "Slice": 2, "Concat": 1, "Neg": 1}},
		{name: "short of the end stays", build: slices(1, 0, 2, 2, 5), passes: passes, bind: bind, inits: 6,
			want: map[string]int{"Relu": 1, "Slice": 2, "Concat": 1, "Neg": 1}},
		{name: "run inside a longer concat", passes: passes, inits: 3,
			want: map[string]int{"Relu": 1, "Slice": 1, "Add": 1, "Concat": 1, "Neg": 1},
			build: func() *ir.Graph {
				// YOLOv8's C2f: Concat(Slice(x, 0:3), Slice(x, 3:6), f(Slice(x, 3:6)))
				b := ir.NewBuilder("g", 17)
				x := b.Op("Relu", []*ir.Value{b.Input("x", tensor.Float32, ir.D(2), ir.D(6), ir.D(2))})
				lo := b.Op("Slice", []*ir.Value{x, ints(b, 0), ints(b, 3), ints(b, 1)})
				hi := b.Op("Slice", []*ir.Value{x, ints(b, 3), ints(b, 6), ints(b, 1)})
				f := b.Op("Add", []*ir.Value{hi, hi})
				b.Output(b.Op("Neg", []*ir.Value{b.Op("Concat", []*ir.Value{lo, hi, f}, ir.IntAttr("axis", 1))}), "y")
				return b.Graph()
			}},
		{name: "opset 9 slices", passes: passes, want: elided, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 9)
				x := b.Op("Relu", []*ir.Value{b.Input("x", tensor.Float32, ir.D(2), ir.D(6))})
				lo := b.Op("Slice", []*ir.Value{x}, ir.IntsAttr("starts", 0), ir.IntsAttr("ends", 4), ir.IntsAttr("axes", 1))
				hi := b.Op("Slice", []*ir.Value{x}, ir.IntsAttr("starts", 4), ir.IntsAttr("ends", 6), ir.IntsAttr("axes", 1))
				b.Output(b.Op("Neg", []*ir.Value{b.Op("Concat", []*ir.Value{lo, hi}, ir.IntAttr("axis", 1))}), "y")
				return b.Graph()
			}},
		{name: "graph output", passes: passes, want: map[string]int{"Relu": 1}, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Op("Relu", []*ir.Value{b.Input("x", tensor.Float32, ir.D(2), ir.D(6), ir.D(4))})
				parts := b.OpN("Split", 2, []*ir.Value{x}, ir.IntAttr("axis", 2))
				b.Output(b.Op("Concat", parts, ir.IntAttr("axis", 2)), "y")
				return b.Graph()
			}},
	})
}
