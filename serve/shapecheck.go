package serve

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// shapeCheckCache bounds the number of input-shape combinations whose
// verdict a version remembers.
const shapeCheckCache = 512

// shapeCheck decides, by shape inference over the model's graph, whether
// the graph can run inputs of given shapes (an image whose size is not a
// multiple of the network's stride cannot: two branches meet in a Concat
// with different sizes), before a request is queued. Verdicts are cached
// per combination of shapes, so inference runs once per new shape. It is
// safe for concurrent use.
type shapeCheck struct {
	graph *ir.Graph // never changed: each check infers on a clone
	mu    sync.Mutex
	seen  map[string]error
	// last is the latest verdict looked up or made: a server's requests
	// nearly always have the shapes of the one before, and they find it
	// here without taking mu
	last atomic.Pointer[shapeVerdict]
}

// shapeVerdict is one combination of shapes and its verdict.
type shapeVerdict struct {
	key string
	err error
	// one, for a combination of one input, is that input's name, type
	// and shape: a request of one input is matched against them without
	// making its key
	one   bool
	name  string
	dtype tensor.DType
	shape []int
}

// same reports whether inputs, one input, is v's combination.
func (v *shapeVerdict) same(inputs map[string]*tensor.Tensor) bool {
	if !v.one || len(inputs) != 1 {
		return false
	}
	for n, t := range inputs {
		return t != nil && n == v.name && t.DType == v.dtype && slices.Equal(t.Shape, v.shape)
	}
	return false
}

func newShapeCheck(g *ir.Graph) *shapeCheck {
	if g == nil {
		return nil
	}
	return &shapeCheck{graph: g, seen: map[string]error{}}
}

// check returns an error (wrapping ErrInvalid) when shape inference over
// the graph fails for inputs of these shapes.
func (c *shapeCheck) check(inputs map[string]*tensor.Tensor) error {
	if c == nil {
		return nil
	}
	last := c.last.Load()
	if last != nil && last.same(inputs) {
		return last.err
	}
	var buf [128]byte
	key := appendShapeKey(buf[:0], inputs)
	if last != nil && last.key == string(key) {
		return last.err
	}
	c.mu.Lock()
	err, ok := c.seen[string(key)] // (the lookup does not allocate)
	c.mu.Unlock()
	if !ok {
		err = c.infer(inputs)
		c.mu.Lock()
		if len(c.seen) >= shapeCheckCache {
			clear(c.seen)
		}
		c.seen[string(key)] = err
		c.mu.Unlock()
	}
	v := &shapeVerdict{key: string(key), err: err}
	if len(inputs) == 1 {
		for n, t := range inputs {
			if t != nil {
				v.one, v.name, v.dtype, v.shape = true, n, t.DType, slices.Clone(t.Shape)
			}
		}
	}
	c.last.Store(v)
	return err
}

// infer runs shape inference on a clone of the graph whose inputs have the
// given shapes and whose other values have forgotten theirs.
func (c *shapeCheck) infer(inputs map[string]*tensor.Tensor) error {
	g := c.graph.Clone()
	outputs := map[*ir.Value]bool{}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o != nil {
				outputs[o] = true
			}
		}
	}
	for v := range outputs {
		v.Type.Shape = nil
	}
	for _, v := range g.Inputs {
		if t := inputs[v.Name]; t != nil {
			v.Type = ir.Type{DType: t.DType, Shape: ir.KnownShape(t.Shape...)}
		}
	}
	if _, err := ops.InferGraph(g); err != nil {
		return fmt.Errorf("%w: the model cannot take inputs of shapes %s: %w", ErrInvalid, shapes(inputs), err)
	}
	return nil
}

// appendShapeKey appends to b the inputs' names, types and shapes, and
// allocates nothing for up to 8 inputs whose key fits b's capacity.
func appendShapeKey(b []byte, inputs map[string]*tensor.Tensor) []byte {
	var few [8]string
	names := few[:0]
	for n := range inputs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if t := inputs[n]; t != nil {
			// as fmt's "%s:%v:%v;" writes it, without its boxing
			b = append(append(b, n...), ':')
			b = append(append(b, t.DType.String()...), ":["...)
			for i, d := range t.Shape {
				if i > 0 {
					b = append(b, ' ')
				}
				b = strconv.AppendInt(b, int64(d), 10)
			}
			b = append(b, "];"...)
		}
	}
	return b
}
