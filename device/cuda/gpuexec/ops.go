package gpuexec

import (
	"errors"
	"fmt"
	"math"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// Activation codes of the kernels (act_apply in kernels/nn.cu).
const (
	actNone        = 0
	actRelu        = 1
	actSigmoid     = 2
	actSiLU        = 3
	actClip        = 4
	actHardSwish   = 5
	actLeakyRelu   = 6
	actHardSigmoid = 7
	actGelu        = 8
	actGeluTanh    = 9
	actTanh        = 10
)

// activation is a parsed activation with its parameters.
type activation struct {
	code   int
	p0, p1 float32
}

// fusedActivation reads the "activation" and "activation_params"
// attributes of kiln's fused ops (see ops/nn/fused.go).
func fusedActivation(n *ir.Node) (activation, error) {
	a := ops.AttrsOf(n)
	name := a.String("activation", "")
	p := a.Floats("activation_params", nil)
	var act activation
	var def []float32
	switch name {
	case "":
	case "Relu":
		act.code = actRelu
	case "Clip":
		act.code, def = actClip, []float32{-inf, inf}
	case "Sigmoid":
		act.code = actSigmoid
	case "SiLU":
		act.code = actSiLU
	case "HardSwish":
		act.code = actHardSwish
	case "LeakyRelu":
		act.code, def = actLeakyRelu, []float32{0.01, 0}
	case "HardSigmoid":
		act.code, def = actHardSigmoid, []float32{0.2, 0.5}
	case "Gelu":
		act.code = actGelu
	case "GeluTanh":
		act.code = actGeluTanh
	default:
		return act, fmt.Errorf("%w: activation %q", ErrUnsupported, name)
	}
	if p == nil {
		p = def
	}
	if len(p) > 0 {
		act.p0 = p[0]
	}
	if len(p) > 1 {
		act.p1 = p[1]
	}
	return act, a.Err()
}

// convCall is a convolution that cuDNN may run: y = conv(x, w), followed
// by post (bias, residual, activation) in place.
type convCall struct {
	x, w, y                ref
	n, c, h, wd, m, oh, ow int
	kh, kw, sh, sw, ph, pw int
	dh, dw, group          int
	post                   launch
}

// gemmCall is a row-major product that cuBLASLt may run: Y[M,N] =
// A[M,K] B[K,N] (B transposed when transB: stored [N,K]), followed by post
// (bias and activation) in place when post.kernel is set.
type gemmCall struct {
	a, b, y ref
	m, n, k int
	transB  bool
	post    launch
	// bias and act are what post does: cuBLASLt's epilogue replaces post
	// when bias is a constant and act is none or ReLU.
	bias *ref
	act  activation
}

// minInputs is the number of inputs an op needs (1 when not listed).
var minInputs = map[string]int{"Conv": 2, "FusedConv": 2, "Gemm": 2, "MatMul": 2, "FusedMatMul": 2, "Attention": 3,
	"Gather": 2, "LayerNormalization": 2, "Add": 2, "Sub": 2, "Mul": 2, "Div": 2, "Max": 2, "Min": 2, "Pow": 2}

// opSpec is how the GPU runs one op: emit builds its launches; f32 lists
// the inputs that must be float32 (absent ones skipped) and check, when
// set, the other type constraints known before shapes are bound.
type opSpec struct {
	emit  func(c *compiler, s *step) error
	f32   []int
	check func(n *ir.Node) error
}

// support decides whether the GPU runs n, whose outputs the graph reads as
// used says, and returns how; an error wraps ErrUnsupported (or ErrGraph
// for a malformed node) and says why not. It is the one decision both the
// compiler (emit) and the partitioner (Supports) use. Limits that depend on
// bound shapes (2-D windows, broadcasting, row sizes) are checked by the
// spec's emit.
func support(n *ir.Node, used func(*ir.Value) bool) (opSpec, error) {
	need := max(1, minInputs[n.OpType])
	if len(n.Inputs) < need || len(n.Outputs) == 0 || n.Outputs[0] == nil {
		return opSpec{}, fmt.Errorf("%w: %d inputs and %d outputs (at least %d and 1)", ErrGraph, len(n.Inputs), len(n.Outputs), need)
	}
	for i := range need {
		if n.Inputs[i] == nil {
			return opSpec{}, fmt.Errorf("%w: input %d is missing", ErrGraph, i)
		}
	}
	for i, o := range n.Outputs {
		if o != nil && i > 0 && used(o) && !multiOutput[n.OpType] {
			return opSpec{}, fmt.Errorf("%w: output %d (%q) of %s has no CUDA implementation", ErrUnsupported, i, o.Name, n.OpType)
		}
	}
	spec, ok := lookupOp(n)
	if !ok {
		return opSpec{}, fmt.Errorf("%w: op %s has no CUDA implementation", ErrUnsupported, opName(n))
	}
	if err := float32In(n, spec.f32...); err != nil {
		return opSpec{}, err
	}
	if spec.check != nil {
		if err := spec.check(n); err != nil {
			return opSpec{}, err
		}
	}
	return spec, nil
}

// lookupOp finds the spec of n's domain and op type.
func lookupOp(n *ir.Node) (opSpec, bool) {
	switch key := n.OpType; {
	case n.Domain == "kiln" && key == "FusedConv", n.Domain == "" && key == "Conv":
		return opSpec{emit: (*compiler).conv, f32: []int{0, 1, 2, 3}}, true
	case n.Domain == "" && key == "Gemm":
		return opSpec{emit: (*compiler).gemm, f32: []int{0, 1, 2}}, true
	case n.Domain == "kiln" && key == "FusedMatMul", n.Domain == "" && key == "MatMul":
		return opSpec{emit: (*compiler).matmul, f32: []int{0, 1, 2}}, true
	case n.Domain == "" && (key == "MaxPool" || key == "AveragePool"):
		return opSpec{emit: (*compiler).pool, f32: []int{0}}, true
	case n.Domain == "" && (key == "GlobalAveragePool" || key == "GlobalMaxPool"):
		return opSpec{emit: (*compiler).globalPool, f32: []int{0}}, true
	case n.Domain == "" && aliasOps[key]:
		return opSpec{emit: func(c *compiler, s *step) error { return c.alias(s.node) }}, true
	case n.Domain == "" && hasKey(binaryOps, key) && len(n.Inputs) == 2:
		return opSpec{emit: func(c *compiler, s *step) error { return c.binary(s, binaryOps[key]) }, f32: []int{0, 1}}, true
	case (n.Domain == "" || n.Domain == "kiln") && hasKey(unaryOps, key):
		return opSpec{emit: (*compiler).unary, f32: []int{0}, check: clipBounds}, true
	case n.Domain == "" && key == "Concat":
		return opSpec{emit: (*compiler).concat, check: movedOutput}, true
	case n.Domain == "" && key == "Split":
		return opSpec{emit: (*compiler).split, check: movedInput}, true
	case n.Domain == "" && key == "Transpose":
		return opSpec{emit: (*compiler).transpose, check: movedInput}, true
	case n.Domain == "" && key == "Slice":
		return opSpec{emit: (*compiler).slice, check: movedInput}, true
	case n.Domain == "" && key == "Resize":
		return opSpec{emit: (*compiler).resize, check: resizedInput}, true
	case n.Domain == "" && key == "Gather":
		return opSpec{emit: (*compiler).gather, check: gatherTypes}, true
	case n.Domain == "" && key == "Cast":
		return opSpec{emit: (*compiler).cast, check: castTypes}, true
	case (n.Domain == "" || n.Domain == "kiln") && key == "LayerNormalization":
		return opSpec{emit: (*compiler).layerNorm, f32: []int{0, 1, 2}}, true
	case n.Domain == "" && key == "Softmax":
		return opSpec{emit: (*compiler).softmax, f32: []int{0}}, true
	case n.Domain == "kiln" && key == "Attention":
		return opSpec{emit: (*compiler).attention}, true
	}
	return opSpec{}, false
}

// emit builds the launches of one node.
func (c *compiler) emit(s *step) error {
	spec, err := support(s.node, c.used)
	if err != nil {
		return err
	}
	return spec.emit(c, s)
}

// Supports reports whether the GPU executor runs node n of g (optimized,
// types inferred): nil if it does, else an error wrapping ErrUnsupported
// (and device.ErrUnsupported) that says why. It makes compile's decision
// (the same op table, input counts, used outputs and element types);
// limits that depend on bound shapes still fail at compile time. A node
// that folding turns into constants once the input shapes are bound (as
// the plan's engines are prepared, see compilePlan) is supported: compile
// never runs it. Those are the computations on shapes: nodes whose
// outputs are constants or shape values, and nodes that read only
// constants and such values (Range, ConstantOfShape of a shape).
func Supports(n *ir.Node, g *ir.Graph) error {
	if foldsWhenBound(n, g) {
		return nil
	}
	used := func(v *ir.Value) bool { return usedIn(g, v) }
	if _, err := support(n, used); err != nil {
		return unsupportedError{err}
	}
	if err := dryRun(n, g, used); err != nil {
		return unsupportedError{err}
	}
	return nil
}

// probeDim is the size a symbolic or unknown dimension takes in dryRun.
const probeDim = 16

// dryRun compiles n alone, as compile would within g, at g's shapes (a
// symbolic or unknown dimension taken as probeDim, one size per symbol),
// so that the limits emit checks on attributes, ranks and shapes (2-D
// windows, Resize modes, Softmax axes, broadcasting) decide support too.
// It returns the compiler's error when it wraps ErrUnsupported, and nil
// when it compiles or when the node cannot be tried alone (types not
// inferred, shapes that do not agree once the probe sizes are put in):
// the full compile decides those.
func dryRun(n *ir.Node, g *ir.Graph, used func(*ir.Value) bool) (err error) {
	defer func() {
		if recover() != nil {
			err = nil // probe sizes the compiler trips on: the full compile decides
		}
	}()
	sub := &ir.Graph{Name: "supports", Opsets: g.Opsets}
	inputs := map[*ir.Value]bool{}
	for _, v := range g.Inputs {
		inputs[v] = true
	}
	node := &ir.Node{Name: n.Name, OpType: n.OpType, Domain: n.Domain, Attrs: n.Attrs}
	seen := map[*ir.Value]*ir.Value{}
	for _, v := range n.Inputs {
		if v == nil {
			node.Inputs = append(node.Inputs, nil)
			continue
		}
		if c, ok := seen[v]; ok {
			node.Inputs = append(node.Inputs, c)
			continue
		}
		c := &ir.Value{Name: v.Name}
		switch {
		case v.Const != nil && !inputs[v]:
			c.Const, c.Type = v.Const, v.Type
			sub.Initializers = append(sub.Initializers, c)
		case v.ShapeValue != nil:
			vals := make([]int64, len(v.ShapeValue))
			for i, d := range v.ShapeValue {
				vals[i] = probe(d)
			}
			t := tensor.FromInt64(vals, len(vals))
			if v.Type.DType == tensor.Int32 {
				t = tensor.New(tensor.Int32, len(vals))
				for i, x := range vals {
					t.Int32s()[i] = int32(x)
				}
			}
			c.Const, c.Type = t, ir.Type{DType: t.DType, Shape: ir.KnownShape(len(vals))}
			sub.Initializers = append(sub.Initializers, c)
		default:
			if v.Type.DType == tensor.Undefined || v.Type.Shape == nil {
				return nil
			}
			dims := make([]int, len(v.Type.Shape))
			for i, d := range v.Type.Shape {
				dims[i] = int(probe(d))
			}
			c.Type = ir.Type{DType: v.Type.DType, Shape: ir.KnownShape(dims...)}
			sub.Inputs = append(sub.Inputs, c)
		}
		seen[v] = c
		node.Inputs = append(node.Inputs, c)
	}
	for i, o := range n.Outputs {
		if o == nil {
			node.Outputs = append(node.Outputs, nil)
			continue
		}
		c := &ir.Value{Name: o.Name, Producer: node}
		node.Outputs = append(node.Outputs, c)
		if i == 0 || used(o) {
			sub.Outputs = append(sub.Outputs, c)
		}
	}
	sub.Nodes = []*ir.Node{node}
	if _, err := ops.InferGraph(sub); err != nil {
		return nil
	}
	if _, err := compile(sub, false, false); err != nil && errors.Is(err, ErrUnsupported) {
		return err
	}
	return nil
}

// probe is d's size, or probeDim when it has none.
func probe(d ir.Dim) int64 {
	if d.Known() {
		return d.Val
	}
	return probeDim
}

// foldsWhenBound reports whether folding at bound input shapes computes n
// (see Supports).
func foldsWhenBound(n *ir.Node, g *ir.Graph) bool {
	inputs := map[*ir.Value]bool{}
	for _, v := range g.Inputs {
		inputs[v] = true
	}
	return (&folds{g: g, inputs: inputs, memo: map[*ir.Node]bool{}}).node(n)
}

// folds decides foldsWhenBound for the nodes of one graph.
type folds struct {
	g      *ir.Graph
	inputs map[*ir.Value]bool
	memo   map[*ir.Node]bool
	depth  int
}

// maxFoldDepth bounds how far back foldsWhenBound follows producers: shape
// computations are short chains, and a deep one is taken as not folding
// (the node is then decided by the op table), which keeps Supports linear
// in the depth of the graph.
const maxFoldDepth = 32

func (f *folds) node(n *ir.Node) bool {
	if ok, seen := f.memo[n]; seen {
		return ok
	}
	if f.depth >= maxFoldDepth {
		return false
	}
	f.memo[n] = false // a cycle folds nothing
	f.depth++
	ok := f.decide(n)
	f.depth--
	f.memo[n] = ok
	return ok
}

func (f *folds) decide(n *ir.Node) bool {
	if len(n.Outputs) == 0 || len(n.Subgraphs()) > 0 {
		return false
	}
	known := true
	for _, o := range n.Outputs {
		if o != nil && o.Const == nil && !shapeVector(o) {
			known = false
		}
	}
	if known {
		return true
	}
	for _, v := range n.Inputs {
		if v != nil && !f.value(v) {
			return false
		}
	}
	k, err := ops.Prepare(n, f.g.Opset())
	if err != nil {
		return false
	}
	_, random := k.(ops.NonDeterministic)
	return !random
}

// shapeVector reports whether v is a shape value that shape folding turns
// into a constant once the dims are known: a 1-D int64 or int32 vector
// (not the scalar of Size).
func shapeVector(v *ir.Value) bool {
	if v.ShapeValue == nil || (v.Type.DType != tensor.Int64 && v.Type.DType != tensor.Int32) {
		return false
	}
	return v.Type.Shape == nil || (len(v.Type.Shape) == 1 && (!v.Type.Shape[0].Known() || v.Type.Shape[0].Val == int64(len(v.ShapeValue))))
}

// value reports whether v is a constant, a shape value or computed from
// those alone.
func (f *folds) value(v *ir.Value) bool {
	switch {
	case f.inputs[v]:
		return false // a default can be overridden at run time
	case v.Const != nil || shapeVector(v):
		return true
	case v.Producer == nil:
		return false
	}
	return f.node(v.Producer)
}

// unsupportedError is a reason of Supports: its message is the executor's,
// and it matches both ErrUnsupported (or ErrGraph) and
// device.ErrUnsupported.
type unsupportedError struct{ err error }

func (e unsupportedError) Error() string   { return e.err.Error() }
func (e unsupportedError) Unwrap() []error { return []error{e.err, device.ErrUnsupported} }

// clipBounds: Clip's min and max inputs must be float32 constants.
func clipBounds(n *ir.Node) error {
	if n.OpType != "Clip" {
		return nil
	}
	for i := 1; i <= 2; i++ {
		if v := input(n, i); v != nil && !clipBound(v) {
			return fmt.Errorf("%w: Clip bound %q is not a float32 constant", ErrUnsupported, v.Name)
		}
	}
	return nil
}

func clipBound(v *ir.Value) bool {
	return v.Const != nil && v.Const.DType == tensor.Float32 && v.Const.Len() == 1
}

// movable reports whether elements of type dt are moved by the copy
// kernels (2, 4 or 8 bytes; float32 in either precision).
func movable(dt tensor.DType) bool {
	switch dt.Size() {
	case 2, 4, 8:
		return true
	}
	return false
}

func notMovable(dt tensor.DType) error {
	return fmt.Errorf("%w: %v elements (only 2-, 4- and 8-byte types are moved on the GPU)", ErrUnsupported, dt)
}

func movedOutput(n *ir.Node) error {
	if dt := n.Outputs[0].Type.DType; !movable(dt) {
		return notMovable(dt)
	}
	return nil
}

func movedInput(n *ir.Node) error {
	if dt := dtypeOf(n.Inputs[0]); !movable(dt) {
		return notMovable(dt)
	}
	return nil
}

// resizedInput: nearest Resize moves 2- and 4-byte elements.
func resizedInput(n *ir.Node) error {
	if dt := dtypeOf(n.Inputs[0]); dt.Size() != 2 && dt.Size() != 4 {
		return fmt.Errorf("%w: Resize of %v", ErrUnsupported, dt)
	}
	return nil
}

func gatherTypes(n *ir.Node) error {
	if dt := dtypeOf(n.Inputs[1]); dt != tensor.Int64 {
		return fmt.Errorf("%w: Gather indices of %v (only int64)", ErrUnsupported, dt)
	}
	return movedInput(n)
}

// castKernel is the kernel base that casts from to to ("" and false when
// there is none; equal types are an alias).
func castKernel(from, to tensor.DType) (string, bool) {
	switch {
	case from == to:
		return "", true
	case to == tensor.Float32 && from == tensor.Int64:
		return "cast_i64", true
	case to == tensor.Float32 && from == tensor.Int32:
		return "cast_i32", true
	}
	return "", false
}

func castTypes(n *ir.Node) error {
	from, to := dtypeOf(n.Inputs[0]), n.Outputs[0].Type.DType
	if _, ok := castKernel(from, to); !ok {
		return fmt.Errorf("%w: Cast from %v to %v", ErrUnsupported, from, to)
	}
	return nil
}

func opName(n *ir.Node) string {
	if n.Domain != "" {
		return n.Domain + "::" + n.OpType
	}
	return n.OpType
}

func hasKey[V any](m map[string]V, k string) bool { _, ok := m[k]; return ok }

// multiOutput ops use their other outputs.
var multiOutput = map[string]bool{"Split": true}

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

var aliasOps = map[string]bool{"Reshape": true, "Flatten": true, "Squeeze": true, "Unsqueeze": true, "Identity": true, "Dropout": true}

var binaryOps = map[string]int{"Add": 0, "Sub": 1, "Mul": 2, "Div": 3, "Max": 4, "Min": 5, "Pow": 6}

var unaryOps = map[string]int{"Relu": actRelu, "Sigmoid": actSigmoid, "Tanh": actTanh, "Clip": actClip,
	"LeakyRelu": actLeakyRelu, "HardSigmoid": actHardSigmoid, "HardSwish": actHardSwish, "Gelu": actGelu}

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

// windowAttrs reads kernel_shape, strides, dilations, pads and auto_pad of
// a 2-D window op and returns the begin pads and end pads, given the
// input and output sizes.
type window2D struct{ kh, kw, sh, sw, dh, dw, ph, pw, peh, pew int }

func readWindow(n *ir.Node, h, w, oh, ow, kh, kw int) (window2D, error) {
	a := ops.AttrsOf(n)
	win := window2D{kh: kh, kw: kw, sh: 1, sw: 1, dh: 1, dw: 1}
	if k := a.Ints("kernel_shape", nil); k != nil {
		if len(k) != 2 {
			return win, fmt.Errorf("%w: kernel_shape %v: only 2-D windows", ErrUnsupported, k)
		}
		win.kh, win.kw = int(k[0]), int(k[1])
	}
	if st := a.Ints("strides", nil); st != nil {
		if len(st) != 2 {
			return win, fmt.Errorf("%w: strides %v", ErrUnsupported, st)
		}
		win.sh, win.sw = int(st[0]), int(st[1])
	}
	if d := a.Ints("dilations", nil); d != nil {
		if len(d) != 2 {
			return win, fmt.Errorf("%w: dilations %v", ErrUnsupported, d)
		}
		win.dh, win.dw = int(d[0]), int(d[1])
	}
	switch ap := a.String("auto_pad", "NOTSET"); ap {
	case "NOTSET", "":
		if p := a.Ints("pads", nil); p != nil {
			if len(p) != 4 {
				return win, fmt.Errorf("%w: pads %v", ErrUnsupported, p)
			}
			win.ph, win.pw, win.peh, win.pew = int(p[0]), int(p[1]), int(p[2]), int(p[3])
		}
	case "VALID":
	case "SAME_UPPER", "SAME_LOWER":
		th := max(0, (oh-1)*win.sh+(win.kh-1)*win.dh+1-h)
		tw := max(0, (ow-1)*win.sw+(win.kw-1)*win.dw+1-w)
		if ap == "SAME_UPPER" {
			win.ph, win.pw = th/2, tw/2
		} else {
			win.ph, win.pw = th-th/2, tw-tw/2
		}
		win.peh, win.pew = th-win.ph, tw-win.pw
	default:
		return win, fmt.Errorf("%w: auto_pad %q", ErrUnsupported, ap)
	}
	if win.kh <= 0 || win.kw <= 0 || win.sh <= 0 || win.sw <= 0 || win.dh <= 0 || win.dw <= 0 {
		return win, fmt.Errorf("%w: window %+v", ErrGraph, win)
	}
	return win, a.Err()
}

func (c *compiler) conv(s *step) error {
	n := s.node
	x, w := n.Inputs[0], n.Inputs[1]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	wd, err := c.dims(w)
	if err != nil {
		return err
	}
	if len(xd) != 4 || len(wd) != 4 {
		return fmt.Errorf("%w: %d-D convolution (only 2-D has a CUDA implementation)", ErrUnsupported, len(xd)-2)
	}
	act := activation{}
	if n.Domain == "kiln" {
		if act, err = fusedActivation(n); err != nil {
			return err
		}
	}
	group := int(ops.AttrsOf(n).Int("group", 1))
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	wr, err := c.ref(w)
	if err != nil {
		return err
	}
	var br, zr *ref
	if b := input(n, 2); b != nil {
		r, err := c.ref(b)
		if err != nil {
			return err
		}
		br = &r
	}
	if z := input(n, 3); z != nil && n.Domain == "kiln" {
		r, err := c.ref(z)
		if err != nil {
			return err
		}
		if c.size(z) != c.bytes(n.Outputs[0]) {
			return fmt.Errorf("%w: residual %v does not match the output %v", ErrUnsupported, z.Type, n.Outputs[0].Type)
		}
		zr = &r
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	N, C, H, W := xd[0], xd[1], xd[2], xd[3]
	M, OH, OW := yd[1], yd[2], yd[3]
	if group < 1 || C%group != 0 || M%group != 0 || wd[1]*group != C || wd[0] != M {
		return fmt.Errorf("%w: weights %v for input %v with %d groups", ErrGraph, wd, xd, group)
	}
	win, err := readWindow(n, H, W, OH, OW, wd[2], wd[3])
	if err != nil {
		return err
	}
	total := int64(N) * int64(M) * int64(OH) * int64(OW)
	s.launches = []launch{elemLaunch(c.fk("conv2d"), total,
		pArg(yr), pArg(xr), pArg(wr), optArg(br), optArg(zr),
		iArg(N), iArg(C), iArg(H), iArg(W), iArg(M), iArg(OH), iArg(OW),
		iArg(win.kh), iArg(win.kw), iArg(win.sh), iArg(win.sw), iArg(win.ph), iArg(win.pw),
		iArg(win.dh), iArg(win.dw), iArg(group), iArg(act.code), fArg(act.p0), fArg(act.p1))}
	if win.ph == win.peh && win.pw == win.pew {
		s.conv = &convCall{x: xr, w: wr, y: yr, n: N, c: C, h: H, wd: W, m: M, oh: OH, ow: OW,
			kh: win.kh, kw: win.kw, sh: win.sh, sw: win.sw, ph: win.ph, pw: win.pw, dh: win.dh, dw: win.dw, group: group}
		if br != nil || zr != nil || act.code != actNone {
			s.conv.post = elemLaunch(c.fk("chan_epilogue"), total, pArg(yr), optArg(br), optArg(zr), lArg(total),
				lArg(int64(OH)*int64(OW)), iArg(M), iArg(act.code), fArg(act.p0), fArg(act.p1))
		}
	}
	return nil
}

// gemmFits reports whether gemm_f32's grid can cover the product.
func gemmFits(batch, m, n int) error {
	if (m+15)/16 > 65535 || batch > 65535 || n <= 0 || m <= 0 {
		return fmt.Errorf("%w: a %d x %d product in a batch of %d", ErrUnsupported, m, n, batch)
	}
	return nil
}

// gemmLaunch is a launch of gemm_f32 or gemm_f16 (kernel).
func gemmLaunch(kernel string, y, a, b ref, cb *ref, batch, M, N, K int, sAb, sAm, sAk, sBb, sBk, sBn, sCm, sCn int64, alpha, beta float32, act activation) launch {
	return launch{kernel: kernel,
		grid:  cuda.Dim3{X: uint32((N + 15) / 16), Y: uint32((M + 15) / 16), Z: uint32(batch)},
		block: cuda.Dim3{X: 16, Y: 16, Z: 1},
		args: []arg{pArg(y), pArg(a), pArg(b), optArg(cb), iArg(M), iArg(N), iArg(K),
			lArg(sAb), lArg(sAm), lArg(sAk), lArg(sBb), lArg(sBk), lArg(sBn), lArg(sCm), lArg(sCn),
			fArg(alpha), fArg(beta), iArg(act.code), fArg(act.p0), fArg(act.p1)}}
}

func (c *compiler) gemm(s *step) error {
	n := s.node
	a := ops.AttrsOf(n)
	alpha, beta := a.Float("alpha", 1), a.Float("beta", 1)
	transA, transB := a.Int("transA", 0) != 0, a.Int("transB", 0) != 0
	if err := a.Err(); err != nil {
		return err
	}
	ad, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	bd, err := c.dims(n.Inputs[1])
	if err != nil {
		return err
	}
	if len(ad) != 2 || len(bd) != 2 {
		return fmt.Errorf("%w: Gemm of %v and %v", ErrGraph, ad, bd)
	}
	M, K := ad[0], ad[1]
	sAm, sAk := int64(K), int64(1)
	if transA {
		M, K = ad[1], ad[0]
		sAm, sAk = 1, int64(M)
	}
	N := bd[1]
	sBk, sBn := int64(N), int64(1)
	if transB {
		N = bd[0]
		sBk, sBn = 1, int64(K)
	}
	ar, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	br, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	var cr *ref
	var sCm, sCn int64
	bias := false // C is a row vector [N]: cuBLASLt + the row epilogue can add it
	if cv := input(n, 2); cv != nil && beta != 0 {
		r, err := c.ref(cv)
		if err != nil {
			return err
		}
		cr = &r
		cd, err := c.dims(cv)
		if err != nil {
			return err
		}
		switch len(cd) {
		case 0:
		case 1:
			if cd[0] != 1 {
				sCn = 1
			}
			bias = cd[0] == N
		case 2:
			if cd[0] != 1 {
				sCm = int64(cd[1])
			}
			if cd[1] != 1 {
				sCn = 1
			}
			bias = cd[0] == 1 && cd[1] == N
		default:
			return fmt.Errorf("%w: Gemm C of shape %v", ErrGraph, cd)
		}
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	if err := gemmFits(1, M, N); err != nil {
		return err
	}
	s.launches = []launch{gemmLaunch(c.fk("gemm"), yr, ar, br, cr, 1, M, N, K, 0, sAm, sAk, 0, sBk, sBn, sCm, sCn, alpha, beta, activation{})}
	if !transA && alpha == 1 && (cr == nil || (bias && beta == 1)) {
		s.gemm = &gemmCall{a: ar, b: br, y: yr, m: M, n: N, k: K, transB: transB, bias: cr}
		if cr != nil {
			s.gemm.post = c.rowEpilogue(M, N, yr, cr, activation{code: actNone})
		}
	}
	return nil
}

func (c *compiler) matmul(s *step) error {
	n := s.node
	act := activation{}
	var err error
	if n.Domain == "kiln" {
		if act, err = fusedActivation(n); err != nil {
			return err
		}
	}
	ad, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	bd, err := c.dims(n.Inputs[1])
	if err != nil {
		return err
	}
	if len(ad) == 0 || len(bd) == 0 {
		return fmt.Errorf("%w: MatMul of a scalar", ErrGraph)
	}
	// 1-D operands: [K] is [1,K] for A and [K,1] for B.
	a2, b2 := ad, bd
	if len(a2) == 1 {
		a2 = []int{1, a2[0]}
	}
	if len(b2) == 1 {
		b2 = []int{b2[0], 1}
	}
	M, K, N := a2[len(a2)-2], a2[len(a2)-1], b2[len(b2)-1]
	if b2[len(b2)-2] != K {
		return fmt.Errorf("%w: MatMul of %v and %v", ErrGraph, ad, bd)
	}
	aBatch, bBatch := a2[:len(a2)-2], b2[:len(b2)-2]
	ar, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	br, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	var cr *ref
	if b := input(n, 2); b != nil && n.Domain == "kiln" {
		r, err := c.ref(b)
		if err != nil {
			return err
		}
		if c.size(b) != int64(N)*c.esize(tensor.Float32) {
			return fmt.Errorf("%w: bias %v for %d columns", ErrGraph, b.Type, N)
		}
		cr = &r
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	var batch int
	var sAb, sBb int64
	switch {
	case prod(bBatch) == 1:
		// B is one matrix: fold A's batch into its rows
		M *= int(prod(aBatch))
		batch = 1
	case sameDims(aBatch, bBatch):
		batch = int(prod(aBatch))
		sAb, sBb = int64(M)*int64(K), int64(K)*int64(N)
	case prod(aBatch) == 1:
		batch = int(prod(bBatch))
		sBb = int64(K) * int64(N)
	default:
		return fmt.Errorf("%w: MatMul broadcasting %v against %v", ErrUnsupported, ad, bd)
	}
	if err := gemmFits(batch, M, N); err != nil {
		return err
	}
	var sCn int64
	if cr != nil {
		sCn = 1
	}
	s.launches = []launch{gemmLaunch(c.fk("gemm"), yr, ar, br, cr, batch, M, N, K, sAb, int64(K), 1, sBb, int64(N), 1, 0, sCn, 1, 1, act)}
	if batch == 1 {
		s.gemm = &gemmCall{a: ar, b: br, y: yr, m: M, n: N, k: K, bias: cr, act: act}
		if cr != nil || act.code != actNone {
			s.gemm.post = c.rowEpilogue(M, N, yr, cr, act)
		}
	}
	return nil
}

// rowEpilogue is y = act(y + bias[col]) over an M x N matrix after a
// product: 8 halves a thread when N allows.
func (c *compiler) rowEpilogue(M, N int, yr ref, bias *ref, act activation) launch {
	total := int64(M) * int64(N)
	if c.half && N%8 == 0 && yr.off%16 == 0 && (bias == nil || bias.off%16 == 0) {
		return elemLaunch("row_epilogue_vec_f16", total/8, pArg(yr), optArg(bias), lArg(total), iArg(N), iArg(act.code), fArg(act.p0), fArg(act.p1))
	}
	return elemLaunch(c.fk("row_epilogue"), total, pArg(yr), optArg(bias), lArg(total), iArg(N), iArg(act.code), fArg(act.p0), fArg(act.p1))
}

func sameDims(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (c *compiler) pool(s *step) error {
	n := s.node
	xd, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	if len(xd) != 4 {
		return fmt.Errorf("%w: %d-D pooling (only 2-D has a CUDA implementation)", ErrUnsupported, len(xd)-2)
	}
	xr, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	win, err := readWindow(n, xd[2], xd[3], yd[2], yd[3], 0, 0)
	if err != nil {
		return err
	}
	mode := 0
	if n.OpType == "AveragePool" {
		mode = 1
		if ops.AttrsOf(n).Int("count_include_pad", 0) != 0 {
			mode = 2
		}
	}
	nc := int64(xd[0]) * int64(xd[1])
	s.launches = []launch{elemLaunch(c.fk("pool2d"), nc*int64(yd[2])*int64(yd[3]), pArg(yr), pArg(xr), lArg(nc),
		iArg(xd[2]), iArg(xd[3]), iArg(yd[2]), iArg(yd[3]), iArg(win.kh), iArg(win.kw), iArg(win.sh), iArg(win.sw),
		iArg(win.ph), iArg(win.pw), iArg(win.dh), iArg(win.dw), iArg(win.peh), iArg(win.pew), iArg(mode))}
	return nil
}

func (c *compiler) globalPool(s *step) error {
	n := s.node
	xd, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	if len(xd) < 3 {
		return fmt.Errorf("%w: %s of %v", ErrGraph, n.OpType, xd)
	}
	xr, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	rows, cols := int64(xd[0])*int64(xd[1]), prod(xd[2:])
	if cols > math.MaxInt32 {
		return fmt.Errorf("%w: %s over %d elements", ErrUnsupported, n.OpType, cols)
	}
	mode := 0
	if n.OpType == "GlobalMaxPool" {
		mode = 1
	}
	s.launches = []launch{rowsLaunch(c.fk("reduce_rows"), rows, rowThreads(int(cols)), 0, pArg(yr), pArg(xr), lArg(rows), iArg(int(cols)), iArg(mode))}
	return nil
}

func (c *compiler) binary(s *step, op int) error {
	n := s.node
	ad, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	bd, err := c.dims(n.Inputs[1])
	if err != nil {
		return err
	}
	ar, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	br, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	if len(ad) > len(yd) || len(bd) > len(yd) {
		return fmt.Errorf("%w: %v and %v broadcast to %v", ErrGraph, ad, bd, yd)
	}
	r := len(yd)
	meta := []int64{int64(r)}
	for _, d := range yd {
		meta = append(meta, int64(d))
	}
	for _, st := range [][]int{ops.BroadcastStrides(ad, yd), ops.BroadcastStrides(bd, yd)} {
		for _, v := range st {
			meta = append(meta, int64(v))
		}
	}
	total := prod(yd)
	if bn, ok := flatRepeat(ad, bd, yd); ok {
		s.launches = []launch{elemLaunch(c.fk("binary_flat"), total, pArg(yr), pArg(ar), pArg(br), lArg(total), lArg(bn), iArg(op))}
		return nil
	}
	s.launches = []launch{elemLaunch(c.fk("binary"), total, pArg(yr), pArg(ar), pArg(br), pArg(c.meta(meta)), lArg(total), iArg(op))}
	return nil
}

// flatRepeat reports whether a has shape y and b's elements repeat every
// bn elements of y: b's dims, leading 1s dropped, are y's trailing dims.
func flatRepeat(a, b, y []int) (bn int64, ok bool) {
	if !sameDims(a, y) {
		return 0, false
	}
	for len(b) > 0 && b[0] == 1 {
		b = b[1:]
	}
	if len(b) > len(y) || !sameDims(b, y[len(y)-len(b):]) {
		return 0, false
	}
	return max(prod(b), 1), true
}

func (c *compiler) unary(s *step) error {
	n := s.node
	a := ops.AttrsOf(n)
	act := activation{code: unaryOps[n.OpType]}
	switch n.OpType {
	case "LeakyRelu":
		act.p0 = a.Float("alpha", 0.01)
	case "HardSigmoid":
		act.p0, act.p1 = a.Float("alpha", 0.2), a.Float("beta", 0.5)
	case "Gelu":
		if a.String("approximate", "none") == "tanh" {
			act.code = actGeluTanh
		}
	case "Clip":
		act.p0, act.p1 = a.Float("min", -inf), a.Float("max", inf)
		for i, p := range []*float32{&act.p0, &act.p1} {
			v := input(n, i+1)
			if v == nil {
				continue
			}
			if !clipBound(v) {
				return fmt.Errorf("%w: Clip bound %q is not a float32 constant", ErrUnsupported, v.Name)
			}
			*p = v.Const.Float32s()[0]
		}
	}
	if err := a.Err(); err != nil {
		return err
	}
	xr, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	total := prod(yd)
	s.launches = []launch{elemLaunch(c.fk("unary"), total, pArg(yr), pArg(xr), lArg(total), iArg(act.code), fArg(act.p0), fArg(act.p1))}
	return nil
}

// copyKernel returns the 2-, 4- or 8-byte variant of a data-movement
// kernel for elements of type dt as they are stored.
func (c *compiler) copyKernel(base string, dt tensor.DType) (string, error) {
	switch c.esize(dt) {
	case 2:
		return base + "_b16", nil
	case 4:
		return base + "_b32", nil
	case 8:
		return base + "_b64", nil
	}
	return "", notMovable(dt)
}

func dtypeOf(v *ir.Value) tensor.DType {
	if v.Const != nil {
		return v.Const.DType
	}
	return v.Type.DType
}

func (c *compiler) concat(s *step) error {
	n := s.node
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("copy_rows", n.Outputs[0].Type.DType)
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("Concat", ops.AttrsOf(n).Int("axis", 0), len(yd))
	if err != nil {
		return err
	}
	outer, inner := prod(yd[:axis]), prod(yd[axis+1:])
	ys := int64(yd[axis]) * inner
	var off int64
	for _, v := range n.Inputs {
		if v == nil {
			continue
		}
		d, err := c.dims(v)
		if err != nil {
			return err
		}
		r, err := c.ref(v)
		if err != nil {
			return err
		}
		if len(d) != len(yd) {
			return fmt.Errorf("%w: Concat input %v for output %v", ErrGraph, d, yd)
		}
		cols := int64(d[axis]) * inner
		if cols > 0 {
			s.launches = append(s.launches, elemLaunch(k, outer*cols, pArg(yr), pArg(r), lArg(outer), lArg(cols), lArg(ys), lArg(off), lArg(cols), lArg(0)))
		}
		off += cols
	}
	return nil
}

func (c *compiler) split(s *step) error {
	n := s.node
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("copy_rows", dtypeOf(x))
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("Split", ops.AttrsOf(n).Int("axis", 0), len(xd))
	if err != nil {
		return err
	}
	outer, inner := prod(xd[:axis]), prod(xd[axis+1:])
	xs := int64(xd[axis]) * inner
	var off int64
	for i, o := range n.Outputs {
		if o == nil {
			continue
		}
		yr, yd, err := c.out(n, i)
		if err != nil {
			return err
		}
		cols := int64(yd[axis]) * inner
		if cols > 0 {
			s.launches = append(s.launches, elemLaunch(k, outer*cols, pArg(yr), pArg(xr), lArg(outer), lArg(cols), lArg(cols), lArg(0), lArg(xs), lArg(off)))
		}
		off += cols
	}
	if off != xs {
		return fmt.Errorf("%w: Split outputs cover %d of %d elements per row", ErrGraph, off, xs)
	}
	return nil
}

func (c *compiler) transpose(s *step) error {
	n := s.node
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("permute", dtypeOf(x))
	if err != nil {
		return err
	}
	perm := ops.AttrsOf(n).Ints("perm", nil)
	if perm == nil {
		for i := len(xd) - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != len(xd) {
		return fmt.Errorf("%w: perm %v for rank %d", ErrGraph, perm, len(xd))
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	st := tensor.Strides(xd)
	meta := []int64{int64(len(yd))}
	for _, d := range yd {
		meta = append(meta, int64(d))
	}
	for _, p := range perm {
		if p < 0 || int(p) >= len(xd) {
			return fmt.Errorf("%w: perm %v", ErrGraph, perm)
		}
		meta = append(meta, int64(st[p]))
	}
	total := prod(yd)
	s.launches = []launch{elemLaunch(k, total, pArg(yr), pArg(xr), pArg(c.meta(meta)), lArg(total))}
	return nil
}

func (c *compiler) gather(s *step) error {
	n := s.node
	x, idx := n.Inputs[0], n.Inputs[1] // int64 indices (gatherTypes)
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	id, err := c.dims(idx)
	if err != nil {
		return err
	}
	k, err := c.copyKernel("gather", dtypeOf(x))
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("Gather", ops.AttrsOf(n).Int("axis", 0), len(xd))
	if err != nil {
		return err
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	ir_, err := c.ref(idx)
	if err != nil {
		return err
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	outer, inner, nidx := prod(xd[:axis]), prod(xd[axis+1:]), prod(id)
	s.launches = []launch{elemLaunch(k, outer*nidx*inner, pArg(yr), pArg(xr), pArg(ir_), lArg(outer), lArg(int64(xd[axis])), lArg(nidx), lArg(inner))}
	return nil
}

func (c *compiler) cast(s *step) error {
	n := s.node
	x := n.Inputs[0]
	to := n.Outputs[0].Type.DType
	from := dtypeOf(x)
	if from == to {
		return c.alias(n)
	}
	base, ok := castKernel(from, to)
	if !ok {
		return fmt.Errorf("%w: Cast from %v to %v", ErrUnsupported, from, to)
	}
	k := c.fk(base)
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	total := prod(yd)
	s.launches = []launch{elemLaunch(k, total, pArg(yr), pArg(xr), lArg(total))}
	return nil
}

func (c *compiler) layerNorm(s *step) error {
	n := s.node
	a := ops.AttrsOf(n)
	xd, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	axis, err := ops.NormAxis("LayerNormalization", a.Int("axis", -1), len(xd))
	if err != nil {
		return err
	}
	eps := a.Float("epsilon", 1e-5)
	rows, cols := prod(xd[:axis]), prod(xd[axis:])
	if cols > math.MaxInt32 {
		return fmt.Errorf("%w: LayerNormalization over %d elements", ErrUnsupported, cols)
	}
	var xr ref
	if c.lnAdd[n] == nil { // else the Add's inputs, below
		if xr, err = c.ref(n.Inputs[0]); err != nil {
			return err
		}
	}
	g := input(n, 1)
	if g == nil || c.size(g) != cols*c.esize(tensor.Float32) {
		return fmt.Errorf("%w: LayerNormalization scale must have the %d elements of a row", ErrUnsupported, cols)
	}
	gr, err := c.ref(g)
	if err != nil {
		return err
	}
	var br *ref
	if b := input(n, 2); b != nil {
		if c.size(b) != cols*c.esize(tensor.Float32) {
			return fmt.Errorf("%w: LayerNormalization bias must have the %d elements of a row", ErrUnsupported, cols)
		}
		r, err := c.ref(b)
		if err != nil {
			return err
		}
		br = &r
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	if c.half && vecRows(cols) {
		// one warp per row, 16-byte accesses; a residual Add folded in
		zr := nilArg()
		if add := c.lnAdd[n]; add != nil {
			r0, err := c.ref(add.Inputs[0])
			if err != nil {
				return err
			}
			r1, err := c.ref(add.Inputs[1])
			if err != nil {
				return err
			}
			c.use(add.Inputs[0])
			c.use(add.Inputs[1])
			xr, zr = r0, pArg(r1)
		}
		s.launches = []launch{{kernel: "layernorm_vec_f16", grid: cuda.Dim3{X: uint32((rows + 3) / 4), Y: 1, Z: 1}, block: cuda.Dim3{X: 128, Y: 1, Z: 1},
			args: []arg{pArg(yr), pArg(xr), zr, pArg(gr), optArg(br), lArg(rows), iArg(int(cols)), fArg(eps)}}}
		return a.Err()
	}
	s.launches = []launch{rowsLaunch(c.fk("layernorm"), rows, rowThreads(int(cols)), 0, pArg(yr), pArg(xr), pArg(gr), optArg(br), lArg(rows), iArg(int(cols)), fArg(eps))}
	return a.Err()
}

func (c *compiler) softmax(s *step) error {
	n := s.node
	xd, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	opset := c.g.Opset()
	def := int64(-1)
	if opset < 13 {
		def = 1
	}
	axis, err := ops.NormAxis("Softmax", ops.AttrsOf(n).Int("axis", def), len(xd))
	if err != nil {
		return err
	}
	if opset >= 13 && axis != len(xd)-1 {
		return fmt.Errorf("%w: Softmax over axis %d of %d (only the last)", ErrUnsupported, axis, len(xd))
	}
	rows, cols := prod(xd[:axis]), prod(xd[axis:])
	xr, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	s.launches = []launch{rowsLaunch(c.fk("softmax"), rows, rowThreads(int(cols)), 0, pArg(yr), pArg(xr), lArg(rows), iArg(int(cols)))}
	return nil
}

// attRows is ATT_ROWS of kernels/nn.cu: the query rows of one block of
// attention_rows.
const attRows = 16

// maxAttentionKeys bounds the keys of one attention row (they are held in
// 48 KB of shared memory).
const maxAttentionKeys = 11 * 1024

func (c *compiler) attention(s *step) error {
	n := s.node
	if c.mmaOK(n) {
		return c.attentionMMA(s)
	}
	if err := float32In(n, 0, 1, 2, 3); err != nil {
		return err
	}
	scale := ops.AttrsOf(n).Float("scale", 1)
	var d [3][]int
	var r [3]ref
	for i := range d {
		var err error
		if d[i], err = c.dims(n.Inputs[i]); err != nil {
			return err
		}
		if len(d[i]) < 2 {
			return fmt.Errorf("%w: Attention input %d of shape %v", ErrUnsupported, i, d[i])
		}
		if r[i], err = c.ref(n.Inputs[i]); err != nil {
			return err
		}
	}
	rk := len(d[0])
	batch := d[0][:rk-2]
	S, D := d[0][rk-2], d[0][rk-1]
	if len(d[1]) != rk || len(d[2]) != rk || !sameDims(d[1][:rk-2], batch) || !sameDims(d[2][:rk-2], batch) || d[1][rk-2] != D || d[2][rk-2] != d[1][rk-1] {
		return fmt.Errorf("%w: Attention of q %v, k %v, v %v (batch dims must be equal)", ErrUnsupported, d[0], d[1], d[2])
	}
	T, Dv := d[1][rk-1], d[2][rk-1]
	if T > maxAttentionKeys {
		return fmt.Errorf("%w: Attention over %d keys (at most %d)", ErrUnsupported, T, maxAttentionKeys)
	}
	B := prod(batch)
	if B > 65535 || S > math.MaxInt32 {
		return fmt.Errorf("%w: Attention batch %d", ErrUnsupported, B)
	}
	var mr *ref
	meta := []int64{int64(len(batch)), 0, 0}
	if m := input(n, 3); m != nil {
		md, err := c.dims(m)
		if err != nil {
			return err
		}
		scores := append(append([]int{}, batch...), S, T)
		if len(md) > len(scores) {
			return fmt.Errorf("%w: Attention mask %v for scores %v", ErrUnsupported, md, scores)
		}
		for i := range md {
			if x, y := md[len(md)-1-i], scores[len(scores)-1-i]; x != 1 && x != y {
				return fmt.Errorf("%w: Attention mask %v enlarges the scores %v", ErrUnsupported, md, scores)
			}
		}
		st := ops.BroadcastStrides(md, scores)
		meta[1], meta[2] = int64(st[len(st)-2]), int64(st[len(st)-1])
		for _, v := range batch {
			meta = append(meta, int64(v))
		}
		for _, v := range st[:len(batch)] {
			meta = append(meta, int64(v))
		}
		rr, err := c.ref(m)
		if err != nil {
			return err
		}
		mr = &rr
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	args := []arg{pArg(yr), pArg(r[0]), pArg(r[1]), pArg(r[2]), optArg(mr), pArg(c.meta(meta)),
		iArg(S), iArg(T), iArg(D), iArg(Dv), fArg(scale)}
	if rowsShmem := 4 * attRows * (D + T); rowsShmem <= 47*1024 && S > 1 {
		// attRows query rows per block: K and V read once per block
		s.launches = []launch{{kernel: c.fk("attention_rows"), grid: cuda.Dim3{X: uint32((S + attRows - 1) / attRows), Y: uint32(B), Z: 1},
			block: cuda.Dim3{X: 128, Y: 1, Z: 1}, shmem: uint32(rowsShmem), args: args}}
		return nil
	}
	s.launches = []launch{{kernel: c.fk("attention"), grid: cuda.Dim3{X: uint32(S), Y: uint32(B), Z: 1}, block: cuda.Dim3{X: 128, Y: 1, Z: 1},
		shmem: uint32(4 * T), args: args}}
	return nil
}
