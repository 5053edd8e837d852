package cuda

import (
	"math"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// TestLtEnumerateFake checks, against the fake libcublasLt, the
// configurations MatmulOptions.Enumerate adds after the heuristic's
// results: the algorithms AlgoGetIds lists, their tiles ranked by
// tileCost on 132 SMs (whole waves of large tiles first; the heuristic's
// algorithms and the others in turn), one stage count a tile, then CTA
// swizzling and a cluster shape where the capabilities allow them, only what AlgoCheck accepts within the
// workspace limit, none the heuristic already gave; the same list when
// planned twice; and that each runs as described.
func TestLtEnumerateFake(t *testing.T) {
	b, err := OpenCUBLASLt(Options{LibDir: fakeLibraries(t)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := b.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(h)
	// BERT-base's output projection at batch 32: D is 768 x 4096. The
	// heuristic's algorithm (42) and the others (66, 7) in turn, each by
	// tileCost on 132 SMs: 42's 128x128 (2 waves), 256x64 (refused); 66's
	// 128x192 (132 tiles: one wave), 128x256 (64 MiB of workspace: not
	// within 32), 256x128 (one wave of 96), 128x128 (two), 128x64 (three
	// of 384, small tiles), then 7 (tile unknown). One stage count a tile
	// (the heuristic's for its algorithm first: 42's 128x1 (19) before 8x4
	// (26)), then CTA swizzling and a cluster shape where the algorithm has
	// them (66 in 256x128 refuses 2x1x1 clusters: 1x2x1; in 128x64 it
	// refuses AUTO: its first configuration is in 1x1x1 clusters).
	full := []string{
		"algo=42 tile=20 stages=19 swizzle=0 cluster=0",
		"algo=66 tile=32 stages=35 swizzle=0 cluster=0", "algo=66 tile=32 stages=35 swizzle=1 cluster=0", "algo=66 tile=32 stages=35 swizzle=0 cluster=3",
		"algo=66 tile=24 stages=35 swizzle=0 cluster=0", "algo=66 tile=24 stages=35 swizzle=1 cluster=0", "algo=66 tile=24 stages=35 swizzle=0 cluster=5",
		"algo=66 tile=20 stages=35 swizzle=0 cluster=0", "algo=66 tile=20 stages=35 swizzle=1 cluster=0", "algo=66 tile=20 stages=35 swizzle=0 cluster=3",
		"algo=66 tile=18 stages=35 swizzle=0 cluster=2", "algo=66 tile=18 stages=35 swizzle=1 cluster=2", "algo=66 tile=18 stages=35 swizzle=0 cluster=3",
		"algo=7 tile=0 stages=0 swizzle=0 cluster=0",
	}
	heur := []string{"algo=42 tile=0 stages=19 swizzle=0 cluster=0", "algo=43 tile=0 stages=0 swizzle=0 cluster=0",
		"algo=44 tile=0 stages=0 swizzle=0 cluster=0"}
	without42 := slices.DeleteFunc(slices.Clone(full), func(s string) bool { return strings.HasPrefix(s, "algo=42 ") })
	tests := []struct {
		name    string
		m, n, k int
		o       MatmulOptions
		limit   int
		heur    []string // the heuristic's candidates' configurations (not named without Enumerate)
		want    []string // the enumerated ones
	}{
		{"off", 4096, 768, 768, MatmulOptions{Half: true}, 32 << 20, heur, nil},
		{"half out proj", 4096, 768, 768, MatmulOptions{Half: true, Enumerate: true}, 32 << 20, heur, full},
		{"float32, bias gelu", 4096, 768, 768, MatmulOptions{Enumerate: true, Bias: 0xb1a5, GELU: true, SMs: 132}, 32 << 20, heur, full},
		// 8 KiB of workspace drops algorithm 42 (heuristic and enumerated)
		{"4 KiB workspace", 4096, 768, 768, MatmulOptions{Half: true, Enumerate: true}, 4096, heur[1:], without42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lists [2][]string
			for round := range lists {
				mm, err := b.NewMatmulWith(h, tt.m, tt.n, tt.k, tt.o, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				defer mm.Destroy()
				nh := len(tt.heur)
				if len(mm.Candidates) != nh+len(tt.want) {
					t.Fatalf("%d candidates (%v), want %d heuristic + %d enumerated", len(mm.Candidates), mm.Configs, nh, len(tt.want))
				}
				if len(tt.want) > ltEnumMax {
					t.Fatalf("table: %d enumerated, over the bound %d", len(tt.want), ltEnumMax)
				}
				for i, c := range mm.Candidates {
					enumerated := i >= nh
					if (c.Index < 0) != enumerated {
						t.Errorf("candidate %d: index %d, enumerated %v", i, c.Index, enumerated)
					}
					want := ""
					if enumerated {
						want = tt.want[i-nh]
					} else if tt.o.Enumerate {
						want = tt.heur[i]
					}
					if got := mm.Config(i); got != want {
						t.Errorf("candidate %d: config %q, want %q", i, got, want)
					}
					if c.Workspace > tt.limit {
						t.Errorf("candidate %d: %d bytes of workspace, over %d", i, c.Workspace, tt.limit)
					}
				}
				if mm.Workspace != mm.Candidates[0].Workspace || mm.Candidates[0].Index < 0 {
					t.Errorf("in use after planning: %+v, want the heuristic's first", mm.Candidates[0])
				}
				lists[round] = slices.Clone(mm.Configs)
				// each runs with the configuration it names
				lastAlgo, err := b.lib.sym("fakeLtLastAlgo")
				if err != nil {
					t.Fatal(err)
				}
				for i := nh; i < len(mm.Candidates); i++ {
					if err := mm.UseCandidate(i); err != nil {
						t.Fatal(err)
					}
					if err := mm.Run(h, 1, 2, 3, 4, mm.Workspace, Stream{}); err != nil {
						t.Fatalf("candidate %d (%s): %v", i, mm.CandidateString(i), err)
					}
					var got [64]byte
					call(lastAlgo, uintptr(unsafe.Pointer(&got[0])))
					c, _ := ParseLtConfig(mm.Config(i))
					if int(got[0]) != c.Algo || int(got[3]) != c.Tile || int(got[4]) != c.Stages || int(got[5]) != c.Swizzle || int(got[6]) != c.Cluster {
						t.Errorf("candidate %d (%s): cublasLtMatmul ran % x", i, mm.Config(i), got[:7])
					}
				}
			}
			if !slices.Equal(lists[0], lists[1]) {
				t.Errorf("planned twice: %v, then %v", lists[0], lists[1])
			}
		})
	}
}

// TestLtAddConfigFake checks that an enumerated candidate chosen in one
// plan is planned again from its description alone (a plan's tactic):
// AddConfig on a product planned without Enumerate gives a candidate that
// runs the same algorithm bytes; a description already among the
// candidates is found, not added; and descriptions that do not parse, or
// that cuBLASLt refuses, give errors.
func TestLtAddConfigFake(t *testing.T) {
	b, err := OpenCUBLASLt(Options{LibDir: fakeLibraries(t)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := b.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(h)
	o := MatmulOptions{Half: true, Bias: 0xb1a5, Enumerate: true}
	built, err := b.NewMatmulWith(h, 4096, 768, 3072, o, 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer built.Destroy()
	lastAlgo, err := b.lib.sym("fakeLtLastAlgo")
	if err != nil {
		t.Fatal(err)
	}
	ran := func(mm *LtMatmul, i int) [64]byte {
		t.Helper()
		if err := mm.UseCandidate(i); err != nil {
			t.Fatal(err)
		}
		if err := mm.Run(h, 1, 2, 3, 4, mm.Workspace, Stream{}); err != nil {
			t.Fatal(err)
		}
		var got [64]byte
		call(lastAlgo, uintptr(unsafe.Pointer(&got[0])))
		return got
	}
	o.Enumerate = false
	for i := range built.Candidates {
		if built.Candidates[i].Index >= 0 {
			continue
		}
		cfg := built.Config(i)
		want := ran(built, i)
		loaded, err := b.NewMatmulWith(h, 4096, 768, 3072, o, 32<<20)
		if err != nil {
			t.Fatal(err)
		}
		j, err := loaded.AddConfig(h, cfg, 32<<20)
		if err != nil {
			t.Fatalf("AddConfig(%q): %v", cfg, err)
		}
		if j != len(loaded.Candidates)-1 || loaded.Config(j) != cfg || loaded.Candidates[j].Workspace != built.Candidates[i].Workspace {
			t.Errorf("AddConfig(%q): candidate %d of %d, %q, workspace %d", cfg, j, len(loaded.Candidates), loaded.Config(j), loaded.Candidates[j].Workspace)
		}
		if again, err := loaded.AddConfig(h, cfg, 32<<20); err != nil || again != j {
			t.Errorf("AddConfig(%q) again: %d, %v, want %d", cfg, again, err, j)
		}
		if got := ran(loaded, j); got != want {
			t.Errorf("%s: reloaded runs % x, built % x", cfg, got[:8], want[:8])
		}
		if s := loaded.CandidateString(j); s != "enumerated "+cfg {
			t.Errorf("CandidateString: %q", s)
		}
		loaded.Destroy()
	}
	for _, tt := range []struct{ cfg, want string }{
		{"", "no algo"},
		{"tile=20", "no algo"},
		{"algo=66 tile=x", "bad field"},
		{"algo=66 algo=66", "bad field"},
		{"algo=66 size=3", "unknown field"},
		{"algo=42 tile=21 stages=19 swizzle=0 cluster=0", "cublasLtMatmulAlgoCheck"},              // AlgoCheck refuses
		{"algo=66 tile=99 stages=35 swizzle=0 cluster=0", "cublasLtMatmulAlgoConfigSetAttribute"}, // no such tile
		{"algo=66 tile=23 stages=35 swizzle=0 cluster=0", "within 32768 bytes"},                   // 64 MiB of workspace
		{"algo=5 tile=0 stages=0 swizzle=0 cluster=0", "cublasLtMatmulAlgoConfigSetAttribute"},    // AlgoInit refuses
	} {
		mm, err := b.NewMatmulWith(h, 4096, 768, 3072, o, 32<<10)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mm.AddConfig(h, tt.cfg, 32<<10); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("AddConfig(%q): %v, want an error with %q", tt.cfg, err, tt.want)
		}
		mm.Destroy()
	}
}

// TestTileCost checks the waves arithmetic on BERT-base's products
// (device/cuda/NOTES.md) on 132 SMs.
func TestTileCost(t *testing.T) {
	for _, tt := range []struct {
		rows, cols, tr, tc int
		want               float64
	}{
		{768, 4096, 128, 128, 2 * 128 * 128}, // 192 tiles: 1.45 waves
		{768, 4096, 128, 192, 128 * 192},     // 6 x 22 = 132 tiles: one wave
		{768, 4096, 256, 128, 256 * 128},     // 96 tiles
		{768, 4096, 64, 64, 6 * 64 * 128},    // 768 tiles, bound by their loads
		{2304, 4096, 128, 192, 3 * 128 * 192},
		{768, 128, 0, 64, math.Inf(1)},
	} {
		if got := tileCost(tt.rows, tt.cols, tt.tr, tt.tc, 132); got != tt.want {
			t.Errorf("%dx%d in %dx%d tiles: %v, want %v", tt.rows, tt.cols, tt.tr, tt.tc, got, tt.want)
		}
	}
}
