// Package optimize rewrites kiln graphs into cheaper equivalent ones before
// an engine is built: identity, dropout and dead-code elimination, constant
// and shape folding, transpose and reshape elimination (identity perms and
// shapes removed, chains merged, run-time shapes made constant), concat
// elision, BatchNorm folding, Conv and MatMul + bias + activation (+
// residual Add) fusion, GELU, LayerNorm and attention pattern fusion, and
// Q/K/V MatMul merging, into kiln's fused operators (ops/nn, domain "kiln":
// FusedConv, FusedMatMul, Gelu, LayerNormalization, Attention).
//
// Each pass lives in its own file and registers itself in init; Run applies
// the registered passes in their declared order until none changes the
// graph, and logs what each one did (kiln inspect shows it). Level 0 runs
// nothing, level 1 the eliminations and folds, level 2 and above the
// fusions too (levels 3 to 5 are accepted and currently equal to 2).
//
// Device passes (DevicePass) write operators only some devices run, and
// run only through RunFor with such a device (the builder passes the one
// it builds for): on the CPU, skiplayernorm fuses a residual Add and the
// LayerNormalization after it (kiln::SkipLayerNormalization), and mha
// turns the Split, Reshapes and Transposes around kiln::Attention over a
// packed Q/K/V projection into kiln::MultiHeadAttention.
//
// Layout choice (the layout pass): kiln's kernels compute convolutions in
// NCHW, so a graph exported in NHWC (TensorFlow, Keras), whose convolutions
// each sit between Transposes, is kept in NCHW between them: the Transposes
// move below the elementwise ops until they cancel, leaving one at each end.
package optimize
