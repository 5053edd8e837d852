package gpuexec

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// kernelDef is one CUDA implementation of an op, as a family file
// (op_*.go) declares it: the op it runs (domain, type, the opsets it covers
// and input 0's element types), what it needs of the node before shapes
// are bound (input count, float32 inputs, check) and emit, which builds its launches at bound
// shapes (and refuses, with ErrUnsupported, what it cannot run there).
type kernelDef struct {
	domain string // "" for ONNX, "kiln" for kiln's fused ops
	op     string
	// since and until bound the opsets the kernel implements (0: no bound).
	since, until int64
	// inputs is how many inputs the node must have (at least 1).
	inputs int
	// outputs is how many outputs emit computes: a used output beyond them
	// is refused (0 means 1; -1 means all).
	outputs int
	// noFirst says that emit computes the other outputs without the first
	// (RNN's Y absent when only Y_h is read).
	noFirst bool
	// types lists the element types of input 0 the kernel computes, part
	// of the registry's key: two kernels of one op may share opsets when
	// their types are disjoint. nil means any type (check or emit decides,
	// as for an op whose one emit has a path per type).
	types []tensor.DType
	// f32 lists the other inputs that must be float32 (absent ones
	// skipped): a constraint, not a key.
	f32 []int
	// check, when set, decides the other constraints known before shapes
	// are bound (element types, constant inputs, attributes), saying why not.
	check func(n *ir.Node) error
	// checkOpset is check for constraints that depend on the graph's
	// default-domain opset (attributes read by the op's typed parser with
	// the node's opset rules).
	checkOpset func(n *ir.Node, opset int64) error
	emit       func(c *compiler, s *step) error
	// dataDependent says that the number of rows of the node's output
	// depends on the data (NonMaxSuppression): the partitioner gives the
	// nodes that read it a later segment (DataDependent).
	dataDependent bool
	// layoutAgnostic says that the kernel computes each element from the
	// same element of its inputs (scalars broadcast): with inputs all of
	// the output's shape it runs unchanged on NHWC data, so the layout pass
	// (layout.go) keeps NHWC through it. It is this kernel's property, not
	// the op's: the optimizer's layout-agnostic ops (ops.ElementwiseUnary,
	// ops.ElementwiseBinary) are more than the CUDA kernels that read NHWC.
	layoutAgnostic bool
	// unchecked marks a kernel not yet run on a GPU against the CPU engine
	// (bench/gpu-ops.sh): partitioning leaves its nodes to the CPU unless
	// KILN_CUDA_UNVERIFIED=1 (verified.go). Set it on a new kernel until
	// a GPU run has checked it.
	unchecked bool
}

// opKey is a registry key: domain and op type.
type opKey struct{ domain, op string }

// kernelRegistry maps an op to its implementations: no two of them share
// an opset and an element type of input 0.
type kernelRegistry map[opKey][]kernelDef

// newRegistry collects the family tables; two definitions of one op whose
// opset ranges overlap and whose types share one (nil sharing all) are a
// programming error.
func newRegistry(tables ...[]kernelDef) kernelRegistry {
	r := kernelRegistry{}
	for _, t := range tables {
		for _, d := range t {
			k := opKey{d.domain, d.op}
			for _, o := range r[k] {
				if overlaps(o, d) && typesOverlap(o.types, d.types) {
					panic(fmt.Sprintf("gpuexec: two CUDA kernels for %s over opsets %d-%d and %d-%d and types %s and %s",
						opName(&ir.Node{Domain: d.domain, OpType: d.op}), o.since, o.until, d.since, d.until, typeList(o.types), typeList(d.types)))
				}
			}
			r[k] = append(r[k], d)
		}
	}
	return r
}

func overlaps(a, b kernelDef) bool {
	lo, hi := max(a.since, b.since), unbounded(a.until)
	hi = min(hi, unbounded(b.until))
	return lo <= hi
}

// float32Only is the types of a kernel that computes float32 input 0.
var float32Only = []tensor.DType{tensor.Float32}

// typesOverlap reports whether two kernels' types share one (nil: any).
func typesOverlap(a, b []tensor.DType) bool {
	if a == nil || b == nil {
		return true
	}
	for _, t := range a {
		if slices.Contains(b, t) {
			return true
		}
	}
	return false
}

// typeList names types for a message: "float32 or float16", "any type".
func typeList(ts []tensor.DType) string {
	if ts == nil {
		return "any type"
	}
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, " or ")
}

// hasType reports whether v (a value or a constant) is of one of types
// (nil: any).
func hasType(v *ir.Value, types []tensor.DType) bool {
	if types == nil {
		return true
	}
	for _, t := range types {
		if v.Type.DType == t || (v.Const != nil && v.Const.DType == t) {
			return true
		}
	}
	return false
}

func unbounded(v int64) int64 {
	if v == 0 {
		return math.MaxInt64
	}
	return v
}

// registry is every CUDA kernel of the executor, one table per op family.
var registry = newRegistry(convKernels, gemmKernels, poolKernels, elementwiseKernels, movementKernels,
	resizeKernels, normKernels, softmaxKernels, attentionKernels, reduceKernels, topKKernels,
	groupNormKernels, upsampleKernels, lpPoolKernels, einsumKernels, rnnKernels,
	roiKernels, unpoolKernels, dftKernels, revSeqKernels, detKernels,
	qmatmulKernels, qconvKernels, nmsKernels)

// lookup finds the kernel of n's domain and op type for opset (the
// graph's default-domain opset) and input 0's element type, or says why
// there is none. A node without input 0 gets the first kernel of its
// opset (support refuses it as malformed). When a kernel covers the opset
// but not the type, it is returned with the error, so that support checks
// the node's form against it first.
func (r kernelRegistry) lookup(n *ir.Node, opset int64) (kernelDef, error) {
	defs := r[opKey{n.Domain, n.OpType}]
	if len(defs) == 0 {
		return kernelDef{}, fmt.Errorf("%w: op %s has no CUDA implementation", ErrUnsupported, opName(n))
	}
	var have []string
	var inOpset []kernelDef
	for _, d := range defs {
		if n.Domain != "" || (opset >= d.since && opset <= unbounded(d.until)) {
			inOpset = append(inOpset, d)
			continue
		}
		switch {
		case d.until == 0:
			have = append(have, fmt.Sprintf("%d and later", d.since))
		case d.since == 0:
			have = append(have, fmt.Sprintf("up to %d", d.until))
		default:
			have = append(have, fmt.Sprintf("%d to %d", d.since, d.until))
		}
	}
	if len(inOpset) == 0 {
		return kernelDef{}, fmt.Errorf("%w: op %s of opset %d (CUDA kernels cover opsets %s)", ErrUnsupported, opName(n), opset, strings.Join(have, ", "))
	}
	x := input(n, 0)
	if x == nil {
		return inOpset[0], nil
	}
	var types []tensor.DType
	for _, d := range inOpset {
		if hasType(x, d.types) {
			return d, nil
		}
		types = append(types, d.types...)
	}
	return inOpset[0], fmt.Errorf("%w: op %s of opset %d computes input 0 of %s on CUDA, not %v", ErrUnsupported, opName(n), opset, typeList(types), dtypeOf(x))
}

// support decides whether the GPU runs n (in a graph of default opset
// opset), whose outputs the graph reads as used says, and returns how; an
// error wraps ErrUnsupported (or ErrGraph for a malformed node) and says
// why not. It is the one decision both the compiler (emit) and the
// partitioner (Supports) use. Limits that depend on bound shapes (window
// ranks, broadcasting, row sizes) are checked by the kernel's emit.
func support(n *ir.Node, opset int64, used func(*ir.Value) bool) (kernelDef, error) {
	d, lerr := registry.lookup(n, opset)
	need := max(1, d.inputs)
	if len(n.Inputs) < need || len(n.Outputs) == 0 || (n.Outputs[0] == nil && !d.noFirst) {
		return kernelDef{}, fmt.Errorf("%w: %d inputs and %d outputs (at least %d and 1)", ErrGraph, len(n.Inputs), len(n.Outputs), need)
	}
	for i := range need {
		if n.Inputs[i] == nil {
			return kernelDef{}, fmt.Errorf("%w: input %d is missing", ErrGraph, i)
		}
	}
	outs := max(1, d.outputs)
	for i, o := range n.Outputs {
		if o != nil && i >= outs && d.outputs >= 0 && used(o) {
			return kernelDef{}, fmt.Errorf("%w: output %d (%q) of %s has no CUDA implementation", ErrUnsupported, i, o.Name, n.OpType)
		}
	}
	if lerr != nil {
		return kernelDef{}, lerr
	}
	if err := float32In(n, d.f32...); err != nil {
		return kernelDef{}, err
	}
	if d.check != nil {
		if err := d.check(n); err != nil {
			return kernelDef{}, err
		}
	}
	if d.checkOpset != nil {
		if err := d.checkOpset(n, opset); err != nil {
			return kernelDef{}, err
		}
	}
	return d, nil
}

// emit builds the launches of one node.
func (c *compiler) emit(s *step) error {
	if p := c.maskAffine[s.node]; p != nil { // mask.go
		return c.emitMaskAffine(s, p)
	}
	d, err := support(s.node, c.g.Opset(), c.used)
	if err != nil {
		return err
	}
	return d.emit(c, s)
}

func opName(n *ir.Node) string {
	if n.Domain != "" {
		return n.Domain + "::" + n.OpType
	}
	return n.OpType
}

// used reports whether a node or the graph reads v.
func (c *compiler) used(v *ir.Value) bool { return usedIn(c.g, v) }

// usedIn reports whether a node of g or g's outputs read v.
func usedIn(g *ir.Graph, v *ir.Value) bool {
	for _, o := range g.Outputs {
		if o == v {
			return true
		}
	}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in == v {
				return true
			}
		}
	}
	return false
}

// float32In checks that the given inputs (nil ones skipped) are float32.
func float32In(n *ir.Node, idx ...int) error {
	for _, i := range idx {
		v := input(n, i)
		if v != nil && v.Type.DType != tensor.Float32 && !(v.Const != nil && v.Const.DType == tensor.Float32) {
			return fmt.Errorf("%w: input %d is %v, only float32 has a CUDA implementation", ErrUnsupported, i, v.Type.DType)
		}
	}
	return nil
}

func dtypeOf(v *ir.Value) tensor.DType {
	if v.Const != nil {
		return v.Const.DType
	}
	return v.Type.DType
}
