package gpuexec

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// twoCPUSegmentsNet is image[2,3,8,8] -> Conv -> Einsum x2 -> Conv ->
// Einsum x2 -> Conv -> "y", each Einsum "nchw,w,w,w->nchw" (four operands:
// the GPU's takes at most three, so they run on the CPU): two CPU
// segments, each with an intermediate, between three GPU segments.
func twoCPUSegmentsNet(t *testing.T) *ir.Graph {
	t.Helper()
	w := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(i%7)/7 - 0.5
		}
		return x
	}
	b := ir.NewBuilder("two_cpu", 17)
	h := b.Input("image", tensor.Float32, ir.D(2), ir.D(3), ir.D(8), ir.D(8))
	scales := []*ir.Value{b.Const("s1", w(8)), b.Const("s2", w(8)), b.Const("s3", w(8))}
	cin := 3
	for i, c := range []int{4, 6, 2} {
		h = b.Op("Conv", []*ir.Value{h, b.Const(fmt.Sprintf("w%d", i), w(c, cin, 1, 1))}, ir.IntsAttr("kernel_shape", 1, 1))
		cin = c
		if i == 2 {
			break
		}
		for range 2 {
			h = b.Op("Einsum", append([]*ir.Value{h}, scales...), ir.StringAttr("equation", "nchw,w,w,w->nchw"))
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
// the CPU segments' activations in one host arena, the largest segment's,
// instead of the sum they took apart, run after run. The fakes compute
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
		// each CPU segment: one 2x4x8x8 or 2x6x8x8 float32 intermediate
		if shared != 2*6*8*8*4 || apart != 2*4*8*8*4+2*6*8*8*4 {
			t.Errorf("run %d: host arena %d bytes for CPU arenas of %d apart; want %d for %d", run, shared, apart, 2*6*8*8*4, 2*(4+6)*8*8*4)
		}
		if run == 0 {
			t.Logf("CPU segments' arenas: %d bytes apart, %d in one host arena; context %d bytes in all", apart, shared, c.ArenaBytes())
		}
	}
}
