package gpuexec

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// newRegistryPanics is newRegistry with its panic returned as a message
// ("" when it accepted the tables).
func newRegistryPanics(tables ...[]kernelDef) (r kernelRegistry, msg string) {
	defer func() {
		if x := recover(); x != nil {
			msg = x.(string)
		}
	}()
	return newRegistry(tables...), ""
}

// TestRegistryTypeOverlap checks newRegistry's key of opset range and
// input 0's element type: kernels of one op over the same opsets are
// accepted when their types are disjoint, refused when they share a type
// or one of them takes any type (nil); kernels over disjoint opsets are
// accepted whatever their types.
func TestRegistryTypeOverlap(t *testing.T) {
	emit := func(*compiler, *step) error { return nil }
	f32, i8, i64 := []tensor.DType{tensor.Float32}, []tensor.DType{tensor.Int8}, []tensor.DType{tensor.Int64, tensor.Float32}
	tests := []struct {
		name string
		a, b kernelDef
		want string // "" when accepted, else a phrase of the panic
	}{
		{"disjoint types", kernelDef{op: "X", types: f32, emit: emit}, kernelDef{op: "X", types: i8, emit: emit}, ""},
		{"common type", kernelDef{op: "X", types: f32, emit: emit}, kernelDef{op: "X", types: i64, emit: emit}, "types float32 and int64 or float32"},
		{"any type and one", kernelDef{op: "X", emit: emit}, kernelDef{op: "X", types: i8, emit: emit}, "types any type and int8"},
		{"one and any type", kernelDef{op: "X", types: i8, emit: emit}, kernelDef{op: "X", emit: emit}, "types int8 and any type"},
		{"same type, disjoint opsets", kernelDef{op: "X", until: 12, types: f32, emit: emit}, kernelDef{op: "X", since: 13, types: f32, emit: emit}, ""},
		{"same type, overlapping opsets", kernelDef{op: "X", until: 13, types: f32, emit: emit}, kernelDef{op: "X", since: 13, types: f32, emit: emit}, "over opsets 0-13 and 13-0"},
		{"kiln domain", kernelDef{domain: "kiln", op: "X", types: f32, emit: emit}, kernelDef{domain: "kiln", op: "X", types: f32, emit: emit}, "two CUDA kernels for kiln::X"},
		{"other domain", kernelDef{op: "X", types: f32, emit: emit}, kernelDef{domain: "kiln", op: "X", types: f32, emit: emit}, ""},
	}
	for _, tt := range tests {
		r, msg := newRegistryPanics([]kernelDef{tt.a}, []kernelDef{tt.b})
		n := 0
		for _, defs := range r {
			n += len(defs)
		}
		switch {
		case tt.want == "" && msg != "":
			t.Errorf("%s: refused: %s", tt.name, msg)
		case tt.want == "" && n != 2:
			t.Errorf("%s: accepted without both kernels: %v", tt.name, r)
		case tt.want != "" && !strings.Contains(msg, tt.want):
			t.Errorf("%s: panic %q, want %q", tt.name, msg, tt.want)
		}
	}
}

// typedNode is a node of op with input 0 of type dt (a constant of type
// dt when konst), opset-free.
func typedNode(domain, op string, dt tensor.DType, konst bool) *ir.Node {
	x := &ir.Value{Name: "x", Type: ir.Type{DType: dt}}
	if konst {
		x.Type = ir.Type{} // known only from the constant
		x.Const = tensor.New(dt, 2)
	}
	return &ir.Node{Domain: domain, OpType: op, Inputs: []*ir.Value{x}, Outputs: []*ir.Value{{Name: "y"}}}
}

// TestRegistryLookupByType checks that lookup picks, among the kernels of
// the node's opset, the one of input 0's type (of a value or a constant),
// that a node without input 0 gets the first of its opset, and the
// refusals' wording: the types the op's CUDA kernels compute at that
// opset, the node's type, ErrUnsupported wrapped.
func TestRegistryLookupByType(t *testing.T) {
	emit := func(*compiler, *step) error { return nil }
	// outputs tags which kernel lookup returned.
	r := newRegistry([]kernelDef{
		{op: "X", until: 12, types: []tensor.DType{tensor.Float32}, outputs: 1, emit: emit},
		{op: "X", since: 13, types: []tensor.DType{tensor.Float32, tensor.Float16}, outputs: 2, emit: emit},
		{op: "X", since: 13, types: []tensor.DType{tensor.Int8}, outputs: 3, emit: emit},
		{op: "Y", types: []tensor.DType{tensor.Float32}, outputs: 4, emit: emit},
		{op: "Y", types: []tensor.DType{tensor.Int64}, outputs: 5, emit: emit},
		{op: "Z", emit: emit, outputs: 6},
		{domain: "kiln", op: "X", types: []tensor.DType{tensor.Int8}, outputs: 7, emit: emit},
	})
	tests := []struct {
		node  *ir.Node
		opset int64
		tag   int    // the kernel found (its outputs), 0 for none
		want  string // "" when found, else a phrase of the refusal
	}{
		{typedNode("", "X", tensor.Float32, false), 11, 1, ""},
		{typedNode("", "X", tensor.Float32, false), 17, 2, ""},
		{typedNode("", "X", tensor.Float16, false), 17, 2, ""},
		{typedNode("", "X", tensor.Int8, false), 17, 3, ""},
		{typedNode("", "X", tensor.Int8, true), 17, 3, ""},
		{typedNode("", "X", tensor.Float16, true), 13, 2, ""},
		{typedNode("", "X", tensor.Int8, false), 11, 1, "op X of opset 11 computes input 0 of float32 on CUDA, not int8"},
		{typedNode("", "X", tensor.Int64, false), 17, 2, "op X of opset 17 computes input 0 of float32 or float16 or int8 on CUDA, not int64"},
		{typedNode("", "Y", tensor.Int64, false), 17, 5, ""},
		{typedNode("", "Y", tensor.Bool, true), 17, 4, "op Y of opset 17 computes input 0 of float32 or int64 on CUDA, not bool"},
		{typedNode("", "Z", tensor.Bool, false), 17, 6, ""},
		{typedNode("kiln", "X", tensor.Int8, false), 17, 7, ""},
		{typedNode("kiln", "X", tensor.Float32, false), 17, 7, "op kiln::X of opset 17 computes input 0 of int8 on CUDA, not float32"},
		{&ir.Node{OpType: "X"}, 17, 2, ""},                           // no input 0: support refuses it as malformed
		{&ir.Node{OpType: "X", Inputs: []*ir.Value{nil}}, 11, 1, ""}, // likewise
	}
	for _, tt := range tests {
		d, err := r.lookup(tt.node, tt.opset)
		name := opName(tt.node)
		switch {
		case d.outputs != tt.tag:
			t.Errorf("%s at opset %d: kernel %d, want %d (err %v)", name, tt.opset, d.outputs, tt.tag, err)
		case tt.want == "" && err != nil:
			t.Errorf("%s at opset %d: %v", name, tt.opset, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrUnsupported)):
			t.Errorf("%s at opset %d: %v, want %q wrapping ErrUnsupported", name, tt.opset, err, tt.want)
		}
	}
}

// TestSupportRefusesType checks support's refusal of an input 0 type
// through the package's registry (Relu and Conv compute float32), and that
// a malformed node is still ErrGraph before any type is looked at.
func TestSupportRefusesType(t *testing.T) {
	used := func(*ir.Value) bool { return true }
	relu := typedNode("", "Relu", tensor.Int8, false)
	if _, err := support(relu, 17, used); err == nil || !errors.Is(err, ErrUnsupported) ||
		!strings.Contains(err.Error(), "op Relu of opset 17 computes input 0 of float32 on CUDA, not int8") {
		t.Errorf("Relu of int8: %v", err)
	}
	if _, err := support(typedNode("", "Relu", tensor.Float32, false), 17, used); err != nil {
		t.Errorf("Relu of float32: %v", err)
	}
	conv := typedNode("", "Conv", tensor.Int8, false) // one input: Conv needs two
	if _, err := support(conv, 17, used); err == nil || !errors.Is(err, ErrGraph) {
		t.Errorf("Conv of int8 with one input: %v, want ErrGraph", err)
	}
}
