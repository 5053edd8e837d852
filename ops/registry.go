package ops

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

var (
	// ErrUnsupportedOp is returned for an op type kiln does not implement.
	ErrUnsupportedOp = errors.New("unsupported operator")
	// ErrBadAttr is returned for a missing, mistyped or unsupported attribute value.
	ErrBadAttr = errors.New("bad attribute")
	// ErrBadInput is returned when a node's inputs have the wrong number,
	// type or shape.
	ErrBadInput = errors.New("bad input")
)

// Kernel is one node's operator with its attributes already parsed.
type Kernel interface {
	// Infer returns the types of the node's outputs from its input values
	// (nil for an omitted optional input). It may read in[i].Const and
	// in[i].ShapeValue. Unknown parts of the result are left unknown.
	Infer(in []*ir.Value) ([]ir.Type, error)
	// Run computes the outputs from the inputs (nil for omitted optional
	// inputs). It must not modify the inputs.
	Run(env *Env, in []*tensor.Tensor) ([]*tensor.Tensor, error)
}

// ShapeValuer is implemented by kernels that can compute a symbolic value
// (ir.Value.ShapeValue) of their single output from symbolic inputs, so that
// Shape -> Gather -> Concat -> Reshape chains keep "batch" and "seq".
type ShapeValuer interface {
	ShapeValue(in []*ir.Value) []ir.Dim
}

// Env is what a kernel may use while it runs.
type Env struct {
	Ctx context.Context
	// RunGraph runs a subgraph of the node being executed with the given
	// inputs (bound to g.Inputs in order); values g captures from enclosing
	// graphs are available to it.
	RunGraph func(g *ir.Graph, inputs []*tensor.Tensor) ([]*tensor.Tensor, error)
	// Alloc, when not nil, allocates an output tensor (see NewOutput).
	Alloc func(dt tensor.DType, shape []int) (*tensor.Tensor, error)

	out  [1]*tensor.Tensor // One's result
	dims [8]int            // NewOutput's copy of a shape
}

// One returns t as the one output of a kernel's Run: with an env, a slice
// of the env's that is valid until the env's next One (the engine takes a
// kernel's outputs before it runs the next), so that a kernel returns
// without allocating. A kernel that runs another with its own env must
// take the outputs of one run before the next.
func (env *Env) One(t *tensor.Tensor) []*tensor.Tensor {
	if env == nil {
		return []*tensor.Tensor{t}
	}
	env.out[0] = t
	return env.out[:1:1]
}

// Def describes an op type.
type Def struct {
	// Type is the op type, e.g. "Conv".
	Type string
	// Domain is the operator domain; "" is the default ONNX domain.
	Domain string
	// Prepare parses and validates n's attributes for the given opset of its
	// domain and returns the node's kernel.
	Prepare func(n *ir.Node, opset int64) (Kernel, error)
	// Attrs, when set, parses n's attributes for the given opset into the
	// op's exported, typed attribute struct (defaults applied, values
	// checked): what an op is, read by every device's kernel of it so that
	// a default or a rule is decided once (see ParseAttrs). Prepare of such
	// an op takes its attributes from the same parse.
	Attrs func(n *ir.Node, opset int64) (any, error)
	// Traits are what planners, passes and devices need to know of the op
	// without running it, declared here rather than in lists where they
	// are used (see TraitsOf).
	Traits Traits
}

// Traits are properties of an op type (a set of flags).
type Traits uint32

const (
	// ViewOfInput0: output 0 always shares input 0's memory (Reshape,
	// Flatten, Squeeze, Unsqueeze, Identity).
	ViewOfInput0 Traits = 1 << iota
	// MayViewInput0: output 0 may, depending on run-time shapes or types,
	// be input 0 itself or a view of it (a Transpose that only moves
	// dimensions of size 1, a Cast to the same type, a Sum of one input).
	MayViewInput0
	// HasFloat16: the op's CPU kernel computes float16 tensors itself
	// (moving 16-bit elements without converting them, reading only
	// shapes, taking its output type from an attribute or another input,
	// or running subgraphs), so Prepare does not wrap it in the float16
	// adapter (fp16.go).
	HasFloat16
	// KeepFloat32: an FP16 build (quant.FP16Convert) leaves the op in
	// float32: its float32 output type comes from an attribute (random
	// generators, windows, EyeLike), or it is a quantization op, whose
	// scales the INT8 path owns.
	KeepFloat32
	// ElementwiseUnary: each element of output 0 is computed from the
	// element at the same position of input 0; attributes and other inputs
	// do not depend on the position (Relu, Clip, Cast, ...). Such an op is
	// layout-agnostic: the optimizer's layout pass moves a Transpose of its
	// input below it.
	ElementwiseUnary
	// ElementwiseBinary: an elementwise op of two inputs with
	// multidirectional broadcasting (Add, Mul, Equal, ...); layout-agnostic
	// as ElementwiseUnary is, with a constant operand permuted.
	ElementwiseBinary
	// ShapeOnly: the op reads only the shape of its input, never its
	// values (Shape, Size), so any version of the input does (an FP16
	// build gives it whichever exists, without a Cast).
	ShapeOnly
	// OverwritesResidual: output 0 may be written over input
	// ResidualInput (kiln::BlockedConv's residual Z): the kernel reads
	// each element of that input before it writes the same element of
	// output 0, on every path and thread split, and never reads it
	// through a copy made after output 0 was written; no other input may
	// overlap output 0. The CPU memory planner (engine/memplan.go) then
	// gives output 0 the input's arena slot when the input dies at the
	// node (its last reader, not a graph output, not a view, no view of
	// it still live, the same byte size), and the kernel runs with the two
	// tensors over the same memory: the residual added in place.
	OverwritesResidual
)

// ResidualInput is the input that an op with the trait OverwritesResidual
// may write its output 0 over.
const ResidualInput = 3

// Has reports whether t has every trait of x.
func (t Traits) Has(x Traits) bool { return t&x == x }

// TraitsOf returns the traits of an op type (none for an op kiln does not
// know).
func TraitsOf(domain, typ string) Traits {
	d, ok := Lookup(domain, typ)
	if !ok {
		return 0
	}
	return d.Traits
}

// ParseAttrs returns the typed attributes of node n of a graph importing
// the given default-domain opset (its op's Def.Attrs, e.g. a
// SoftmaxAttrs), with an error naming the node. It returns nil and no
// error for an op whose attributes are not typed yet, and an error
// wrapping ErrUnsupportedOp for an op kiln does not know.
func ParseAttrs(n *ir.Node, opset int64) (any, error) {
	d, ok := Lookup(n.Domain, n.OpType)
	if !ok {
		return nil, fmt.Errorf("%w: %s in node %q", ErrUnsupportedOp, n.OpType, n.Name)
	}
	if d.Attrs == nil {
		return nil, nil
	}
	a, err := d.Attrs(n, opset)
	if err != nil {
		return nil, fmt.Errorf("node %q (%s, opset %d): %w", n.Name, n.OpType, opset, err)
	}
	return a, nil
}

var registry = map[string]Def{}

func key(domain, typ string) string {
	if domain == "ai.onnx" {
		domain = ""
	}
	return domain + "::" + typ
}

// Register adds an op definition. It panics if one of the same domain and
// type is already registered.
func Register(d Def) {
	k := key(d.Domain, d.Type)
	if _, dup := registry[k]; dup {
		panic("ops: duplicate registration of " + k)
	}
	if d.Prepare == nil {
		panic("ops: " + k + " has no Prepare")
	}
	registry[k] = d
}

// Lookup returns the definition of an op type.
func Lookup(domain, typ string) (Def, bool) {
	d, ok := registry[key(domain, typ)]
	return d, ok
}

// Types returns the registered op types of the default domain, sorted.
func Types() []string {
	var out []string
	for _, d := range registry {
		if d.Domain == "" {
			out = append(out, d.Type)
		}
	}
	sort.Strings(out)
	return out
}

// MinOpset and MaxOpset bound the default-domain opsets kiln accepts.
const (
	MinOpset = 1
	MaxOpset = 21
)

// Prepare returns the kernel for node n of a graph importing the given
// default-domain opset, with an error naming the op, the node and the opset
// when kiln does not support it. The kernel of a node reading float16
// values comes wrapped in the float16 adapter unless it handles float16
// itself (fp16.go).
func Prepare(n *ir.Node, opset int64) (Kernel, error) {
	d, ok := Lookup(n.Domain, n.OpType)
	if !ok {
		dom := n.Domain
		if dom == "" {
			dom = "ai.onnx"
		}
		return nil, fmt.Errorf("%w: %s (domain %s) in node %q, opset %d", ErrUnsupportedOp, n.OpType, dom, n.Name, opset)
	}
	if opset > MaxOpset {
		return nil, fmt.Errorf("%w: opset %d (node %q, %s); kiln supports opsets up to %d", ErrUnsupportedOp, opset, n.Name, n.OpType, MaxOpset)
	}
	k, err := prepareFloat16(d, n, opset)
	if err != nil {
		return nil, fmt.Errorf("node %q (%s, opset %d): %w", n.Name, n.OpType, opset, err)
	}
	return k, nil
}

// PrepareWith prepares node n of a known op as Prepare does, the float16
// adapter included, but with prepare in place of the op's own Prepare: how
// a device's kernel registry (device/cpu/kernels) prepares its fast kernel
// of the op, so that a float16 node runs it where it would run the op's
// own kernel (on float32 stand-ins unless the op or kernel handles
// float16).
func PrepareWith(n *ir.Node, opset int64, prepare func(*ir.Node, int64) (Kernel, error)) (Kernel, error) {
	d, ok := Lookup(n.Domain, n.OpType)
	if !ok {
		return prepare(n, opset)
	}
	d.Prepare = prepare
	return prepareFloat16(d, n, opset)
}
