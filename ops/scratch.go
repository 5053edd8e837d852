package ops

// ScratchMeter, when set (by the package of a device whose kernels take
// scratch memory, e.g. ops/nn for the CPU kernels), runs f and returns the
// peak scratch memory in bytes the device's kernels took meanwhile: im2col
// and transform buffers, packed weights made during the run. The builder
// uses it to keep tactics within a workspace limit. Measurements must not
// overlap.
var ScratchMeter func(f func()) int64
