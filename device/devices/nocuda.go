//go:build kiln_nocuda

package devices

import "github.com/kilnai/kiln/device"

// gpus are the GPU devices built in: none with the tag kiln_nocuda.
func gpus() device.Set { return nil }
