package gpuexec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

var (
	// ErrUnsupported is wrapped by errors for a graph or option the GPU
	// executor cannot run: an op without a CUDA implementation, a data type
	// or attribute it does not handle.
	ErrUnsupported = errors.New("gpuexec: unsupported")
	// ErrGraph is wrapped by errors for a graph that is not ready to run:
	// unknown shapes or types.
	ErrGraph = errors.New("gpuexec: graph not ready")
	// ErrInput is wrapped by Run's errors for inputs that do not match the
	// graph (missing, wrong type or shape).
	ErrInput = errors.New("gpuexec: bad input")
	// ErrClosed is returned by a closed Engine or Context.
	ErrClosed = errors.New("gpuexec: closed")
	// ErrMemoryLimit is returned when an engine or context would need more
	// device memory than Options.MemoryLimit allows.
	ErrMemoryLimit = errors.New("gpuexec: memory limit exceeded")
)

// bufKind says which device buffer a ref points into.
type bufKind uint8

const (
	bufNil     bufKind = iota // no buffer: a null pointer
	bufWeights                // the engine's constants
	bufArena                  // a context's activations
)

// ref is an address in one of the device buffers: for the arena, off is
// relative to the start of storage id, whose offset the memory plan gives.
type ref struct {
	buf bufKind
	id  int
	off int64
}

// argKind is the type of a kernel argument.
type argKind uint8

const (
	argPtr argKind = iota
	argI32
	argI64
	argF32
)

// arg is one kernel argument.
type arg struct {
	kind argKind
	ref  ref
	i    int64
	f    float32
}

func pArg(r ref) arg     { return arg{kind: argPtr, ref: r} }
func iArg(v int) arg     { return arg{kind: argI32, i: int64(v)} }
func lArg(v int64) arg   { return arg{kind: argI64, i: v} }
func fArg(v float32) arg { return arg{kind: argF32, f: v} }
func nilArg() arg        { return arg{kind: argPtr} }
func optArg(r *ref) arg {
	if r == nil {
		return nilArg()
	}
	return pArg(*r)
}

// launch is one kernel launch.
type launch struct {
	kernel string
	grid   cuda.Dim3
	block  cuda.Dim3
	shmem  uint32
	args   []arg
}

// step is the work of one node: kernel launches, or a library call (conv,
// gemm) that replaces the launches when the library is usable.
type step struct {
	node     *ir.Node
	launches []launch
	conv     *convCall // cuDNN may run it: then launches are replaced by conv + post
	gemm     *gemmCall // cuBLASLt may run it: then launches are replaced by gemm + post
	// inPlace says, for a node that launches nothing because another
	// computes it or reads it through strides (planViews), how it runs.
	inPlace string
	// half says the step computes in binary16: the program's precision,
	// or float32 for a layer kept in FP32 (precision.go).
	half bool
}

// name is the node's name for error messages.
func (s *step) name() string { return nodeName(s.node) }

func nodeName(n *ir.Node) string {
	if n.Domain != "" {
		return fmt.Sprintf("%s::%s node %q", n.Domain, n.OpType, n.Name)
	}
	return fmt.Sprintf("%s node %q", n.OpType, n.Name)
}

// ioSpec is a graph input or output.
type ioSpec struct {
	name  string
	dtype tensor.DType
	shape []int
	bytes int64
	ref   ref
	konst *tensor.Tensor // an output known before run time
	// rows, for an output whose number of rows depends on the data
	// (dynOut), is where a run leaves that number (an int64): shape and
	// bytes are then the most it can hold.
	rows *ref
}

// program is a graph compiled into steps over planned buffers.
type program struct {
	steps   []step
	weights []byte
	stores  []interval // the arena's buffers
	offsets []int64    // their planned offsets
	arena   int64
	inputs  []ioSpec
	outputs []ioSpec
	kernels map[string]bool   // the kernels the launches (and library epilogues) use
	mma     bool              // some launch needs compute capability 8.0
	half    bool              // float32 values are stored in binary16
	values  map[string]ioSpec // every value in the arena, by name (for Context.Value)
}

// verValue is a constant in one precision (half: binary16 for float32).
type verValue struct {
	v    *ir.Value
	half bool
}

// compiler builds a program.
type compiler struct {
	g       *ir.Graph
	p       *program
	consts  map[verValue]int64 // offset in weights, per precision uploaded
	storeOf map[*ir.Value]int  // arena storage of a value (aliases share one)
	step    int                // index of the step being built
	// acc is what each step does with the stores, which their lifetimes
	// come from (memplan.go)
	acc accesses
	// weightAliases are non-constant values that alias a constant (a
	// Reshape of a weight too large to fold).
	weightAliases map[*ir.Value]ref
	// half stores every float32 value and constant in IEEE binary16 and
	// runs the _f16 kernels; graph inputs and outputs stay float32 on the
	// host, converted on the device. It is the precision of the node being
	// emitted: progHalf, the program's, except for the nodes in fp32.
	half     bool
	progHalf bool
	// fp32 are the nodes a half program runs in float32 (nil: none), and
	// storeHalf, versions, aliasSrc and aliasHalf what precision.go tracks
	// for them: which arena stores hold binary16, each store's copy in the
	// other precision, and the constant (and precision) of a weight alias.
	fp32      map[*ir.Node]bool
	storeHalf map[int]bool
	versions  map[verKey]int
	aliasSrc  map[*ir.Value]*ir.Value
	aliasHalf map[*ir.Value]bool
	// keep gives every value its own storage (Options.KeepValues).
	keep bool
	// mma allows the tensor-core kernels (sm_80 and later).
	mma bool
	// views, attOut and skip come from planViews: values read in place
	// through strides, attention nodes that write their consumer
	// Transpose's output, and the nodes that launch nothing for it.
	views  map[*ir.Value]view
	attOut map[*ir.Node]*ir.Node
	skip   map[*ir.Node]bool
	uses   map[*ir.Value][]use
	outs   map[*ir.Value]bool
	// lnAdd maps a LayerNormalization to the residual Add it computes.
	lnAdd map[*ir.Node]*ir.Node
	// embedLN maps a LayerNormalization to the embedding lookup and sum
	// it computes (embed.go).
	embedLN map[*ir.Node]*embedPlan
	// maskAffine maps a Cast to the mask arithmetic it computes (mask.go).
	maskAffine map[*ir.Node]*maskPlan
	// layout is the layout pass's plan (layout.go); nchw turns it off.
	layout layoutPlan
	nchw   bool
	// dynamic are the outputs whose number of rows depends on the data
	// (op_nms.go).
	dynamic map[*ir.Value]dynOut
}

// esize is the size on the device of an element of type dt.
func (c *compiler) esize(dt tensor.DType) int64 {
	if c.half && dt == tensor.Float32 {
		return 2
	}
	return int64(dt.Size())
}

// bytes is the size of v's storage on the device.
func (c *compiler) bytes(v *ir.Value) int64 {
	dims, _ := v.Type.Shape.Ints()
	return int64(tensor.NumElements(dims)) * c.esize(v.Type.DType)
}

// size is the size on the device of v's contents (a constant's included).
func (c *compiler) size(v *ir.Value) int64 {
	if v.Const != nil {
		return int64(v.Const.Len()) * c.esize(v.Const.DType)
	}
	return c.bytes(v)
}

// fk names the float kernel base in the engine's precision ("_f32" or
// "_f16").
func (c *compiler) fk(base string) string {
	if c.half {
		return base + "_f16"
	}
	return base + "_f32"
}

// storedType is the element type of v as it lies on the device.
func (c *compiler) storedType(dt tensor.DType) tensor.DType {
	if c.half && dt == tensor.Float32 {
		return tensor.Float16
	}
	return dt
}

// halfBytes converts float32 constants to binary16, saturating at the
// largest finite half (65504) so that a large mask constant such as
// -3.4e38 stays finite (0 times it stays 0).
func halfBytes(t *tensor.Tensor) []byte {
	f := t.Float32s()
	b := make([]byte, 2*len(f))
	for i, v := range f {
		v = max(min(v, 65504), -65504) // NaN passes through
		h := tensor.Float32ToHalf(v)
		b[2*i], b[2*i+1] = byte(h), byte(h>>8)
	}
	return b
}

// castStep is a conversion between a float32 staging buffer (a graph input
// or output as the host sees it) and the half value.
func (c *compiler) castStep(name, kernel string, y, x ref, n int64) step {
	return step{node: &ir.Node{Name: name, OpType: "Cast"}, launches: []launch{elemLaunch(kernel, n, pArg(y), pArg(x), lArg(n))}}
}

// compile turns g into a program. Every value's shape and type must be
// known. With keep, no two values share memory, so that every one can be
// read after a run.
//
// With half, float32 values are stored and computed in binary16 (float32
// accumulation inside the kernels): each float32 graph input is copied to
// a float32 staging buffer and converted by a first step, each float32
// output converted back by a last step.
func compile(g *ir.Graph, keep, half bool) (*program, error) {
	return compileWith(g, keep, half, true)
}

// compileWith is compile; mma allows the tensor-core kernels (compute
// capability 8.0 and later), which half-precision attention then runs on,
// reading Q, K and V in place (planViews).
func compileWith(g *ir.Graph, keep, half, mma bool) (*program, error) {
	return compileLayout(g, keep, half, mma, false)
}

// compileLayout is compileWith; nchw keeps half convolutions NCHW (no
// layout pass, layout.go).
func compileLayout(g *ir.Graph, keep, half, mma, nchw bool) (*program, error) {
	return compilePrecision(g, keep, half, mma, nchw, nil)
}

// compilePrecision is compileLayout; layers gives the layers a half
// program runs in float32 ("fp32", by node name; precision.go).
func compilePrecision(g *ir.Graph, keep, half, mma, nchw bool, layers map[string]string) (*program, error) {
	c := &compiler{g: g, p: &program{kernels: map[string]bool{}, values: map[string]ioSpec{}}, consts: map[verValue]int64{}, storeOf: map[*ir.Value]int{},
		half: half, progHalf: half, keep: keep, mma: mma, nchw: nchw, fp32: fp32Nodes(g, layers, half)}
	for _, v := range g.Inputs {
		if _, err := c.dims(v); err != nil {
			return nil, err
		}
		id := c.addStore(v)
		io := ioSpec{name: v.Name, dtype: v.Type.DType, shape: c.mustDims(v), bytes: bytesOf(v), ref: ref{buf: bufArena, id: id}}
		if !half || v.Type.DType != tensor.Float32 {
			c.acc.inputs = append(c.acc.inputs, id)
		} else {
			// the float32 staging buffer is the input, converted into
			// the value's store by the first steps
			c.step = len(c.p.steps)
			stage := len(c.p.stores)
			c.p.stores = append(c.p.stores, interval{size: max(io.bytes, 1)})
			c.acc.inputs = append(c.acc.inputs, stage)
			c.acc.read(c.step, stage)
			c.acc.write(c.step, id)
			io.ref = ref{buf: bufArena, id: stage}
			s := c.castStep("input "+v.Name, "cast_f32_f16", ref{buf: bufArena, id: id}, io.ref, prod(io.shape))
			c.p.kernels["cast_f32_f16"] = true
			if c.mixed() { // float32 layers read the staging buffer
				c.storeHalf[stage] = false
				c.setVersion(id, stage, false)
			}
			c.p.steps = append(c.p.steps, s)
		}
		c.p.inputs = append(c.p.inputs, io)
	}
	c.planViews()
	c.dropMixedFusions() // precision.go: none across float32 layers
	c.planLayout()
	for _, n := range g.Nodes {
		if folded(n) {
			continue
		}
		restore, err := c.bindLayouts(n) // transposes to the layouts n reads
		if err != nil {
			return nil, fmt.Errorf("%s: %w", nodeName(n), err)
		}
		c.half = c.progHalf && !c.fp32[n]
		restorePrec, err := c.bindPrecision(n) // conversions to the precision n computes in
		if err != nil {
			return nil, fmt.Errorf("%s: %w", nodeName(n), err)
		}
		c.step = len(c.p.steps)
		s := step{node: n, half: c.half}
		if c.skip[n] {
			s.inPlace = c.inPlace(n)
			restorePrec()
			c.half = c.progHalf
			c.p.steps = append(c.p.steps, s) // computed in place by a later attention
			continue
		}
		if err := c.emit(&s); err != nil {
			return nil, fmt.Errorf("%s: %w", nodeName(n), err)
		}
		for _, l := range s.launches {
			c.p.kernels[l.kernel] = true
		}
		if s.conv != nil && s.conv.post.kernel != "" {
			c.p.kernels[s.conv.post.kernel] = true
		}
		if s.gemm != nil && s.gemm.post.kernel != "" {
			c.p.kernels[s.gemm.post.kernel] = true
		}
		for _, v := range n.Inputs {
			c.use(v)
		}
		restorePrec()
		restore()
		c.half = c.progHalf
		c.p.steps = append(c.p.steps, s)
	}
	if err := c.outputLayouts(); err != nil {
		return nil, err
	}
	var live []int // stores that must outlive the last step
	for _, v := range g.Outputs {
		o := ioSpec{name: v.Name, dtype: v.Type.DType}
		if v.Const != nil {
			o.konst = v.Const.Clone() // the graph's may live in a mapped file
			o.shape = o.konst.Shape
			c.p.outputs = append(c.p.outputs, o)
			continue
		}
		if d, ok := c.dynamic[v]; ok {
			id := c.storeOf[v]
			live = append(live, id)
			count := d.count
			o.shape, o.bytes, o.ref, o.rows = d.shape, prod(d.shape)*int64(v.Type.DType.Size()), ref{buf: bufArena, id: id}, &count
			c.p.outputs = append(c.p.outputs, o)
			continue
		}
		dims, err := c.dims(v)
		if err != nil {
			return nil, err
		}
		id, ok := c.storeOf[v]
		if !ok {
			return nil, fmt.Errorf("%w: output %q is computed by no node", ErrGraph, v.Name)
		}
		live = append(live, id)
		o.shape, o.bytes, o.ref = dims, bytesOf(v), ref{buf: bufArena, id: id}
		if half && v.Type.DType == tensor.Float32 && c.storedHalf(id) {
			c.step = len(c.p.steps)
			stage := c.newBuffer(o.bytes)
			c.read(id)
			live = append(live, stage)
			o.ref = ref{buf: bufArena, id: stage}
			c.p.steps = append(c.p.steps, c.castStep("output "+v.Name, "cast_f16_f32", o.ref, ref{buf: bufArena, id: id}, prod(dims)))
			c.p.kernels["cast_f16_f32"] = true
		}
		c.p.outputs = append(c.p.outputs, o)
	}
	c.acc.pinned = append(c.acc.pinned, live...)
	for v, id := range c.storeOf {
		if keep {
			c.acc.pinned = append(c.acc.pinned, id)
		}
		if dims, err := c.dims(v); err == nil {
			dt, size := c.storedType(v.Type.DType), c.bytes(v)
			if c.mixed() && dt == tensor.Float16 && v.Type.DType == tensor.Float32 && !c.storeHalf[id] {
				dt, size = tensor.Float32, bytesOf(v) // a float32 layer's value
			}
			c.p.values[v.Name] = ioSpec{name: v.Name, dtype: dt, shape: dims, bytes: size, ref: ref{buf: bufArena, id: id}}
		}
	}
	for k := range c.p.kernels {
		if strings.HasPrefix(k, "attention_mma") {
			c.p.mma = true
		}
	}
	c.acc.lifetimes(c.p.stores, len(c.p.steps))
	c.p.offsets, c.p.arena = planOffsets(c.p.stores)
	c.p.half = half
	return c.p, nil
}

// folded reports whether every output of n was computed at load time.
func folded(n *ir.Node) bool {
	for _, o := range n.Outputs {
		if o != nil && o.Const == nil {
			return false
		}
	}
	return len(n.Outputs) > 0
}

// bytesOf is the size of v as the host sees it (float32 as float32).
func bytesOf(v *ir.Value) int64 {
	dims, _ := v.Type.Shape.Ints()
	return int64(tensor.NumElements(dims)) * int64(v.Type.DType.Size())
}

// dims returns v's shape, which must be known, as must its type.
func (c *compiler) dims(v *ir.Value) ([]int, error) {
	if v.Const != nil {
		return v.Const.Shape, nil
	}
	dims, ok := v.Type.Shape.Ints()
	if !ok {
		return nil, fmt.Errorf("%w: value %q has shape %v: every shape must be known (infer with concrete input shapes)", ErrGraph, v.Name, v.Type.Shape)
	}
	if v.Type.DType == tensor.Undefined || v.Type.DType == tensor.String || v.Type.DType.Size() == 0 {
		return nil, fmt.Errorf("%w: value %q has type %v", ErrUnsupported, v.Name, v.Type.DType)
	}
	return dims, nil
}

func (c *compiler) mustDims(v *ir.Value) []int { d, _ := c.dims(v); return d }

// newStore makes v's store, written by the current step.
func (c *compiler) newStore(v *ir.Value) int {
	id := c.addStore(v)
	c.acc.write(c.step, id)
	return id
}

// addStore makes v's store, which no step writes yet (a graph input's).
func (c *compiler) addStore(v *ir.Value) int {
	id := len(c.p.stores)
	c.p.stores = append(c.p.stores, interval{size: max(c.bytes(v), 1)})
	c.storeOf[v] = id
	if c.mixed() {
		c.markStore(id, v)
	}
	return id
}

// newBuffer makes a store of the given size (at least 1 byte), written
// by the current step, and returns its id.
func (c *compiler) newBuffer(size int64) int {
	id := len(c.p.stores)
	c.p.stores = append(c.p.stores, interval{size: max(size, 1)})
	c.acc.write(c.step, id)
	return id
}

// scratch makes a buffer of the given size that lives during the current
// step only.
func (c *compiler) scratch(size int64) ref {
	return ref{buf: bufArena, id: c.newBuffer(size)}
}

// read marks that the current step reads store id.
func (c *compiler) read(id int) { c.acc.read(c.step, id) }

// use marks that the current step reads v.
func (c *compiler) use(v *ir.Value) {
	if v == nil {
		return
	}
	if id, ok := c.storeOf[v]; ok {
		c.read(id)
	}
}

// ref returns where v lives: constants are appended to the weights.
func (c *compiler) ref(v *ir.Value) (ref, error) {
	if r, ok := c.weightAliases[v]; ok {
		return r, nil
	}
	if id, ok := c.storeOf[v]; ok {
		return ref{buf: bufArena, id: id}, nil // a graph input, even with a default
	}
	if v.Const != nil {
		if off, ok := c.consts[verValue{v, c.half}]; ok {
			return ref{buf: bufWeights, off: off}, nil
		}
		if v.Const.DType == tensor.String {
			return ref{}, fmt.Errorf("%w: string constant %q", ErrUnsupported, v.Name)
		}
		data := v.Const.Data
		if c.half && v.Const.DType == tensor.Float32 {
			data = halfBytes(v.Const)
		}
		off := c.addWeights(data)
		c.consts[verValue{v, c.half}] = off
		return ref{buf: bufWeights, off: off}, nil
	}
	id, ok := c.storeOf[v]
	if !ok {
		return ref{}, fmt.Errorf("%w: value %q is read before it is computed", ErrGraph, v.Name)
	}
	return ref{buf: bufArena, id: id}, nil
}

func (c *compiler) addWeights(b []byte) int64 {
	off := align(int64(len(c.p.weights)))
	c.p.weights = append(c.p.weights, make([]byte, off-int64(len(c.p.weights)))...)
	c.p.weights = append(c.p.weights, b...)
	return off
}

// meta uploads a small array of int64 with the weights.
func (c *compiler) meta(vals []int64) ref {
	b := make([]byte, 8*len(vals))
	for i, v := range vals {
		u := uint64(v)
		for k := 0; k < 8; k++ {
			b[8*i+k] = byte(u >> (8 * k))
		}
	}
	return ref{buf: bufWeights, off: c.addWeights(b)}
}

// out makes the storage of output i of the node.
func (c *compiler) out(n *ir.Node, i int) (ref, []int, error) {
	v := n.Outputs[i]
	dims, err := c.dims(v)
	if err != nil {
		return ref{}, nil, err
	}
	return ref{buf: bufArena, id: c.newStore(v)}, dims, nil
}

// alias makes output 0 of n share its storage with input 0 (Reshape and
// the like). A constant input gives a constant output location.
func (c *compiler) alias(n *ir.Node) error {
	in, o := n.Inputs[0], n.Outputs[0]
	if in == nil || o == nil {
		return fmt.Errorf("%w: missing input or output", ErrGraph)
	}
	if c.bytes(o) != c.size(in) {
		return fmt.Errorf("%w: %v and %v differ in size", ErrGraph, in.Type, o.Type)
	}
	if in.Const != nil {
		r, err := c.ref(in)
		if err != nil {
			return err
		}
		c.constAlias(o, r)
		if c.mixed() { // precision.go: read in the other precision from in's upload in it
			if c.aliasSrc == nil {
				c.aliasSrc, c.aliasHalf = map[*ir.Value]*ir.Value{}, map[*ir.Value]bool{}
			}
			c.aliasSrc[o], c.aliasHalf[o] = in, c.half
		}
		return nil
	}
	id, ok := c.storeOf[in]
	if !ok {
		return fmt.Errorf("%w: value %q is read before it is computed", ErrGraph, in.Name)
	}
	c.storeOf[o] = id
	return nil
}

// constAlias makes later reads of o go to r in the weights.
func (c *compiler) constAlias(o *ir.Value, r ref) {
	if c.weightAliases == nil {
		c.weightAliases = map[*ir.Value]ref{}
	}
	c.weightAliases[o] = r
}

// input returns input i of n, or nil.
func input(n *ir.Node, i int) *ir.Value {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return nil
}

// grid1D sizes a grid-stride launch over n elements.
func grid1D(n int64) (cuda.Dim3, cuda.Dim3) {
	const block = 256
	g := (n + block - 1) / block
	g = max(1, min(g, 65535))
	return cuda.Dim3{X: uint32(g), Y: 1, Z: 1}, cuda.Dim3{X: block, Y: 1, Z: 1}
}

// elemLaunch is a grid-stride launch over n elements.
func elemLaunch(kernel string, n int64, args ...arg) launch {
	g, b := grid1D(n)
	return launch{kernel: kernel, grid: g, block: b, args: args}
}

// rowsLaunch is one block per row (at most 65535 blocks, grid-stride).
func rowsLaunch(kernel string, rows int64, threads uint32, shmem uint32, args ...arg) launch {
	g := uint32(max(1, min(rows, 65535)))
	return launch{kernel: kernel, grid: cuda.Dim3{X: g, Y: 1, Z: 1}, block: cuda.Dim3{X: threads, Y: 1, Z: 1}, shmem: shmem, args: args}
}

// rowThreads picks a block size for a per-row kernel: a multiple of 32 up
// to 1024, about the row's length.
func rowThreads(cols int) uint32 {
	t := (cols + 31) / 32 * 32
	return uint32(max(32, min(t, 1024)))
}

func prod(d []int) int64 {
	p := int64(1)
	for _, v := range d {
		p *= int64(v)
	}
	return p
}
