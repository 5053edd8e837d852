package build_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// convlessGPU is an executor device without convolutions: the builder
// gives them to the CPU, whose convolutions have several implementations
// to time.
type convlessGPU struct{}

func (convlessGPU) Name() string { return "convlessgpu" }
func (convlessGPU) Fingerprint() (device.Fingerprint, error) {
	return device.Fingerprint{"device": "convlessgpu"}, nil
}

func (convlessGPU) Supports(n *ir.Node, g *ir.Graph) error {
	if strings.Contains(n.OpType, "Conv") {
		return fmt.Errorf("%w: op %s has no convlessgpu implementation", device.ErrUnsupported, n.OpType)
	}
	return nil
}

func (convlessGPU) Compile(g *ir.Graph, o device.ExecOptions) (device.Program, error) {
	for _, n := range g.Nodes {
		if strings.Contains(n.OpType, "Conv") {
			return nil, errors.New("convlessgpu: asked to compile " + n.OpType)
		}
	}
	e, err := engine.New(g)
	if err != nil {
		return nil, err
	}
	return partialProgram{e, "", ""}, nil
}

// TestBuildTimesCPUSegments: a build for a device that leaves its
// convolutions to the CPU times them as a CPU build would (one tactic
// selection, one timing cache): the log says so, the plan keeps the
// choices in its header's tactic table (no section), the timing cache holds the CPU's
// measurements, and the plan loads and matches the CPU; with --no-timing
// nothing is timed.
func TestBuildTimesCPUSegments(t *testing.T) {
	model := cumsumModel(t)
	set := append(devices.All(), convlessGPU{})
	cachePath := filepath.Join(t.TempDir(), "kiln.timing")
	res, err := build.BuildBytes(context.Background(), "cumsum", model, build.Options{Device: "convlessgpu", Devices: set, TimingCache: cachePath})
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(res.Header.Notes, "\n")
	if !strings.Contains(notes, "tactics of the CPU layers in segment") {
		t.Errorf("the build log does not mention the CPU segments' tactics:\n%s", notes)
	}
	for _, b := range res.Blobs {
		if strings.HasSuffix(b.Name, partition.CPUTacticsBlob) {
			t.Errorf("the plan has section %s: the CPU layers' choices belong in the header", b.Name)
		}
	}
	// The plan's tactic table shows how each timed fallback layer runs
	// (what kiln inspect prints).
	if len(res.Header.Tactics) != 1 {
		t.Fatalf("%d tactic sets, want 1", len(res.Header.Tactics))
	}
	shown := map[string]bool{}
	for _, tt := range res.Header.Tactics[0] {
		if tt.Tactic == "" || tt.Time <= 0 {
			t.Errorf("tactic entry %+v", tt)
		}
		shown[tt.Layer] = true
	}
	convs := 0
	for _, l := range res.Header.Layers {
		if strings.Contains(l.Op, "Conv") {
			convs++
			if l.Device != "cpu" || !shown[l.Name] {
				t.Errorf("layer %s (%s) on %q, tactic shown %v", l.Name, l.Op, l.Device, shown[l.Name])
			}
		}
	}
	if convs == 0 {
		t.Fatal("no convolution layer in the plan")
	}
	// What a load hands back to the CPU segments: each timed layer's
	// tactic by the name the CPU kernels parse.
	handed := map[string]string{}
	for _, dt := range res.Header.DeviceTactics(0) {
		handed[dt.Layer] = dt.Tactic
		if dt.Sig != "" {
			t.Errorf("a CPU layer's choice %+v with a signature", dt)
		}
	}
	for _, tt := range res.Header.Tactics[0] {
		if handed[tt.Layer] != tt.Tactic {
			t.Errorf("layer %s: a load hands back %q, the header shows %q", tt.Layer, handed[tt.Layer], tt.Tactic)
		}
	}
	cpuFP, err := devices.All()[len(devices.All())-1].Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cachePath)
	if err != nil || !strings.Contains(string(b), "isa="+cpuFP["isa"]) || !strings.Contains(string(b), "FusedConv") {
		t.Fatalf("timing cache (%v):\n%s\nwant the CPU's convolution timings", err, b)
	}
	path := filepath.Join(t.TempDir(), "cumsum.plan")
	err = res.WriteFile(path)
	res.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := kiln.LoadWith(path, kiln.LoadOptions{Devices: set})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ref, err := kiln.LoadBytes(model)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	x := tensor.New(tensor.Float32, 2, 3, 8, 8)
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
	for i, w := range want["y"].Float32s() {
		if d := got["y"].Float32s()[i] - w; d > 1e-4 || d < -1e-4 {
			t.Fatalf("y[%d] = %v, want %v", i, got["y"].Float32s()[i], w)
		}
	}

	res, err = build.BuildBytes(context.Background(), "cumsum", model, build.Options{Device: "convlessgpu", Devices: set, NoTiming: true})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if ts := res.Header.DeviceTactics(0); len(ts) != 0 {
		t.Errorf("--no-timing build has choices %v", ts)
	}
}
