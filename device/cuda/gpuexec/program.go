package gpuexec

import (
	"errors"
	"fmt"
	"math"

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
	kernels map[string]bool   // the kernels the launches use
	values  map[string]ioSpec // every value in the arena, by name (for Context.Value)
}

// compiler builds a program.
type compiler struct {
	g       *ir.Graph
	p       *program
	consts  map[*ir.Value]int64 // offset in weights
	storeOf map[*ir.Value]int   // arena storage of a value (aliases share one)
	step    int                 // index of the step being built
	// weightAliases are non-constant values that alias a constant (a
	// Reshape of a weight too large to fold).
	weightAliases map[*ir.Value]ref
}

// compile turns g into a program. Every value's shape and type must be
// known. With keep, no two values share memory, so that every one can be
// read after a run.
func compile(g *ir.Graph, keep bool) (*program, error) {
	c := &compiler{g: g, p: &program{kernels: map[string]bool{}, values: map[string]ioSpec{}}, consts: map[*ir.Value]int64{}, storeOf: map[*ir.Value]int{}}
	for _, v := range g.Inputs {
		if _, err := c.dims(v); err != nil {
			return nil, err
		}
		id := c.newStore(v)
		c.p.stores[id].first = -1
		c.p.inputs = append(c.p.inputs, ioSpec{name: v.Name, dtype: v.Type.DType, shape: c.mustDims(v), bytes: bytesOf(v), ref: ref{buf: bufArena, id: id}})
	}
	for _, n := range g.Nodes {
		if folded(n) {
			continue
		}
		c.step = len(c.p.steps)
		s := step{node: n}
		if err := c.emit(&s); err != nil {
			return nil, fmt.Errorf("%s: %w", nodeName(n), err)
		}
		for _, l := range s.launches {
			c.p.kernels[l.kernel] = true
		}
		for _, v := range n.Inputs {
			c.use(v)
		}
		c.p.steps = append(c.p.steps, s)
	}
	end := len(c.p.steps)
	for _, v := range g.Outputs {
		o := ioSpec{name: v.Name, dtype: v.Type.DType}
		if v.Const != nil {
			o.konst = v.Const.Clone() // the graph's may live in a mapped file
			o.shape = o.konst.Shape
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
		c.p.stores[id].last = end
		o.shape, o.bytes, o.ref = dims, bytesOf(v), ref{buf: bufArena, id: id}
		c.p.outputs = append(c.p.outputs, o)
	}
	for v, id := range c.storeOf {
		if keep {
			c.p.stores[id].last = end
		}
		if dims, err := c.dims(v); err == nil {
			c.p.values[v.Name] = ioSpec{name: v.Name, dtype: v.Type.DType, shape: dims, bytes: bytesOf(v), ref: ref{buf: bufArena, id: id}}
		}
	}
	c.p.offsets, c.p.arena = planOffsets(c.p.stores)
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

func (c *compiler) newStore(v *ir.Value) int {
	id := len(c.p.stores)
	c.p.stores = append(c.p.stores, interval{size: max(bytesOf(v), 1), first: c.step, last: c.step})
	c.storeOf[v] = id
	return id
}

// use marks that the current step reads v.
func (c *compiler) use(v *ir.Value) {
	if v == nil {
		return
	}
	if id, ok := c.storeOf[v]; ok {
		c.p.stores[id].last = max(c.p.stores[id].last, c.step)
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
		if off, ok := c.consts[v]; ok {
			return ref{buf: bufWeights, off: off}, nil
		}
		if v.Const.DType == tensor.String {
			return ref{}, fmt.Errorf("%w: string constant %q", ErrUnsupported, v.Name)
		}
		off := c.addWeights(v.Const.Data)
		c.consts[v] = off
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
	if bytesOf(o) != sizeOf(in) {
		return fmt.Errorf("%w: %v and %v differ in size", ErrGraph, in.Type, o.Type)
	}
	if in.Const != nil {
		r, err := c.ref(in)
		if err != nil {
			return err
		}
		c.constAlias(o, r)
		return nil
	}
	id, ok := c.storeOf[in]
	if !ok {
		return fmt.Errorf("%w: value %q is read before it is computed", ErrGraph, in.Name)
	}
	c.storeOf[o] = id
	return nil
}

// sizeOf returns the bytes of v's contents.
func sizeOf(v *ir.Value) int64 {
	if v.Const != nil {
		return int64(len(v.Const.Data))
	}
	return bytesOf(v)
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

var inf = float32(math.Inf(1))
