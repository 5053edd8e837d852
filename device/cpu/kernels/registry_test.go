package kernels

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/tensor"
)

func prepNone(*ir.Node, int64) (ops.Kernel, error) { return nil, errors.New("not called") }

// TestNew: the registry refuses two kernels of one op over overlapping
// opsets, a repeated name and an incomplete definition.
func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tables [][]Def
		err    string // "" for no error
	}{
		{"disjoint opsets", [][]Def{{{Name: "a", Type: "Relu", Since: 1, Until: 12, Prepare: prepNone}}, {{Name: "b", Type: "Relu", Since: 13, Prepare: prepNone}}}, ""},
		{"overlapping opsets", [][]Def{{{Name: "a", Type: "Relu", Since: 1, Until: 13, Prepare: prepNone}}, {{Name: "b", Type: "Relu", Since: 13, Prepare: prepNone}}}, "both run Relu over opsets"},
		{"unbounded twice", [][]Def{{{Name: "a", Type: "Relu", Prepare: prepNone}, {Name: "b", Type: "Relu", Since: 20, Prepare: prepNone}}}, "both run Relu"},
		{"ai.onnx is the default domain", [][]Def{{{Name: "a", Type: "Relu", Prepare: prepNone}, {Name: "b", Domain: "ai.onnx", Type: "Relu", Prepare: prepNone}}}, "both run Relu"},
		{"other domain", [][]Def{{{Name: "a", Type: "Relu", Prepare: prepNone}, {Name: "b", Domain: "kiln", Type: "Relu", Prepare: prepNone}}}, ""},
		{"same name", [][]Def{{{Name: "a", Type: "Relu", Prepare: prepNone}, {Name: "a", Type: "Sigmoid", Prepare: prepNone}}}, `two kernels named "a"`},
		{"no name", [][]Def{{{Type: "Relu", Prepare: prepNone}}}, "lacks"},
		{"no Prepare", [][]Def{{{Name: "a", Type: "Relu"}}}, "lacks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.tables...)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("New: %v, want an error containing %q", err, tc.err)
			}
		})
	}
}

// TestDefault: every family table of the package forms one registry.
func TestDefault(t *testing.T) {
	r, err := New(families()...)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ds := range r.defs {
		n += len(ds)
	}
	if n == 0 {
		t.Fatal("the default registry is empty")
	}
	if a, b := Default(), Default(); a != b {
		t.Error("Default built twice")
	}
}

func node(domain, op string, dt tensor.DType) *ir.Node {
	x := &ir.Value{Name: "x", Type: ir.Type{DType: dt}}
	return &ir.Node{Name: "n", Domain: domain, OpType: op, Inputs: []*ir.Value{x}, Outputs: []*ir.Value{{Name: "y"}}}
}

// TestSupports: a miss wraps device.ErrUnsupported and says why; a hit
// returns the entry by its key (domain, op, opset, input 0 type, Check).
func TestSupports(t *testing.T) {
	r, err := New([]Def{
		{Name: "relu-old", Type: "Relu", Since: 6, Until: 12, Types: []tensor.DType{tensor.Float32}, Prepare: prepNone},
		{Name: "relu-new", Type: "Relu", Since: 14, Types: []tensor.DType{tensor.Float32, tensor.Float16}, Prepare: prepNone},
		{Name: "kiln-op", Domain: "kiln", Type: "Thing", Since: 1, Until: 1, Prepare: prepNone,
			Check: func(n *ir.Node, _ int64) error {
				if len(n.Inputs) > 1 {
					return errors.New("one input only")
				}
				return nil
			}},
	})
	if err != nil {
		t.Fatal(err)
	}
	two := node("kiln", "Thing", tensor.Float32)
	two.Inputs = append(two.Inputs, two.Inputs[0])
	for _, tc := range []struct {
		name  string
		n     *ir.Node
		opset int64
		want  string // the kernel, or the reason's text
		hit   bool
	}{
		{"old opset", node("", "Relu", tensor.Float32), 6, "relu-old", true},
		{"last of range", node("", "Relu", tensor.Float32), 12, "relu-old", true},
		{"new opset", node("", "Relu", tensor.Float16), 21, "relu-new", true},
		{"ai.onnx domain", node("ai.onnx", "Relu", tensor.Float32), 14, "relu-new", true},
		{"opset gap", node("", "Relu", tensor.Float32), 13, "op Relu of opset 13 (fast CPU kernels cover opsets 6 to 12, 14 and later)", false},
		{"no kernel", node("", "Sigmoid", tensor.Float32), 13, "op Sigmoid has no fast CPU kernel", false},
		{"type", node("", "Relu", tensor.Float16), 12, "relu-old (Relu) computes input 0 of float32, not float16", false},
		{"unknown type", node("", "Relu", tensor.Undefined), 14, "computes input 0 of float32 or float16, not", false},
		{"other domain ignores the opset", node("kiln", "Thing", tensor.Int64), 21, "kiln-op", true},
		{"check", two, 21, "kiln-op (kiln::Thing): one input only", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := r.Supports(tc.n, tc.opset)
			if tc.hit {
				if err != nil || d.Name != tc.want {
					t.Fatalf("Supports = %q, %v; want %q", d.Name, err, tc.want)
				}
				return
			}
			if !errors.Is(err, device.ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Supports = %q, %v; want ErrUnsupported saying %q", d.Name, err, tc.want)
			}
		})
	}
}

// TestPrepareFallsBack: a node no fast kernel supports gets the op's
// reference kernel, named Reference; an op kiln does not know keeps the
// ops error; a fast kernel's Prepare error names the node.
func TestPrepareFallsBack(t *testing.T) {
	r, err := New([]Def{{Name: "broken", Type: "Relu", Since: 14, Types: []tensor.DType{tensor.Float32},
		Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return nil, ops.ErrBadAttr }}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		n     *ir.Node
		opset int64
		impl  string
		err   error
	}{
		{"reference", node("", "Relu", tensor.Float16), 14, Reference, nil},
		{"opset beyond kiln's", node("", "Relu", tensor.Float32), ops.MaxOpset + 1, "", ops.ErrUnsupportedOp},
		{"unknown op", node("", "NoSuchOp", tensor.Float32), 14, "", ops.ErrUnsupportedOp},
		{"fast kernel refuses", node("", "Relu", tensor.Float32), 14, "", ops.ErrBadAttr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, impl, err := r.Prepare(tc.n, tc.opset)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), `"n"`) {
					t.Fatalf("Prepare = %v, want %v naming node \"n\"", err, tc.err)
				}
				return
			}
			if err != nil || k == nil || impl != tc.impl {
				t.Fatalf("Prepare = %v, %q, %v; want a kernel named %q", k, impl, err, tc.impl)
			}
		})
	}
}
