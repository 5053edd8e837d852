package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/kilnai/kiln/ir"
	_ "github.com/kilnai/kiln/ops/math"
	"github.com/kilnai/kiln/tensor"
)

// addRelu builds y = Relu(x + c) with x [batch, 3].
func addRelu(t *testing.T) *Engine {
	t.Helper()
	b := ir.NewBuilder("add_relu", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(3))
	c := b.Const("c", tensor.FromFloat32([]float32{1, -1, 0}, 3))
	y := b.Op("Relu", []*ir.Value{b.Op("Add", []*ir.Value{x, c})})
	b.Output(y, "y")
	e, err := New(b.Graph())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRunAndSymbolicShape(t *testing.T) {
	e := addRelu(t)
	if got := e.Outputs()[0].Type.String(); got != "float32[batch,3]" {
		t.Fatalf("inferred output type %s, want float32[batch,3]", got)
	}
	x := tensor.FromFloat32([]float32{1, 2, 3, -5, 0.5, -1}, 2, 3)
	out, err := e.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{2, 1, 3, 0, 0, 0}
	for i, v := range out["y"].Float32s() {
		if v != want[i] {
			t.Fatalf("y = %v, want %v", out["y"].Float32s(), want)
		}
	}
}

func TestInputErrors(t *testing.T) {
	e := addRelu(t)
	tests := []struct {
		name string
		in   map[string]*tensor.Tensor
		want string
	}{
		{"missing", map[string]*tensor.Tensor{}, `input "x" (float32[batch,3]) is missing`},
		{"unknown", map[string]*tensor.Tensor{"x": tensor.New(tensor.Float32, 1, 3), "z": tensor.New(tensor.Float32, 1)}, `no input "z"`},
		{"dtype", map[string]*tensor.Tensor{"x": tensor.New(tensor.Int64, 1, 3)}, "has type int64, want float32"},
		{"rank", map[string]*tensor.Tensor{"x": tensor.New(tensor.Float32, 3)}, "want rank 2"},
		{"dim", map[string]*tensor.Tensor{"x": tensor.New(tensor.Float32, 2, 4)}, "dimension 1 is 4, want 3"},
		{"bytes", map[string]*tensor.Tensor{"x": {DType: tensor.Float32, Shape: []int{2, 3}, Data: make([]byte, 5)}}, "5 bytes do not fit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Run(context.Background(), tt.in)
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrInput containing %q", err, tt.want)
			}
		})
	}
}

func TestSymbolicDimConsistency(t *testing.T) {
	b := ir.NewBuilder("two_inputs", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(2))
	y := b.Input("y", tensor.Float32, ir.S("batch"), ir.D(2))
	b.Output(b.Op("Add", []*ir.Value{x, y}), "z")
	e, err := New(b.Graph())
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Run(context.Background(), map[string]*tensor.Tensor{"x": tensor.New(tensor.Float32, 2, 2), "y": tensor.New(tensor.Float32, 3, 2)})
	if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "(batch) is 3, but batch is 2") {
		t.Fatalf("error %v", err)
	}
}

func TestValidation(t *testing.T) {
	// a node reading a value nothing defines
	b := ir.NewBuilder("dangling", 17)
	ghost := &ir.Value{Name: "ghost"}
	b.Output(b.Op("Relu", []*ir.Value{ghost}), "y")
	if _, err := New(b.Graph()); !errors.Is(err, ir.ErrInvalidGraph) {
		t.Fatalf("dangling input: %v", err)
	}
	// a cycle: a = Relu(b), b = Relu(a)
	g := &ir.Graph{Opsets: map[string]int64{"": 17}}
	va, vb := &ir.Value{Name: "a"}, &ir.Value{Name: "b"}
	g.Nodes = []*ir.Node{
		{Name: "n1", OpType: "Relu", Inputs: []*ir.Value{vb}, Outputs: []*ir.Value{va}},
		{Name: "n2", OpType: "Relu", Inputs: []*ir.Value{va}, Outputs: []*ir.Value{vb}},
	}
	g.Outputs = []*ir.Value{va}
	if _, err := New(g); !errors.Is(err, ir.ErrInvalidGraph) || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("cycle: %v", err)
	}
	// unknown op: the error names the op, the node and the opset
	b = ir.NewBuilder("unknown", 13)
	x := b.Input("x", tensor.Float32, ir.D(1))
	b.Output(b.Op("FrobnicateV2", []*ir.Value{x}), "y")
	_, err := New(b.Graph())
	if err == nil || !strings.Contains(err.Error(), "FrobnicateV2") || !strings.Contains(err.Error(), "FrobnicateV2_1") || !strings.Contains(err.Error(), "opset 13") {
		t.Fatalf("unknown op: %v", err)
	}
}

func TestCancel(t *testing.T) {
	e := addRelu(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Run(ctx, map[string]*tensor.Tensor{"x": tensor.New(tensor.Float32, 1, 3)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestConcurrentRuns(t *testing.T) {
	e := addRelu(t)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			x := tensor.FromFloat32([]float32{float32(g), 0, 0}, 1, 3)
			for i := 0; i < 50; i++ {
				out, err := e.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
				if err != nil {
					t.Error(err)
					return
				}
				if got := out["y"].Float32s()[0]; got != float32(g)+1 {
					t.Errorf("goroutine %d got %v", g, got)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}
