package arena

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeaf: package arena imports nothing of kiln's, so that every device
// package may plan its memory with it (no device package may import the
// builder, the optimizer or the ONNX front end; see device/devices'
// TestImports). It asks the go command and skips without it.
func TestLeaf(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("needs the go command: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, "github.com/kilnai/kiln/") && d != "github.com/kilnai/kiln/engine/arena" {
			t.Errorf("package arena depends on %s", d)
		}
	}
}
