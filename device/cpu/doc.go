// Package cpu holds kiln's CPU kernels: a blocked, packed, parallel SGEMM,
// convolution through GEMM, and the worker pool that spreads heavy loops over
// all cores.
package cpu
