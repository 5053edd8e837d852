package gpuexec

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// Per-layer precision. A half program (Options.FP16) stores every float32
// value in binary16, except where the builder's precision stage (the rule
// quant.FP16Convert applies on the CPU, with --layer-precision overrides)
// keeps a layer in float32 (Options.LayerPrecision): that node is emitted
// as in a float32 program (its _f32 kernels, cuDNN and cuBLASLt in
// float32, its outputs stored in float32), and conversion steps
// (cast_f16_f32, cast_f32_f16) sit at the precision boundaries:
//
//   - before a node, each float32 input stored in the other precision is
//     converted into a copy in the node's, once per value and precision
//     (later readers of the same precision read the same copy);
//   - a float32 graph input's float32 version is its staging buffer, so a
//     float32 layer reading it reads the host's values, not half-rounded
//     ones; a constant is uploaded once per precision that reads it;
//   - a graph output stored in float32 needs no conversion at the end.
//
// The half-only fusions across nodes (attention reading its inputs
// through strides, LayerNormalization with its residual Add, the
// embedding and mask fusions) are dropped where a node of the fusion, or
// the producer of a value it reads, runs in float32; the NHWC layout pass
// leaves float32 nodes in NCHW. Without any float32 layer (a whole-FP16
// decision) none of this applies and the program is the one FP16 always
// compiled to (TestPrecisionWholeFP16Unchanged).

// Layer precisions in Options.LayerPrecision (device.ExecOptions'
// LayerPrecision).
const (
	precFP32 = "fp32"
	precFP16 = "fp16"
)

// precisionBlob is the plan section that keeps the layers a half program
// runs in float32, so that a plan loads with the decisions it was built
// with (plans without it: every layer in the program's precision).
const precisionBlob = "cuda.precision"

// precisionFormat names precisionFile's format.
const precisionFormat = "kiln-cuda-precision-v1"

// precisionFile is the JSON form of precisionBlob.
type precisionFile struct {
	Format string   `json:"format"`
	FP32   []string `json:"fp32"` // sorted node names
}

// layerPrecisionOptions reads the per-layer precisions of a compilation:
// those the builder gives (o.LayerPrecision), else a plan's section; it
// returns them (nil: every layer in o.Precision) and the section to store
// (nil when no layer differs). Only a half program ("fp16") takes them:
// an "int8" program keeps its INT8 layers' neighbours in FP16, and an
// "fp32" one has nothing to keep. A precision other than fp32 or fp16 is
// an error.
func layerPrecisionOptions(o device.ExecOptions) (map[string]string, []byte, error) {
	if o.Precision != precFP16 {
		return nil, nil, nil
	}
	var fp32 []string
	if o.LayerPrecision != nil {
		for name, p := range o.LayerPrecision {
			switch p {
			case precFP32:
				fp32 = append(fp32, name)
			case precFP16, "":
			default:
				return nil, nil, fmt.Errorf("%w: layer %q: precision %q in an fp16 program (the CUDA executor runs fp16 layers and fp32 ones)", ErrUnsupported, name, p)
			}
		}
	} else if b, ok := o.Blobs[precisionBlob]; ok {
		var f precisionFile
		if err := json.Unmarshal(b, &f); err != nil || f.Format != precisionFormat {
			return nil, nil, fmt.Errorf("%w: the plan's %s section is not %s (%v)", ErrGraph, precisionBlob, precisionFormat, err)
		}
		fp32 = f.FP32
	}
	if len(fp32) == 0 {
		return nil, nil, nil
	}
	sort.Strings(fp32)
	out := make(map[string]string, len(fp32))
	for _, name := range fp32 {
		out[name] = precFP32
	}
	b, _ := json.Marshal(precisionFile{Format: precisionFormat, FP32: fp32})
	return out, b, nil
}

// fp32Nodes returns g's nodes that layers keeps in float32 in a half
// program, nil when there are none (or the program is not half).
func fp32Nodes(g *ir.Graph, layers map[string]string, half bool) map[*ir.Node]bool {
	if !half || len(layers) == 0 {
		return nil
	}
	var out map[*ir.Node]bool
	for _, n := range g.Nodes {
		if layers[n.Name] == precFP32 {
			if out == nil {
				out = map[*ir.Node]bool{}
			}
			out[n] = true
		}
	}
	return out
}

// verKey names a store's copy in the other precision.
type verKey struct {
	id   int
	half bool
}

// mixed reports whether some node of the half program runs in float32.
func (c *compiler) mixed() bool { return len(c.fp32) > 0 }

// markStore records whether arena store id holds float32 value v in
// binary16 (the precision being emitted).
func (c *compiler) markStore(id int, v *ir.Value) {
	if c.storeHalf == nil {
		c.storeHalf = map[int]bool{}
	}
	c.storeHalf[id] = c.half && v != nil && v.Type.DType == tensor.Float32
}

// storedHalf reports whether float32 value v, stored in arena store id,
// lies there in binary16: in a program without float32 layers, whenever
// the program is half.
func (c *compiler) storedHalf(id int) bool {
	if !c.mixed() {
		return c.progHalf
	}
	return c.storeHalf[id]
}

// bindPrecision points each float32 input of n at its version in the
// precision being emitted (c.half), inserting the conversion steps that
// makes; restore puts the values' storage back once n is emitted. A
// constant needs nothing (ref uploads it in each precision that reads
// it), a reshaped constant (a weight alias) is pointed at its source's
// upload in that precision.
func (c *compiler) bindPrecision(n *ir.Node) (restore func(), err error) {
	saved := map[*ir.Value]int{}
	savedAlias := map[*ir.Value]ref{}
	restore = func() {
		for v, id := range saved {
			c.storeOf[v] = id
		}
		for v, r := range savedAlias {
			c.weightAliases[v] = r
		}
	}
	if !c.mixed() {
		return restore, nil
	}
	for _, v := range n.Inputs {
		if v == nil || v.Type.DType != tensor.Float32 {
			continue
		}
		if _, done := saved[v]; done {
			continue
		}
		if _, done := savedAlias[v]; done {
			continue
		}
		if r, ok := c.weightAliases[v]; ok {
			src := c.aliasSrc[v]
			if src == nil || c.aliasHalf[v] == c.half {
				continue
			}
			r2, err := c.ref(src)
			if err != nil {
				restore()
				return nil, err
			}
			savedAlias[v] = r
			c.weightAliases[v] = r2
			continue
		}
		id, ok := c.storeOf[v]
		if !ok || c.storeHalf[id] == c.half {
			continue
		}
		id2, err := c.version(v, id, c.half)
		if err != nil {
			restore()
			return nil, err
		}
		saved[v] = id
		c.storeOf[v] = id2
	}
	return restore, nil
}

// version returns the store of float32 value v (stored in store id) in
// binary16 (half) or float32, appending the conversion step that fills it
// the first time.
func (c *compiler) version(v *ir.Value, id int, half bool) (int, error) {
	if id2, ok := c.versions[verKey{id, half}]; ok {
		return id2, nil
	}
	d, err := c.dims(v)
	if err != nil {
		return 0, err
	}
	n := prod(d)
	size, kernel, name := 4*n, "cast_f16_f32", v.Name+" to fp32"
	if half {
		size, kernel, name = 2*n, "cast_f32_f16", v.Name+" to fp16"
	}
	c.step = len(c.p.steps)
	id2 := c.newBuffer(size)
	c.read(id)
	if c.storeHalf == nil {
		c.storeHalf = map[int]bool{}
	}
	c.storeHalf[id2] = half
	s := c.castStep(name, kernel, ref{buf: bufArena, id: id2}, ref{buf: bufArena, id: id}, n)
	s.half = half
	c.p.steps = append(c.p.steps, s)
	c.p.kernels[kernel] = true
	c.setVersion(id, id2, half)
	return id2, nil
}

// setVersion records that store id2 holds store id's value in binary16
// (half) or float32, and id it in the other precision.
func (c *compiler) setVersion(id, id2 int, half bool) {
	if c.versions == nil {
		c.versions = map[verKey]int{}
	}
	c.versions[verKey{id, half}] = id2
	c.versions[verKey{id2, !half}] = id
}

// dropMixedFusions undoes the fusions planViews made (views read through
// strides, attention writing its Transpose's output, LayerNormalization
// with its residual Add, the embedding and mask fusions) where one of
// their nodes runs in float32 or reads a value a float32 node computes:
// those fusions read and write binary16 across nodes, past the
// conversions bindPrecision inserts for each node's own inputs.
func (c *compiler) dropMixedFusions() {
	if !c.mixed() {
		return
	}
	producer := map[*ir.Value]*ir.Node{}
	for _, n := range c.g.Nodes {
		for _, o := range n.Outputs {
			if o != nil {
				producer[o] = n
			}
		}
	}
	bad := func(nodes ...*ir.Node) bool {
		for _, n := range nodes {
			if n == nil {
				continue
			}
			if c.fp32[n] {
				return true
			}
			for _, v := range n.Inputs {
				if p := producer[v]; v != nil && p != nil && c.fp32[p] {
					return true
				}
			}
		}
		return false
	}
	// views, by base: a group goes whole (its Split, Reshapes and
	// Transposes compute again)
	groups := map[*ir.Value][]*ir.Value{}
	for v, pv := range c.views {
		groups[pv.base] = append(groups[pv.base], v)
	}
	attTarget := map[*ir.Node]bool{}
	for _, t := range c.attOut {
		attTarget[t] = true
	}
	for base, vs := range groups {
		var nodes []*ir.Node
		nodes = append(nodes, producer[base])
		for _, v := range vs {
			nodes = append(nodes, producer[v])
			for _, u := range c.uses[v] {
				nodes = append(nodes, u.node)
			}
		}
		if !bad(nodes...) {
			continue
		}
		for _, v := range vs {
			delete(c.views, v)
			if p := producer[v]; p != nil && !attTarget[p] {
				delete(c.skip, p)
			}
		}
	}
	for a, t := range c.attOut {
		if bad(a, t) {
			delete(c.attOut, a)
			delete(c.skip, t)
		}
	}
	for ln, a := range c.lnAdd {
		if bad(ln, a) {
			delete(c.lnAdd, ln)
			delete(c.skip, a)
		}
	}
	for ln, p := range c.embedLN {
		if _, ok := c.lnAdd[ln]; !ok || bad(ln, p.gather, p.add1) {
			delete(c.embedLN, ln)
			delete(c.skip, p.gather)
			delete(c.skip, p.add1)
		}
	}
	for cast, p := range c.maskAffine {
		if bad(cast, p.sub, p.mul) {
			delete(c.maskAffine, cast)
			delete(c.skip, p.sub)
			delete(c.skip, p.mul)
		}
	}
}
