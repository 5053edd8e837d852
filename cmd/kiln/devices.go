package main

import (
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
)

// deviceSet is where the commands look up a device (--device, a plan's
// device): kiln's own, the GPU executor included (package devices). Tests
// add a device of their own with withDevice.
var deviceSet device.Set = devices.All()
