package gpuexec

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// twoCPUSegmentsNet is image[2,3,8,8] -> Conv -> Tanh -> Neg -> Conv ->
// Abs -> Neg -> Tanh -> Conv -> "y", with Tanh, Neg and Abs taken from the
// GPU (WithoutKernel): two CPU segments between three GPU segments, the
// first with one intermediate (2x4x8x8), the second with two live at once
// (2x6x8x8 each), each passing one tensor on to a GPU segment.
func twoCPUSegmentsNet(t *testing.T) *ir.Graph {
	t.Helper()
	for _, op := range []string{"Tanh", "Neg", "Abs"} {
		WithoutKernel(t, op)
	}
	w := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(i%7)/7 - 0.5
		}
		return x
	}
	b := ir.NewBuilder("two_cpu", 17)
	h := b.Input("image", tensor.Float32, ir.D(2), ir.D(3), ir.D(8), ir.D(8))
	cin := 3
	for i, c := range []int{4, 6, 2} {
		h = b.Op("Conv", []*ir.Value{h, b.Const(fmt.Sprintf("w%d", i), w(c, cin, 1, 1))}, ir.IntsAttr("kernel_shape", 1, 1))
		cin = c
		cpu := [][]string{{"Tanh", "Neg"}, {"Abs", "Neg", "Tanh"}, nil}[i]
		for _, op := range cpu {
			h = b.Op(op, []*ir.Value{h})
		}
	}
	b.Output(h, "y")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestHostArenaFake partitions a graph with two CPU segments for the cuda
// device against the fake CUDA libraries: a context of the program keeps
// the CPU segments' activations and the tensors they pass to the GPU
// segments in one host arena, the most they take at once instead of the
// sum they took apart, run after run. The fakes compute
// nothing, so only the output's shape is checked here: engine/partition's
// TestHostArena checks the values, on a fake device that computes.
func TestHostArenaFake(t *testing.T) {
	t.Setenv(cuda.EnvLibPath, fakeLibs(t))
	g := twoCPUSegmentsNet(t)
	prog, r, err := partition.Compile(g, Device{}, device.ExecOptions{}, partition.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if len(r.Segments) != 5 {
		t.Fatalf("%s: want 5 segments (cuda, CPU, cuda, CPU, cuda)", r.Summary())
	}
	c, err := prog.(device.Contexts).NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for run := range 3 {
		in := map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 2, 3, 8, 8)}
		for i := range in["image"].Float32s() {
			in["image"].Float32s()[i] = float32((i*7+run)%11) / 11
		}
		got, err := c.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if y := got["y"]; y == nil || !slices.Equal(y.Shape, []int{2, 2, 8, 8}) {
			t.Fatalf("run %d: y %v, want 2x2x8x8", run, y)
		}
		shared, apart, ok := partition.HostArena(c)
		if !ok {
			t.Fatalf("context %T is not a partitioned program's", c)
		}
		// the first CPU segment: a 2048-byte arena and 2048 bytes passed
		// on; the second: 6144 and 3072; at most 9216 at once (the
		// second's), 13312 apart
		if shared != 9216 || apart != 13312 {
			t.Errorf("run %d: host arena %d bytes for %d apart; want 9216 for 13312", run, shared, apart)
		}
		if run == 0 {
			t.Logf("CPU segments' arenas and tensors passed on: %d bytes apart, %d in one host arena; context %d bytes in all", apart, shared, c.ArenaBytes())
		}
	}
}

// TestHostArenaOnGPU is TestHostArenaFake on a GPU, where the device
// segments compute: the context's outputs match the CPU engine's (float32
// tolerances) run after run, with the CPU segments' activations and the
// tensors they pass on in one host arena of 9216 bytes (13312 apart).
func TestHostArenaOnGPU(t *testing.T) {
	needGPU(t)
	g := twoCPUSegmentsNet(t)
	ref, err := engine.New(g.Clone())
	if err != nil {
		t.Fatal(err)
	}
	prog, r, err := partition.Compile(g, Device{}, device.ExecOptions{}, partition.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	t.Log(r.Summary())
	c, err := prog.(device.Contexts).NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for run := range 4 {
		x := tensor.New(tensor.Float32, 2, 3, 8, 8)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32((i*7+run)%11)/11 - 0.4
		}
		in := map[string]*tensor.Tensor{"image": x}
		got, err := c.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		compareFloat32(t, fmt.Sprintf("run %d: y", run), got["y"], want["y"], rtol, atol)
		shared, apart, _ := partition.HostArena(c)
		if shared != 9216 || apart != 13312 {
			t.Errorf("run %d: host arena %d bytes for %d apart; want 9216 for 13312", run, shared, apart)
		}
	}
}
