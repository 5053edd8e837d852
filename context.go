package kiln

import (
	"context"

	"github.com/kilnai/kiln/engine"
)

// Context is one execution context of a model: its own scratch memory (the
// activation arena of each profile's engine), reused run after run. A
// Context must be used by one goroutine at a time; make one per worker (the
// server makes one per model instance). Models on a device that runs graphs
// itself share the device program's own contexts.
type Context struct {
	m    *Model
	ctxs []*engine.Context // per runner; nil where the runner has none
	one  *engine.Context   // a model loaded without a plan
}

// NewContext returns a new execution context of m.
func (m *Model) NewContext() *Context {
	c := &Context{m: m}
	if len(m.runners) == 0 {
		if m.eng != nil {
			c.one = m.eng.NewContext()
		}
		return c
	}
	c.ctxs = make([]*engine.Context, len(m.runners))
	for i, r := range m.runners {
		if e, ok := r.(*engine.Engine); ok {
			c.ctxs[i] = e.NewContext()
		}
	}
	return c
}

// Run is Model.Run in this context.
func (c *Context) Run(ctx context.Context, inputs map[string]*Tensor) (map[string]*Tensor, error) {
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
	return m.Run(ctx, inputs)
}

// ArenaBytes returns the memory c holds for intermediates: the sum of the
// arenas of its engines' contexts (see engine.Context.ArenaBytes), sized
// for the shapes it has run, not for the largest its profiles allow. 0
// before the first run, and for models whose device keeps its own memory.
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
	return n
}
