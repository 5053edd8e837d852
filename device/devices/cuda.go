//go:build !kiln_nocuda

package devices

import (
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda/gpuexec"
)

// gpus are the GPU devices built in: the cuda device with its executor.
func gpus() device.Set { return device.Set{gpuexec.Device{}} }
