package quant

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// ImportQDQ rewrites the explicitly quantized layers of g into kiln::QConv
// and kiln::QMatMul:
//
//	x -> QuantizeLinear(s, 0) -> DequantizeLinear(s, 0) --.
//	W_int8 (constant) -> DequantizeLinear(s_w, 0) ---------+--> Conv / MatMul / Gemm
//	bias (float, or int32 constant -> DequantizeLinear) ---'
//
// becomes QConv(x, W_int8, s_w, bias) with x_scale s (QMatMul(x, B_int8,
// s_w, bias) with a_scale s). Only symmetric int8 quantization is taken:
// zero points must be int8 zeros, the activation scale one constant, the
// weight scale per tensor or per output channel (axis 0 of Conv weights and
// of Gemm's transposed B, axis 1 of a MatMul's [K, N] B). A layer that does
// not fit (a non-zero or uint8 zero point, a per-row scale, ...) stays in
// float with its Q/DQ nodes, and the report says why. Q/DQ nodes nothing
// reads any more are removed.
//
// It works on a graph as imported and on one optimize.Run has rewritten. On
// the imported graph it keeps the model's int8 weights and scales exactly,
// but the activations that follow stay separate nodes (convfuse fuses into
// kiln::FusedConv only). After optimize.Run the weights' DequantizeLinear is
// folded into float constants and activations are fused: ImportQDQ then
// takes the layers whose input is still quantized (kiln::FusedConv,
// kiln::FusedMatMul, Conv, MatMul, Gemm with float constant weights) and
// quantizes their weights again, max|w|/127 per output channel, which gives
// back the model's int8 weights when its scales were chosen that way. The INT8 ops clamp to [-127, 127] where
// QuantizeLinear saturates to [-128, 127]; a calibrated model never sees
// the difference on activations and weights keep their exact int8 values.
func ImportQDQ(g *ir.Graph) (*INT8Report, error) {
	rep := &INT8Report{}
	inputs := map[*ir.Value]bool{}
	for _, v := range g.Inputs {
		inputs[v] = true
	}
	changed := false
	for _, n := range g.Nodes {
		isONNX := n.Domain == "" || n.Domain == "ai.onnx"
		fused := n.Domain == Domain && (n.OpType == "FusedConv" || n.OpType == "FusedMatMul")
		if !fused && (!isONNX || (n.OpType != "Conv" && n.OpType != "MatMul" && n.OpType != "Gemm")) {
			continue
		}
		xdq, wdq := dqNode(n.Input(0)), dqNode(n.Input(1))
		if xdq == nil && wdq == nil {
			continue // a float layer
		}
		d := LayerDecision{Name: n.Name, Op: n.OpType, Precision: PrecisionFP32}
		var why string
		requant := fused || wdq == nil
		if requant {
			why = qdqFused(g, n, xdq, inputs)
		} else {
			why = qdqLayer(g, n, xdq, wdq, inputs)
		}
		switch {
		case why == "" && requant:
			d.Precision, d.Reason = PrecisionINT8, "explicitly quantized (QDQ); folded float weights quantized again per channel"
			changed = true
		case why == "":
			d.Precision, d.Reason = PrecisionINT8, "explicitly quantized (QDQ)"
			changed = true
		default:
			d.Reason = "left in float: " + why
		}
		rep.Layers = append(rep.Layers, d)
	}
	if changed {
		removeDeadQDQ(g)
		dropUnused(g)
		if g.Opsets == nil {
			g.Opsets = map[string]int64{}
		}
		if _, ok := g.Opsets[Domain]; !ok {
			g.Opsets[Domain] = 1
		}
	}
	return rep, nil
}

// dqNode returns the DequantizeLinear node producing v, or nil.
func dqNode(v *ir.Value) *ir.Node {
	if v == nil || v.Producer == nil {
		return nil
	}
	p := v.Producer
	if p.OpType != "DequantizeLinear" || (p.Domain != "" && p.Domain != "ai.onnx") || len(p.Inputs) < 2 {
		return nil
	}
	return p
}

// constOf returns v's constant when v is a constant (not an overridable
// graph input).
func constOf(v *ir.Value, inputs map[*ir.Value]bool) *tensor.Tensor {
	if v == nil || v.Const == nil || inputs[v] {
		return nil
	}
	return v.Const
}

// zeroPointOK says why the zero point zp (nil: absent) of a tensor of type
// dt does not make symmetric int8 quantization, or "" when it does.
func zeroPointOK(zp *ir.Value, inputs map[*ir.Value]bool, what string) string {
	if zp == nil {
		return ""
	}
	t := constOf(zp, inputs)
	if t == nil {
		return what + " zero point is not a constant"
	}
	if t.DType != tensor.Int8 {
		return fmt.Sprintf("%s is %v (asymmetric), only int8 is taken", what, t.DType)
	}
	for i := range t.Len() {
		if t.Int(i) != 0 {
			return fmt.Sprintf("%s zero point %d (asymmetric), only 0 is taken", what, t.Int(i))
		}
	}
	return ""
}

// scalarScale returns the positive finite scalar held by v.
func scalarScale(v *ir.Value, inputs map[*ir.Value]bool) (float32, bool) {
	t := constOf(v, inputs)
	if t == nil || !t.DType.IsFloat() || t.Len() != 1 {
		return 0, false
	}
	s := float32(t.Float(0))
	return s, s > 0 && !math.IsInf(float64(s), 0)
}

// qdqInput checks the activation pattern x -> QuantizeLinear(s, 0) ->
// DequantizeLinear(s, 0) ending in node xdq and returns x and s, or why it
// is not symmetric int8 quantization.
func qdqInput(xdq *ir.Node, inputs map[*ir.Value]bool) (*ir.Value, float32, string) {
	q := xdq.Inputs[0]
	if q == nil || q.Producer == nil || q.Producer.OpType != "QuantizeLinear" || len(q.Producer.Inputs) < 2 {
		return nil, 0, "the input's DequantizeLinear does not read a QuantizeLinear"
	}
	qn := q.Producer
	x := qn.Inputs[0]
	if x == nil || (x.Type.DType != tensor.Float32 && x.Type.DType != tensor.Undefined) {
		return nil, 0, "the quantized input is not float32"
	}
	if len(qn.Inputs) < 3 || qn.Inputs[2] == nil {
		return nil, 0, "QuantizeLinear without a zero point quantizes to uint8 (asymmetric)"
	}
	if why := zeroPointOK(qn.Inputs[2], inputs, "QuantizeLinear's output"); why != "" {
		return nil, 0, why
	}
	if why := zeroPointOK(xdq.Input(2), inputs, "the input's DequantizeLinear"); why != "" {
		return nil, 0, why
	}
	sq, ok1 := scalarScale(qn.Inputs[1], inputs)
	sd, ok2 := scalarScale(xdq.Inputs[1], inputs)
	if !ok1 || !ok2 {
		return nil, 0, "the input's scale is not one positive constant"
	}
	if sq != sd {
		return nil, 0, fmt.Sprintf("QuantizeLinear scale %g differs from DequantizeLinear's %g", sq, sd)
	}
	return x, sq, ""
}

// qdqFused rewrites a layer of an optimized graph (kiln::FusedConv,
// kiln::FusedMatMul or a plain Conv, MatMul or Gemm, where constant folding
// turned the weights' DequantizeLinear into float constants) whose input is
// quantized, and returns "", or why not.
// The weights are quantized again with max|w|/127 per channel, which gives
// back the model's int8 weights when its scales were so chosen.
func qdqFused(g *ir.Graph, n *ir.Node, xdq *ir.Node, inputs map[*ir.Value]bool) string {
	if xdq == nil {
		return "only the weights are quantized (weight-only quantization runs in float)"
	}
	x, s, why := qdqInput(xdq, inputs)
	if why != "" {
		return why
	}
	c, why := classify(g, n, inputs)
	if c == nil {
		return why
	}
	c.x = x
	rewrite(g, c, s)
	return ""
}

// qdqLayer rewrites layer n when it fits and returns "", or why not.
func qdqLayer(g *ir.Graph, n *ir.Node, xdq, wdq *ir.Node, inputs map[*ir.Value]bool) string {
	if xdq == nil {
		return "only the weights are quantized (weight-only quantization runs in float)"
	}
	if wdq == nil {
		return "only the input is quantized; the weights are float"
	}
	x, sq, why := qdqInput(xdq, inputs)
	if why != "" {
		return why
	}
	// weights: W_int8 const -> DQ
	w := constOf(wdq.Inputs[0], inputs)
	if w == nil || w.DType != tensor.Int8 {
		return "the weights' DequantizeLinear does not read an int8 constant"
	}
	if why := zeroPointOK(wdq.Input(2), inputs, "the weights"); why != "" {
		return why
	}
	ws := constOf(wdq.Inputs[1], inputs)
	if ws == nil || !ws.DType.IsFloat() {
		return "the weights' scale is not a float constant"
	}
	qa, err := ops.ParseQuantAxisAttrs(wdq, g.Opset())
	if err != nil {
		return "the weights' DequantizeLinear: " + err.Error()
	}
	axis := qa.Axis
	if axis < 0 {
		axis += int64(w.Rank())
	}
	if qa.BlockSize != 0 {
		return "blocked weight scales"
	}

	conv := n.OpType == "Conv"
	transB := false
	var bias *ir.Value
	switch n.OpType {
	case "Conv":
		if w.Rank() < 3 {
			return fmt.Sprintf("Conv weights of shape %v", w.Shape)
		}
		if _, err := ops.ParseConvAttrs(n, g.Opset()); err != nil {
			return err.Error()
		}
		bias = n.Input(2)
	case "MatMul":
		if w.Rank() != 2 {
			return fmt.Sprintf("MatMul weights of shape %v are not 2-D", w.Shape)
		}
	case "Gemm":
		if w.Rank() != 2 {
			return fmt.Sprintf("Gemm weights of shape %v", w.Shape)
		}
		a, err := ops.ParseGemmAttrs(n, g.Opset())
		switch {
		case err != nil:
			return err.Error()
		case a.Alpha != 1:
			return "Gemm with alpha != 1"
		case a.Beta != 1 && n.Input(2) != nil:
			return "Gemm with beta != 1"
		case a.TransA:
			return "Gemm with transA"
		}
		transB = a.TransB
		bias = n.Input(2)
	}
	// the output-channel axis of the weights as stored
	outAxis := int64(0)
	if n.OpType == "MatMul" || (n.OpType == "Gemm" && !transB) {
		outAxis = 1
	}
	m := w.Shape[outAxis]
	scale := make([]float32, m)
	switch {
	case ws.Len() == 1:
		for i := range scale {
			scale[i] = float32(ws.Float(0))
		}
	case ws.Rank() == 1 && axis == outAxis && ws.Len() == m:
		for i := range scale {
			scale[i] = float32(ws.Float(i))
		}
	default:
		return fmt.Sprintf("weight scale of shape %v along axis %d; want one or one per output channel (axis %d)", ws.Shape, axis, outAxis)
	}
	for _, s := range scale {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return fmt.Sprintf("weight scale %g", s)
		}
	}
	// bias: float, or int32 constant -> DequantizeLinear
	if bias != nil {
		if bdq := dqNode(bias); bdq != nil {
			b, why := dequantBias(bdq, m, inputs)
			if why != "" {
				return why
			}
			bias = addConst(g, n.Name+"_bias", tensor.Float32, []int{m}, b)
		} else if bias.Type.DType != tensor.Float32 && bias.Type.DType != tensor.Undefined {
			return fmt.Sprintf("bias is %v", bias.Type.DType)
		} else if n.OpType == "Gemm" && len(bias.Type.Shape) != 1 {
			return fmt.Sprintf("Gemm bias %v is not a vector", bias.Type)
		}
	}

	attrs := map[string]*ir.Attr{}
	if conv {
		for _, k := range convAttrs {
			if a := n.Attrs[k]; a != nil {
				attrs[k] = a
			}
		}
		attrs["x_scale"] = ir.FloatAttr("x_scale", sq)
		wq := addConst(g, n.Name+"_w_int8", tensor.Int8, w.Shape, w.Int8s())
		sw := addConst(g, n.Name+"_w_scale", tensor.Float32, []int{m}, scale)
		replaceNode(g, n, "QConv", trimNil([]*ir.Value{x, wq, sw, bias}), attrs)
		return ""
	}
	k := w.Shape[0]
	wv := w.Int8s()
	if transB { // [N, K] -> [K, N]
		k = w.Shape[1]
		tr := make([]int8, len(wv))
		for i := range m {
			for j := range k {
				tr[j*m+i] = wv[i*k+j]
			}
		}
		wv = tr
	}
	attrs["a_scale"] = ir.FloatAttr("a_scale", sq)
	wq := addConst(g, n.Name+"_b_int8", tensor.Int8, []int{k, m}, wv)
	sw := addConst(g, n.Name+"_b_scale", tensor.Float32, []int{m}, scale)
	replaceNode(g, n, "QMatMul", trimNil([]*ir.Value{x, wq, sw, bias}), attrs)
	return ""
}

// dequantBias computes the float bias of DequantizeLinear(int32 constant,
// scale, 0) with m elements.
func dequantBias(dq *ir.Node, m int, inputs map[*ir.Value]bool) ([]float32, string) {
	b := constOf(dq.Inputs[0], inputs)
	s := constOf(dq.Inputs[1], inputs)
	if b == nil || s == nil || !s.DType.IsFloat() || !b.DType.IsInt() {
		return nil, "the bias's DequantizeLinear does not read integer constants"
	}
	if b.Len() != m || (s.Len() != 1 && s.Len() != m) {
		return nil, fmt.Sprintf("quantized bias of shape %v with scale %v for %d channels", b.Shape, s.Shape, m)
	}
	if zp := dq.Input(2); zp != nil {
		t := constOf(zp, inputs)
		if t == nil {
			return nil, "the bias's zero point is not a constant"
		}
		for i := range t.Len() {
			if t.Int(i) != 0 {
				return nil, fmt.Sprintf("bias zero point %d", t.Int(i))
			}
		}
	}
	out := make([]float32, m)
	for i := range out {
		sc := s.Float(0)
		if s.Len() == m {
			sc = s.Float(i)
		}
		out[i] = float32(float64(b.Int(i)) * sc)
	}
	return out, ""
}

// removeDeadQDQ drops QuantizeLinear and DequantizeLinear nodes whose
// outputs nothing reads, repeatedly (a DQ gone can free its Q).
func removeDeadQDQ(g *ir.Graph) {
	for {
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
		kept := g.Nodes[:0]
		removed := false
		for _, n := range g.Nodes {
			dead := (n.OpType == "QuantizeLinear" || n.OpType == "DequantizeLinear") && (n.Domain == "" || n.Domain == "ai.onnx")
			for _, o := range n.Outputs {
				if o != nil && read[o] {
					dead = false
				}
			}
			if dead {
				removed = true
				continue
			}
			kept = append(kept, n)
		}
		for i := len(kept); i < len(g.Nodes); i++ {
			g.Nodes[i] = nil
		}
		g.Nodes = kept
		if !removed {
			return
		}
	}
}
