package kiln

import (
	"context"
	"errors"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine"
)

// Context is one execution context of a model: its own per-request state,
// reused run after run. On the CPU that is the activation arena of each
// profile's engine; on a device that runs graphs itself (cuda) it is the
// device program's own context of each profile: device memory for the
// activations and workspaces, and a stream (per input shape the context
// runs, on cuda). A Context must be used by one goroutine at a time; make
// one per worker (the server makes one per model instance). Close releases
// what it holds on a device; closing the model releases it too.
type Context struct {
	m    *Model
	ctxs []*engine.Context // per runner; nil where the runner has none
	one  *engine.Context   // a model loaded without a plan
	// dev are the device programs' contexts, per runner, made on the
	// runner's first run in this context (nil before, and for runners
	// that are CPU engines or give out no contexts).
	dev    []device.ProgramContext
	closed bool
}

// ErrContextClosed is returned by Context.Run after the context's Close.
var ErrContextClosed = errors.New("kiln: context closed")

// NewContext returns a new execution context of m. On a device it takes
// no device memory before its first run.
func (m *Model) NewContext() *Context {
	c := &Context{m: m}
	if len(m.runners) == 0 {
		if m.eng != nil {
			c.one = m.eng.NewContext()
		}
		return c
	}
	c.ctxs = make([]*engine.Context, len(m.runners))
	c.dev = make([]device.ProgramContext, len(m.runners))
	for i, r := range m.runners {
		if e, ok := r.(*engine.Engine); ok {
			c.ctxs[i] = e.NewContext()
		}
	}
	return c
}

// Run is Model.Run in this context.
func (c *Context) Run(ctx context.Context, inputs map[string]*Tensor) (map[string]*Tensor, error) {
	if c.closed {
		return nil, ErrContextClosed
	}
	m := c.m
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.release()
	if c.one != nil {
		return c.one.Run(ctx, inputs)
	}
	i := 0
	if len(m.profiles) > 0 {
		var err error
		if i, err = engine.CheckProfiles(m.profiles, inputs); err != nil {
			return nil, err
		}
	}
	if i < len(c.ctxs) && c.ctxs[i] != nil {
		return c.ctxs[i].Run(ctx, inputs)
	}
	if i < len(c.dev) {
		if c.dev[i] == nil {
			if cs, ok := m.runners[i].(device.Contexts); ok {
				dc, err := cs.NewContext()
				if err != nil {
					return nil, err
				}
				c.dev[i] = dc
			}
		}
		if c.dev[i] != nil {
			return c.dev[i].Run(ctx, inputs)
		}
	}
	return m.Run(ctx, inputs)
}

// ArenaBytes returns the memory c holds for intermediates: the sum of the
// arenas of its engines' contexts (see engine.Context.ArenaBytes), sized
// for the shapes it has run, not for the largest its profiles allow, and
// on a device the device memory of its contexts (activations and
// workspaces). 0 before the first run.
func (c *Context) ArenaBytes() int {
	n := 0
	if c.one != nil {
		n += c.one.ArenaBytes()
	}
	for _, x := range c.ctxs {
		if x != nil {
			n += x.ArenaBytes()
		}
	}
	for _, x := range c.dev {
		if x != nil {
			n += int(x.ArenaBytes())
		}
	}
	return n
}

// Close releases what c holds on a device (its memory and streams); a CPU
// context's arena is left to the garbage collector. Later runs return
// ErrContextClosed. After the model's Close there is nothing left to
// release. Close is idempotent and must not be called during c's Run.
func (c *Context) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	// Holding the model keeps its Close from freeing the programs while
	// their contexts close; a closed model has freed them already.
	if err := c.m.acquire(); err != nil {
		c.dev = nil
		return nil
	}
	defer c.m.release()
	var errs []error
	for _, x := range c.dev {
		if x != nil {
			errs = append(errs, x.Close())
		}
	}
	c.dev = nil
	return errors.Join(errs...)
}
