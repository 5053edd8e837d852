package optimize

import (
	"context"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// blockedPass keeps the activations between CPU convolutions in the
// blocked layout (NCHWc, device/cpu/blocked.go): [N, C, H, W] stored as
// [N, ceil(C/16), H, W, 16], the pad lanes (channels >= C of the last
// block) zero. It turns each kiln::FusedConv it can (2-D, float32, W a
// constant [M, C/group, KH, KW], group 1 or depthwise, attributes that
// parse) into kiln::BlockedConv, and grows blocked regions from them:
//
//   - a conv reads the blocked form of its input: the output of a blocked
//     node, else a kiln::ToBlocked of it (one per tensor, shared by its
//     readers), or, with group 1 and C < 16 (a network's stem, 3
//     channels), the plain tensor (input_nchw = 1); a residual input Z is
//     blocked likewise;
//   - MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool (2-D,
//     float32) of a blocked tensor become kiln::Blocked<Pool>;
//   - an elementwise op (traits ops.ElementwiseUnary / ElementwiseBinary)
//     whose inputs are blocked tensors of its output's channel count
//     (broadcasting over N, H and W is the same in both layouts; symbolic
//     H and W often cannot be proven equal) or scalar constants stays that
//     op on the blocked tensors, where the tensors' C is a multiple of 16
//     or the op maps zeros to zero (f(0) = 0, found by running it on
//     zeros: Relu, Add, Mul, Clip with min <= 0 <= max; not Sigmoid), so
//     that pad lanes stay zero;
//   - a Concat on axis 1 of blocked tensors whose C are multiples of 16 is
//     a Concat of the blocked tensors;
//   - a Slice of channels [s, e) of a blocked tensor, step 1, s a multiple
//     of 16 and e one or C (the halves of a C2f block), is a Slice of
//     blocks [s/16, ceil(e/16));
//   - a nearest Resize of H and W (constant scales or sizes) is a Resize of
//     the blocked tensor with the channel lanes kept (scale 1);
//   - every other reader of a blocked tensor, a graph output or a
//     subgraph's capture, reads a kiln::FromBlocked of it (one per tensor)
//     under the tensor's old name.
//
// Before converting a FusedConv the pass fuses into it the residual Add
// and activation that convfuse would (convfuse's own steps), so that a
// fusion convfuse could make only in a later round of RunPasses is not
// lost to a conversion (convfuse leaves BlockedConv alone). It runs on the
// CPU only, when kiln::BlockedConv, ToBlocked and FromBlocked are
// registered (ops/nn); a pool whose blocked op is not registered is a
// region's boundary. It works in g and in its subgraphs; a second run
// finds nothing left to convert. Every eligible conv is converted, a
// region of one conv included (NOTES-blocked.md section 4 has the
// numbers: only a lone 1x1 expansion loses).
type blockedPass struct{}

func (blockedPass) Name() string { return "blocked" }

func (blockedPass) Devices() []string { return []string{"cpu"} }

func (p blockedPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

// blockedPools are the pools that have a blocked form, kiln::Blocked<op>.
var blockedPools = []string{"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"}

// blockedOpsRegistered reports whether the blocked operators the pass
// always writes exist.
func blockedOpsRegistered() bool {
	for _, t := range []string{"BlockedConv", "ToBlocked", "FromBlocked"} {
		if _, ok := ops.Lookup(fusedDomain, t); !ok {
			return false
		}
	}
	return true
}

func (blockedPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	if !blockedOpsRegistered() {
		return false, nil
	}
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		b := &blocker{g: g, log: log, nm: newNamer(g), blk: map[*ir.Value]blockedVal{}}
		return b.run(), nil
	})
}

// blockedVal is the blocked form of an NCHW tensor of c channels.
type blockedVal struct {
	v *ir.Value
	c int
}

// blocker is one run of the pass on one graph.
type blocker struct {
	g   *ir.Graph
	log func(string)
	nm  *namer
	// blk maps an NCHW tensor to its blocked form.
	blk map[*ir.Value]blockedVal
	// made are the NCHW tensors whose producer now writes their blocked
	// form, in the order converted.
	made    []*ir.Value
	added   []*ir.Node
	changed bool
}

func (b *blocker) run() bool {
	b.fusePending()
	b.seed()
	for _, n := range append([]*ir.Node(nil), b.g.Nodes...) {
		switch {
		case n.OpType == "FusedConv" && n.Domain == fusedDomain:
			b.conv(n)
		case n.Domain == "" || n.Domain == "ai.onnx":
			_ = b.pool(n) || b.concat(n) || b.slice(n) || b.resize(n) || b.elementwise(n)
		}
	}
	if !b.changed {
		return false
	}
	b.g.Nodes = append(b.g.Nodes, b.added...)
	u := usesOf(b.g)
	for _, v := range b.made {
		if !u.used(v) {
			v.Producer = nil
			continue
		}
		bv := b.blk[v]
		n := &ir.Node{Name: b.nm.name(v.Name + "_from_blocked"), OpType: "FromBlocked", Domain: fusedDomain,
			Inputs: []*ir.Value{bv.v}, Outputs: []*ir.Value{v},
			Attrs: map[string]*ir.Attr{"channels": ir.IntAttr("channels", int64(bv.c))}}
		v.Producer = n
		b.g.Nodes = append(b.g.Nodes, n)
		logf(b.log, "%s: %s back to NCHW", n.Name, v.Name)
	}
	ensureKilnOpset(b.g)
	return true
}

// ensureKilnOpset declares the kiln domain in g.
func ensureKilnOpset(g *ir.Graph) {
	if g.Opsets == nil {
		g.Opsets = map[string]int64{}
	}
	if _, ok := g.Opsets[fusedDomain]; !ok {
		g.Opsets[fusedDomain] = 1
	}
}

// fusePending fuses into each FusedConv the pass may convert the residual
// Add and the activation convfuse would fuse (see blockedPass).
func (b *blocker) fusePending() {
	drop := map[*ir.Node]bool{}
	for _, n := range b.g.Nodes {
		if drop[n] || n.OpType != "FusedConv" || n.Domain != fusedDomain {
			continue
		}
		if _, ok := b.convShape(n); !ok {
			continue
		}
		for {
			u := usesOf(b.g)
			if what := fuseResidual(b.g, u, n, drop); what != "" {
				logf(b.log, "%s: fused %s", n.Name, what)
				b.changed = true
				continue
			}
			if what := fuseActivation(b.g, u, n, drop); what != "" {
				logf(b.log, "%s: fused %s", n.Name, what)
				b.changed = true
				continue
			}
			break
		}
	}
	removeNodes(b.g, drop)
}

// seed records the blocked forms that earlier runs made: the inputs of
// FromBlocked nodes and the outputs of ToBlocked nodes.
func (b *blocker) seed() {
	for _, n := range b.g.Nodes {
		if n.Domain != fusedDomain || len(n.Inputs) != 1 || len(n.Outputs) != 1 || n.Inputs[0] == nil || n.Outputs[0] == nil {
			continue
		}
		in, out := n.Inputs[0], n.Outputs[0]
		switch n.OpType {
		case "FromBlocked":
			if a, ok := n.Attrs["channels"]; ok && a.Type == ir.AttrInt && a.I > 0 {
				b.blk[out] = blockedVal{in, int(a.I)}
			}
		case "ToBlocked":
			if c, ok := channels(in); ok {
				if _, dup := b.blk[in]; !dup {
					b.blk[in] = blockedVal{out, c}
				}
			}
		}
	}
}

// channels returns the static channel count of a float32 rank-4 tensor.
func channels(v *ir.Value) (int, bool) {
	if v == nil || v.Type.DType != tensor.Float32 || len(v.Type.Shape) != 4 || !v.Type.Shape[1].Known() {
		return 0, false
	}
	return int(v.Type.Shape[1].Val), true
}

// isRank4F32 reports whether v is a float32 tensor of rank 4.
func isRank4F32(v *ir.Value) bool {
	return v != nil && v.Type.DType == tensor.Float32 && len(v.Type.Shape) == 4
}

// blockedType is the type of the blocked form of t, [N, C, H, W] of c
// channels: [N, ceil(c/16), H, W, 16], N, H and W kept as they are
// (symbolic included).
func blockedType(t ir.Type, c int) ir.Type {
	s := t.Shape
	return ir.Type{DType: tensor.Float32, Shape: ir.Shape{s[0], ir.D(int64(cpu.Blocks(c))), s[2], s[3], ir.D(cpu.Block)}}
}

// blocked returns the blocked form of v (c channels), adding a ToBlocked
// when it has none yet.
func (b *blocker) blocked(v *ir.Value, c int, reader *ir.Node) *ir.Value {
	if bv, ok := b.blk[v]; ok {
		return bv.v
	}
	out := &ir.Value{Name: b.nm.name(v.Name + "_blocked"), Type: blockedType(v.Type, c)}
	n := &ir.Node{Name: b.nm.name(v.Name + "_to_blocked"), OpType: "ToBlocked", Domain: fusedDomain,
		Inputs: []*ir.Value{v}, Outputs: []*ir.Value{out}, Attrs: map[string]*ir.Attr{}}
	out.Producer = n
	b.added = append(b.added, n)
	b.blk[v] = blockedVal{out, c}
	logf(b.log, "%s: %s to blocked for %s", n.Name, v.Name, reader.Name)
	return out
}

// setBlockedOutput makes n write the blocked form of its output 0 (c
// channels): a new value, recorded in blk.
func (b *blocker) setBlockedOutput(n *ir.Node, c int) {
	v := n.Outputs[0]
	out := &ir.Value{Name: b.nm.name(v.Name + "_blocked"), Type: blockedType(v.Type, c), Producer: n}
	n.Outputs = []*ir.Value{out}
	b.blk[v] = blockedVal{out, c}
	b.made = append(b.made, v)
	b.changed = true
}

// imageChannels is the most input channels a convolution reading a plain
// NCHW tensor may have to run blocked (input_nchw): an image's 1 to 4.
const imageChannels = 4

// convGeom is what the pass needs of a convertible FusedConv.
type convGeom struct {
	c, m, group int
}

// convShape checks that FusedConv n can run blocked and returns its
// channels: one float32 output of rank 4, X float32 of rank 4 with C
// channels (when known), W a float32 constant [M, C/group, KH, KW], B and
// Z float32 when present (Z of Y's shape), attributes that parse with a
// 2-D window, group 1 or depthwise (group == C == M).
func (b *blocker) convShape(n *ir.Node) (convGeom, bool) {
	if len(n.Outputs) != 1 || !isRank4F32(n.Outputs[0]) || n.Outputs[0].Const != nil || len(n.Inputs) < 2 || len(n.Inputs) > 4 {
		return convGeom{}, false
	}
	x, w := n.Inputs[0], n.Inputs[1]
	if !isRank4F32(x) || !isConst(b.g, w) || w.Const.DType != tensor.Float32 || len(w.Const.Shape) != 4 {
		return convGeom{}, false
	}
	if bias := n.Input(2); bias != nil && bias.Type.DType != tensor.Float32 {
		return convGeom{}, false
	}
	if z := n.Input(3); z != nil && (z.Type.DType != tensor.Float32 || !sameShape(z.Type.Shape, n.Outputs[0].Type.Shape)) {
		return convGeom{}, false
	}
	a, err := ops.ParseFusedConvAttrs(n, b.g.Opset())
	if err != nil || a.Rank() != -1 && a.Rank() != 2 {
		return convGeom{}, false
	}
	// BlockedConv's own parse (2-D windows only)
	if _, err := ops.ParseBlockedConvAttrs(&ir.Node{Name: n.Name, OpType: "BlockedConv", Domain: fusedDomain, Attrs: n.Attrs}, b.g.Opset()); err != nil {
		return convGeom{}, false
	}
	group := int(a.Group)
	geo := convGeom{c: w.Const.Shape[1] * group, m: w.Const.Shape[0], group: group}
	if xc := x.Type.Shape[1]; xc.Known() && int(xc.Val) != geo.c {
		return convGeom{}, false
	}
	if geo.m < 1 || geo.c < 1 || group != 1 && !(group == geo.c && geo.m == geo.c) {
		return convGeom{}, false
	}
	// Narrow layers stay in NCHW: blocks of 16 channels leave lanes empty
	// where a layer writes fewer than 16 channels, or reads fewer than 16
	// that are not an image's few (at most imageChannels, read as they are
	// with input_nchw). tinycnn's 3->8 and 8->16 3x3 convolutions at 32x32
	// and 16x16 ran 20 us a run blocked against 9 us in NCHW (one thread;
	// optimize/NOTES-blocked.md).
	if geo.m < cpu.Block || geo.c < cpu.Block && geo.c > imageChannels {
		return convGeom{}, false
	}
	return geo, true
}

// conv turns FusedConv n into BlockedConv when it can.
func (b *blocker) conv(n *ir.Node) {
	geo, ok := b.convShape(n)
	if !ok {
		return
	}
	x := n.Inputs[0]
	_, inBlocked := b.blk[x]
	nchw := !inBlocked && geo.group == 1 && geo.c < cpu.Block
	if nchw {
		n.Attrs["input_nchw"] = ir.IntAttr("input_nchw", 1)
	} else {
		n.Inputs[0] = b.blocked(x, geo.c, n)
	}
	if z := n.Input(3); z != nil {
		n.Inputs[3] = b.blocked(z, geo.m, n)
	}
	n.OpType = "BlockedConv"
	b.setBlockedOutput(n, geo.m)
	if nchw {
		logf(b.log, "%s: FusedConv as BlockedConv (NCHW input)", n.Name)
	} else {
		logf(b.log, "%s: FusedConv as BlockedConv", n.Name)
	}
}

// pool turns a pool of a blocked tensor into its blocked form.
func (b *blocker) pool(n *ir.Node) bool {
	op := ""
	for _, p := range blockedPools {
		if n.OpType == p {
			op = p
		}
	}
	if op == "" || len(n.Inputs) != 1 || len(n.Outputs) < 1 || !isRank4F32(n.Outputs[0]) {
		return false
	}
	bv, ok := b.blk[n.Inputs[0]]
	if !ok {
		return false
	}
	if _, ok := ops.Lookup(fusedDomain, "Blocked"+op); !ok {
		return false
	}
	u := usesOf(b.g)
	for _, o := range n.Outputs[1:] {
		if o != nil && u.used(o) {
			return false // MaxPool's Indices
		}
	}
	if op == "MaxPool" || op == "AveragePool" {
		a, err := ops.ParsePoolAttrs(n, b.g.Opset())
		if err != nil || a.Rank() != 2 {
			return false
		}
		if _, err := ops.ParseBlockedPoolAttrs(&ir.Node{Name: n.Name, OpType: "Blocked" + op, Domain: fusedDomain, Attrs: n.Attrs}, b.g.Opset()); err != nil {
			return false
		}
	}
	n.Inputs[0] = bv.v
	n.OpType, n.Domain = "Blocked"+op, fusedDomain
	b.setBlockedOutput(n, bv.c)
	logf(b.log, "%s: %s as Blocked%s", n.Name, op, op)
	return true
}

// concat turns a Concat on axis 1 of blocked tensors whose channels are
// multiples of 16 into a Concat of the blocked tensors.
func (b *blocker) concat(n *ir.Node) bool {
	if !isOp(n, "Concat") || len(n.Inputs) == 0 || len(n.Outputs) != 1 || !isRank4F32(n.Outputs[0]) {
		return false
	}
	a, err := ops.ParseConcatAttrs(n, b.g.Opset())
	if err != nil || a.Axis != 1 && a.Axis != -3 {
		return false
	}
	ins := make([]*ir.Value, len(n.Inputs))
	c := 0
	for i, v := range n.Inputs {
		bv, ok := b.blk[v]
		if !ok || bv.c%cpu.Block != 0 {
			return false
		}
		ins[i] = bv.v
		c += bv.c
	}
	n.Inputs = ins
	if n.Attrs == nil {
		n.Attrs = map[string]*ir.Attr{}
	}
	n.Attrs["axis"] = ir.IntAttr("axis", 1)
	b.setBlockedOutput(n, c)
	logf(b.log, "%s: Concat of blocked tensors", n.Name)
	return true
}

// elementwise keeps an elementwise op of blocked tensors on the blocked
// tensors (see blockedPass for when).
func (b *blocker) elementwise(n *ir.Node) bool {
	tr := ops.TraitsOf("", n.OpType)
	unary, binary := tr.Has(ops.ElementwiseUnary), tr.Has(ops.ElementwiseBinary) && len(n.Inputs) == 2
	if !unary && !binary || len(n.Outputs) != 1 || !isRank4F32(n.Outputs[0]) || len(n.Subgraphs()) > 0 {
		return false
	}
	out := n.Outputs[0]
	ins := make([]*ir.Value, len(n.Inputs))
	zero := make([]bool, len(n.Inputs))
	c, blocked := -1, 0
	for i, v := range n.Inputs {
		if v == nil {
			continue
		}
		if bv, ok := b.blk[v]; ok && (binary || i == 0) {
			// Tensors of one channel count broadcast over N, H and W
			// alike in both layouts.
			if oc, ok := channels(out); !ok || oc != bv.c || c >= 0 && bv.c != c {
				return false
			}
			c = bv.c
			ins[i], zero[i] = bv.v, true
			blocked++
			continue
		}
		if !isConst(b.g, v) || v.Const.Len() != 1 || len(v.Const.Shape) > 4 || v.Const.DType == tensor.String {
			return false
		}
		ins[i] = v
	}
	if blocked == 0 || unary && !zero[0] {
		return false
	}
	if c%cpu.Block != 0 && !mapsZeroToZero(b.g, n, zero) {
		return false
	}
	n.Inputs = ins
	b.setBlockedOutput(n, c)
	logf(b.log, "%s: %s on blocked tensors", n.Name, n.OpType)
	return true
}

// mapsZeroToZero runs elementwise node n on zeros in place of the inputs
// marked in zero (its other inputs constants or omitted) and reports
// whether it gives an exact float32 zero.
func mapsZeroToZero(g *ir.Graph, n *ir.Node, zero []bool) bool {
	m := &ir.Node{Name: n.Name, OpType: n.OpType, Domain: n.Domain, Attrs: n.Attrs, Outputs: []*ir.Value{{Name: "out"}}}
	args := make([]*tensor.Tensor, len(n.Inputs))
	for i, v := range n.Inputs {
		switch {
		case v == nil:
			m.Inputs = append(m.Inputs, nil)
			continue
		case zero[i]:
			args[i] = tensor.New(tensor.Float32, 1)
		default:
			args[i] = v.Const
		}
		m.Inputs = append(m.Inputs, &ir.Value{Name: v.Name, Const: args[i], Type: ops.TypeOf(args[i])})
	}
	k, err := ops.Prepare(m, g.Opset())
	if err != nil {
		return false
	}
	if _, err := k.Infer(m.Inputs); err != nil {
		return false
	}
	outs, err := k.Run(&ops.Env{Ctx: context.Background()}, args)
	if err != nil || len(outs) == 0 || outs[0] == nil || outs[0].DType != tensor.Float32 || outs[0].Len() != 1 {
		return false
	}
	return outs[0].Float32s()[0] == 0
}

func init() { Register(blockedPass{}) }

// constInts returns the values of v, an integer constant of g (nil when
// it is not one; ok with an omitted v).
func constInts(g *ir.Graph, v *ir.Value) (vals []int64, ok bool) {
	if v == nil {
		return nil, true
	}
	if !isConst(g, v) || (v.Const.DType != tensor.Int64 && v.Const.DType != tensor.Int32) {
		return nil, false
	}
	out := make([]int64, v.Const.Len())
	for i := range out {
		out[i] = int64(v.Const.Float(i))
	}
	return out, true
}

// slice turns a Slice of whole channel blocks of a blocked tensor into a
// Slice of the blocked tensor's axis 1.
func (b *blocker) slice(n *ir.Node) bool {
	if !isOp(n, "Slice") || b.g.Opset() < 10 || len(n.Inputs) < 3 || len(n.Outputs) != 1 || !isRank4F32(n.Outputs[0]) {
		return false
	}
	bv, ok := b.blk[n.Inputs[0]]
	if !ok {
		return false
	}
	starts, ok1 := constInts(b.g, n.Input(1))
	ends, ok2 := constInts(b.g, n.Input(2))
	axes, ok3 := constInts(b.g, n.Input(3))
	steps, ok4 := constInts(b.g, n.Input(4))
	if !ok1 || !ok2 || !ok3 || !ok4 || len(starts) != 1 || len(ends) != 1 || len(axes) != 1 || (steps != nil && (len(steps) != 1 || steps[0] != 1)) {
		return false
	}
	if axes[0] != 1 && axes[0] != -3 {
		return false
	}
	c := int64(bv.c)
	norm := func(i int64) int64 {
		if i < 0 {
			i += c
		}
		return min(max(i, 0), c)
	}
	s, e := norm(starts[0]), norm(ends[0])
	if oc, ok := channels(n.Outputs[0]); !ok || e <= s || int64(oc) != e-s || s%cpu.Block != 0 || e%cpu.Block != 0 && e != c {
		return false
	}
	blk := int64(cpu.Block)
	ints := func(name string, v int64) *ir.Value {
		return addInit(b.g, b.nm, n.Name+"_"+name, tensor.FromInt64([]int64{v}, 1))
	}
	n.Inputs = []*ir.Value{bv.v, ints("block_start", s/blk), ints("block_end", (e+blk-1)/blk), ints("block_axis", 1)}
	b.setBlockedOutput(n, int(e-s))
	logf(b.log, "%s: Slice of channels [%d, %d) as blocks [%d, %d)", n.Name, s, e, s/blk, (e+blk-1)/blk)
	return true
}

// resize turns a nearest Resize of H and W of a blocked tensor into a
// Resize of the blocked tensor, its channel lanes kept.
func (b *blocker) resize(n *ir.Node) bool {
	if !isOp(n, "Resize") || b.g.Opset() < 11 || len(n.Inputs) < 3 || len(n.Outputs) != 1 || !isRank4F32(n.Outputs[0]) {
		return false
	}
	bv, ok := b.blk[n.Inputs[0]]
	if !ok {
		return false
	}
	a, err := ops.ParseResizeAttrs(n, b.g.Opset())
	if err != nil || a.Mode != "nearest" || a.Axes != nil || a.KeepAspectRatioPolicy != "stretch" && a.KeepAspectRatioPolicy != "" {
		return false
	}
	// modes that map an axis of scale 1 onto itself (the lanes' and the
	// blocks' axes)
	switch a.CoordinateTransformationMode {
	case "half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric":
	default:
		return false
	}
	// roi is read only by tf_crop_and_resize: an empty one is kept (opsets
	// 11 and 12 require the input), any other dropped where it is optional
	roi := n.Inputs[1]
	if roi != nil && !(isConst(b.g, roi) && roi.Const.Len() == 0) {
		if b.g.Opset() < 13 {
			return false
		}
		roi = nil
	}
	scales, sizes := n.Input(2), n.Input(3)
	var in []*ir.Value
	switch {
	case scales != nil && isConst(b.g, scales) && scales.Const.DType == tensor.Float32 && scales.Const.Len() == 4 && sizes == nil:
		f := scales.Const.Float32s()
		if f[0] != 1 || f[1] != 1 {
			return false
		}
		sc := addInit(b.g, b.nm, n.Name+"_blocked_scales", tensor.FromFloat32([]float32{1, 1, f[2], f[3], 1}, 5))
		in = []*ir.Value{bv.v, roi, sc}
	case sizes != nil && (scales == nil || isConst(b.g, scales) && scales.Const.Len() == 0):
		sz, ok := constInts(b.g, sizes)
		x := n.Inputs[0].Type.Shape
		if !ok || len(sz) != 4 || sz[1] != int64(bv.c) || !x[0].Known() || sz[0] != x[0].Val {
			return false
		}
		v := addInit(b.g, b.nm, n.Name+"_blocked_sizes", tensor.FromInt64([]int64{sz[0], int64(cpu.Blocks(bv.c)), sz[2], sz[3], cpu.Block}, 5))
		in = []*ir.Value{bv.v, roi, scales, v}
	default:
		return false
	}
	n.Inputs = in
	b.setBlockedOutput(n, bv.c)
	logf(b.log, "%s: Resize of blocked tensors", n.Name)
	return true
}
