// Package optimize rewrites kiln graphs into cheaper equivalent ones before
// an engine is built: identity, dropout and dead-code elimination, constant
// and shape folding, BatchNorm folding and Conv/MatMul fusions into kiln's
// fused operators (ops/nn, domain "kiln").
//
// Each pass lives in its own file and registers itself in init; Run applies
// the registered passes in their declared order until none changes the
// graph, and logs what each one did.
package optimize
