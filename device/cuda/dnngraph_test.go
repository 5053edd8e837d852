package cuda

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ebitengine/purego"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

// openFakeCUDNN opens the fake cuDNN (testdata/fakecudnn.c) with a handle,
// and returns a function that reports how many backend descriptors are
// alive in it.
func openFakeCUDNN(t *testing.T) (*CUDNN, CUDNNHandle, func() int) {
	t.Helper()
	d, err := OpenCUDNN(Options{LibDir: fakeLibraries(t)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := d.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Destroy(h) })
	fn, err := purego.Dlsym(d.lib.h, "fakeCudnnLiveDescriptors")
	if err != nil {
		t.Fatal(err)
	}
	return d, h, func() int { r, _, _ := purego.SyscallN(fn); return int(int32(r)) }
}

// graphTestConv is a small NHWC half convolution, 3x3 with padding 1.
var graphTestConv = ConvParams{N: 2, C: 16, H: 8, W: 8, M: 32, KH: 3, KW: 3, PadH: 1, PadW: 1, StrideH: 1, StrideW: 1,
	DilH: 1, DilW: 1, Group: 1, Half: true, NHWC: true}

// TestGraphConvFake builds graph convolutions on the fake cuDNN, whose
// heuristics return fixed lists (A: engine 0 with two knobs, 3, 5 needing
// 1 GiB; B: 3 again, 6 whose plan fails, 2, 4 which accumulates in half;
// fallback: 1, 0 again), and
// checks the candidates kept, the search's counts, that every candidate
// executes (the fake checks the variant pack against the graph's
// tensors), that each is rebuilt from its ID alone, and that Destroy frees
// every descriptor.
func TestGraphConvFake(t *testing.T) {
	d, h, live := openFakeCUDNN(t)
	f32 := graphTestConv
	f32.Half, f32.NHWC = false, false
	strided := graphTestConv
	strided.KH, strided.KW, strided.PadH, strided.PadW, strided.StrideH, strided.StrideW = 1, 1, 0, 0, 2, 2
	for _, tt := range []struct {
		name   string
		p      ConvParams
		oh     int
		o      GraphConvOptions
		ids    []string
		search GraphSearch
	}{
		{"plain half nhwc", graphTestConv, 8, GraphConvOptions{MaxWorkspace: 1 << 20},
			[]string{"eng0_k2=1_k14=3", "eng3", "eng2", "eng1"},
			GraphSearch{Returned: map[string]int{"A": 3, "B": 4, "fallback": 2}, Duplicates: 2, OverWorkspace: 1, Reduced: 1, Failed: 1}},
		{"bias relu", graphTestConv, 8, GraphConvOptions{Bias: true, ReLU: true, MaxWorkspace: 1 << 20},
			[]string{"eng0_k2=1_k14=3", "eng3", "eng2", "eng1"},
			GraphSearch{Returned: map[string]int{"A": 3, "B": 4, "fallback": 2}, Duplicates: 2, OverWorkspace: 1, Reduced: 1, Failed: 1}},
		{"bias residual relu strided 1x1", strided, 4, GraphConvOptions{Bias: true, Residual: true, ReLU: true, MaxWorkspace: 1 << 20},
			[]string{"eng0_k2=1_k14=3", "eng3", "eng2", "eng1"},
			GraphSearch{Returned: map[string]int{"A": 3, "B": 4, "fallback": 2}, Duplicates: 2, OverWorkspace: 1, Reduced: 1, Failed: 1}},
		{"residual only, no workspace", graphTestConv, 8, GraphConvOptions{Residual: true},
			[]string{"eng1"},
			GraphSearch{Returned: map[string]int{"A": 3, "B": 4, "fallback": 2}, Duplicates: 2, OverWorkspace: 4, Reduced: 1, Failed: 1}},
		{"float32 nchw: no TF32", f32, 8, GraphConvOptions{Bias: true, MaxWorkspace: 1 << 30},
			[]string{"eng5", "eng2", "eng1"},
			GraphSearch{Returned: map[string]int{"A": 3, "B": 4, "fallback": 2}, Duplicates: 2, TF32: 3, Failed: 1}},
		{"float32 nchw with TF32", f32, 8, GraphConvOptions{MaxWorkspace: 1 << 30, AllowTF32: true},
			[]string{"eng0_k2=1_k14=3", "eng3", "eng5", "eng2", "eng1"},
			GraphSearch{Returned: map[string]int{"A": 3, "B": 4, "fallback": 2}, Duplicates: 2, Reduced: 1, Failed: 1}},
		{"one runtime-compiled", graphTestConv, 8, GraphConvOptions{MaxWorkspace: 1 << 30, MaxRuntimeCompiled: 1, AllowReducedPrecision: true,
			Heuristics: []HeurMode{HeurB, HeurA}},
			[]string{"eng3", "eng2", "eng4", "eng0_k2=1_k14=3"},
			GraphSearch{Returned: map[string]int{"A": 3, "B": 4}, Duplicates: 1, Uncompiled: 1, Failed: 1}},
		{"reduced precision allowed", graphTestConv, 8, GraphConvOptions{MaxWorkspace: 1 << 20, AllowReducedPrecision: true},
			[]string{"eng0_k2=1_k14=3", "eng3", "eng2", "eng4", "eng1"},
			GraphSearch{Returned: map[string]int{"A": 3, "B": 4, "fallback": 2}, Duplicates: 2, OverWorkspace: 1, Failed: 1}},
		{"fallback then A, at most 2", graphTestConv, 8, GraphConvOptions{ReLU: true, MaxWorkspace: 1 << 20, MaxCandidates: 2,
			Heuristics: []HeurMode{HeurFallback, HeurA}},
			[]string{"eng1", "eng0_k2=1_k14=3"},
			GraphSearch{Returned: map[string]int{"fallback": 2}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := live()
			c, err := d.NewGraphConv(h, tt.p, tt.oh, tt.oh, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range c.Candidates {
				ids = append(ids, e.ID)
			}
			if !reflect.DeepEqual(ids, tt.ids) {
				t.Errorf("candidates %v, want %v", ids, tt.ids)
			}
			s := c.Search
			s.Errors = nil
			if !reflect.DeepEqual(s, tt.search) {
				t.Errorf("search %+v, want %+v", s, tt.search)
			}
			if tt.search.Failed > 0 && (len(c.Search.Errors) == 0 || !strings.Contains(c.Search.Errors[0], "eng6") ||
				!strings.Contains(c.Search.Errors[0], "engine 6: no kernel for this graph")) {
				t.Errorf("search errors %q do not say why engine 6 failed", c.Search.Errors)
			}
			const x, w, bias, z, y, ws = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000
			for _, e := range c.Candidates {
				if err := c.Use(e.ID); err != nil {
					t.Fatal(err)
				}
				if got := c.Engine(); got.ID != e.ID {
					t.Fatalf("Engine() = %s after Use(%s)", got.ID, e.ID)
				}
				for range 2 { // the second reuses the variant pack
					if err := c.Execute(h, x, w, bias, z, y, ws); err != nil {
						t.Fatalf("%s: %v", e.ID, err)
					}
				}
				r, err := d.NewGraphConvFromID(h, tt.p, tt.oh, tt.oh, tt.o, e.ID)
				if err != nil {
					t.Fatalf("rebuilding %s: %v", e.ID, err)
				}
				got := r.Engine()
				if got.ID != e.ID || got.Engine != e.Engine || !reflect.DeepEqual(got.Knobs, e.Knobs) || got.Workspace != e.Workspace ||
					got.TensorCore != e.TensorCore || got.RuntimeCompiled != e.RuntimeCompiled || got.Heuristic != "" {
					t.Errorf("rebuilt %+v, want %+v", got, e)
				}
				if err := r.Execute(h, x, w, bias, z, y, ws); err != nil {
					t.Errorf("rebuilt %s: %v", e.ID, err)
				}
				r.Destroy()
			}
			if err := c.Keep(tt.ids[len(tt.ids)-1]); err != nil || len(c.Candidates) != 1 || c.Engine().ID != tt.ids[len(tt.ids)-1] {
				t.Errorf("Keep: %v, candidates %v", err, c.Candidates)
			}
			if err := c.Execute(h, x, w, bias, z, y, ws); err != nil {
				t.Errorf("after Keep: %v", err)
			}
			c.Destroy()
			c.Destroy() // a second Destroy does nothing
			if n := live(); n != before {
				t.Errorf("%d backend descriptors alive after Destroy, %d before", n, before)
			}
			if err := c.Execute(h, x, w, bias, z, y, ws); err == nil {
				t.Error("Execute after Destroy gave no error")
			}
		})
	}
}

// TestGraphConvNotesFake checks the engines' notes read from the fake
// (engines 0 and 3 run on tensor cores, engines 3 and 5 compile at run
// time).
func TestGraphConvNotesFake(t *testing.T) {
	d, h, _ := openFakeCUDNN(t)
	c, err := d.NewGraphConv(h, graphTestConv, 8, 8, GraphConvOptions{MaxWorkspace: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Destroy()
	want := map[string][3]any{ // tensor core, runtime compiled, workspace
		"eng0_k2=1_k14=3": {true, false, 4096}, "eng3": {true, true, 1 << 20}, "eng2": {false, false, 256}, "eng1": {false, false, 0},
	}
	for _, e := range c.Candidates {
		if got := [3]any{e.TensorCore, e.RuntimeCompiled, e.Workspace}; got != want[e.ID] {
			t.Errorf("%s: tensor core, runtime compiled, workspace = %v, want %v", e.ID, got, want[e.ID])
		}
	}
	if e := c.Candidates[0]; e.Engine != 0 || !reflect.DeepEqual(e.Knobs, []Knob{{2, 1}, {14, 3}}) || e.Heuristic != "A" {
		t.Errorf("first candidate %+v", e)
	}
	if e := c.Candidates[3]; e.Heuristic != "fallback" {
		t.Errorf("engine 1 came from %q, want the fallback list", e.Heuristic)
	}
	for i, want := range []string{
		"eng0_k2=1_k14=3 (4096 B workspace, tensor cores, heuristics A)",
		"eng3 (1048576 B workspace, tensor cores, runtime compiled, heuristics A)",
		"eng2 (256 B workspace, heuristics B)",
		"eng1 (0 B workspace, heuristics fallback)",
	} {
		if got := c.Candidates[i].String(); got != want {
			t.Errorf("candidate %d: %q, want %q", i, got, want)
		}
	}
	// a library that fills no more notes and knobs than it defines types
	// of: the same candidates
	t.Setenv("KILN_FAKE_CUDNN_STRICT_COUNTS", "1")
	s, err := d.NewGraphConv(h, graphTestConv, 8, 8, GraphConvOptions{MaxWorkspace: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if len(s.Candidates) != len(c.Candidates) {
		t.Errorf("strict counts: %d candidates, want %d (%s)", len(s.Candidates), len(c.Candidates), s.Search)
	}
	for i := range min(len(s.Candidates), len(c.Candidates)) {
		a, b := s.Candidates[i], c.Candidates[i]
		a.plan, a.cfg, a.Build, b.plan, b.cfg, b.Build = beDesc{}, beDesc{}, 0, beDesc{}, beDesc{}, 0
		if !reflect.DeepEqual(a, b) {
			t.Errorf("strict counts: candidate %+v, want %+v", a, b)
		}
	}
}

// TestGraphConvTraceFake records every backend call of a fused
// convolution (bias, residual, ReLU; heuristics mode A), one Execute and
// Destroy, and compares the sequence with testdata/graphconv_fused.trace
// (go test -run TestGraphConvTraceFake -update rewrites it): the
// attributes, their types and values, in the order kiln sets them.
func TestGraphConvTraceFake(t *testing.T) {
	d, h, _ := openFakeCUDNN(t)
	trace := filepath.Join(t.TempDir(), "trace")
	t.Setenv("KILN_FAKE_CUDNN_TRACE", trace)
	p := graphTestConv
	p.StrideH, p.StrideW = 2, 2
	c, err := d.NewGraphConv(h, p, 4, 4, GraphConvOptions{Bias: true, Residual: true, ReLU: true, MaxWorkspace: 1 << 20,
		Heuristics: []HeurMode{HeurA}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Execute(h, 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000); err != nil {
		t.Fatal(err)
	}
	c.Destroy()
	got, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "graphconv_fused.trace")
	if *updateGolden {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("trace differs from %s at line %d:\n got: %s\nwant: %s", golden, i+1, g, w)
			}
		}
	}
}

// TestGraphConvErrorsFake checks that bad shapes, IDs and pointers give
// clear errors (no panics), that an ID the library no longer builds wraps
// ErrStaleEngine, and that a failing call names the descriptor type and
// attribute and carries cuDNN's last error message.
func TestGraphConvErrorsFake(t *testing.T) {
	d, h, live := openFakeCUDNN(t)
	before := live()
	bad := func(f func(*ConvParams)) ConvParams { p := graphTestConv; f(&p); return p }
	for _, tt := range []struct {
		name string
		p    ConvParams
		oh   int
		want string
	}{
		{"zero channels", bad(func(p *ConvParams) { p.C = 0 }), 8, "every dimension must be positive"},
		{"wrong output", graphTestConv, 7, "output height 7, the convolution gives 8"},
		{"groups", bad(func(p *ConvParams) { p.Group = 3 }), 8, "3 groups do not divide C 16 and M 32"},
		{"zero stride", bad(func(p *ConvParams) { p.StrideH = 0 }), 8, "strides 0x1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := d.NewGraphConv(h, tt.p, tt.oh, tt.oh, GraphConvOptions{}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	for _, tt := range []struct {
		id, want string
		stale    bool
	}{
		{"", `does not start with "eng"`, false},
		{"engx", "not a number", false},
		{"eng1_k2", "not k<type>=<value>", false},
		{"eng1_k14=1_k2=1", "increasing type order", false},
		{"eng9", "has 8 engines", true},
		{"eng7", "engine 7 does not run this graph", true},
		{"eng1_k2=1", "engine 1 has no knob 2 = 1", true},
		{"eng6", "engine 6: no kernel for this graph", true},
		{"eng3", "needs 1048576 bytes of workspace, over the limit of 4096", true},
	} {
		t.Run("id "+tt.id, func(t *testing.T) {
			_, err := d.NewGraphConvFromID(h, graphTestConv, 8, 8, GraphConvOptions{MaxWorkspace: 4096}, tt.id)
			if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, ErrStaleEngine) != tt.stale {
				t.Errorf("error %v, want one containing %q (stale %v)", err, tt.want, tt.stale)
			}
		})
	}
	if _, err := d.NewGraphConv(h, graphTestConv, 8, 8, GraphConvOptions{Heuristics: []HeurMode{HeurB}}); err == nil ||
		!strings.Contains(err.Error(), "no engine configuration of conv 2x16x8x8 -> 32, 3x3/1 pad 1 NHWC half runs within 0 bytes") {
		t.Errorf("no candidate: %v", err)
	}

	c, err := d.NewGraphConv(h, graphTestConv, 8, 8, GraphConvOptions{Bias: true, Residual: true, MaxWorkspace: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Execute(h, 1, 2, 0, 0, 3, 0); err == nil || !strings.Contains(err.Error(), "no device pointer for bias, z, workspace (4096 bytes)") {
		t.Errorf("missing pointers: %v", err)
	}
	if err := c.Use("eng99"); err == nil || !strings.Contains(err.Error(), `no candidate "eng99"`) {
		t.Errorf("Use of an unknown ID: %v", err)
	}
	t.Run("execution fails", func(t *testing.T) {
		t.Setenv("KILN_FAKE_CUDNN_FAIL", "1")
		err := c.Execute(h, 1, 2, 4, 5, 3, 6)
		want := "cuda: cudnnBackendExecute(EXECUTION_PLAN): CUDNN_STATUS_EXECUTION_FAILED (5000): KILN_FAKE_CUDNN_FAIL is set"
		if !errors.Is(err, ErrCUDA) || err == nil || err.Error() != want {
			t.Errorf("error %v, want %q", err, want)
		}
	})
	c.Destroy()

	t.Run("attribute helpers", func(t *testing.T) {
		f, err := d.graph()
		if err != nil {
			t.Fatal(err)
		}
		b := backend{d, f}
		pw, err := b.create(beDescPointwise)
		if err != nil {
			t.Fatal(err)
		}
		defer b.destroy(pw)
		const reluLowerClip = 3 // CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP
		if err := b.setDouble(pw, reluLowerClip, 0); err != nil {
			t.Error(err)
		}
		err = b.setInt64(pw, beAttrPointwiseMode, 0)
		want := "cuda: cudnnBackendSetAttribute(POINTWISE, CUDNN_ATTR_POINTWISE_MODE): CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE (2010): attribute 0 takes type 14, not 3"
		if err == nil || err.Error() != want {
			t.Errorf("wrong type: %v, want %q", err, want)
		}
		err = b.finalize(pw)
		want = "cuda: cudnnBackendFinalize(POINTWISE): CUDNN_STATUS_BAD_PARAM (2000): POINTWISE: attribute 0 not set"
		if err == nil || err.Error() != want {
			t.Errorf("finalize: %v, want %q", err, want)
		}
		if _, err := b.getInt64(pw, beAttrGraphEngineCount); err == nil || !strings.Contains(err.Error(),
			"cudnnBackendGetAttribute(POINTWISE, CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT)") {
			t.Errorf("get: %v", err)
		}
	})
	if n := live(); n != before {
		t.Errorf("%d backend descriptors alive after the failures, %d before", n, before)
	}
}

// TestParseEngineID checks that IDs round-trip.
func TestParseEngineID(t *testing.T) {
	for _, tt := range []struct {
		engine int
		knobs  []Knob
		id     string
	}{
		{0, nil, "eng0"},
		{42, []Knob{{2, 1}, {14, 3}}, "eng42_k2=1_k14=3"},
		{7, []Knob{{24, -1}}, "eng7_k24=-1"},
	} {
		if id := engineID(tt.engine, tt.knobs); id != tt.id {
			t.Errorf("engineID = %q, want %q", id, tt.id)
		}
		e, k, err := ParseEngineID(tt.id)
		if err != nil || e != tt.engine || !reflect.DeepEqual(k, tt.knobs) {
			t.Errorf("ParseEngineID(%q) = %d, %v, %v", tt.id, e, k, err)
		}
	}
}

// TestGraphConvExecuteAllocsFake checks that Execute with the pointers of
// the previous call does not allocate.
func TestGraphConvExecuteAllocsFake(t *testing.T) {
	d, h, _ := openFakeCUDNN(t)
	c, err := d.NewGraphConv(h, graphTestConv, 8, 8, GraphConvOptions{Bias: true, ReLU: true, MaxWorkspace: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Destroy()
	run := func() {
		if err := c.Execute(h, 0x1000, 0x2000, 0x3000, 0, 0x5000, 0x6000); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("Execute allocates %v times per call, want 0", n)
	}
}

// ExampleCUDNN_NewGraphConv tunes a fused convolution (bias, residual,
// ReLU) by timing each candidate, keeps the fastest, and later rebuilds it
// from the ID a plan stored, tuning again when the library no longer
// builds it.
func ExampleCUDNN_NewGraphConv() {
	d, err := OpenCUDNN(Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	h, err := d.Create() // needs a current CUDA context
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Destroy(h)
	p := ConvParams{N: 256, C: 64, H: 56, W: 56, M: 256, KH: 1, KW: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1,
		Half: true, NHWC: true}
	o := GraphConvOptions{Bias: true, Residual: true, ReLU: true, MaxWorkspace: 64 << 20, MaxCandidates: 8}
	// the layer's device buffers
	var x, w, bias, z, y, ws DevicePtr
	// timeIt times run: use CUDA events, as TestConvLayoutsOnGPU does
	timeIt := func(run func() error) time.Duration { start := time.Now(); _ = run(); return time.Since(start) }
	c, err := d.NewGraphConv(h, p, 56, 56, o)
	if err != nil {
		fmt.Println(err)
		return
	}
	best, bestTime := "", time.Duration(math.MaxInt64)
	for _, e := range c.Candidates {
		_ = c.Use(e.ID)
		if t := timeIt(func() error { return c.Execute(h, x, w, bias, z, y, ws) }); t < bestTime {
			best, bestTime = e.ID, t
		}
	}
	_ = c.Keep(best) // the plan stores best
	c.Destroy()

	// loading the plan:
	c, err = d.NewGraphConvFromID(h, p, 56, 56, o, best)
	if errors.Is(err, ErrStaleEngine) {
		c, err = d.NewGraphConv(h, p, 56, 56, o) // tune again
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Destroy()
	_ = c.Execute(h, x, w, bias, z, y, ws)
}
