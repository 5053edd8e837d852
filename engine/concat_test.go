package engine

import (
	"context"
	"fmt"
	"testing"
	"unsafe"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// noAxis stands for a Concat without the attribute "axis" (1 by default
// before opset 4).
const noAxis = -100

// concatGraph builds y = Neg(Concat(Neg(x), Abs(x), x + 0.5, axis)) on x
// [dim0, dim1] at the given opset (0: 17): a Concat of three producers
// whose output is an intermediate.
func concatGraph(t *testing.T, opset int64, dim0 ir.Dim, width int64, axis int64, view bool, o Options) *Engine {
	t.Helper()
	if opset == 0 {
		opset = 17
	}
	b := ir.NewBuilder("concat", opset)
	x := b.Input("x", tensor.Float32, dim0, ir.D(width))
	c := b.Const("c", tensor.FromFloat32([]float32{0.5}, 1))
	a := b.Op("Neg", []*ir.Value{x})
	bb := b.Op("Abs", []*ir.Value{x})
	var bc []*ir.Attr
	if opset < 7 {
		bc = append(bc, ir.IntAttr("broadcast", 1))
	}
	cc := b.Op("Add", []*ir.Value{x, c}, bc...)
	ins := []*ir.Value{a, bb, cc}
	if view {
		// pure views of the producers' outputs, as yolo's Reshapes
		for i, v := range ins {
			ins[i] = b.Op("Flatten", []*ir.Value{v}, ir.IntAttr("axis", 1))
		}
	}
	var ax []*ir.Attr
	if axis != noAxis {
		ax = append(ax, ir.IntAttr("axis", axis))
	}
	cat := b.Op("Concat", ins, ax...)
	b.Output(b.Op("Neg", []*ir.Value{cat}), "y")
	e, err := NewWithOptions(b.Graph(), o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestConcatInPlace checks that the memory planner puts a Concat's inputs
// inside its output when they lie one after the other there (their
// producers write where the Concat would copy them), and that the results
// match an engine without arena: for a fixed shape, for one whose inputs
// would sit at unaligned offsets (not nested), for inputs that are views
// (Flatten) of the producers' outputs, for a Concat with a batch
// dimension before its axis (not nested), and for max shapes larger than
// the run's (nested at the max sizes: the Concat copies its inputs aside);
// before opset 4 a Concat without axis joins along axis 1, not 0.
func TestConcatInPlace(t *testing.T) {
	withStrictAlias(t)
	for _, tc := range []struct {
		name    string
		opset   int64 // 0: 17
		dim0    ir.Dim
		width   int64
		axis    int64
		view    bool
		max     map[string][]int
		batches []int
		nested  bool
	}{
		{"axis 1, aligned", 0, ir.D(1), 16, 1, false, nil, []int{1}, true},
		{"axis -1, aligned", 0, ir.D(1), 32, -1, false, nil, []int{1}, true},
		{"axis 1, unaligned", 0, ir.D(1), 5, 1, false, nil, []int{1}, false},
		{"axis 1, views", 0, ir.D(1), 16, 1, true, nil, []int{1}, true},
		{"axis 1, batch 3", 0, ir.D(3), 16, 1, false, nil, []int{3}, false},
		{"axis 0, batch 4", 0, ir.D(4), 16, 0, false, nil, []int{4}, true},
		{"axis 0, max batch 4", 0, ir.S("batch"), 16, 0, false, map[string][]int{"x": {4, 16}}, []int{4, 1, 3, 2}, true},
		{"opset 3 no axis, aligned", 3, ir.D(1), 16, noAxis, false, nil, []int{1}, true},
		{"opset 3 no axis, batch 4", 3, ir.D(4), 16, noAxis, false, nil, []int{4}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := concatGraph(t, tc.opset, tc.dim0, tc.width, tc.axis, tc.view, Options{MaxShapes: tc.max})
			ref := concatGraph(t, tc.opset, tc.dim0, tc.width, tc.axis, tc.view, Options{NoArena: true, MaxShapes: tc.max})
			c := e.NewContext()
			for _, batch := range tc.batches {
				n := batch * int(tc.width)
				x := ramp(n, 0.37, batch, int(tc.width))
				want, err := ref.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
				if err != nil {
					t.Fatal(err)
				}
				for run := 0; run < 2; run++ {
					poison(c)
					seen := map[string]*tensor.Tensor{}
					got, err := c.RunObserved(context.Background(), map[string]*tensor.Tensor{"x": x}, func(v *ir.Value, t *tensor.Tensor) {
						seen[v.Name] = t
					})
					if err != nil {
						t.Fatal(err)
					}
					equal(t, fmt.Sprintf("batch %d run %d", batch, run), got["y"], want["y"])
					if batch != tc.batches[0] {
						continue
					}
					// the Concat's output and its inputs, in graph order
					var cat *tensor.Tensor
					var ins []*tensor.Tensor
					for _, nd := range e.Graph().Nodes {
						if nd.OpType == "Concat" {
							cat = seen[nd.Outputs[0].Name]
							for _, in := range nd.Inputs {
								ins = append(ins, seen[in.Name])
							}
						}
					}
					if cat == nil || len(ins) != 3 || ins[0] == nil {
						t.Fatalf("Concat not observed")
					}
					base := uintptr(unsafe.Pointer(&cat.Data[0]))
					off := 0
					inPlace := true
					for _, in := range ins {
						if uintptr(unsafe.Pointer(&in.Data[0])) != base+uintptr(off) {
							inPlace = false
						}
						off += len(in.Data)
					}
					if inPlace != tc.nested {
						t.Fatalf("inputs inside the Concat's output: %v, want %v", inPlace, tc.nested)
					}
				}
			}
		})
	}
}
