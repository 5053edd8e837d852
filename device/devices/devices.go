package devices

import (
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cpu"
)

// All returns kiln's devices in the partitioner's order: the GPU (when
// built in), then the CPU, last. Each call returns a new slice, which the
// caller may extend (a test adding its own device) without changing what
// others see.
func All() device.Set {
	return append(gpus(), cpu.Device{})
}

// Lookup finds a device of All by name ("cpu", "cuda", "cuda:1"), with the
// unit's ordinal; see device.Set.Lookup.
func Lookup(name string) (device.Device, int, error) {
	return All().Lookup(name)
}

// Or returns s, or All when s is empty: what the options that take a
// device set (build.Options.Devices, kiln.LoadOptions.Devices) use.
func Or(s device.Set) device.Set {
	if len(s) == 0 {
		return All()
	}
	return s
}
