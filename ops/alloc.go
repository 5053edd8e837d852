package ops

import "github.com/kilnai/kiln/tensor"

// NewOutput returns a tensor for one of a kernel's outputs. When the engine
// gives the kernel an allocator (Env.Alloc, backed by the execution
// context's memory arena) the tensor comes from it and its contents are
// undefined: the kernel must write every element. Otherwise it is a fresh,
// zeroed tensor.
func NewOutput(env *Env, dt tensor.DType, shape []int) (*tensor.Tensor, error) {
	if env != nil && env.Alloc != nil {
		if len(shape) <= len(env.dims) {
			// a copy in env's scratch, so that the caller's shape does
			// not escape to the heap through the call of Alloc (the
			// allocators copy the shape they are given)
			return env.Alloc(dt, append(env.dims[:0:len(env.dims)], shape...))
		}
		return env.Alloc(dt, append([]int(nil), shape...))
	}
	return tensor.Make(dt, shape)
}
