package cpu

import (
	"runtime"

	"github.com/kilnai/kiln/device"
)

// Device is the "cpu" device of the builder: kernels in this package. Package
// devices lists it, last (the partitioner's fallback for every node).
type Device struct{}

var _ device.Device = Device{}

// Name returns "cpu".
func (Device) Name() string { return "cpu" }

// Fingerprint names what a CPU engine depends on: the architecture and the
// instruction set of the kernels in use (and, through extraFeatures, the
// optional features other kernels were chosen for). A plan tuned for AVX-512
// does not load where only AVX2 runs.
func (Device) Fingerprint() (device.Fingerprint, error) {
	f := device.Fingerprint{"device": "cpu", "arch": runtime.GOARCH, "isa": ISA()}
	for k, v := range extraFeatures() {
		f[k] = v
	}
	return f, nil
}

// extraFeatureFuncs add fingerprint entries for optional kernels (the INT8
// kernels add "int8"). Each is registered from an init function.
var extraFeatureFuncs []func() (key, value string)

func extraFeatures() map[string]string {
	m := map[string]string{}
	for _, f := range extraFeatureFuncs {
		k, v := f()
		m[k] = v
	}
	return m
}
