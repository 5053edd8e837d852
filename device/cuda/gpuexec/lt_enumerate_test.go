package gpuexec

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/tactic"
)

// TestLtEnumerateTuneFake: tuning at the wider search (Options.GraphConv,
// --opt-level 3) times, for each matrix product, cuBLASLt's enumerated
// configurations beside the heuristic's results (the default search does
// not); one chosen is kept in the tactics by its description (Tactic.Cfg,
// also its timing-cache key), survives the plan's tactics blob, and an
// engine built from the tactics alone (and a plan loaded from its blobs),
// without enumerating or timing, runs that configuration; one that
// cuBLASLt refuses leaves the layer on the plan's default (against the
// fake libraries).
func TestLtEnumerateTuneFake(t *testing.T) {
	dir := fakeLibs(t)
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 1, 1)
	g := optimizedGraph(t, path, in)
	fp := device.Fingerprint{"gpu": "fake"}

	defer func(v bool) { ltEnumerateAll = v }(ltEnumerateAll)
	ltEnumerateAll = false
	narrow := tactic.New()
	en, _ := fakeEngine(t, dir, g, Options{LibDir: dir, Tune: true, TimingCache: narrow, CacheDevice: fp})
	wide := tactic.New()
	ew, cw := fakeEngine(t, dir, g, Options{LibDir: dir, Tune: true, GraphConv: true, TimingCache: wide, CacheDevice: fp})
	if ew.Measured() <= en.Measured() {
		t.Fatalf("measured %d at the wider search, %d at the default: want more", ew.Measured(), en.Measured())
	}
	// the chosen plans hold the enumerated candidates; pick the last one
	gemmName, cfg, epi := "", "", false
	for i, s := range ew.prog.steps {
		mm := ew.gemms[i]
		if mm == nil {
			continue
		}
		if s.gemm != nil && gemmName == "" {
			last := len(mm.Candidates) - 1
			if mm.Candidates[last].Index >= 0 || mm.Config(last) == "" {
				t.Fatalf("%s: last candidate %s, want an enumerated one", s.node.Name, mm.CandidateString(last))
			}
			gemmName, cfg, epi = s.node.Name, mm.Config(last), ew.gemmEpi[i]
			wide.Store(fp, gemmSig(s, false), Tactic{Impl: ImplCUBLASLt, Epi: epi, Cfg: cfg}.name(), time.Microsecond)
		}
	}
	if gemmName == "" {
		t.Fatal("resnet_mini: no cuBLASLt product")
	}
	if _, err := cw.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if n := (Tactic{Impl: ImplCUBLASLt, Epi: true, Algo: 5, Cfg: "algo=66 tile=20"}).name(); n != "cublaslt-epilogue:cfg=algo=66 tile=20" {
		t.Errorf("timing-cache name %q", n)
	}

	// tuned again from the cache: the enumerated configuration wins
	e3, c3 := fakeEngine(t, dir, g, Options{LibDir: dir, Tune: true, GraphConv: true, TimingCache: wide, CacheDevice: fp})
	picked := e3.Tactics()
	if got := picked[gemmName]; e3.Measured() != 0 || got.Cfg != cfg || got.Epi != epi || got.NS != 1000 {
		t.Fatalf("measured %d; %s: %+v, want %q at 1 us", e3.Measured(), gemmName, got, cfg)
	}
	if _, err := c3.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	// through the plan's blob, applied without enumerating or timing
	parsed, err := ParseTactics(picked.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	e4, c4 := fakeEngine(t, dir, g, Options{LibDir: dir, Tactics: parsed})
	if e4.Measured() != 0 || !reflect.DeepEqual(e4.Tactics(), picked) {
		t.Fatalf("applied: measured %d, tactics %v, want %v", e4.Measured(), e4.Tactics(), picked)
	}
	found := false
	for i, l := range e4.Layers() {
		s := e4.prog.steps[i]
		if s.node.Name != gemmName {
			continue
		}
		found = true
		mm := e4.gemms[i]
		if mm == nil || mm.Config(ltRank(mm, picked[gemmName])) != cfg {
			t.Fatalf("%s: not planned with %q", gemmName, cfg)
		}
		if !strings.Contains(l.Tactic, "enumerated "+cfg) {
			t.Errorf("%s: tactic %q, want it to name %q", gemmName, l.Tactic, cfg)
		}
		if n := mm.Candidates[len(mm.Candidates)-1].Index; n >= 0 || len(mm.Candidates) > 4 {
			t.Errorf("%s: %d candidates, want the heuristic's and the one added from the plan", gemmName, len(mm.Candidates))
		}
	}
	if !found {
		t.Fatalf("%s not among the layers", gemmName)
	}
	if _, err := c4.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	// the same through a plan's header (the choices by name, parsed back),
	// and an older plan's section, as kiln run loads a plan built with
	// --opt-level 3 (compilePlan at the default level, no tuning)
	t.Setenv(cuda.EnvLibPath, dir)
	var header []device.Tactic
	for layer, tt := range picked {
		header = append(header, device.Tactic{Layer: layer, Tactic: tt.name(), Sig: tt.Sig})
	}
	for _, o := range []device.ExecOptions{{Tactics: header}, {Blobs: map[string][]byte{tacticsBlob: picked.Marshal()}}} {
		prog, err := compilePlan(g, o)
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		if _, err := prog.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		pp := prog.(*planProgram)
		r, err := device.ParseLayerReport(pp.Blobs()[device.LayersBlob])
		if err != nil {
			t.Fatal(err)
		}
		var choice string
		for _, l := range r.Layers {
			if l.Name == gemmName {
				choice = l.Choice
			}
		}
		if back, err := ParseTactic(choice); err != nil || pp.measured != 0 || back.Cfg != cfg {
			t.Errorf("plan loaded (header %v): measured %d, %s: %q (%v), want %q", o.Tactics != nil, pp.measured, gemmName, choice, err, cfg)
		}
	}
	// a configuration this cuBLASLt refuses: the plan's default instead
	bad := Tactics{}
	for k, v := range picked {
		if k == gemmName {
			v.Cfg = "algo=42 tile=21 stages=19 swizzle=0 cluster=0"
		}
		bad[k] = v
	}
	e5, c5 := fakeEngine(t, dir, g, Options{LibDir: dir, Tactics: bad})
	if _, ok := e5.Tactics()[gemmName]; ok {
		t.Errorf("%s: a refused configuration applied: %+v", gemmName, e5.Tactics()[gemmName])
	}
	if _, err := c5.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
}
