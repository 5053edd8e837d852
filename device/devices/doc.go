// Package devices is kiln's set of devices: the GPU (package gpuexec's
// cuda device, which compiles graphs into captured CUDA graphs) first, the
// CPU last, the order in which the builder's partitioner prefers them. It
// is the one package that imports the device packages: the builder, the
// plan loader, the server and the commands find a device by name here (or
// in a device.Set their caller gives them), so no device registers itself
// in init and no program needs a blank import for a device to be there. A
// library user of kiln.Load on a CUDA plan gets the GPU executor by
// importing package kiln alone.
//
// Building with the tag kiln_nocuda leaves the GPU out (a binary without
// the CUDA executor: smaller, and asked for cuda it answers that the
// device is unknown).
package devices
