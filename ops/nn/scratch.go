package nn

import (
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ops"
)

// The CPU kernels of this package take their scratch memory from
// device/cpu, which measures it for the builder's workspace limit.
func init() { ops.ScratchMeter = cpu.MeasureScratch }
