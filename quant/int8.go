package quant

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// Domain is the operator domain of kiln's INT8 operators kiln::QConv and
// kiln::QMatMul (the domain of the fused operators, see ops/nn).
const Domain = "kiln"

// Precision is the precision a layer computes in.
type Precision string

// Layer precisions.
const (
	PrecisionFP32 Precision = "fp32"
	PrecisionFP16 Precision = "fp16"
	PrecisionINT8 Precision = "int8"
)

// ParseLayerPrecisions reads per-layer overrides as the CLI's
// --layer-precision spells them: "NAME:fp32", "NAME:fp16" or "NAME:int8",
// several separated by commas (a layer name may itself contain ':'; the
// last one separates the precision).
func ParseLayerPrecisions(s string) (map[string]Precision, error) {
	out := map[string]Precision{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		i := strings.LastIndexByte(item, ':')
		if i <= 0 {
			return nil, fmt.Errorf("%w: layer precision %q: want NAME:fp32, NAME:fp16 or NAME:int8", ErrQuantize, item)
		}
		name, p := item[:i], Precision(strings.ToLower(item[i+1:]))
		if p != PrecisionFP32 && p != PrecisionFP16 && p != PrecisionINT8 {
			return nil, fmt.Errorf("%w: layer precision %q: %q is not fp32, fp16 or int8", ErrQuantize, item, item[i+1:])
		}
		out[name] = p
	}
	return out, nil
}

// INT8Options tunes QuantizeINT8.
type INT8Options struct {
	// Layers overrides the rule for the named layers (node names): fp32
	// (or fp16, which an INT8 build reads as "not int8") keeps a layer in
	// float, int8 quantizes it even where the rule would not (it is an
	// error when that is impossible).
	Layers map[string]Precision
	// FirstLayerMaxChannels is the channel count up to which a convolution
	// reading a graph input directly stays in FP32; zero means
	// DefaultFirstLayerMaxChannels, negative disables the rule.
	FirstLayerMaxChannels int
}

// DefaultFirstLayerMaxChannels is INT8Options.FirstLayerMaxChannels's
// default: image inputs (1, 3 or 4 channels).
const DefaultFirstLayerMaxChannels = 4

// LayerDecision is what QuantizeINT8 did with one layer.
type LayerDecision struct {
	// Name is the node's name.
	Name string `json:"name"`
	// Op is the node's op type before the rewrite (FusedConv, Gemm, ...).
	Op string `json:"op"`
	// Precision is the precision the layer runs in.
	Precision Precision `json:"precision"`
	// Reason says why, in a few words.
	Reason string `json:"reason"`
}

// INT8Report lists QuantizeINT8's decisions, one per candidate layer (a
// convolution or matrix product), in graph order.
type INT8Report struct {
	Layers []LayerDecision `json:"layers"`
}

// Count returns the number of layers in each precision.
func (r *INT8Report) Count() (int8Layers, fp32Layers int) {
	for _, d := range r.Layers {
		if d.Precision == PrecisionINT8 {
			int8Layers++
		} else {
			fp32Layers++
		}
	}
	return
}

// String formats the report as a table, one layer a line.
func (r *INT8Report) String() string {
	var b strings.Builder
	q, f := r.Count()
	fmt.Fprintf(&b, "INT8: %d layers in int8, %d in fp32\n", q, f)
	w := 4
	for _, d := range r.Layers {
		w = max(w, len(d.Name))
	}
	fmt.Fprintf(&b, "%-*s  %-11s  %-4s  %s\n", w, "layer", "op", "prec", "reason")
	for _, d := range r.Layers {
		fmt.Fprintf(&b, "%-*s  %-11s  %-4s  %s\n", w, d.Name, d.Op, d.Precision, d.Reason)
	}
	return b.String()
}

// Rule is the documented rule QuantizeINT8 applies to decide a layer's
// precision, printed by the builder.
const Rule = `INT8 layer rule (first match wins):
  1. --layer-precision NAME:fp32|fp16|int8 decides (fp16 keeps float; int8 fails the build if the
     layer cannot be quantized).
  2. Only convolutions (Conv, kiln::FusedConv) and matrix products (MatMul, kiln::FusedMatMul, Gemm
     with alpha=beta=1, transA=0) with float32 constant weights (2-D for products) are candidates.
  3. FP32: a convolution reading a graph input with at most 4 channels (the first layer: little work,
     most sensitive to rounding the raw input).
  4. FP32: a layer that produces a graph output, directly or through Reshape, Flatten, Squeeze,
     Unsqueeze, Transpose or Identity (the logits keep full precision).
  5. FP32: a layer whose input has no calibration range (or a zero one).
  6. Otherwise INT8: activations symmetric per tensor (scale = amax/127 from calibration), weights
     symmetric per output channel (scale = max|w|/127).`

// candidate describes a layer QuantizeINT8 can rewrite.
type candidate struct {
	n      *ir.Node
	conv   bool
	group  int       // a convolution's groups
	x      *ir.Value // the quantized input (activation)
	w      *ir.Value // float32 constant weights
	transB bool      // Gemm: w is [N, K]
	bias   *ir.Value
	z      *ir.Value // FusedConv residual
}

// classify returns n as a candidate layer, or nil with a reason (an empty
// reason for nodes that are not convolutions or products at all).
func classify(g *ir.Graph, n *ir.Node, inputs map[*ir.Value]bool) (*candidate, string) {
	isKiln := n.Domain == Domain
	isONNX := n.Domain == "" || n.Domain == "ai.onnx"
	c := &candidate{n: n, x: n.Input(0), w: n.Input(1)}
	switch {
	case isKiln && n.OpType == "FusedConv", isONNX && n.OpType == "Conv":
		c.conv = true
		c.bias = n.Input(2)
		var a ops.ConvAttrs
		var err error
		if isKiln {
			c.z = n.Input(3)
			var f ops.FusedConvAttrs
			f, err = ops.ParseFusedConvAttrs(n, g.Opset())
			a = f.ConvAttrs
		} else {
			a, err = ops.ParseConvAttrs(n, g.Opset())
		}
		if err != nil {
			return nil, err.Error()
		}
		c.group = int(a.Group)
	case isKiln && n.OpType == "FusedMatMul":
		if _, err := ops.ParseFusedMatMulAttrs(n, g.Opset()); err != nil {
			return nil, err.Error()
		}
		c.bias = n.Input(2)
	case isONNX && n.OpType == "MatMul":
		c.bias = n.Input(2)
	case isONNX && n.OpType == "Gemm":
		a, err := ops.ParseGemmAttrs(n, g.Opset())
		switch {
		case err != nil:
			return nil, err.Error()
		case a.Alpha != 1:
			return nil, "Gemm with alpha != 1"
		case a.Beta != 1 && n.Input(2) != nil:
			return nil, "Gemm with beta != 1"
		case a.TransA:
			return nil, "Gemm with transA"
		}
		c.transB = a.TransB
		c.bias = n.Input(2)
		if b := c.bias; b != nil {
			dt, rank := b.Type.DType, len(b.Type.Shape)
			if b.Const != nil {
				dt, rank = b.Const.DType, b.Const.Rank()
			}
			if dt != tensor.Float32 || rank != 1 {
				return nil, fmt.Sprintf("Gemm bias %v is not a float32 vector", b.Type)
			}
		}
	default:
		return nil, ""
	}
	if c.x == nil || c.w == nil || len(n.Outputs) != 1 || n.Outputs[0] == nil {
		return nil, "missing inputs or outputs"
	}
	if c.x.Type.DType != tensor.Float32 && c.x.Type.DType != tensor.Undefined {
		return nil, fmt.Sprintf("input is %v, not float32", c.x.Type.DType)
	}
	if c.w.Const == nil || c.w.Producer != nil || inputs[c.w] {
		return nil, "weights are not a constant"
	}
	if c.w.Const.DType != tensor.Float32 {
		return nil, fmt.Sprintf("weights are %v, not float32", c.w.Const.DType)
	}
	if c.conv && c.w.Const.Rank() < 3 {
		return nil, fmt.Sprintf("weights of shape %v", c.w.Const.Shape)
	}
	if !c.conv && c.w.Const.Rank() != 2 {
		return nil, fmt.Sprintf("weights of shape %v are not 2-D", c.w.Const.Shape)
	}
	if c.bias != nil && c.bias.Type.DType != tensor.Float32 && c.bias.Type.DType != tensor.Undefined {
		return nil, fmt.Sprintf("bias is %v", c.bias.Type.DType)
	}
	return c, ""
}

// QuantizeINT8 rewrites the layers of g (optimized, the graph t was
// calibrated on) that Rule selects into kiln::QConv and kiln::QMatMul with
// int8 weights, and reports its decision for every candidate layer. The
// INT8 nodes are new nodes (of the same names, computing the same values)
// in the place of the old ones, which are left unchanged: an engine built on
// g before the rewrite keeps running in FP32. It
// returns an ErrCache error when t was made for another graph and an
// ErrQuantize error for an override naming no node of g or forcing INT8
// where it cannot be.
func QuantizeINT8(g *ir.Graph, t *Table, opt INT8Options) (*INT8Report, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: no calibration table", ErrQuantize)
	}
	if err := t.CheckGraph(g); err != nil {
		return nil, err
	}
	maxCh := opt.FirstLayerMaxChannels
	if maxCh == 0 {
		maxCh = DefaultFirstLayerMaxChannels
	}
	inputs := map[*ir.Value]bool{}
	for _, v := range g.Inputs {
		inputs[v] = true
	}
	outputs := outputValues(g)
	rep := &INT8Report{}
	seen := map[string]bool{}
	var todo []*candidate
	for _, n := range g.Nodes {
		seen[n.Name] = true
		c, why := classify(g, n, inputs)
		if c == nil && why == "" {
			if opt.Layers[n.Name] == PrecisionINT8 {
				return nil, fmt.Errorf("%w: layer %q (%s) is forced to int8, but only convolutions and matrix products run in int8", ErrQuantize, n.Name, n.OpType)
			}
			continue // not a layer INT8 applies to: it stays in float anyway
		}
		force, forced := opt.Layers[n.Name]
		d := LayerDecision{Name: n.Name, Op: n.OpType, Precision: PrecisionFP32}
		if c == nil {
			if forced && force == PrecisionINT8 {
				return nil, fmt.Errorf("%w: layer %q is forced to int8 but cannot be: %s", ErrQuantize, n.Name, why)
			}
			d.Reason = why
			rep.Layers = append(rep.Layers, d)
			continue
		}
		xScale, hasRange := t.Scale(c.x.Name)
		switch {
		case forced && force != PrecisionINT8:
			d.Reason = "override: " + string(force)
		case forced && force == PrecisionINT8:
			if !hasRange {
				return nil, fmt.Errorf("%w: layer %q is forced to int8 but its input %q has no calibration range", ErrQuantize, n.Name, c.x.Name)
			}
			d.Precision, d.Reason = PrecisionINT8, "override: int8"
		case c.conv && inputs[c.x] && maxCh > 0 && c.w.Const.Shape[1]*c.group <= maxCh:
			d.Reason = fmt.Sprintf("first layer: reads graph input %q with %d channels", c.x.Name, c.w.Const.Shape[1]*c.group)
		case outputs[n.Outputs[0]] != "":
			d.Reason = fmt.Sprintf("produces graph output %q", outputs[n.Outputs[0]])
		case !hasRange:
			d.Reason = fmt.Sprintf("input %q has no calibration range", c.x.Name)
		default:
			d.Precision, d.Reason = PrecisionINT8, fmt.Sprintf("input scale %.4g", xScale)
		}
		if d.Precision == PrecisionINT8 {
			todo = append(todo, c)
		}
		rep.Layers = append(rep.Layers, d)
	}
	var unknown []string
	for name := range opt.Layers {
		if !seen[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("%w: --layer-precision names %s, which the graph does not have (see kiln inspect for layer names)", ErrQuantize, strings.Join(quoteAll(unknown), ", "))
	}
	for _, c := range todo {
		xScale, _ := t.Scale(c.x.Name)
		rewrite(g, c, xScale)
	}
	if len(todo) > 0 {
		if g.Opsets == nil {
			g.Opsets = map[string]int64{}
		}
		if _, ok := g.Opsets[Domain]; !ok {
			g.Opsets[Domain] = 1
		}
		dropUnused(g)
	}
	return rep, nil
}

// shapeOnly are the ops that move or relabel elements without computing:
// a layer whose output reaches a graph output through them produces it.
var shapeOnly = map[string]bool{"Reshape": true, "Flatten": true, "Squeeze": true, "Unsqueeze": true, "Transpose": true, "Identity": true}

// outputValues maps each value that is a graph output, or reaches one
// through shape-only ops, to the output's name.
func outputValues(g *ir.Graph) map[*ir.Value]string {
	in := map[*ir.Node]bool{}
	for _, n := range g.Nodes {
		in[n] = true
	}
	out := map[*ir.Value]string{}
	for _, v := range g.Outputs {
		for x := v; x != nil && out[x] == ""; {
			out[x] = v.Name
			p := x.Producer
			if p == nil || !in[p] || (p.Domain != "" && p.Domain != "ai.onnx") || !shapeOnly[p.OpType] {
				break
			}
			x = p.Input(0)
		}
	}
	return out
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = fmt.Sprintf("%q", x)
	}
	return out
}

// activationAttrs are the attributes of the fused ops' epilogue, copied to
// the INT8 ops.
var activationAttrs = []string{"activation", "activation_params"}

// convAttrs are Conv's attributes, kept by QConv.
var convAttrs = []string{"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"}

// rewrite turns candidate c into its INT8 op reading xScale-quantized input.
func rewrite(g *ir.Graph, c *candidate, xScale float32) {
	n := c.n
	attrs := map[string]*ir.Attr{}
	keep := append([]string{}, activationAttrs...)
	if c.conv {
		keep = append(keep, convAttrs...)
	}
	for _, k := range keep {
		if a := n.Attrs[k]; a != nil {
			attrs[k] = a
		}
	}
	w := c.w.Const
	if c.conv {
		q, s := quantizeRows(w.Float32s(), w.Shape[0])
		qw := addConst(g, n.Name+"_w_int8", tensor.Int8, w.Shape, q)
		sw := addConst(g, n.Name+"_w_scale", tensor.Float32, []int{w.Shape[0]}, s)
		attrs["x_scale"] = ir.FloatAttr("x_scale", xScale)
		in := []*ir.Value{c.x, qw, sw, c.bias}
		if c.z != nil {
			in = append(in, c.z)
		}
		replaceNode(g, n, "QConv", trimNil(in), attrs)
		return
	}
	k, m := w.Shape[0], w.Shape[1]
	wv := w.Float32s()
	if c.transB { // [N, K] -> [K, N]
		k, m = m, k
		tr := make([]float32, len(wv))
		for i := range m {
			for j := range k {
				tr[j*m+i] = wv[i*k+j]
			}
		}
		wv = tr
	}
	q, s := quantizeCols(wv, k, m)
	qw := addConst(g, n.Name+"_b_int8", tensor.Int8, []int{k, m}, q)
	sw := addConst(g, n.Name+"_b_scale", tensor.Float32, []int{m}, s)
	attrs["a_scale"] = ir.FloatAttr("a_scale", xScale)
	replaceNode(g, n, "QMatMul", trimNil([]*ir.Value{c.x, qw, sw, c.bias}), attrs)
}

// replaceNode puts a new kiln node of type op in n's place in g, computing
// n's outputs. n itself is left as it was, so that an engine built on g
// before the rewrite (the FP32 reference) still runs.
func replaceNode(g *ir.Graph, n *ir.Node, op string, in []*ir.Value, attrs map[string]*ir.Attr) *ir.Node {
	q := &ir.Node{Name: n.Name, OpType: op, Domain: Domain, Inputs: in, Outputs: append([]*ir.Value(nil), n.Outputs...), Attrs: attrs}
	for _, o := range q.Outputs {
		if o != nil {
			o.Producer = q
		}
	}
	for i, m := range g.Nodes {
		if m == n {
			g.Nodes[i] = q
		}
	}
	return q
}

// trimNil drops trailing nil inputs.
func trimNil(in []*ir.Value) []*ir.Value {
	for len(in) > 0 && in[len(in)-1] == nil {
		in = in[:len(in)-1]
	}
	return in
}

// weightScale returns the symmetric scale of weights whose largest
// magnitude is m (1 for an all-zero channel, whose int8 weights are 0).
func weightScale(m float32) float32 {
	if !(m > 0) || math.IsInf(float64(m), 0) {
		return 1
	}
	return m / 127
}

// quantize8 returns round(v/s) clamped to [-127, 127].
func quantize8(v, s float32) int8 {
	r := math.RoundToEven(float64(v / s))
	return int8(max(-127, min(127, r)))
}

// quantizeRows quantizes w as rows rows (output channels), one scale each.
func quantizeRows(w []float32, rows int) ([]int8, []float32) {
	per := len(w) / rows
	q := make([]int8, len(w))
	s := make([]float32, rows)
	for r := range rows {
		row := w[r*per : (r+1)*per]
		var m float32
		for _, v := range row {
			m = max(m, float32(math.Abs(float64(v))))
		}
		s[r] = weightScale(m)
		for i, v := range row {
			q[r*per+i] = quantize8(v, s[r])
		}
	}
	return q, s
}

// quantizeCols quantizes the k x m matrix w with one scale per column.
func quantizeCols(w []float32, k, m int) ([]int8, []float32) {
	q := make([]int8, len(w))
	s := make([]float32, m)
	for j := range m {
		var mx float32
		for i := range k {
			mx = max(mx, float32(math.Abs(float64(w[i*m+j]))))
		}
		s[j] = weightScale(mx)
	}
	for i := range k {
		for j := range m {
			q[i*m+j] = quantize8(w[i*m+j], s[j])
		}
	}
	return q, s
}

// addConst adds an initializer with a name not yet used in g.
func addConst[T int8 | float32](g *ir.Graph, name string, dt tensor.DType, shape []int, data []T) *ir.Value {
	t := tensor.New(dt, shape...)
	switch dt {
	case tensor.Int8:
		copy(t.Int8s(), any(data).([]int8))
	case tensor.Float32:
		copy(t.Float32s(), any(data).([]float32))
	}
	used := map[string]bool{}
	for _, v := range g.Initializers {
		used[v.Name] = true
	}
	for _, v := range g.Inputs {
		used[v.Name] = true
	}
	for _, n := range g.Nodes {
		for _, v := range n.Outputs {
			if v != nil {
				used[v.Name] = true
			}
		}
	}
	base := name
	for i := 1; used[name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	v := &ir.Value{Name: name, Const: t, Type: ir.Type{DType: dt, Shape: ir.KnownShape(shape...)}}
	g.Initializers = append(g.Initializers, v)
	return v
}

// dropUnused removes the initializers nothing in g reads any more (the
// float weights the rewrite replaced).
func dropUnused(g *ir.Graph) {
	read := map[*ir.Value]bool{}
	for _, n := range g.Nodes {
		for _, v := range n.Inputs {
			read[v] = true
		}
		for _, sg := range n.Subgraphs() {
			for _, v := range sg.OuterValues() {
				read[v] = true
			}
		}
	}
	for _, v := range g.Outputs {
		read[v] = true
	}
	kept := g.Initializers[:0]
	for _, v := range g.Initializers {
		if read[v] {
			kept = append(kept, v)
		}
	}
	for i := len(kept); i < len(g.Initializers); i++ {
		g.Initializers[i] = nil
	}
	g.Initializers = kept
}
