package ops

import "github.com/kilnai/kiln/ir"

// Tactical is implemented by kernels that have several implementations
// ("tactics") of the same computation, for example im2col+GEMM, direct and
// Winograd for a convolution. The builder times each candidate at the
// profile's opt shape and keeps the fastest; the plan records the choice and
// the engine applies it with SetTactic.
type Tactical interface {
	// Tactics returns the names of the implementations that can compute the
	// node for the given input values (types and shapes inferred); the first
	// is the one used when no tactic is set. It returns nil when there is no
	// choice to make.
	Tactics(in []*ir.Value) []string
	// SetTactic selects the implementation by name; it fails for a name not
	// in Tactics. Kernels are not shared between engines, so SetTactic is
	// called before the kernel first runs and never concurrently with Run.
	// The builder's timer may prepare several kernels of one node, each
	// from a copy of the node whose constants are copies (to time the
	// weights cold, engine/tactic's CPUTimer), and runs each on its own
	// copy: a kernel packs the constants of the node it was prepared from.
	SetTactic(name string) error
}
