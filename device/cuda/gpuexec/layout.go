package gpuexec

import (
	"fmt"
	"os"
	"slices"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// EnvNCHW names the environment variable that, set to 1, keeps every
// half-precision convolution in NCHW (Options.NCHW), for comparisons with
// the NHWC default.
const EnvNCHW = "KILN_CUDA_NCHW"

// Layout pass. In half precision, cuDNN's tensor-core convolutions read
// and write NHWC ([N, H, W, C]) directly, while NCHW ones transpose inside
// (device/cuda/NOTES.md: ResNet-50's 53 convolutions take 12.8 ms in NCHW
// and 8.4 ms in NHWC at batch 256). planLayout chooses, before any step is
// emitted, which values are stored NHWC:
//
//   - the output of every convolution that runs NHWC: a 2-D Conv or
//     kiln::FusedConv of one group with constant weights and M a multiple
//     of 8, C a multiple of 8 or, reading a graph input, below 8 (the
//     stem's 3 channels);
//   - the output of a layout-agnostic node all of whose full-size inputs
//     are NHWC: same-shape elementwise ops (Add, Relu, Clip, ...; scalars
//     broadcast alike in both layouts), MaxPool and AveragePool (the NHWC
//     pooling kernel);
//
// and GlobalAveragePool/GlobalMaxPool read NHWC directly (their output, N x
// C x 1 x 1, is the same in both layouts). Every other reader of an NHWC
// value, and a graph output, gets an NCHW copy made by a transpose step
// just before its first reader (once per value); a convolution that reads
// an NCHW value (the graph's input) gets an NHWC copy the same way. FP32
// plans, Options.NCHW and Options.KeepValues (every value readable as the
// graph says) keep everything NCHW.

// slot layouts: what a node's input slot reads.
const (
	readAny  = iota // the node reads it in either layout (or it is constant)
	readNCHW        // as the graph says
	readNHWC        // transposed
)

// layoutPlan is the layout pass's result.
type layoutPlan struct {
	nhwc  map[*ir.Value]bool  // values stored NHWC
	conv  map[*ir.Node]bool   // convolutions run NHWC
	reads map[*ir.Node][]int  // per input slot, readAny/readNCHW/readNHWC; nil: all readNCHW
	other map[*ir.Value]int   // a value's store in the other layout, once a transpose made it
	wts   map[*ir.Value]int64 // NHWC ([M, KH, KW, C]) weights, offsets in the weights
	// transposes counts the transpose steps inserted (for tests).
	transposes int
}

// layoutAgnostic reports whether n's CUDA kernel computes each element
// from the same element of its inputs (scalars broadcast), so that with
// inputs all of the output's shape it runs unchanged on NHWC data: the
// kernelDef says so (its layoutAgnostic field).
func (c *compiler) layoutAgnostic(n *ir.Node) bool {
	d, err := registry.lookup(n, c.g.Opset())
	return err == nil && d.layoutAgnostic
}

// sameBothWays reports whether dims lie identically in NCHW and NHWC (one
// channel, or one pixel).
func sameBothWays(d []int) bool {
	return len(d) != 4 || d[1] == 1 || d[2]*d[3] == 1
}

// planLayout fills c.layout (see the comment above).
func (c *compiler) planLayout() {
	c.layout = layoutPlan{nhwc: map[*ir.Value]bool{}, conv: map[*ir.Node]bool{}, reads: map[*ir.Node][]int{},
		other: map[*ir.Value]int{}, wts: map[*ir.Value]int64{}}
	if !c.half || c.keep || c.nchw {
		return
	}
	// Values that planViews reads through strides, and those of nodes it
	// computes in place, keep their layout.
	blocked := map[*ir.Value]bool{}
	for v, vw := range c.views {
		blocked[v], blocked[vw.base] = true, true
	}
	inPlace := map[*ir.Node]bool{}
	for a, t := range c.attOut {
		inPlace[a], inPlace[t] = true, true
	}
	for _, a := range c.lnAdd {
		inPlace[a] = true
	}
	for n := range c.lnAdd {
		inPlace[n] = true
	}
	for _, n := range c.g.Nodes {
		if c.skip[n] || inPlace[n] {
			for _, v := range append(append([]*ir.Value{}, n.Inputs...), n.Outputs...) {
				blocked[v] = true
			}
		}
	}
	for _, n := range c.g.Nodes {
		// a layer kept in float32 (precision.go) reads and writes NCHW
		if folded(n) || c.skip[n] || c.fp32[n] || len(n.Outputs) != 1 || n.Outputs[0] == nil || blocked[n.Outputs[0]] || len(n.Inputs) == 0 {
			continue
		}
		y := n.Outputs[0]
		yd, ok := y.Type.Shape.Ints()
		if !ok || len(yd) != 4 || y.Type.DType != tensor.Float32 {
			continue
		}
		x := n.Inputs[0]
		switch {
		case c.nhwcConv(n) && !blocked[x] && !blocked[input(n, 3)]:
			reads := make([]int, len(n.Inputs))
			for i := range reads {
				reads[i] = readAny // weights and bias: constants
			}
			reads[0] = readNHWC
			if len(reads) > 3 && n.Inputs[3] != nil {
				reads[3] = readNHWC
			}
			c.layout.conv[n], c.layout.nhwc[y], c.layout.reads[n] = true, true, reads
		case n.Domain == "" && (n.OpType == "MaxPool" || n.OpType == "AveragePool") && x != nil && c.layout.nhwc[x] && len(n.Outputs) == 1:
			c.layout.nhwc[y], c.layout.reads[n] = true, []int{readNHWC}
		case n.Domain == "" && (n.OpType == "GlobalAveragePool" || n.OpType == "GlobalMaxPool") && x != nil && c.layout.nhwc[x]:
			c.layout.reads[n] = []int{readNHWC} // y is N x C x 1 x 1: the same either way
		case n.Domain == "" && n.OpType == "Concat" && c.channelConcat(n):
			reads := make([]int, len(n.Inputs))
			for i, v := range n.Inputs {
				if v != nil {
					reads[i] = readNHWC
				}
			}
			c.layout.nhwc[y], c.layout.reads[n] = true, reads
		case c.layoutAgnostic(n):
			reads := make([]int, len(n.Inputs))
			ok, nh := true, 0
			for i, v := range n.Inputs {
				if v == nil {
					continue
				}
				d, known := v.Type.Shape.Ints()
				if v.Const != nil {
					d, known = v.Const.Shape, true
				}
				if known && tensor.NumElements(d) == 1 {
					continue // a scalar: broadcast alike
				}
				if v.Const == nil && known && sameDims(d, yd) && c.layout.nhwc[v] {
					reads[i] = readNHWC
					nh++
					continue
				}
				ok = false
				break
			}
			if ok && nh > 0 {
				c.layout.nhwc[y], c.layout.reads[n] = true, reads
			}
		}
	}
	c.pruneLayout()
	c.inputsNHWC()
}

// pruneLayout undoes NHWC where it costs more transposes than it has
// convolutions: the NHWC values and the nodes that read them fall into
// regions (connected through NHWC values); a region keeps NHWC when it has
// more convolutions than transposes at its edges, the graph inputs' not
// counted (inputsNHWC folds them into the input's conversion to half).
// MobileNet's pointwise convolutions between depthwise ones (which stay
// NCHW) go back to NCHW; ResNet's 53 convolutions stay NHWC.
func (c *compiler) pruneLayout() {
	parent := map[any]any{}
	var find func(k any) any
	find = func(k any) any {
		p, ok := parent[k]
		if !ok || p == k {
			parent[k] = k
			return k
		}
		r := find(p)
		parent[k] = r
		return r
	}
	union := func(a, b any) { parent[find(a)] = find(b) }
	readers := map[*ir.Value][]use{}
	for _, n := range c.g.Nodes {
		for i, v := range n.Inputs {
			if v != nil {
				readers[v] = append(readers[v], use{n, i})
			}
		}
	}
	for n, r := range c.layout.reads {
		for i, v := range n.Inputs {
			if v != nil && i < len(r) && r[i] == readNHWC && c.layout.nhwc[v] {
				union(n, v)
			}
		}
		if y := n.Outputs[0]; c.layout.nhwc[y] {
			union(n, y)
		}
	}
	convs, edges := map[any]int{}, map[any]int{}
	for n, r := range c.layout.reads {
		root := find(n)
		if c.layout.conv[n] {
			convs[root]++
		}
		for i, v := range n.Inputs { // NCHW values read NHWC
			if v == nil || v.Const != nil || i >= len(r) || r[i] != readNHWC || c.layout.nhwc[v] || c.graphInput(v) {
				continue
			}
			if d, ok := v.Type.Shape.Ints(); ok && !sameBothWays(d) {
				edges[root]++
			}
		}
	}
	outs := map[*ir.Value]bool{}
	for _, v := range c.g.Outputs {
		outs[v] = true
	}
	for v := range c.layout.nhwc { // NHWC values read NCHW
		d, _ := v.Type.Shape.Ints()
		if sameBothWays(d) {
			continue
		}
		nchw := outs[v]
		for _, u := range readers[v] {
			nchw = nchw || !c.readsNHWC(u.node, u.idx)
		}
		if nchw {
			edges[find(v)]++
		}
	}
	for n := range c.layout.reads {
		if root := find(n); convs[root] <= edges[root] {
			delete(c.layout.reads, n)
			delete(c.layout.conv, n)
		}
	}
	for v := range c.layout.nhwc {
		if root := find(v); convs[root] <= edges[root] {
			delete(c.layout.nhwc, v)
		}
	}
}

// inputsNHWC stores NHWC each float32 graph input that is read NHWC only:
// its conversion to half (the program's first steps) writes it transposed
// (cast_f32_f16_nhwc), so the first convolution reads it without a
// transpose of its own.
func (c *compiler) inputsNHWC() {
	readers := map[*ir.Value]int{}
	for _, n := range c.g.Nodes {
		for i, v := range n.Inputs {
			if v == nil {
				continue
			}
			if c.readsNHWC(n, i) {
				readers[v]++
			} else {
				readers[v] = -len(c.g.Nodes) // a reader of NCHW
			}
		}
	}
	for _, v := range c.g.Outputs {
		readers[v] = -len(c.g.Nodes)
	}
	for _, v := range c.g.Inputs {
		d, ok := v.Type.Shape.Ints()
		if readers[v] <= 0 || !ok || sameBothWays(d) || v.Type.DType != tensor.Float32 {
			continue
		}
		for i := range c.p.steps {
			s := &c.p.steps[i]
			if s.node.Name != "input "+v.Name || len(s.launches) != 1 || s.launches[0].kernel != "cast_f32_f16" {
				continue
			}
			l, err := transposeLaunch("cast_f32_f16_nhwc", s.launches[0].args[0].ref, s.launches[0].args[1].ref, d, true)
			if err != nil {
				break
			}
			s.launches[0] = l
			c.p.kernels[l.kernel] = true
			c.layout.nhwc[v] = true
		}
	}
}

// channelConcat reports whether n concatenates NHWC values (all of them)
// along the channels: then it runs NHWC, along the last axis.
func (c *compiler) channelConcat(n *ir.Node) bool {
	ca, err := ops.ParseConcatAttrs(n, c.g.Opset())
	if a := ca.Axis; err != nil || (a != 1 && a != -3) {
		return false
	}
	for _, v := range n.Inputs {
		if v == nil {
			continue
		}
		if d, ok := v.Type.Shape.Ints(); !ok || len(d) != 4 || v.Const != nil || !c.layout.nhwc[v] {
			return false
		}
	}
	return true
}

// convGroup is a convolution's group (0 when its attributes are bad).
func (c *compiler) convGroup(n *ir.Node) int64 {
	a, err := ops.ParseConvAttrs(n, c.g.Opset())
	if err != nil {
		return 0
	}
	return a.Group
}

// nhwcDims is the NCHW dims d in NHWC order.
func nhwcDims(d []int) []int { return []int{d[0], d[2], d[3], d[1]} }

// nhwcConv reports whether n is a convolution to run NHWC.
func (c *compiler) nhwcConv(n *ir.Node) bool {
	if !(n.Domain == "" && n.OpType == "Conv") && !(n.Domain == "kiln" && n.OpType == "FusedConv") {
		return false
	}
	x, w := n.Inputs[0], input(n, 1)
	if x == nil || x.Const != nil || w == nil || w.Const == nil || w.Const.DType != tensor.Float32 || x.Type.DType != tensor.Float32 {
		return false
	}
	xd, ok := x.Type.Shape.Ints()
	wd := w.Const.Shape
	if !ok || len(xd) != 4 || len(wd) != 4 || c.convGroup(n) != 1 || wd[1] != xd[1] {
		return false
	}
	C, M := xd[1], wd[0]
	// Tensor cores take channels in multiples of 8; the stem's few input
	// channels (an image's 3) are the exception: cuDNN's NHWC kernels for
	// them are faster than NCHW ones (NOTES.md: 0.59 against 1.34 ms for
	// ResNet-50's stem at batch 256), and the input is transposed once.
	if M%8 != 0 || (C%8 != 0 && (C >= 8 || !c.graphInput(x))) {
		return false
	}
	if z := input(n, 3); z != nil && n.Domain == "kiln" {
		zd, ok := z.Type.Shape.Ints()
		yd, _ := n.Outputs[0].Type.Shape.Ints()
		if z.Const != nil || !ok || !sameDims(zd, yd) {
			return false
		}
	}
	if n.Domain == "kiln" {
		if _, err := fusedActivation(n); err != nil {
			return false
		}
	}
	return true
}

// readsNHWC reports whether n reads input i NHWC.
func (c *compiler) readsNHWC(n *ir.Node, i int) bool {
	r := c.layout.reads[n]
	return i < len(r) && r[i] == readNHWC
}

// bindLayouts points n's inputs at their storage in the layout n reads,
// inserting the transposes that makes; restore puts the values' own
// storage back once n is emitted.
func (c *compiler) bindLayouts(n *ir.Node) (restore func(), err error) {
	saved := map[*ir.Value]int{}
	restore = func() {
		for v, id := range saved {
			c.storeOf[v] = id
		}
	}
	if len(c.layout.nhwc) == 0 || c.skip[n] {
		return restore, nil
	}
	for i, v := range n.Inputs {
		if v == nil || v.Const != nil {
			continue
		}
		want := readNCHW
		if r := c.layout.reads[n]; i < len(r) {
			want = r[i]
		}
		if want == readAny || (want == readNHWC) == c.layout.nhwc[v] {
			continue
		}
		if _, done := saved[v]; done {
			continue
		}
		id, err := c.otherLayout(v)
		if err != nil {
			restore()
			return nil, err
		}
		saved[v] = c.storeOf[v]
		c.storeOf[v] = id
	}
	return restore, nil
}

// outputLayouts makes the graph's outputs NCHW.
func (c *compiler) outputLayouts() error {
	for _, v := range c.g.Outputs {
		if v == nil || v.Const != nil || !c.layout.nhwc[v] {
			continue
		}
		id, err := c.otherLayout(v)
		if err != nil {
			return err
		}
		c.storeOf[v] = id
	}
	return nil
}

// otherLayout returns the storage of v in the layout it is not stored in,
// appending the transpose step that fills it the first time.
func (c *compiler) otherLayout(v *ir.Value) (int, error) {
	if id, ok := c.layout.other[v]; ok {
		return id, nil
	}
	src, ok := c.storeOf[v]
	if !ok {
		return 0, fmt.Errorf("%w: value %q has no storage to lay out (a constant alias)", ErrUnsupported, v.Name)
	}
	d, err := c.dims(v)
	if err != nil {
		return 0, err
	}
	if sameBothWays(d) {
		c.layout.other[v] = src
		return src, nil
	}
	if c.esize(v.Type.DType) != 2 {
		return 0, fmt.Errorf("%w: %v value %q in NHWC", ErrUnsupported, v.Type.DType, v.Name)
	}
	toNHWC := !c.layout.nhwc[v]
	kernel := "transpose_tiles_b16"
	if c.mixed() && !c.storeHalf[src] {
		// a float32 layer's value (precision.go): converted to binary16
		// by the transpose itself, as a graph input is (inputsNHWC)
		if toNHWC {
			kernel = "cast_f32_f16_nhwc"
		} else if src, err = c.version(v, src, true); err != nil {
			return 0, err
		}
	}
	c.step = len(c.p.steps)
	id := c.newBuffer(c.bytes(v))
	c.read(src)
	if c.mixed() {
		c.markStore(id, v) // binary16, as NHWC values are
	}
	l, err := transposeLaunch(kernel, ref{buf: bufArena, id: id}, ref{buf: bufArena, id: src}, d, toNHWC)
	if err != nil {
		return 0, err
	}
	name := v.Name + " to NCHW"
	if toNHWC {
		name = v.Name + " to NHWC"
	}
	c.p.steps = append(c.p.steps, step{node: &ir.Node{Name: name, OpType: "Transpose"}, launches: []launch{l}})
	c.p.kernels[l.kernel] = true
	c.layout.other[v] = id
	c.layout.transposes++
	return id, nil
}

// transposeLaunch lays out the NCHW dims d as NHWC (toNHWC) or back.
func transposeLaunch(kernel string, y, x ref, d []int, toNHWC bool) (launch, error) {
	N, C, HW := d[0], d[1], d[2]*d[3]
	R, S := C, HW
	if !toNHWC {
		R, S = HW, C
	}
	if R < 32 || S < 32 { // the kernel's element-wise path
		return elemLaunch(kernel, int64(N)*int64(R)*int64(S), pArg(y), pArg(x), iArg(N), iArg(R), iArg(S)), nil
	}
	if N > 65535 || (R+31)/32 > 65535 { // the grid's limits
		return launch{}, fmt.Errorf("%w: NHWC transpose of %v", ErrUnsupported, d)
	}
	return launch{kernel: kernel,
		grid:  cuda.Dim3{X: uint32((S + 31) / 32), Y: uint32((R + 31) / 32), Z: uint32(N)},
		block: cuda.Dim3{X: 32, Y: 8, Z: 1},
		args:  []arg{pArg(y), pArg(x), iArg(N), iArg(R), iArg(S)}}, nil
}

// nhwcWeights uploads w ([M, C, KH, KW], float32) as half [M, KH, KW, C],
// once.
func (c *compiler) nhwcWeights(w *ir.Value) ref {
	if off, ok := c.layout.wts[w]; ok {
		return ref{buf: bufWeights, off: off}
	}
	d := w.Const.Shape
	M, C, KH, KW := d[0], d[1], d[2], d[3]
	src := w.Const.Float32s()
	t := tensor.New(tensor.Float32, M, KH, KW, C)
	dst := t.Float32s()
	for m := range M {
		for ci := range C {
			for kh := range KH {
				for kw := range KW {
					dst[((m*KH+kh)*KW+kw)*C+ci] = src[((m*C+ci)*KH+kh)*KW+kw]
				}
			}
		}
	}
	off := c.addWeights(halfBytes(t))
	c.layout.wts[w] = off
	return ref{buf: bufWeights, off: off}
}

// nchwForced reports whether opt (or the environment) keeps half
// convolutions NCHW.
func nchwForced(opt Options) bool { return opt.NCHW || os.Getenv(EnvNCHW) == "1" }

// convPlans are an NHWC convolution's cuDNN plans that are not in use:
// the plain convolution (with the epilogue kernel after it) or the fused
// call, kept for tuning to time against each other.
type convPlans struct {
	plain *cuda.CUDNNConv
	fused *cuda.CUDNNFusedConv
	graph *cuda.GraphConv
}

func (p convPlans) destroy() {
	p.plain.Destroy()
	p.fused.Destroy()
	if p.graph != nil {
		p.graph.Destroy()
	}
}

// planNHWC plans step i's NHWC convolution with cuDNN: the plain call
// and, when the epilogue allows (bias, residual, ReLU or none), the fused
// call (cudnnConvolutionBiasActivationForward; with no activation cuDNN
// runs it with IMPLICIT_PRECOMP_GEMM only). The tactic t (when ok) picks
// one; else the fused one runs, which saves the epilogue's pass over the
// output. With Options.Tune the other is kept in e.spare for tune to time.
// The tuning slot for cuDNN's graph API (engines of an operation graph of
// conv + bias + add + ReLU) is a third plan here, timed the same way.
func (e *Engine) planNHWC(d *cuda.CUDNN, h cuda.CUDNNHandle, i int, p cuda.ConvParams, limit int, t Tactic, ok bool) {
	s := e.prog.steps[i]
	cc := s.conv
	plain, err := d.NewConv(h, p, cc.oh, cc.ow, limit)
	if err != nil {
		plain = nil
	}
	var fc *cuda.CUDNNFusedConv
	if cc.fusable {
		if f, err := d.NewFusedConv(h, p, cc.oh, cc.ow, limit, cc.relu, cc.z != nil); err == nil {
			if !cc.relu {
				f.Candidates = slices.DeleteFunc(f.Candidates, func(a cuda.ConvAlgo) bool { return a.Algo != algoImplicitPrecompGEMM })
				if len(f.Candidates) == 0 || f.Use(f.Candidates[0]) != nil {
					f.Destroy()
					f = nil
				}
			}
			fc = f
		}
	}
	for _, c := range []*cuda.CUDNNConv{plain, fusedConv(fc)} {
		if c != nil {
			e.ws = max(e.ws, c.Workspace)
		}
	}
	name := s.node.Name
	var gc *cuda.GraphConv
	if go_, canGraph := cc.graphOptions(limit); canGraph {
		switch {
		case ok && t.Impl == ImplCUDNN && t.Graph != "" && t.Quant == "":
			// a plan's graph engine, rebuilt from its ID (a stale one: the
			// default below)
			if g, err := d.NewGraphConvFromID(h, p, cc.oh, cc.ow, go_, t.Graph); err == nil {
				e.graphs[i], e.tactics[name] = g, t
				e.ws = max(e.ws, g.Engine().Workspace)
				convPlans{plain: plain, fused: fc}.destroy()
				return
			}
		case e.opt.Tune && graphConvOn(e.opt):
			if g, err := d.NewGraphConv(h, p, cc.oh, cc.ow, go_); err == nil {
				gc = g
			}
		}
	}
	switch {
	case ok && t.Impl == ImplCUDNN && t.Fused && fc != nil && useConvTactic(fc.CUDNNConv, t):
		e.fused[i], fc, e.tactics[name] = fc, nil, t
	case ok && t.Impl == ImplCUDNN && !t.Fused && t.Graph == "" && plain != nil && useConvTactic(plain, t):
		e.convs[i], plain, e.tactics[name] = plain, nil, t
	case fc != nil && !e.opt.plainNHWC:
		e.fused[i], fc = fc, nil
	case plain != nil:
		e.convs[i], plain = plain, nil
	}
	if gc != nil && e.convs[i] == nil && e.fused[i] == nil { // only the graph runs it
		e.graphs[i], gc = gc, nil
	}
	if e.opt.Tune && (plain != nil || fc != nil || gc != nil) {
		e.spare[i] = convPlans{plain: plain, fused: fc, graph: gc}
		return
	}
	convPlans{plain: plain, fused: fc, graph: gc}.destroy()
}

// EnvGraphConv names the environment variable that, set to 1, adds cuDNN's
// graph API engines to the tactics tuning times (Options.GraphConv).
const EnvGraphConv = "KILN_CUDA_GRAPH_CONV"

// graphConvCandidates bounds the graph engines built per layer while
// tuning: building a runtime-compiled one takes 0.1-1 s.
const graphConvCandidates = 8

func graphConvOn(opt Options) bool { return opt.GraphConv || os.Getenv(EnvGraphConv) == "1" }

// graphOptions is the operation graph that computes cc with its epilogue,
// when cuDNN's graph API can (bias, residual, ReLU or none).
func (cc *convCall) graphOptions(limit int) (cuda.GraphConvOptions, bool) {
	o := cuda.GraphConvOptions{MaxWorkspace: limit, MaxCandidates: graphConvCandidates}
	switch {
	case cc.fusable:
		o.Bias, o.Residual, o.ReLU = true, cc.z != nil, cc.relu
	case cc.post.kernel != "":
		return o, false // another activation: the epilogue kernel's
	}
	return o, true
}

// graphEpilogue names what the graph adds: "bias+residual+ReLU", or
// "conv" for a convolution alone.
func (cc *convCall) graphEpilogue() string {
	if !cc.fusable {
		return "conv"
	}
	return cc.fusedEpilogue()
}

// algoImplicitPrecompGEMM is CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM.
const algoImplicitPrecompGEMM = 1

// fusedConv is f's plain convolution part, or nil.
func fusedConv(f *cuda.CUDNNFusedConv) *cuda.CUDNNConv {
	if f == nil {
		return nil
	}
	return f.CUDNNConv
}

// fusedEpilogue names what the fused call adds: "bias+residual+ReLU".
func (cc *convCall) fusedEpilogue() string {
	s := "bias"
	if cc.z != nil {
		s += "+residual"
	}
	if cc.relu {
		s += "+ReLU"
	}
	return s
}

// graphInput reports whether v is one of the graph's inputs.
func (c *compiler) graphInput(v *ir.Value) bool {
	return slices.Contains(c.g.Inputs, v)
}
