package devices_test

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
)

// TestAll: kiln's devices are the GPU executor's cuda device and the CPU,
// last; each call gives a set of its own.
func TestAll(t *testing.T) {
	all := devices.All()
	if got := strings.Join(all.Names(), ","); got != "cuda,cpu" {
		t.Fatalf("All() = %s, want cuda,cpu (the CPU last)", got)
	}
	if _, ok := all[0].(device.Executor); !ok {
		t.Error("the cuda device of All runs no graph: it must be the GPU executor's")
	}
	if _, ok := all[0].(device.Supporter); !ok {
		t.Error("the cuda device of All does not say which nodes it runs")
	}
	_ = append(all[:1], all[0]) // a caller changing its set
	if got := strings.Join(devices.All().Names(), ","); got != "cuda,cpu" {
		t.Errorf("All() after a caller changed its copy = %s", got)
	}
	for _, tt := range []struct {
		name, want string
		ord        int
	}{{"cpu", "cpu", 0}, {"cuda", "cuda", 0}, {"cuda:3", "cuda", 3}} {
		d, ord, err := devices.Lookup(tt.name)
		if err != nil || d.Name() != tt.want || ord != tt.ord {
			t.Errorf("Lookup(%q) = %v, %d, %v", tt.name, d, ord, err)
		}
	}
	if _, _, err := devices.Lookup("tpu"); !errors.Is(err, device.ErrUnknown) || !strings.Contains(err.Error(), "cuda, cpu") {
		t.Errorf("Lookup(tpu) = %v, want ErrUnknown listing cuda, cpu", err)
	}
	if s := devices.Or(nil); len(s) != 2 {
		t.Errorf("Or(nil) = %v, want All", s.Names())
	}
	own := device.Set{all[1]}
	if s := devices.Or(own); len(s) != 1 {
		t.Errorf("Or(own) = %v, want own", s.Names())
	}
}

// TestImports checks the dependencies that make devices explicit: package
// kiln (what a library user imports) depends on the GPU executor, so
// kiln.Load of a CUDA plan needs no blank import; no device package
// depends on the optimizer, the ONNX front end, the builder or the plan
// format. It asks the go command and skips without it.
func TestImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("needs the go command: %v", err)
	}
	deps := func(pkg string, tags ...string) []string {
		t.Helper()
		args := []string{"list", "-deps"}
		if len(tags) > 0 {
			args = append(args, "-tags", strings.Join(tags, ","))
		}
		out, err := exec.Command(goTool, append(args, pkg)...).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	const mod = "github.com/kilnai/kiln"
	if d := deps(mod); !slices.Contains(d, mod+"/device/cuda/gpuexec") || !slices.Contains(d, mod+"/device/cpu") {
		t.Errorf("package kiln does not depend on the GPU executor and the CPU device")
	}
	if d := deps(mod+"/device/devices", "kiln_nocuda"); slices.Contains(d, mod+"/device/cuda") {
		t.Errorf("with the tag kiln_nocuda, package devices still depends on device/cuda")
	}
	for _, pkg := range []string{"cpu", "cuda", "cuda/gpuexec", "devices"} {
		for _, d := range deps(mod + "/device/" + pkg) {
			switch strings.TrimPrefix(d, mod+"/") {
			case "optimize", "onnx", "engine/build", "engine/plan", "quant", "engine/partition":
				t.Errorf("device/%s depends on %s", pkg, d)
			}
		}
	}
}
