// Package optimize rewrites kiln graphs into cheaper equivalent ones before
// an engine is built: identity, dropout and dead-code elimination, constant
// and shape folding, BatchNorm folding, Conv and MatMul + bias +
// activation (+ residual Add) fusion, and GELU, LayerNorm and attention
// pattern fusion, into kiln's fused operators (ops/nn, domain "kiln":
// FusedConv, FusedMatMul, Gelu, LayerNormalization, Attention).
//
// Each pass lives in its own file and registers itself in init; Run applies
// the registered passes in their declared order until none changes the
// graph, and logs what each one did. Level 0 runs nothing, level 1 the
// eliminations and folds, level 2 and above the fusions too.
package optimize
