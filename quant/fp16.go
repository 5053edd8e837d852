package quant

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// ErrFP16 is returned when FP16Convert cannot convert a graph: an unknown
// layer named in FP16Options.KeepFP32, or a graph whose types cannot be
// inferred before or after the rewrite.
var ErrFP16 = errors.New("quant: fp16 conversion failed")

// FP16Options configures FP16Convert.
type FP16Options struct {
	// KeepFP32 names layers (nodes of the top-level graph) that run in
	// float32, with Casts around them (--layer-precision NAME:fp32).
	KeepFP32 []string
}

// Layer precisions in FP16Layer.Precision.
const (
	FP16PrecisionHalf   = "fp16" // runs on float16 tensors (computing in float32)
	FP16PrecisionSingle = "fp32" // runs on float32 tensors
	FP16PrecisionNone   = ""     // handles no floating-point values (shape arithmetic)
)

// FP16Layer is the precision FP16Convert chose for one layer.
type FP16Layer struct {
	// Name is the node's name; OpType its type, domain-qualified outside the
	// default domain ("kiln::FusedConv").
	Name   string `json:"name"`
	OpType string `json:"op"`
	// Precision is FP16PrecisionHalf, FP16PrecisionSingle or
	// FP16PrecisionNone.
	Precision string `json:"precision"`
	// Reason says why a layer with floating-point values stays float32.
	Reason string `json:"reason,omitempty"`
}

// FP16Report says what FP16Convert did.
type FP16Report struct {
	// Layers lists the graph's nodes as they were before the conversion, in
	// topological order (the inserted Casts are not listed).
	Layers []FP16Layer `json:"layers"`
	// Casts is the number of Cast nodes inserted.
	Casts int `json:"casts"`
	// WeightBytesBefore and WeightBytesAfter are the bytes held by the
	// graph's initializers before and after the conversion.
	WeightBytesBefore int64 `json:"weight_bytes_before"`
	WeightBytesAfter  int64 `json:"weight_bytes_after"`
}

// Count returns the number of layers of the given precision.
func (r *FP16Report) Count(precision string) int {
	n := 0
	for _, l := range r.Layers {
		if l.Precision == precision {
			n++
		}
	}
	return n
}

// String summarizes the report: a line of counts, then the layers that
// stay float32 and why.
func (r *FP16Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "FP16: %d layers in fp16, %d in fp32, %d casts inserted, weights %d -> %d bytes\n",
		r.Count(FP16PrecisionHalf), r.Count(FP16PrecisionSingle), r.Casts, r.WeightBytesBefore, r.WeightBytesAfter)
	for _, l := range r.Layers {
		if l.Precision == FP16PrecisionSingle {
			fmt.Fprintf(&b, "  fp32  %s (%s): %s\n", l.Name, l.OpType, l.Reason)
		}
	}
	return b.String()
}

// FP16KeepFP32 returns the layers that per-layer overrides (as
// ParseLayerPrecisions reads them) keep in float32, for
// FP16Options.KeepFP32, sorted; an override asking for another precision
// than fp32 or fp16 is an error.
func FP16KeepFP32(layers map[string]Precision) ([]string, error) {
	var keep []string
	for name, p := range layers {
		switch p {
		case FP16PrecisionSingle:
			keep = append(keep, name)
		case FP16PrecisionHalf:
		default:
			return nil, fmt.Errorf("%w: layer %q: precision %q in an fp16 build (want fp32 or fp16)", ErrFP16, name, p)
		}
	}
	sort.Strings(keep)
	return keep, nil
}

// FP16Decide returns the decisions FP16Convert takes for g with opt
// without changing g (it converts a copy): which layers compute in float16
// and which stay float32, and why. It is the one FP16 precision stage: the
// CPU applies it by converting the graph, a device that runs graphs itself
// gets it as FP16Report.LayerPrecision (device.ExecOptions.LayerPrecision),
// so that every device keeps the same layers in FP32.
func FP16Decide(g *ir.Graph, opt FP16Options) (*FP16Report, error) {
	if g == nil {
		return nil, fmt.Errorf("%w: no graph", ErrFP16)
	}
	return FP16Convert(g.Clone(), opt)
}

// LayerPrecision returns the report's decisions by layer name, as
// device.ExecOptions.LayerPrecision takes them: FP16PrecisionSingle
// ("fp32") for the layers that stay float32, FP16PrecisionHalf ("fp16")
// for those that compute in float16; layers without floating-point values
// are left out.
func (r *FP16Report) LayerPrecision() map[string]string {
	out := map[string]string{}
	for _, l := range r.Layers {
		if l.Precision != FP16PrecisionNone {
			out[l.Name] = l.Precision
		}
	}
	return out
}

// fp16Float32Inputs lists, per op type, the inputs that stay float32 in a
// float16 layer: the ones ONNX types as float32 whatever the data's type
// (Resize and Upsample scales) and Resize's roi, kept exact.
var fp16Float32Inputs = map[string][]int{
	"Resize":   {1, 2},
	"Upsample": {1},
}

// shapeOnlyOp reports whether op type typ reads only the shape of its
// input (the trait ops.ShapeOnly: Shape, Size): it takes whichever version
// of a value exists, without a Cast.
func shapeOnlyOp(typ string) bool { return ops.TraitsOf("", typ).Has(ops.ShapeOnly) }

// FP16Convert rewrites g (its top-level graph) to run in float16: float32
// initializers become float16 (finite values beyond float16's range are
// clamped to +-65504 rather than turned into infinities; Resize scales stay
// float32), float32 values become float16, and Cast nodes convert at the
// boundaries: after the graph inputs and before the graph outputs, which
// keep their float32 types and names, and around the layers that stay
// float32 (those named in opt.KeepFP32, nodes with subgraphs, nodes of
// other domains than the default one and kiln's, and the ops with the
// trait ops.KeepFloat32: random generators, windows, EyeLike and the
// quantization ops, whose scales the INT8 path owns). Kernels compute
// float16 layers in float32 (see ops.Float16Native and the adapter
// ops.Prepare puts around the others).
// Existing Casts to float32 write float16 where float16 layers read them,
// so converting a converted graph changes nothing. Run optimize.Run first:
// FP16Convert works on graphs before and after it, but the fusion passes
// match float32 graphs only. FP16Convert infers g's types before and after
// the rewrite; it leaves subgraphs (the bodies of If, Loop, Scan) alone.
func FP16Convert(g *ir.Graph, opt FP16Options) (*FP16Report, error) {
	if g == nil {
		return nil, fmt.Errorf("%w: no graph", ErrFP16)
	}
	if _, err := ops.InferGraph(g); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFP16, err)
	}
	c := newFP16Converter(g)
	keep := map[string]bool{}
	for _, name := range opt.KeepFP32 {
		keep[name] = true
	}
	for _, n := range g.Nodes {
		delete(keep, n.Name)
	}
	if len(keep) > 0 {
		var missing []string
		for _, name := range opt.KeepFP32 {
			if keep[name] {
				missing = append(missing, fmt.Sprintf("%q", name))
			}
		}
		return nil, fmt.Errorf("%w: no layer named %s", ErrFP16, strings.Join(missing, ", "))
	}
	for _, name := range opt.KeepFP32 {
		keep[name] = true
	}
	rep := &FP16Report{WeightBytesBefore: weightBytes(g)}
	c.plan(keep)
	nodes := append([]*ir.Node(nil), g.Nodes...)
	for _, n := range nodes {
		if err := c.convert(n); err != nil {
			return nil, err
		}
	}
	for _, v := range g.Outputs {
		if c.f32[v] && c.ver32[v] == nil {
			return nil, fmt.Errorf("%w: graph output %q has no float32 version", ErrFP16, v.Name)
		}
	}
	g.Nodes = append(g.Nodes, c.casts...)
	if _, err := ops.InferGraph(g); err != nil {
		return nil, fmt.Errorf("%w: after the rewrite: %w", ErrFP16, err)
	}
	if err := c.check(nodes); err != nil {
		return nil, err
	}
	for _, n := range nodes {
		l := FP16Layer{Name: n.Name, OpType: n.OpType, Precision: c.prec[n], Reason: c.reason[n]}
		if n.Domain != "" && n.Domain != "ai.onnx" {
			l.OpType = n.Domain + "::" + n.OpType
		}
		rep.Layers = append(rep.Layers, l)
	}
	rep.Casts = len(c.casts)
	rep.WeightBytesAfter = weightBytes(g)
	return rep, nil
}

// fp16Converter holds the state of one FP16Convert.
type fp16Converter struct {
	g      *ir.Graph
	opset  int64
	f32    map[*ir.Value]bool // float32 before the rewrite
	init   map[*ir.Value]bool // an initializer
	output map[*ir.Value]bool // a graph output
	prec   map[*ir.Node]string
	reason map[*ir.Node]string
	// cast marks the Cast nodes that convert whatever they get: they read
	// a value's existing version and write float16 where float16 layers
	// read their output, float32 otherwise.
	cast map[*ir.Node]bool
	// need16 marks the values a float16 layer reads as float16.
	need16 map[*ir.Value]bool
	// ver16 and ver32 are the float16 and float32 versions of each value
	// that was float32 before the rewrite (one of them is the value itself,
	// the other, when needed, a Cast's output or a converted initializer).
	ver16, ver32 map[*ir.Value]*ir.Value
	names        map[string]bool
	casts        []*ir.Node
}

func newFP16Converter(g *ir.Graph) *fp16Converter {
	c := &fp16Converter{
		g: g, opset: g.Opset(),
		f32: map[*ir.Value]bool{}, init: map[*ir.Value]bool{}, output: map[*ir.Value]bool{},
		prec: map[*ir.Node]string{}, reason: map[*ir.Node]string{}, cast: map[*ir.Node]bool{},
		ver16: map[*ir.Value]*ir.Value{}, ver32: map[*ir.Value]*ir.Value{},
		names: map[string]bool{},
	}
	see := func(v *ir.Value) {
		if v == nil {
			return
		}
		c.names[v.Name] = true
		if v.Type.DType == tensor.Float32 {
			c.f32[v] = true
		}
	}
	for _, v := range g.Inputs {
		see(v)
	}
	for _, v := range g.Initializers {
		see(v)
		c.init[v] = v.Const != nil
	}
	for _, n := range g.Nodes {
		c.names[n.Name] = true
		for _, v := range n.Outputs {
			see(v)
		}
	}
	for _, v := range g.Outputs {
		c.output[v] = true
	}
	return c
}

// plan picks each node's precision and where each float32 initializer and
// graph input lives.
func (c *fp16Converter) plan(keep map[string]bool) {
	for _, n := range c.g.Nodes {
		floats := false
		for _, v := range n.Inputs {
			floats = floats || c.f32[v]
		}
		for _, v := range n.Outputs {
			floats = floats || c.f32[v]
		}
		for _, sg := range n.Subgraphs() {
			for _, v := range sg.OuterValues() {
				floats = floats || c.f32[v]
			}
		}
		dom := n.Domain
		switch {
		case !floats || shapeOnlyOp(n.OpType) && dom == "":
			c.prec[n] = FP16PrecisionNone
		case keep[n.Name]:
			c.prec[n], c.reason[n] = FP16PrecisionSingle, "kept in fp32 (layer precision)"
		case len(n.Subgraphs()) > 0:
			c.prec[n], c.reason[n] = FP16PrecisionSingle, "has subgraphs"
		case n.NonTensorValue() != nil:
			c.prec[n], c.reason[n] = FP16PrecisionSingle, "reads or writes sequence or optional values"
		case dom != "" && dom != "ai.onnx" && dom != "kiln":
			c.prec[n], c.reason[n] = FP16PrecisionSingle, "op of domain "+dom
		case dom == "" && ops.TraitsOf("", n.OpType).Has(ops.KeepFloat32):
			c.prec[n], c.reason[n] = FP16PrecisionSingle, n.OpType+" stays fp32"
		case n.OpType == "Constant" && dom == "" && !hasValueTensor(n):
			c.prec[n], c.reason[n] = FP16PrecisionSingle, "Constant without a tensor value"
		default:
			c.prec[n] = FP16PrecisionHalf
			c.cast[n] = n.OpType == "Cast" && dom == "" && len(n.Inputs) == 1 && len(n.Outputs) == 1
		}
	}
	// Who needs which version of the float32 values?
	need16, need32 := map[*ir.Value]bool{}, map[*ir.Value]bool{}
	c.need16 = need16
	for _, n := range c.g.Nodes {
		for i, v := range n.Inputs {
			if !c.f32[v] || c.cast[n] {
				continue
			}
			switch {
			case c.prec[n] == FP16PrecisionHalf && !c.float32Input(n, i):
				need16[v] = true
			case c.prec[n] != FP16PrecisionNone || !shapeOnlyOp(n.OpType):
				need32[v] = true
			}
		}
		for _, sg := range n.Subgraphs() {
			for _, v := range sg.OuterValues() {
				need32[v] = true
			}
		}
	}
	for _, v := range c.g.Outputs {
		need32[v] = true
	}
	for _, v := range c.g.Inputs {
		if c.f32[v] {
			c.ver32[v] = v
		}
	}
	for _, v := range c.g.Initializers {
		if !c.f32[v] {
			continue
		}
		if c.init[v] && need16[v] && !need32[v] {
			v.Const = fp16Narrow(v.Const)
			v.Type.DType = tensor.Float16
			c.ver16[v] = v
		} else {
			c.ver32[v] = v
		}
	}
}

// float32Input reports whether input i of float16 layer n stays float32.
func (c *fp16Converter) float32Input(n *ir.Node, i int) bool {
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return false
	}
	for _, j := range fp16Float32Inputs[n.OpType] {
		if i == j {
			return true
		}
	}
	return false
}

// convert rewires node n for its precision.
func (c *fp16Converter) convert(n *ir.Node) error {
	if c.cast[n] {
		c.convertCast(n)
		return nil
	}
	switch c.prec[n] {
	case FP16PrecisionNone:
		for i, v := range n.Inputs {
			if c.f32[v] {
				n.Inputs[i] = c.home(v)
			}
		}
		for _, o := range n.Outputs {
			if c.f32[o] {
				c.ver32[o] = o
			}
		}
		return nil
	case FP16PrecisionSingle:
		for i, v := range n.Inputs {
			if c.f32[v] {
				n.Inputs[i] = c.get32(v)
			}
		}
		for _, sg := range n.Subgraphs() {
			for _, cp := range sg.Captures {
				if c.f32[cp.Outer] {
					cp.Outer = c.get32(cp.Outer)
				}
			}
		}
		for _, o := range n.Outputs {
			if c.f32[o] {
				c.ver32[o] = o
			}
		}
		return nil
	}
	for i, v := range n.Inputs {
		if !c.f32[v] {
			continue
		}
		if c.float32Input(n, i) {
			n.Inputs[i] = c.get32(v)
		} else {
			n.Inputs[i] = c.get16(v)
		}
	}
	c.convertAttrs(n)
	// Which outputs turn float16 follows from the kernel's own inference on
	// the rewired inputs (LayerNormalization's Mean stays float32, say).
	k, err := ops.Prepare(n, c.opset)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFP16, err)
	}
	types, err := k.Infer(n.Inputs)
	if err != nil {
		return fmt.Errorf("%w: node %q (%s) on float16: %w", ErrFP16, n.Name, n.OpType, err)
	}
	for i, o := range n.Outputs {
		if !c.f32[o] {
			continue
		}
		if i >= len(types) || types[i].DType != tensor.Float16 {
			c.ver32[o] = o
			continue
		}
		if c.output[o] {
			// the graph output keeps its value, now made by a Cast
			o16 := &ir.Value{Name: c.name(o.Name + "_fp16"), Type: ir.Type{DType: tensor.Float16, Shape: o.Type.Shape.Clone()}, Producer: n}
			if o.Const != nil {
				o16.Const = fp16Narrow(o.Const)
			}
			n.Outputs[i] = o16
			c.ver16[o], c.ver32[o] = o16, o
			c.addCast(o16, o, tensor.Float32)
			continue
		}
		o.Type.DType = tensor.Float16
		if o.Const != nil {
			o.Const = fp16Narrow(o.Const)
		}
		c.ver16[o] = o
	}
	return nil
}

// convertCast rewires a Cast: it reads the existing version of its input
// and writes float16 when a float16 layer reads its float32 output (which
// is not a graph output). Its reported precision is that of what it writes.
func (c *fp16Converter) convertCast(n *ir.Node) {
	if v := n.Inputs[0]; c.f32[v] {
		n.Inputs[0] = c.home(v)
	}
	o := n.Outputs[0]
	a, err := ops.ParseCastAttrs(n, c.opset)
	switch {
	case o == nil:
		c.prec[n] = FP16PrecisionNone
	case c.f32[o] && !c.output[o] && c.need16[o] && err == nil && a.To == tensor.Float32:
		n.Attrs["to"] = ir.IntAttr("to", int64(tensor.Float16))
		o.Type.DType = tensor.Float16
		if o.Const != nil {
			o.Const = fp16Narrow(o.Const)
		}
		c.ver16[o] = o
		c.prec[n] = FP16PrecisionHalf
	case c.f32[o]:
		c.ver32[o] = o
		c.prec[n], c.reason[n] = FP16PrecisionSingle, "writes float32 for a graph output or float32 layers"
	case o.Type.DType == tensor.Float16:
		c.prec[n] = FP16PrecisionHalf
	default:
		c.prec[n] = FP16PrecisionNone
	}
}

// convertAttrs makes the float32 outputs that float16 layer n's attributes
// set float16 ones: Cast to float, Constant and ConstantOfShape values.
func (c *fp16Converter) convertAttrs(n *ir.Node) {
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return
	}
	switch n.OpType {
	case "Cast":
		if a, err := ops.ParseCastAttrs(n, c.opset); err == nil && a.To == tensor.Float32 {
			n.Attrs["to"] = ir.IntAttr("to", int64(tensor.Float16))
		}
	case "Constant", "ConstantOfShape":
		// Only a "value" tensor is narrowed: ConstantOfShape's default
		// (float32 0, no attribute) and Constant's value_float(s) stay
		// float32, their outputs kept so by the kernel's inference.
		var v *tensor.Tensor
		var err error
		if n.OpType == "Constant" {
			var a ops.ConstantAttrs
			a, err = ops.ParseConstantAttrs(n, c.opset)
			v = a.Value
		} else {
			var a ops.ConstantOfShapeAttrs
			a, err = ops.ParseConstantOfShapeAttrs(n, c.opset)
			v = a.Value
		}
		if err == nil && hasValueTensor(n) && v.DType == tensor.Float32 {
			n.Attrs["value"] = &ir.Attr{Name: "value", Type: ir.AttrTensor, T: fp16Narrow(v)}
		}
	}
}

// home returns the version of v that exists without a new Cast.
func (c *fp16Converter) home(v *ir.Value) *ir.Value {
	if c.ver16[v] == v || c.ver32[v] == v {
		return v
	}
	if h := c.ver16[v]; h != nil {
		return h
	}
	if h := c.ver32[v]; h != nil {
		return h
	}
	return v
}

// get16 returns the float16 version of v, made on first use: a converted
// copy of an initializer, else a Cast.
func (c *fp16Converter) get16(v *ir.Value) *ir.Value {
	if h := c.ver16[v]; h != nil {
		return h
	}
	src := c.ver32[v]
	if src == nil {
		src = v
	}
	h := &ir.Value{Name: c.name(v.Name + "_fp16"), Type: ir.Type{DType: tensor.Float16, Shape: v.Type.Shape.Clone()}}
	if c.init[v] {
		h.Const = fp16Narrow(v.Const)
		c.g.Initializers = append(c.g.Initializers, h)
	} else {
		c.addCast(src, h, tensor.Float16)
	}
	c.ver16[v] = h
	return h
}

// get32 returns the float32 version of v, made by a Cast on first use.
func (c *fp16Converter) get32(v *ir.Value) *ir.Value {
	if s := c.ver32[v]; s != nil {
		return s
	}
	src := c.ver16[v]
	if src == nil {
		return v // not converted (yet): v is float32
	}
	s := &ir.Value{Name: c.name(v.Name + "_fp32"), Type: ir.Type{DType: tensor.Float32, Shape: v.Type.Shape.Clone()}}
	c.addCast(src, s, tensor.Float32)
	c.ver32[v] = s
	return s
}

// addCast adds a node casting src into dst (of type to).
func (c *fp16Converter) addCast(src, dst *ir.Value, to tensor.DType) {
	n := &ir.Node{
		Name:    c.name(dst.Name + "_cast"),
		OpType:  "Cast",
		Inputs:  []*ir.Value{src},
		Outputs: []*ir.Value{dst},
		Attrs:   map[string]*ir.Attr{"to": {Name: "to", Type: ir.AttrInt, I: int64(to)}},
	}
	dst.Producer = n
	dst.Type = ir.Type{DType: to, Shape: src.Type.Shape.Clone()}
	dst.Const = nil
	if src.Const != nil {
		if to == tensor.Float16 {
			dst.Const = fp16Narrow(src.Const)
		} else {
			dst.Const = tensor.FromFloat32(src.Const.ToFloat32(), src.Const.Shape...)
		}
	}
	c.casts = append(c.casts, n)
}

// name returns base, or base with a numeric suffix, unused in the graph.
func (c *fp16Converter) name(base string) string {
	name := base
	for i := 1; c.names[name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	c.names[name] = true
	return name
}

// check verifies, on the re-inferred graph, that every float16 layer reads
// and writes float16 where it read and wrote float32, and every float32
// layer still reads float32.
func (c *fp16Converter) check(nodes []*ir.Node) error {
	for _, n := range nodes {
		if c.cast[n] {
			continue
		}
		switch c.prec[n] {
		case FP16PrecisionHalf:
			for i, v := range n.Inputs {
				want := tensor.Float16
				if v == nil || (v.Type.DType != tensor.Float32 && v.Type.DType != tensor.Float16) {
					continue
				}
				if c.float32Input(n, i) {
					want = tensor.Float32
				}
				if v.Type.DType != want {
					return fmt.Errorf("%w: node %q (%s) input %d (%q) is %v, want %v", ErrFP16, n.Name, n.OpType, i, v.Name, v.Type.DType, want)
				}
			}
		case FP16PrecisionSingle:
			for i, v := range n.Inputs {
				if v != nil && v.Type.DType == tensor.Float16 && c.f32[c.origOf(v)] {
					return fmt.Errorf("%w: fp32 node %q (%s) input %d (%q) is float16", ErrFP16, n.Name, n.OpType, i, v.Name)
				}
			}
		}
	}
	for _, v := range c.g.Outputs {
		if c.f32[v] && v.Type.DType != tensor.Float32 {
			return fmt.Errorf("%w: graph output %q is %v, want float32", ErrFP16, v.Name, v.Type.DType)
		}
	}
	return nil
}

// origOf returns the value v is a version of (v itself when it is none's).
func (c *fp16Converter) origOf(v *ir.Value) *ir.Value {
	for o, h := range c.ver16 {
		if h == v {
			return o
		}
	}
	return v
}

// weightBytes sums the bytes of g's initializers (and input defaults).
func weightBytes(g *ir.Graph) int64 {
	var n int64
	for _, v := range g.Initializers {
		if v.Const != nil {
			n += int64(len(v.Const.Data))
		}
	}
	for _, v := range g.Inputs {
		if v.Const != nil {
			n += int64(len(v.Const.Data))
		}
	}
	return n
}

// fp16Max is the largest finite float16.
const fp16Max = 65504

// fp16Narrow returns float32 tensor t as float16, rounding to nearest even
// and clamping finite values to +-65504, so that a large constant (a mask's
// -3.4e38, say) stays finite and 0*x stays 0.
func fp16Narrow(t *tensor.Tensor) *tensor.Tensor {
	out := tensor.New(tensor.Float16, t.Shape...)
	h := out.Halfs()
	for i, f := range t.Float32s() {
		if !math.IsInf(float64(f), 0) && !math.IsNaN(float64(f)) {
			f = max(-fp16Max, min(fp16Max, f))
		}
		h[i] = tensor.Float32ToHalf(f)
	}
	return out
}

// hasValueTensor reports whether Constant or ConstantOfShape node n has its
// value as the attribute "value", the one convertAttrs narrows (not one of
// Constant's value_* forms, nor ConstantOfShape's default). It tests which
// attribute is there, not its value: ops.ParseConstantAttrs and
// ops.ParseConstantOfShapeAttrs read that.
func hasValueTensor(n *ir.Node) bool {
	return ops.AttrsOf(n).Has("value")
}
