package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/tensor"
)

func exampleModel(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(p, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildExample(t *testing.T) {
	var log []string
	res, err := Build(context.Background(), exampleModel(t), Options{OptLevel: 2, Log: func(m string) { log = append(log, m) }})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	h := res.Header
	if h.Device != "cpu" || h.Precision != FP32 || h.Fingerprint["isa"] == "" || h.Model.SHA256 == "" {
		t.Errorf("header: %+v", h)
	}
	if h.Stats.NodesBefore <= h.Stats.NodesAfter || len(h.Layers) != h.Stats.NodesAfter || h.Stats.WeightBytes == 0 {
		t.Errorf("stats %+v with %d layers", h.Stats, len(h.Layers))
	}
	if len(h.Profiles) != 1 || h.Profiles[0].Inputs[0].Max[0] != 32 {
		t.Errorf("default profile: %+v", h.Profiles)
	}
	if len(log) == 0 || !strings.Contains(strings.Join(log, "\n"), "default profile") {
		t.Errorf("log does not show the default profile: %q", log)
	}
	fused := 0
	for _, l := range h.Layers {
		if l.Op == "kiln::FusedConv" && len(l.Fused) > 0 {
			fused++
		}
	}
	if fused == 0 {
		t.Errorf("no layer records its fusions: %+v", h.Layers)
	}
	path := filepath.Join(t.TempDir(), "m.plan")
	if err := res.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	p, err := plan.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.CheckDevice(); err != nil {
		t.Fatal(err)
	}
}

func TestBuildOptionErrors(t *testing.T) {
	model := exampleModel(t)
	bad := []struct {
		name string
		o    Options
		want string
	}{
		{"precision", Options{Precision: "fp8"}, "precision"},
		{"level", Options{OptLevel: 6}, "optimization level"},
		{"device", Options{Device: "tpu"}, "unknown device"},
		{"int8 without data", Options{Precision: INT8}, "calibration data"},
		{"calibration without int8", Options{CalibBatches: 3}, "is for --int8"},
		{"cache without int8", Options{Precision: FP16, CalibCache: "x"}, "need --int8"},
		{"method", Options{Precision: INT8, CalibBatches: 2, CalibMethod: "median"}, "calibration method"},
		{"dims", Options{Dims: map[string][3]int{"batch": {4, 2, 8}}}, "min <= opt <= max"},
		{"layer precision", Options{LayerPrecision: map[string]string{"conv": "fp64"}}, "fp64"},
		{"profile input", Options{Profiles: []engine.Profile{{Inputs: []engine.Range{{Input: "x", Min: []int{1}, Opt: []int{1}, Max: []int{1}}}}}}, `no input "x"`},
		{"profile rank", Options{Profiles: []engine.Profile{{Inputs: []engine.Range{{Input: "image", Min: []int{1}, Opt: []int{1}, Max: []int{1}}}}}}, "rank"},
	}
	for _, c := range bad {
		res, err := Build(context.Background(), model, c.o)
		if err == nil {
			res.Close()
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want %q", c.name, err, c.want)
		}
	}
	// Calibration data of the wrong shape.
	calib := filepath.Join(t.TempDir(), "set")
	if err := os.MkdirAll(calib, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(filepath.Join(calib, "input_0.pb"), "image", tensor.New(tensor.Float32, 1, 3, 16, 16)); err != nil {
		t.Fatal(err)
	}
	if res, err := Build(context.Background(), model, Options{Precision: INT8, CalibData: calib}); err == nil {
		res.Close()
		t.Error("calibration data of the wrong shape was accepted")
	} else if !strings.Contains(err.Error(), "input_0.pb") || !strings.Contains(err.Error(), "image") {
		t.Errorf("wrong-shape calibration data: error %q should name the file and the input", err)
	}
	if _, err := Build(context.Background(), filepath.Join(t.TempDir(), "none.onnx"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing model: %v", err)
	}
}

func TestMentionedNodes(t *testing.T) {
	cases := map[string]string{
		"conv1: fused Relu(relu1)":                   "conv1 relu1",
		"folded BatchNormalization(bn) into Conv(c)": "bn c",
		"removed 3 unused initializers":              "",
	}
	for msg, want := range cases {
		if got := strings.Join(mentionedNodes(msg), " "); got != want {
			t.Errorf("mentionedNodes(%q) = %q, want %q", msg, got, want)
		}
	}
}

// TestTimingCache builds twice with one timing cache: the second build
// measures nothing and picks the same tactics.
func TestTimingCache(t *testing.T) {
	model := exampleModel(t)
	cache := filepath.Join(t.TempDir(), "timing.json")
	var first []plan.Tactic
	for round := 0; round < 2; round++ {
		res, err := Build(context.Background(), model, Options{TimingCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		res.Close()
		h := res.Header
		if len(h.Tactics) != 1 || len(h.Tactics[0]) == 0 {
			t.Fatalf("round %d: no tactics chosen: %+v", round, h.Tactics)
		}
		for i, tc := range h.Tactics[0] {
			if round == 0 {
				continue
			}
			if !tc.Cached {
				t.Errorf("second build measured %s again", tc.Layer)
			}
			if tc.Tactic != first[i].Tactic || tc.Layer != first[i].Layer {
				t.Errorf("second build chose %s for %s, first %s for %s", tc.Tactic, tc.Layer, first[i].Tactic, first[i].Layer)
			}
		}
		first = h.Tactics[0]
	}
	if err := os.WriteFile(cache, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(context.Background(), model, Options{TimingCache: cache}); err == nil || !strings.Contains(err.Error(), "timing cache") {
		t.Errorf("corrupt timing cache: %v", err)
	}
}

// TestDefaultShapes checks the opt shapes of the derived profile, which
// kiln run gives random inputs: a symbolic first dimension 1, a named one
// its --dim opt, any other DefaultDimOpt; static inputs as declared;
// constant inputs left out.
func TestDefaultShapes(t *testing.T) {
	b := ir.NewBuilder("shapes", 13)
	x := b.Input("ids", tensor.Int64, ir.S("batch"), ir.S("seq"))
	img := b.Input("image", tensor.Float32, ir.S("n"), ir.D(3), ir.S("h"), ir.S("w"))
	st := b.Input("static", tensor.Float32, ir.D(2), ir.D(5))
	b.Output(b.Op("Identity", []*ir.Value{x}), "a")
	b.Output(b.Op("Identity", []*ir.Value{img}), "b")
	b.Output(b.Op("Identity", []*ir.Value{st}), "c")
	g := b.Graph()
	tests := []struct {
		name string
		dims map[string][3]int
		want map[string][]int
	}{
		{"defaults", nil, map[string][]int{"ids": {1, 128}, "image": {1, 3, 128, 128}, "static": {2, 5}}},
		{"named dims", map[string][3]int{"seq": {1, 32, 64}, "h": {8, 16, 32}, "batch": {2, 4, 8}}, map[string][]int{"ids": {4, 32}, "image": {1, 3, 16, 128}, "static": {2, 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DefaultShapes(g, tt.dims)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("DefaultShapes = %v, want %v", got, tt.want)
			}
			for name, w := range tt.want {
				if !slices.Equal(got[name], w) {
					t.Errorf("%s: %v, want %v", name, got[name], w)
				}
			}
		})
	}
	if got := DefaultOpt(1, "", nil); got != DefaultDimOpt {
		t.Errorf("DefaultOpt of an unnamed dimension = %d, want %d", got, DefaultDimOpt)
	}
	// An input of unknown rank has no default shape.
	u := ir.NewBuilder("unranked", 13)
	in := u.Input("x", tensor.Float32)
	in.Type.Shape = nil
	u.Output(u.Op("Identity", []*ir.Value{in}), "y")
	if _, err := DefaultShapes(u.Graph(), nil); !errors.Is(err, ErrOptions) {
		t.Errorf("unknown rank: %v, want ErrOptions", err)
	}
}
