// Package kernels is the CPU device's kernel registry: the fast CPU
// kernels, one table per op family (one file each), keyed by domain, op
// type, opset range and element types, each saying why it does not run a
// node (Supports).
//
// The op definitions in package ops (and its subpackages) keep what an op
// is and a reference kernel, simple and obviously right: the oracle every
// fast kernel here is tested against, and what runs a node no entry here
// supports. The engine prepares every CPU node through Prepare: the
// registry first, the op's own kernel otherwise. Package ops never imports
// this package.
//
// Adding a fast kernel is one file (say unique.go) plus its test:
//
//	var uniqueKernels = []Def{{
//		Name: "unique-sorted", Type: "Unique", Since: 11,
//		Types: []tensor.DType{tensor.Float32},
//		Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
//			ref, err := ops.Prepare(n, opset) // Infer, attributes, errors
//			if err != nil {
//				return nil, err
//			}
//			return &uniqueFast{Kernel: ref}, nil // Run replaced
//		},
//	}}
//
// and the table's name added to the list in Default. The entry's test runs
// it against the reference kernel (see blocked_test.go).
package kernels

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// Reference is the name Prepare gives the kernel of a node that no
// registered kernel runs: the op's own (ops.Prepare).
const Reference = "reference"

// Def is one fast CPU kernel of an op, as its family file declares it.
type Def struct {
	// Name names the kernel in reports (engine.Engine.Kernels, the build
	// log): unique in the registry.
	Name string
	// Domain is "" for ONNX ops, "kiln" for kiln's own; Type is the op
	// type.
	Domain, Type string
	// Since and Until bound the default-domain opsets the kernel
	// implements (0: no bound). They are not checked for other domains,
	// which kiln versions as a whole.
	Since, Until int64
	// Types lists the element types of input 0 the kernel computes (nil:
	// any), as the graph types it; a node whose input 0 type is not known
	// is refused. Float16 is for nodes the float16 adapter runs on
	// float32 (Prepare): listed, the kernel runs them where the op's own
	// kernel did.
	Types []tensor.DType
	// Check, when set, decides the other constraints known when the node
	// is prepared (attributes, constant inputs, other inputs' types),
	// saying why not with an error.
	Check func(n *ir.Node, opset int64) error
	// Prepare returns the node's kernel. It parses the attributes with
	// the op's typed parser (ops.ParseAttrs) or takes the reference
	// kernel's Infer (ops.Prepare), so that a node means the same on
	// either path.
	Prepare func(n *ir.Node, opset int64) (ops.Kernel, error)
}

type opKey struct{ domain, op string }

// Registry maps an op to its fast kernels (opset ranges that do not
// overlap).
type Registry struct {
	defs map[opKey][]Def
}

// New collects the family tables. Two kernels of one op over overlapping
// opsets, a repeated name, or a definition without a name, a type or a
// Prepare are refused.
func New(tables ...[]Def) (*Registry, error) {
	r := &Registry{defs: map[opKey][]Def{}}
	names := map[string]bool{}
	for _, t := range tables {
		for _, d := range t {
			if d.Name == "" || d.Type == "" || d.Prepare == nil {
				return nil, fmt.Errorf("kernels: definition %q of op %q lacks a name, an op type or Prepare", d.Name, d.Type)
			}
			if names[d.Name] {
				return nil, fmt.Errorf("kernels: two kernels named %q", d.Name)
			}
			names[d.Name] = true
			k := opKey{normDomain(d.Domain), d.Type}
			for _, o := range r.defs[k] {
				if overlaps(o, d) {
					return nil, fmt.Errorf("kernels: %s and %s both run %s over opsets %d-%d and %d-%d",
						o.Name, d.Name, opName(d.Domain, d.Type), o.Since, o.Until, d.Since, d.Until)
				}
			}
			r.defs[k] = append(r.defs[k], d)
		}
	}
	return r, nil
}

func normDomain(d string) string {
	if d == "ai.onnx" {
		return ""
	}
	return d
}

func overlaps(a, b Def) bool {
	return max(a.Since, b.Since) <= min(unbounded(a.Until), unbounded(b.Until))
}

func unbounded(v int64) int64 {
	if v == 0 {
		return math.MaxInt64
	}
	return v
}

func opName(domain, typ string) string {
	if d := normDomain(domain); d != "" {
		return d + "::" + typ
	}
	return typ
}

// families is every table of fast kernels, one per op family file.
func families() [][]Def {
	return [][]Def{blockedReorderKernels, blockedPoolKernels, poolKernels, layerNormKernels, attentionKernels, matMulKernels, qMatMulKernels, convKernels, gemmKernels, qConvKernels}
}

var (
	defaultOnce sync.Once
	defaultReg  *Registry
	defaultErr  error
)

// Default returns the registry of every fast CPU kernel of this package
// (built on first use; the same registry on every call).
func Default() *Registry {
	defaultOnce.Do(func() { defaultReg, defaultErr = New(families()...) })
	if defaultErr != nil {
		panic(defaultErr) // a programming error, caught by TestDefault
	}
	return defaultReg
}

// Supports returns the kernel that runs n in a graph of default-domain
// opset opset, or an error wrapping device.ErrUnsupported that says why no
// fast kernel does (the op has none, its opset or input type is not
// covered, or the kernel's Check refused the node).
func (r *Registry) Supports(n *ir.Node, opset int64) (Def, error) {
	defs := r.defs[opKey{normDomain(n.Domain), n.OpType}]
	name := opName(n.Domain, n.OpType)
	if len(defs) == 0 {
		return Def{}, fmt.Errorf("%w: op %s has no fast CPU kernel", device.ErrUnsupported, name)
	}
	var d Def
	found := false
	var have []string
	for _, c := range defs {
		if normDomain(n.Domain) != "" || (opset >= c.Since && opset <= unbounded(c.Until)) {
			d, found = c, true
			break
		}
		switch {
		case c.Until == 0:
			have = append(have, fmt.Sprintf("%d and later", c.Since))
		case c.Since == 0:
			have = append(have, fmt.Sprintf("up to %d", c.Until))
		default:
			have = append(have, fmt.Sprintf("%d to %d", c.Since, c.Until))
		}
	}
	if !found {
		return Def{}, fmt.Errorf("%w: op %s of opset %d (fast CPU kernels cover opsets %s)", device.ErrUnsupported, name, opset, strings.Join(have, ", "))
	}
	if d.Types != nil {
		if len(n.Inputs) == 0 || n.Inputs[0] == nil {
			return Def{}, fmt.Errorf("%w: %s (%s) has no input 0", device.ErrUnsupported, d.Name, name)
		}
		dt := n.Inputs[0].Type.DType
		ok := false
		for _, t := range d.Types {
			ok = ok || t == dt
		}
		if !ok {
			return Def{}, fmt.Errorf("%w: %s (%s) computes input 0 of %v, not %v", device.ErrUnsupported, d.Name, name, typeList(d.Types), dt)
		}
	}
	if d.Check != nil {
		if err := d.Check(n, opset); err != nil {
			if !errors.Is(err, device.ErrUnsupported) {
				err = fmt.Errorf("%w: %s (%s): %w", device.ErrUnsupported, d.Name, name, err)
			}
			return Def{}, err
		}
	}
	return d, nil
}

func typeList(ts []tensor.DType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, " or ")
}

// Prepare returns the kernel of node n (in a graph of default-domain
// opset opset) and its name: a fast kernel of the registry when one
// supports the node, else the op's reference kernel (ops.Prepare) and
// Reference. It is the one place the CPU engine prepares a node. A fast
// kernel is prepared as the op's own would be (ops.PrepareWith): a node
// with float16 inputs of an op that does not handle float16 gets the
// kernel prepared on float32 stand-ins inside the float16 adapter, so a
// kernel listing Float16 in Types sees float32.
func (r *Registry) Prepare(n *ir.Node, opset int64) (ops.Kernel, string, error) {
	if opset <= ops.MaxOpset {
		if d, err := r.Supports(n, opset); err == nil {
			k, err := ops.PrepareWith(n, opset, d.Prepare)
			if err != nil {
				return nil, "", fmt.Errorf("node %q (%s, opset %d): %w", n.Name, n.OpType, opset, err)
			}
			return k, d.Name, nil
		}
	}
	k, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, "", err
	}
	return k, Reference, nil
}

// Prepare is Default().Prepare.
func Prepare(n *ir.Node, opset int64) (ops.Kernel, string, error) {
	return Default().Prepare(n, opset)
}

// Kernel is Prepare without the name, of the type ops.InferGraphWith
// takes.
func Kernel(n *ir.Node, opset int64) (ops.Kernel, error) {
	k, _, err := Default().Prepare(n, opset)
	return k, err
}
