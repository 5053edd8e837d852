package cuda

import (
	"reflect"
	"testing"
	"unsafe"
)

// TestLtSplitKFake checks, against the fake libcublasLt, the split-K
// variants MatmulOptions.SplitK adds: after the heuristic's own results,
// only those cublasLtMatmulAlgoCheck accepts (the fake: algorithm 43, up
// to K/2 parts) within the workspace limit, parts that keep at least 128
// of K, each reduction scheme, none for a product of over 1M outputs;
// that the heuristic's first result stays in use; and that UseCandidate
// hands cublasLtMatmul the configured algorithm.
func TestLtSplitKFake(t *testing.T) {
	b, err := OpenCUBLASLt(Options{LibDir: fakeLibraries(t)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := b.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(h)
	type cand struct {
		LtAlgo
		LtSplit
	}
	heur := []cand{{LtAlgo{0, 8192, 42}, LtSplit{}}, {LtAlgo{1, 0, 43}, LtSplit{}}, {LtAlgo{2, 0, 44}, LtSplit{}}}
	split := func(parts, red, ws int) cand { return cand{LtAlgo{1, ws, 43}, LtSplit{parts, red}} }
	tests := []struct {
		name  string
		m, k  int
		limit int
		off   bool
		want  []cand
	}{
		{"off", 128, 768, 1 << 20, true, heur},
		{"k 768", 128, 768, 1 << 20, false, append(append([]cand{}, heur...),
			split(2, LtReductionInPlace, 0), split(2, LtReductionCompute, 2048),
			split(3, LtReductionInPlace, 0), split(3, LtReductionCompute, 3072),
			split(4, LtReductionInPlace, 0), split(4, LtReductionCompute, 4096),
			split(6, LtReductionInPlace, 0), split(6, LtReductionCompute, 6144))},
		{"k 3072, 4 KiB of workspace", 128, 3072, 4096, false, append(append([]cand{}, heur[1:]...),
			split(2, LtReductionInPlace, 0), split(2, LtReductionCompute, 2048),
			split(3, LtReductionInPlace, 0), split(3, LtReductionCompute, 3072),
			split(4, LtReductionInPlace, 0), split(4, LtReductionCompute, 4096),
			split(6, LtReductionInPlace, 0), split(8, LtReductionInPlace, 0))},
		{"k 200: no part of 128", 128, 200, 1 << 20, false, heur},
		{"m 4096: over 1M outputs", 4096, 768, 1 << 20, false, heur},
	}
	if tests[2].want[0].Index != 1 { // the 4 KiB limit drops algorithm 42 (8 KiB)
		t.Fatal("table")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mm, err := b.NewMatmulWith(h, tt.m, 768, tt.k, MatmulOptions{Half: true, Bias: 0xb1a5, GELU: true, SplitK: !tt.off}, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			defer mm.Destroy()
			var got []cand
			for i, c := range mm.Candidates {
				got = append(got, cand{c, mm.Splits[i]})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("candidates\n%v, want\n%v", got, tt.want)
			}
			if mm.Workspace != tt.want[0].Workspace {
				t.Errorf("in use: workspace %d, want the first candidate's %d", mm.Workspace, tt.want[0].Workspace)
			}
			lastAlgo, err := b.lib.sym("fakeLtLastAlgo")
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range mm.Candidates {
				if err := mm.UseCandidate(i); err != nil {
					t.Fatal(err)
				}
				if err := mm.Run(h, 1, 2, 3, 4, mm.Workspace, Stream{}); err != nil {
					t.Fatalf("candidate %d (%v): %v", i, c, err)
				}
				var got [64]byte
				call(lastAlgo, uintptr(unsafe.Pointer(&got[0])))
				sp := mm.Splits[i]
				if int(got[0]) != c.ID || int(got[1]) != sp.Parts || int(got[2]) != sp.Reduction {
					t.Errorf("candidate %d (%v %v): cublasLtMatmul ran algo %d split %d reduction %d", i, c, sp, got[0], got[1], got[2])
				}
			}
		})
	}
}

// TestLtCandidateString checks how kiln inspect names a cuBLASLt
// candidate, split or not.
func TestLtCandidateString(t *testing.T) {
	p := &LtMatmul{
		Candidates: []LtAlgo{{Index: 2, ID: -1}, {Index: 0, ID: 21}, {Index: 1, ID: 43}, {Index: 1, ID: 43}},
		Splits:     []LtSplit{{}, {}, {4, LtReductionInPlace}, {2, LtReductionCompute}},
	}
	for i, want := range []string{"heuristic #2", "algo 21 (heuristic #0)", "algo 43 (heuristic #1), split-K 4 (in place)",
		"algo 43 (heuristic #1), split-K 2 (float32 workspace)", "no candidate 4"} {
		if got := p.CandidateString(i); got != want {
			t.Errorf("candidate %d: %q, want %q", i, got, want)
		}
	}
}
