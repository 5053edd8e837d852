package partition

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// matmulChain is x[batch,64] -> Relu -> kiln::FusedMatMul(w 64x64) ->
// Sigmoid -> y: the product, which the fake device lacks, is a CPU
// segment with several implementations (GEMM blockings).
func matmulChain(t *testing.T) *ir.Graph {
	t.Helper()
	b := ir.NewBuilder("mm", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(64))
	r := b.Op("Relu", []*ir.Value{x})
	w := make([]float32, 64*64)
	for i := range w {
		w[i] = float32(i%13-6) / 32
	}
	mm := b.Op("FusedMatMul", []*ir.Value{r, b.Const("w", tensor.FromFloat32(w, 64, 64))})
	mm.Producer.Domain = "kiln"
	b.Output(b.Op("Sigmoid", []*ir.Value{mm}), "y")
	g := b.Graph()
	g.Opsets["kiln"] = 1
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestCPUSegmentTactics: with the CPU's fingerprint and Tune, a CPU
// segment's layers with several implementations are timed at the
// segment's opt shapes through the timing cache, under the CPU's
// fingerprint, and the program reports the choices (CPUTactics), with no
// section of their own; a load given them (ExecOptions.Tactics, from the
// plan's header) applies them (an unknown tactic is an error naming it),
// as it applies an older plan's section; one without them runs the
// defaults; without Tune or the fingerprint nothing is timed.
func TestCPUSegmentTactics(t *testing.T) {
	g := matmulChain(t)
	dir := t.TempDir()
	cachePath := filepath.Join(dir, "kiln.timing")
	fp := device.Fingerprint{"device": "cpu", "isa": "segment-test"}
	o := device.ExecOptions{Tune: true, TimingCache: cachePath,
		MaxShapes: map[string][]int{"x": {64, 64}}, OptShapes: map[string][]int{"x": {32, 64}}}
	check := func(t *testing.T, prog device.Program) {
		t.Helper()
		in := randomMatrix(32, 64, 5)
		got, err := prog.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		want := reference(t, g, in)
		for i, w := range want["y"].Float32s() {
			if d := math.Abs(float64(got["y"].Float32s()[i] - w)); d > 1e-5 {
				t.Fatalf("y[%d] = %v, want %v", i, got["y"].Float32s()[i], w)
			}
		}
	}
	prog, r, err := Compile(g, &fakeExec{name: "gpu", ops: gpuOps}, o, Options{CPU: fp})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if len(r.Segments) != 3 || r.Segments[1].Device != CPU {
		t.Fatalf("segments %+v, want gpu, cpu, gpu", r.Segments)
	}
	check(t, prog)
	blobs := prog.(device.BlobProgram).Blobs()
	name := SegmentPrefix(1) + CPUTacticsBlob
	if _, ok := blobs[name]; ok {
		t.Errorf("section %s written (sections %v): the choices go to the plan's header", name, blobNames(blobs))
	}
	chosen := CPUTactics(prog)["segment1"]
	mm := r.Segments[1].Nodes[0]
	if len(CPUTactics(prog)) != 1 || len(chosen) != 1 || !strings.HasPrefix(chosen[mm].Tactic, "gemm") || chosen[mm].NS <= 0 || chosen[mm].Cached {
		t.Fatalf("CPUTactics = %v, want a gemm tactic for %s in segment1", CPUTactics(prog), mm)
	}
	b, err := os.ReadFile(cachePath)
	if err != nil || !strings.Contains(string(b), "isa=segment-test") || !strings.Contains(string(b), "float32[32,64]") {
		t.Fatalf("timing cache (%v):\n%s\nwant entries of the CPU's fingerprint at the opt shape", err, b)
	}

	// A load: the header's choices are applied, never timed again; so is
	// an older plan's section (which the header's choices take precedence
	// over).
	load := func(blobs map[string][]byte, ts []device.Tactic) (device.Program, error) {
		lo := device.ExecOptions{MaxShapes: o.MaxShapes, Blobs: blobs, Tactics: ts}
		p, _, err := Compile(g, &fakeExec{name: "gpu", ops: gpuOps}, lo, Options{})
		return p, err
	}
	header := []device.Tactic{{Layer: mm, Tactic: chosen[mm].Tactic}}
	oldSection, err := json.Marshal(chosen)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		blobs map[string][]byte
		ts    []device.Tactic
	}{
		{"header", blobs, header},
		{"older plan's section", map[string][]byte{name: oldSection}, nil},
		{"neither", map[string][]byte{}, nil},
		{"header over a section", map[string][]byte{name: []byte(`{"` + mm + `": {"tactic": "no-such-tactic"}}`)}, header},
	} {
		p, err := load(tt.blobs, tt.ts)
		if err != nil {
			t.Fatalf("a load with the %s: %v", tt.name, err)
		}
		check(t, p)
		p.Close()
	}
	if _, err := load(blobs, []device.Tactic{{Layer: mm, Tactic: "no-such-tactic"}}); err == nil || !strings.Contains(err.Error(), "no-such-tactic") {
		t.Errorf("a header naming an unknown tactic: %v", err)
	}
	bad := map[string][]byte{name: []byte(`{"` + mm + `": {"tactic": "no-such-tactic"}}`)}
	if _, err := load(bad, nil); err == nil || !strings.Contains(err.Error(), "no-such-tactic") {
		t.Errorf("a section naming an unknown tactic: %v", err)
	}
	for _, corrupt := range []string{"{", `{"` + mm + `": {}}`, `{"` + mm + `": "gemm"}`} {
		if _, err := load(map[string][]byte{name: []byte(corrupt)}, nil); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("a corrupt section %s: %v, want an error naming it", corrupt, err)
		}
	}
	// A second build takes the times from the cache.
	again, _, err := Compile(g, &fakeExec{name: "gpu", ops: gpuOps}, o, Options{CPU: fp})
	if err != nil {
		t.Fatal(err)
	}
	if c := CPUTactics(again)["segment1"]; !c[mm].Cached || c[mm].Tactic != chosen[mm].Tactic {
		t.Errorf("second build: choices %v, want the first's choice from the cache", c)
	}
	again.Close()

	// Without Tune, or without the CPU's fingerprint, nothing is timed.
	for _, tt := range []struct {
		name string
		o    device.ExecOptions
		po   Options
	}{
		{"no tune", device.ExecOptions{MaxShapes: o.MaxShapes, OptShapes: o.OptShapes}, Options{CPU: fp}},
		{"no fingerprint", o, Options{}},
	} {
		p, _, err := Compile(g, &fakeExec{name: "gpu", ops: gpuOps}, tt.o, tt.po)
		if err != nil {
			t.Fatal(err)
		}
		if c := CPUTactics(p); c != nil {
			t.Errorf("%s: choices %v", tt.name, c)
		}
		p.Close()
	}
}

func randomMatrix(rows, cols int, seed uint64) map[string]*tensor.Tensor {
	x := tensor.New(tensor.Float32, rows, cols)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32((uint64(i)*2654435761+seed)%1000)/500 - 1
	}
	return map[string]*tensor.Tensor{"x": x}
}

func blobNames(b map[string][]byte) []string {
	var out []string
	for k := range b {
		out = append(out, k)
	}
	return out
}
