package gpuexec

import (
	"context"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
)

// TestOptLevelSearchFake: kiln build --device cuda --opt-level 3 (and
// above) times cuDNN's graph-API engines beside the legacy calls, so the
// tuning of an FP16 plan measures more candidates than at the default
// level 2, which leaves them out (against the fake libraries, whose
// backend API offers engine configurations).
func TestOptLevelSearchFake(t *testing.T) {
	dir := fakeLibs(t)
	t.Setenv(cuda.EnvLibPath, dir)
	t.Setenv(EnvGraphConv, "")
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 1, 1)
	g := optimizedGraph(t, path, in)
	measured := map[int]int{}
	for _, level := range []int{2, 3} {
		prog, err := compilePlan(g, device.ExecOptions{Precision: "fp16", Tune: true, OptLevel: level})
		if err != nil {
			t.Fatalf("level %d: %v", level, err)
		}
		measured[level] = prog.(*planProgram).measured
		if _, err := prog.Run(context.Background(), in); err != nil {
			t.Fatalf("level %d: %v", level, err)
		}
		prog.Close()
	}
	if measured[3] <= measured[2] {
		t.Errorf("timings measured: %d at --opt-level 3, %d at 2; want more at 3 (graph engines)", measured[3], measured[2])
	}
	t.Logf("timings measured: level 2 %d, level 3 %d", measured[2], measured[3])
}
