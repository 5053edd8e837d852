package build_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// partialGPU is an executor device without CumSum (a device.Supporter):
// the builder gives CumSum to the CPU. Its programs run on the CPU engine
// and carry a section naming the nodes they were compiled with, which a
// plan must give back to the same segment.
type partialGPU struct{}

func (partialGPU) Name() string { return "partialgpu" }

func (partialGPU) Fingerprint() (device.Fingerprint, error) {
	return device.Fingerprint{"device": "partialgpu"}, nil
}

func (partialGPU) Supports(n *ir.Node, g *ir.Graph) error {
	if n.OpType == "CumSum" {
		return fmt.Errorf("%w: op CumSum has no partialgpu implementation", device.ErrUnsupported)
	}
	return nil
}

func (partialGPU) Compile(g *ir.Graph, o device.ExecOptions) (device.Program, error) {
	var nodes []string
	for _, n := range g.Nodes {
		if n.OpType == "CumSum" {
			return nil, errors.New("partialgpu: asked to compile CumSum")
		}
		nodes = append(nodes, n.Name)
	}
	section := strings.Join(nodes, ",")
	if o.Blobs != nil && string(o.Blobs["kernels"]) != section {
		return nil, fmt.Errorf("partialgpu: the plan gave sections %q for nodes %s", o.Blobs, section)
	}
	// "tuned" stands for what a device tunes at a profile's shapes: a
	// plan must give each profile its own
	tuned := fmt.Sprint(o.MaxShapes)
	if t, ok := o.Blobs["tuned"]; ok && string(t) != tuned {
		return nil, fmt.Errorf("partialgpu: the plan gave the section tuned for %s to a profile of %s", t, tuned)
	}
	e, err := engine.New(g)
	if err != nil {
		return nil, err
	}
	return partialProgram{e, section, tuned}, nil
}

type partialProgram struct {
	e              *engine.Engine
	section, tuned string
}

func (p partialProgram) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return p.e.Run(ctx, in)
}
func (p partialProgram) Close() error { return nil }
func (p partialProgram) Blobs() map[string][]byte {
	return map[string][]byte{"kernels": []byte(p.section), "tuned": []byte(p.tuned)}
}

// partialDevices are kiln's devices and partialGPU: the set the tests give
// the builder and the loader.
var partialDevices = append(devices.All(), partialGPU{})

// cumsumModel is image[batch,3,8,8] -> Conv -> Relu -> CumSum(axis 3) ->
// Conv -> "y": a network with an op in the middle the partial device lacks.
func cumsumModel(t *testing.T) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 5))
	randT := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(rng.Float64()*2 - 1)
		}
		return x
	}
	b := ir.NewBuilder("cumsum", 17)
	x := b.Input("image", tensor.Float32, ir.S("batch"), ir.D(3), ir.D(8), ir.D(8))
	h := b.Op("Conv", []*ir.Value{x, b.Const("w1", randT(4, 3, 3, 3)), b.Const("b1", randT(4))},
		ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("pads", 1, 1, 1, 1))
	h = b.Op("Relu", []*ir.Value{h})
	h = b.Op("CumSum", []*ir.Value{h, b.Const("axis", tensor.FromInt64([]int64{3}, 1))})
	h = b.Op("Conv", []*ir.Value{h, b.Const("w2", randT(2, 4, 1, 1))}, ir.IntsAttr("kernel_shape", 1, 1))
	b.Output(h, "y")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

// TestBuildFallback builds for a device without CumSum: the log names the
// layer and why it falls back and sums up, the plan keeps each device
// segment's sections under its prefix, the plan loads with the same
// partition and matches the CPU; StrictDevice refuses the build.
func TestBuildFallback(t *testing.T) {
	model := cumsumModel(t)
	res, err := build.BuildBytes(context.Background(), "cumsum", model, build.Options{Device: "partialgpu", Devices: partialDevices})
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(res.Header.Notes, "\n")
	t.Logf("build notes:\n%s", notes)
	for _, want := range []string{"(CumSum) runs on the CPU: device: unsupported: op CumSum has no partialgpu implementation",
		"2 of 3 layers on partialgpu, 1 on the CPU (CumSum x1) in 3 segments"} {
		if !strings.Contains(notes, want) {
			t.Errorf("build notes do not say %q:\n%s", want, notes)
		}
	}
	byDevice := map[string]int{}
	for _, l := range res.Header.Layers {
		byDevice[l.Device]++
		if (l.Device == "cpu") != (l.Op == "CumSum") {
			t.Errorf("layer %s (%s) on %q", l.Name, l.Op, l.Device)
		}
		if l.Device == "cpu" && (l.Precision != "fp32" || !strings.Contains(l.Fallback, "no partialgpu implementation")) {
			t.Errorf("fallback layer %s: precision %s, reason %q", l.Name, l.Precision, l.Fallback)
		}
	}
	if byDevice["cpu"] != 1 || byDevice["partialgpu"] != 2 {
		t.Errorf("layers by device %v, want 2 on partialgpu and 1 on the CPU", byDevice)
	}
	var names []string
	for _, b := range res.Blobs {
		names = append(names, b.Name)
	}
	if !slices.Equal(names, []string{partition.SegmentPrefix(0) + "kernels", partition.SegmentPrefix(0) + "tuned",
		partition.SegmentPrefix(2) + "kernels", partition.SegmentPrefix(2) + "tuned"}) {
		t.Errorf("plan sections %v", names)
	}
	path := filepath.Join(t.TempDir(), "cumsum.plan")
	err = res.WriteFile(path)
	res.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := kiln.LoadWith(path, kiln.LoadOptions{Devices: partialDevices})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ref, err := kiln.LoadBytes(model)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	for _, batch := range []int{1, 3} {
		x := tensor.New(tensor.Float32, batch, 3, 8, 8)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(i%17)/8 - 1
		}
		in := map[string]*tensor.Tensor{"image": x}
		got, err := m.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		g, w := got["y"].Float32s(), want["y"].Float32s()
		if len(g) != len(w) {
			t.Fatalf("batch %d: %d outputs, want %d", batch, len(g), len(w))
		}
		for i := range w {
			if d := g[i] - w[i]; d > 1e-4 || d < -1e-4 {
				t.Fatalf("batch %d: y[%d] = %v, want %v", batch, i, g[i], w[i])
			}
		}
	}

	_, err = build.BuildBytes(context.Background(), "cumsum", model, build.Options{Device: "partialgpu", Devices: partialDevices, StrictDevice: true})
	if !errors.Is(err, partition.ErrFallback) || !strings.Contains(err.Error(), "(CumSum): device: unsupported") {
		t.Errorf("StrictDevice: %v, want partition.ErrFallback naming the CumSum layer", err)
	}
}

// TestBuildProfileBlobs builds for a device whose sections depend on the
// profile (tactics tuned at its shapes) with two profiles: the plan keeps
// each profile's own sections, and the loaded model gives each profile's
// program its own (the device refuses another profile's), and runs in both.
func TestBuildProfileBlobs(t *testing.T) {
	model := cumsumModel(t)
	var profiles []engine.Profile
	for _, spec := range []string{"image:1x3x8x8,2x3x8x8,4x3x8x8", "image:5x3x8x8,6x3x8x8,8x3x8x8"} {
		r, err := engine.ParseRange(spec)
		if err != nil {
			t.Fatal(err)
		}
		profiles = append(profiles, engine.Profile{Name: fmt.Sprint("p", len(profiles)), Inputs: []engine.Range{r}})
	}
	res, err := build.BuildBytes(context.Background(), "cumsum", model, build.Options{Device: "partialgpu", Devices: partialDevices, Profiles: profiles})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range res.Blobs {
		names = append(names, b.Name)
	}
	want := []string{"profile1/" + partition.SegmentPrefix(0) + "tuned", "profile1/" + partition.SegmentPrefix(2) + "tuned",
		partition.SegmentPrefix(0) + "kernels", partition.SegmentPrefix(0) + "tuned",
		partition.SegmentPrefix(2) + "kernels", partition.SegmentPrefix(2) + "tuned"}
	if !slices.Equal(names, want) {
		t.Errorf("plan sections %v, want %v (the kernels, alike in both profiles, once)", names, want)
	}
	path := filepath.Join(t.TempDir(), "cumsum.plan")
	err = res.WriteFile(path)
	res.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := kiln.LoadWith(path, kiln.LoadOptions{Devices: partialDevices})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, batch := range []int{2, 7} {
		x := tensor.New(tensor.Float32, batch, 3, 8, 8)
		got, err := m.Run(context.Background(), map[string]*tensor.Tensor{"image": x})
		if err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		if got["y"].Shape[0] != batch {
			t.Errorf("batch %d: y %v", batch, got["y"].Shape)
		}
	}
}
