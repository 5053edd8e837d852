// Package gpuexec runs an optimized kiln graph on an NVIDIA GPU.
//
// NewEngine takes an *ir.Graph that the optimizer has run over (optimize.Run,
// level 2) and whose value shapes are all known (ops.InferGraph with
// concrete input shapes), and turns it into a program of kernel launches:
// convolutions through cuDNN where it is there (else a direct-convolution
// kernel), matrix products through cuBLASLt (else a tiled kernel), and the
// rest as the CUDA kernels of package cuda (kernels/*.cu), compiled with
// NVRTC for the GPU's compute capability when the engine is made.
//
// Ops are found in a kernel registry (registry.go) keyed by domain, op
// type, the opsets each implementation covers and input 0's element types
// (nil: any): one table per op
// family, each in its own file (op_conv.go, op_gemm.go, op_pool.go,
// op_elementwise.go, op_reduce.go, op_softmax.go, op_movement.go,
// op_resize.go, op_norm.go, op_attention.go, and the long tail:
// op_groupnorm.go, op_upsample.go, op_lppool.go, op_einsum.go, op_rnn.go,
// op_roi.go, op_unpool.go), whose kernels live in the matching
// kernels/op_*.cu (kernels/nn.cu for the first ones). An entry
// says what it needs of a node before shapes are bound (input count,
// float32 inputs, a check on types, constant inputs and attributes that
// says why not) and how to emit its launches; emit refuses, with
// ErrUnsupported, what it cannot run at the bound shapes. An op without a
// GPU implementation is an error naming the op and the node
// (ErrUnsupported). Supports answers the same question node by node,
// before compiling, from the same registry (the cuda device's
// device.Supporter), compiling the node alone at probe sizes: kiln's
// builder gives the nodes it refuses to the CPU (package engine/partition)
// and compiles the rest as GPU segments. Adding an op to the GPU is one
// entry in its family's table, its emit function and kernel, and a case in
// the tests (TestNewOpsOnGPU's opCases, and TestSupportsLimits for what
// it refuses).
//
// An Engine holds the constants (weights), uploaded once, and the compiled
// kernels; it is shared by its Contexts. A Context holds one stream, one
// device buffer for all activations (offsets planned from the values'
// lifetimes, so that values whose lifetimes do not overlap share memory)
// and page-locked staging buffers for inputs and outputs. Context.Run takes
// and returns host tensors of exactly the shapes the graph was built for;
// the first Run of a context executes the layers one by one, later runs
// replay a CUDA graph captured from the second run.
//
// Every failing CUDA call returns an error naming the call, the CUDA error
// and the layer (node) that was being executed.
//
// By default everything runs in float32: matrix products and convolutions
// in true float32 (no TF32), so the results match the CPU engine's to
// float32 rounding. With Options.FP16 (ExecOptions.Precision "fp16" for a
// plan) float32 values and constants are stored in IEEE binary16: cuDNN
// convolutions in half with float32 accumulation and tensor cores,
// cuBLASLt in half with float32 compute, and the _f16 kernels, which load
// and store half and compute in float32 (reductions included). In half, a
// layout pass (layout.go) stores NHWC the values between convolutions
// whose channels suit tensor cores, with NHWC pooling kernels and
// transposes only where a layer needs NCHW; each such convolution is
// cuDNN's fused call (bias, residual and ReLU in one), the plain NHWC call
// with an epilogue kernel, or kiln's NHWC kernel, as tuning finds fastest
// (Options.NCHW or KILN_CUDA_NCHW=1 keeps NCHW). Context.Run still takes
// and returns float32 NCHW tensors, converted on the GPU.
// Context.DeviceTimes times the layers alone, for benchmarks.
//
// With Options.Tune (ExecOptions.Tune, set by kiln build) the engine times,
// for each convolution and matrix product, every algorithm cuDNN or
// cuBLASLt offers within the workspace limit and kiln's own kernels, each
// replayed as a CUDA graph at the engine's shapes (a plan: its max shapes),
// and keeps the fastest, unless the whole network replays slower with those
// choices than with the libraries' first ones. Times are shared through a
// timing cache (engine/tactic, keyed by the GPU's fingerprint and the
// layer's signature); a plan keeps the choices in its header's tactic
// table (by name, Tactic.name, with the layer signature), which loading
// hands back through device.ExecOptions.Tactics and applies without timing
// (older plans' "cuda.tactics" section is read the same way). Tuning then times every other
// layer that launches something the same way (not cached: nothing to
// choose), so that Engine.Layers gives each layer its device time beside
// its tactic (the library algorithm, or the kernels), precision and
// workspace. A compiled plan's device.LayersBlob section carries that table
// and the device memory (weights, and per context the arena and the
// workspace, at the largest shapes) to the plan's header, which kiln
// inspect shows.
package gpuexec
