package optimize

import (
	"slices"
	"strings"

	"github.com/kilnai/kiln/ir"
)

// DevicePass is implemented by passes that write fused operators only some
// devices have kernels for (kiln::SkipLayerNormalization and
// kiln::MultiHeadAttention run on the CPU only): RunFor runs them when the
// graph is optimized for one of those devices, and Passes, Run and the
// passes' callers that name no device leave them out, so that a graph
// optimized for another device keeps operators that device runs.
type DevicePass interface {
	Pass
	// Devices lists the device kinds ("cpu", "cuda") that run what the
	// pass writes.
	Devices() []string
}

// deviceKind is the kind of a device name: "cuda" for "cuda:1".
func deviceKind(device string) string {
	kind, _, _ := strings.Cut(device, ":")
	if kind == "" {
		return "cpu"
	}
	return kind
}

// forDevice reports whether pass p runs when optimizing for device: every
// pass that is not a DevicePass, and those that list the device's kind.
func forDevice(p Pass, device string) bool {
	dp, ok := p.(DevicePass)
	return !ok || device != "" && slices.Contains(dp.Devices(), deviceKind(device))
}

// PassesFor is Passes for a graph that device ("cpu", "cuda", "cuda:1")
// runs: the passes of the level, those of DevicePass among them only where
// they list the device's kind.
func PassesFor(level int, device string) []Pass {
	var out []Pass
	for _, p := range passesAll(level) {
		if forDevice(p, device) {
			out = append(out, p)
		}
	}
	return out
}

// RunFor is Run for a graph that device runs (see PassesFor): the builder
// calls it with the device it builds for.
func RunFor(g *ir.Graph, level int, device string, log func(pass, msg string)) error {
	return RunPasses(g, PassesFor(level, device), log)
}
