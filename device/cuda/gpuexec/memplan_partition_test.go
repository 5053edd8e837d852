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
func twoCPUSegmentsNet(t testing.TB) *ir.Graph {
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
// the CPU segments' activations and the tensors every segment passes on
// (the GPU segments' too, copied from their pinned buffers: each keeps
// its slot only if it is written there) in one host arena, and the GPU
// segments' activations and workspaces in one device allocation, the
// most they take at once instead of the sum they took apart, run after
// run. The fakes compute nothing, so only the output's shape is checked
// here: engine/partition's TestHostArena and TestDeviceSegmentsMemory
// check the values, on a fake device that computes, and
// TestHostArenaOnGPU on a GPU.
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
		// host: the first GPU segment passes on 2048 bytes (live in
		// segments 0-1), the first CPU segment a 2048-byte arena and
		// 2048 bytes passed on (1-2), the second GPU segment 3072 (2-3),
		// the second CPU segment 6144 and 3072 (3-4): at most 12288 at
		// once (segment 3), 18432 apart
		if shared != 12288 || apart != 18432 {
			t.Errorf("run %d: host arena %d bytes for %d apart; want 12288 for 18432", run, shared, apart)
		}
		// device: each GPU segment's arena (its input and output,
		// 256-aligned: 1536+2048, 2048+3072, 3072+1024) and the fake
		// cuDNN's 4096-byte workspace: 7680, 9216 and 8192 apart, the
		// largest shared
		dshared, dapart, _ := partition.DeviceArena(c)
		if dshared != 9216 || dapart != 25088 {
			t.Errorf("run %d: device arena %d bytes for %d apart; want 9216 for 25088", run, dshared, dapart)
		}
		if all := c.ArenaBytes(); all != shared+dshared {
			t.Errorf("run %d: context holds %d bytes, want %d host + %d device", run, all, shared, dshared)
		}
		if run == 0 {
			t.Logf("host arena %d bytes (%d apart), device arena %d bytes (%d apart)", shared, apart, dshared, dapart)
		}
	}
}

// TestHostArenaOnGPU is TestHostArenaFake on a GPU, where the device
// segments compute: the context's outputs match the CPU engine's (float32
// tolerances) run after run, with the CPU segments' activations and the
// tensors every segment passes on in one host arena of 12288 bytes (18432
// apart), and the GPU segments' arenas in one device allocation, less
// than they hold apart (the workspaces are cuDNN's choice: no exact
// figure).
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
		if shared != 12288 || apart != 18432 {
			t.Errorf("run %d: host arena %d bytes for %d apart; want 12288 for 18432", run, shared, apart)
		}
		dshared, dapart, _ := partition.DeviceArena(c)
		if dshared <= 0 || dshared >= dapart {
			t.Errorf("run %d: device arena %d bytes for %d apart; want one allocation, less than apart", run, dshared, dapart)
		}
		if run == 0 {
			t.Logf("host arena %d bytes (%d apart), device arena %d bytes (%d apart)", shared, apart, dshared, dapart)
		}
	}
}
