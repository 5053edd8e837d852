package gpuexec

// reduceKernels are the reductions over axes, ArgMax, ArgMin and CumSum.
var reduceKernels = []kernelDef{}
