package gpuexec

// What the external tests (package gpuexec_test: those that go through
// package kiln, the builder or the conformance runner, which import this
// package) need from the internal ones.

// FakeLibs is fakeLibs: a directory with the fake CUDA libraries and this
// machine's NVRTC, or the test skips.
var FakeLibs = fakeLibs
