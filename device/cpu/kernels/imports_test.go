package kernels

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports checks the direction of the dependencies between the op
// definitions and the CPU device: package ops depends on no device, nor
// do ops/math, ops/shape, ops/image and ops/norm (their loops run on
// internal/parallel's pool); no package under ops depends on this registry (the fast kernels reach the
// ops, never the reverse); the registry depends on none of the builder,
// the optimizer, the plan format or the ONNX front end. It asks the go
// command and skips without it.
func TestImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("needs the go command: %v", err)
	}
	const mod = "github.com/kilnai/kiln/"
	deps := func(pkg string) []string {
		t.Helper()
		out, err := exec.Command(goTool, "list", "-deps", mod+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	noDevice := func(d string) bool { return strings.HasPrefix(d, "device/") }
	for _, tc := range []struct {
		pkg    string
		refuse func(dep string) bool
		why    string
	}{
		{"ops", noDevice, "a device"},
		{"ops/math", noDevice, "a device"},
		{"ops/shape", noDevice, "a device"},
		{"ops/image", noDevice, "a device"},
		{"ops/norm", noDevice, "a device"},
		{"internal/parallel", noDevice, "a device"},
		{"ops/...", func(d string) bool { return d == "device/cpu/kernels" }, "the CPU registry"},
		{"device/cpu/kernels", func(d string) bool {
			switch d {
			case "optimize", "onnx", "quant", "engine", "engine/build", "engine/plan", "engine/partition", "engine/tactic":
				return true
			}
			return false
		}, "the builder, the optimizer or the front end"},
	} {
		for _, d := range deps(tc.pkg) {
			if d := strings.TrimPrefix(d, mod); tc.refuse(d) {
				t.Errorf("%s depends on %s (%s)", tc.pkg, d, tc.why)
			}
		}
	}
}
