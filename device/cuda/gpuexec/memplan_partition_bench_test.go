package gpuexec

import (
	"context"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/tensor"
)

// BenchmarkHostArenaFake runs a context of TestHostArenaFake's
// partitioned program (cuda, CPU, cuda, CPU, cuda segments) against the
// fake CUDA libraries and reports the host bytes and allocations per run,
// and the context's memory (ArenaBytes: its host arena and the device
// arenas). The fakes compute nothing: the time is the executor's and the
// CPU segments', not a GPU's.
func BenchmarkHostArenaFake(b *testing.B) {
	b.Setenv(cuda.EnvLibPath, fakeLibs(b))
	g := twoCPUSegmentsNet(b)
	prog, _, err := partition.Compile(g, Device{}, device.ExecOptions{}, partition.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	c, err := prog.(device.Contexts).NewContext()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	in := map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 2, 3, 8, 8)}
	for i := range in["image"].Float32s() {
		in["image"].Float32s()[i] = float32(i%11) / 11
	}
	for range 3 {
		if _, err := c.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(c.ArenaBytes()), "ArenaBytes")
}
