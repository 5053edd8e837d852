package ops

import "github.com/kilnai/kiln/ir"

// GemmAttrs are Gemm's attributes (ops/nn), read by the CPU kernel and
// the CUDA kernel alike (see Def.Attrs): Y = Alpha*op(A)*op(B) + Beta*C.
type GemmAttrs struct {
	// Alpha is "alpha" (1 by default).
	Alpha float32
	// Beta is "beta" (1 by default).
	Beta float32
	// TransA is "transA" (0 by default; any other value is 1, as both
	// devices always read it): A is transposed.
	TransA bool
	// TransB is "transB", as TransA for B.
	TransB bool
	// Broadcast is "broadcast" (before opset 7; 0 by default): C may be
	// broadcast to [M, N]. Both devices broadcast C either way (from opset
	// 7 it always is); the attribute is read, and its type checked, at
	// every opset, as the CPU always did.
	Broadcast bool
}

// ParseGemmAttrs reads a Gemm node's attributes.
func ParseGemmAttrs(n *ir.Node, opset int64) (GemmAttrs, error) {
	a := AttrsOf(n)
	g := GemmAttrs{Alpha: a.Float("alpha", 1), Beta: a.Float("beta", 1),
		TransA: a.Int("transA", 0) != 0, TransB: a.Int("transB", 0) != 0,
		Broadcast: a.Int("broadcast", 0) != 0}
	return g, a.Err()
}
