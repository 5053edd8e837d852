package engine

import (
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/tensor"
)

// Memory plans per shape bucket.
//
// The memory plan made when the engine is built (e.mem) sizes every
// intermediate for the max shapes. A run with smaller inputs would fit in
// that arena, but it would hold memory for the max batch in every context
// (a profile allowing batches of 32768 would take gigabytes to run one
// image). So a run uses a plan made for its own input shapes rounded up,
// per dimension the model leaves free, to the next power of two (and at
// most the max shape): its bucket. An engine without max shapes for its
// symbolic dimensions plans nothing when it is built, and each run uses a
// plan made for its exact shapes. Plans are made on first use (a fraction
// of a millisecond for the shared models) and kept (at most maxBuckets per
// engine); a context's arena is sized for the largest bucket it has run.
// Either way the arena a run needs is known, and checked against the
// memory limit, before anything is allocated. Planning waits for the runs
// in progress on the engine and holds new ones back (it runs the kernels'
// shape inference, which must not overlap their Run): a pause of one run's
// length, once per bucket.

// maxBuckets bounds the plans an engine keeps for shape buckets.
const maxBuckets = 64

// allocate is Env.Alloc where no arena slot applies: a fresh zeroed tensor,
// refused (ErrMemory) when it alone would exceed the memory limit.
func (e *Engine) allocate(dt tensor.DType, shape []int) (*tensor.Tensor, error) {
	if err := tensor.CheckShape(shape); err == nil && dt.Valid() && dt != tensor.String {
		if n := int64(tensor.NumElements(shape)) * int64(dt.Size()); n > e.limit {
			return nil, fmt.Errorf("%w: a %v tensor of shape %s needs %s, more than the limit of %s per execution context", ErrMemory, dt, tensor.ShapeString(shape), FormatBytes(n), limitString(e.limit))
		}
	}
	return tensor.Make(dt, shape)
}

// planFor returns the memory plan for a run of c with inputs (checked
// already): the plan of the last run when the shapes are the same, else
// the plan of their bucket. nil means no arena for this run. A plan whose
// arena exceeds the memory limit is an error (ErrMemory).
func (c *Context) planFor(inputs map[string]*tensor.Tensor) (*memPlan, error) {
	e := c.e
	if c.lastOK && c.sameShapes(inputs) {
		return c.mem, nil
	}
	key, shapes := e.bucket(inputs)
	mp := e.bucketPlan(key, shapes)
	if mp != nil && int64(mp.arenaBytes) > e.limit {
		c.lastOK = false
		return nil, fmt.Errorf("%w: the activation arena for input shapes %s needs %s, more than the limit of %s per execution context", ErrMemory, e.shapesString(shapes), FormatBytes(int64(mp.arenaBytes)), limitString(e.limit))
	}
	c.lastShapes = c.lastShapes[:0]
	for _, v := range e.graph.Inputs {
		var s []int
		if t := inputs[v.Name]; t != nil {
			s = t.Shape
		}
		c.lastShapes = append(c.lastShapes, slices.Clone(s))
	}
	c.lastOK = true
	return mp, nil
}

// sameShapes reports whether inputs have the shapes of the last run.
func (c *Context) sameShapes(inputs map[string]*tensor.Tensor) bool {
	gi := c.e.graph.Inputs
	if len(c.lastShapes) != len(gi) {
		return false
	}
	for i, v := range gi {
		var s []int
		if t := inputs[v.Name]; t != nil {
			s = t.Shape
		}
		if !slices.Equal(s, c.lastShapes[i]) || (s == nil) != (c.lastShapes[i] == nil) {
			return false
		}
	}
	return true
}

// bucketPlan returns the memory plan for the bucket key (whose input
// shapes are shapes): the engine's own for the max shapes, else one made
// on first use.
func (e *Engine) bucketPlan(key string, shapes map[string][]int) *memPlan {
	if key == e.memKey {
		return e.mem
	}
	e.bucketMu.Lock()
	defer e.bucketMu.Unlock()
	if mp, ok := e.buckets[key]; ok {
		return mp
	}
	// Not strict: a node whose shapes cannot be inferred at the bucket's
	// shapes is simply not planned (its outputs are allocated on their
	// own), and a plan that does not fit a run falls back the same way.
	e.runMu.Lock()
	mp, err := planMemory(e.plans[e.graph], shapes, false)
	e.runMu.Unlock()
	if err != nil {
		mp = nil
	}
	if e.buckets == nil {
		e.buckets = map[string]*memPlan{}
	}
	if len(e.buckets) >= maxBuckets {
		for k := range e.buckets {
			delete(e.buckets, k)
			break
		}
	}
	e.buckets[key] = mp
	return mp
}

// bucket returns the bucket of the bound inputs: per graph input, its
// shape with every dimension the graph leaves free rounded up to a power of
// two, but not beyond the max shape (dimensions beyond it stay as they
// are); and the key naming it.
func (e *Engine) bucket(inputs map[string]*tensor.Tensor) (string, map[string][]int) {
	var key strings.Builder
	shapes := make(map[string][]int, len(inputs))
	for _, v := range e.graph.Inputs {
		t := inputs[v.Name]
		if t == nil {
			key.WriteString("-;")
			continue
		}
		mx := e.planShapes[v.Name]
		s := make([]int, len(t.Shape))
		for i, n := range t.Shape {
			s[i] = n
			if i < len(v.Type.Shape) && v.Type.Shape[i].Known() {
				continue
			}
			if i < len(mx) && mx[i] >= n {
				s[i] = min(nextPow2(n), mx[i])
			}
		}
		shapes[v.Name] = s
		writeShape(&key, s)
	}
	return key.String(), shapes
}

// maxKey returns the bucket key of the shapes e.mem was planned at: the
// max shapes, or the declared ones. An input with a default value
// (initializer) is taken as not given.
func (e *Engine) maxKey() string {
	var key strings.Builder
	for _, v := range e.graph.Inputs {
		if v.Const != nil {
			key.WriteString("-;")
			continue
		}
		s, ok := e.planShapes[v.Name]
		if !ok {
			if s, ok = v.Type.Shape.Ints(); !ok || v.Type.Shape == nil {
				return "" // never the key of a bound shape
			}
		}
		writeShape(&key, s)
	}
	return key.String()
}

func writeShape(b *strings.Builder, s []int) {
	b.WriteByte('[')
	for i, d := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(d))
	}
	b.WriteString("];")
}

// nextPow2 returns the smallest power of two >= n (n itself for n <= 1).
func nextPow2(n int) int {
	if n <= 1 {
		return n
	}
	if n > 1<<(bits.UintSize-2) {
		return n
	}
	return 1 << bits.Len(uint(n-1))
}

// shapesString spells input shapes in graph order: "image [8,3,32,32]".
func (e *Engine) shapesString(shapes map[string][]int) string {
	var parts []string
	for _, v := range e.graph.Inputs {
		if s, ok := shapes[v.Name]; ok {
			parts = append(parts, fmt.Sprintf("%s %s", v.Name, tensor.ShapeString(s)))
		}
	}
	if len(parts) == 0 {
		return "as declared"
	}
	return strings.Join(parts, ", ")
}
