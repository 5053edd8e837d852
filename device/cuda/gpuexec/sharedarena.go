package gpuexec

import (
	"errors"
	"fmt"
	"sync"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/tensor"
)

// outputTensor returns a host tensor of type dt and shape for an output
// of a run: over into (its first bytes) when the output fits there (the
// memory a caller gave with ShapesContext.SetOutputs), a new tensor
// otherwise. Its data is not cleared.
func outputTensor(dt tensor.DType, shape []int, into []byte) (*tensor.Tensor, error) {
	if n := tensor.NumElements(shape) * dt.Size(); len(into) >= n && dt.Valid() && dt != tensor.String && tensor.CheckShape(shape) == nil {
		return &tensor.Tensor{DType: dt, Shape: append([]int(nil), shape...), Data: into[:n:n]}, nil
	}
	return tensor.Make(dt, shape)
}

// devArena is device memory that contexts which never run at the same
// time take their activations and workspaces from (the device segments
// of one context of a partitioned program: ShapesContext.ShareArena):
// one allocation, the largest any of them needs. A context that needs
// more than it holds makes it again, larger; the contexts bound to the
// old one bind their calls again before their next run (Context.rebase).
// Its methods are called with the CUDA context current.
type devArena struct {
	mu    sync.Mutex
	drv   *cuda.Driver
	cctx  cuda.Context // the CUDA context it was allocated in
	ptr   cuda.DevicePtr
	size  int64
	gen   int // counts the allocations: a context bound to an older one rebinds
	users int // the contexts that hold it
}

// take makes a's allocation hold need bytes (a Context of e's) and counts
// one more user. ok is false, with nothing taken, when a's memory is
// another CUDA context's.
func (a *devArena) take(e *Engine, need int64) (ptr cuda.DevicePtr, gen int, ok bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.drv != nil && a.cctx != e.cctx {
		return 0, 0, false, nil
	}
	if a.size < need {
		old := a.size
		if a.ptr != 0 { // nothing runs in it now: its contexts run one after another
			if err := a.drv.MemFree(a.ptr); err != nil {
				return 0, 0, false, err
			}
			a.ptr, a.size = 0, 0
			a.gen++ // no context may use the old one
		}
		p, err := e.drv.MemAlloc(int(need))
		if err != nil {
			// the contexts that had the old size get it back, if they can
			if old > 0 {
				if p, rerr := a.drv.MemAlloc(int(old)); rerr == nil {
					a.ptr, a.size = p, old
				}
			}
			return 0, 0, false, fmt.Errorf("shared activations: %w", err)
		}
		a.drv, a.cctx, a.ptr, a.size = e.drv, e.cctx, p, need
		a.gen++
	}
	a.users++
	return a.ptr, a.gen, true, nil
}

// current returns a's allocation and its generation.
func (a *devArena) current() (cuda.DevicePtr, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ptr, a.gen
}

// drop counts one user fewer and frees the allocation after the last.
func (a *devArena) drop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.users--
	if a.users > 0 || a.ptr == 0 {
		return nil
	}
	err := a.drv.MemFree(a.ptr)
	a.ptr, a.size = 0, 0
	a.gen++
	return err
}

// bytes is the size of a's allocation.
func (a *devArena) bytes() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.size
}

// sharedNeed is the bytes a context of e takes of a shared arena: its
// activations, then its workspace at the next multiple of Alignment.
func (e *Engine) sharedNeed() int64 {
	if e.ws == 0 {
		return e.prog.arena
	}
	return align(e.prog.arena) + int64(e.ws)
}

// placeShared points c's activations and workspace into the shared
// allocation at base.
func (c *Context) placeShared(base cuda.DevicePtr) {
	c.arena, c.ws = 0, 0
	if c.e.prog.arena > 0 {
		c.arena = base
	}
	if c.e.ws > 0 {
		c.ws = base + cuda.DevicePtr(align(c.e.prog.arena))
	}
}

// rebase binds c's calls again, and drops its captured graphs, when the
// arena it shares was made again since it bound them (a context sharing
// it needed more). The CUDA context is current.
func (c *Context) rebase() error {
	if c.shared == nil {
		return nil
	}
	ptr, gen := c.shared.current()
	if gen == c.gen {
		return nil
	}
	if ptr == 0 {
		return fmt.Errorf("%w: the shared arena could not be made again", cuda.ErrOutOfMemory)
	}
	var errs []error
	if c.hasGraph {
		errs = append(errs, c.e.drv.GraphExecDestroy(c.graph))
		c.hasGraph = false
	}
	if c.hasLayer {
		errs = append(errs, c.e.drv.GraphExecDestroy(c.layers))
		c.hasLayer = false
	}
	for _, k := range c.calls {
		if k.args != nil {
			k.args.Free()
		}
	}
	c.calls = nil
	c.placeShared(ptr)
	c.gen = gen
	c.rebinds++
	if err := c.bind(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("binding to the shared arena: %w", err)
	}
	return nil
}
