package partition

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine/tactic"
)

// TestCPUSegmentWorkspace: a CPU segment's layers are timed under
// Options.Workspace as a CPU build's are under --workspace (a limit no
// tactic fits fails the compile with tactic.ErrWorkspace, naming the
// layer), and Options.Progress hears of each tactic timed.
func TestCPUSegmentWorkspace(t *testing.T) {
	g := matmulChain(t)
	fp := device.Fingerprint{"device": "cpu", "isa": "workspace-test"}
	for _, tt := range []struct {
		name      string
		workspace int64
		fail      bool
	}{
		{"no limit", 0, false},
		{"ample", 1 << 30, false},
		{"one byte", 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := device.ExecOptions{Tune: true, TimingCache: filepath.Join(t.TempDir(), "kiln.timing"),
				MaxShapes: map[string][]int{"x": {64, 64}}, OptShapes: map[string][]int{"x": {32, 64}}}
			var heard []tactic.Progress
			prog, _, err := Compile(g, &fakeExec{name: "gpu", ops: gpuOps}, o, Options{CPU: fp, Workspace: tt.workspace,
				Progress: func(p tactic.Progress) { heard = append(heard, p) }})
			if tt.fail {
				if !errors.Is(err, tactic.ErrWorkspace) {
					t.Fatalf("Compile under a workspace of %d bytes: %v, want tactic.ErrWorkspace", tt.workspace, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			if chosen := CPUTactics(prog)["segment1"]; len(chosen) != 1 {
				t.Fatalf("CPU segment's choices: %v", chosen)
			}
			if len(heard) < 2 {
				t.Errorf("progress heard %d tactics, want every tactic of the product (several)", len(heard))
			}
			for _, p := range heard {
				if p.Op != "kiln::FusedMatMul" || p.N != 1 {
					t.Errorf("progress %+v, want the product, layer 1 of 1", p)
				}
			}
		})
	}
}
