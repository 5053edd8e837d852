package engine

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine/arena"
)

var updateIntervals = flag.Bool("update", false, "rewrite testdata/memplan_intervals.txt from the current planner")

const intervalsFile = "testdata/memplan_intervals.txt"

// formatBuffers writes buffers as "size:first..last", space separated.
func formatBuffers(bufs []arena.Buffer) string {
	var b strings.Builder
	for i, x := range bufs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%d..%d", x.Size, x.First, x.Last)
	}
	return b.String()
}

// TestModelsIntervals: the buffers the engine's memory plan gives package
// arena for every shared model (unoptimized and at level 3, at its
// test_data_set_0 shapes) are, in order, those of
// testdata/memplan_intervals.txt (written with -update): a change to how
// lifetimes are computed that moves one interval shows here, not only in
// an arena's total.
func TestModelsIntervals(t *testing.T) {
	names := sharedModels(t)
	got := map[string]string{}
	var keys []string
	for _, name := range names {
		for _, level := range []int{0, 3} {
			key := fmt.Sprintf("%s/O%d", name, level)
			ref, err := New(loadModel(t, name, level))
			if err != nil {
				t.Fatal(err)
			}
			_, shapes := modelInputs(t, name, ref)
			e, err := NewWithOptions(loadModel(t, name, level), Options{MaxShapes: shapes})
			if err != nil {
				t.Fatal(err)
			}
			if e.mem == nil {
				t.Fatalf("%s: no memory plan", key)
			}
			got[key] = fmt.Sprintf("%d %s", e.mem.arenaBytes, formatBuffers(e.mem.buffers))
			keys = append(keys, key)
		}
	}
	if *updateIntervals {
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s %s\n", k, got[k])
		}
		if err := os.MkdirAll(filepath.Dir(intervalsFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(intervalsFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(intervalsFile)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, _ := strings.Cut(line, " ")
		want[k] = v
	}
	for _, k := range keys {
		w, ok := want[k]
		if !ok {
			t.Errorf("%s: not in %s (rewrite it with -update)", k, intervalsFile)
			continue
		}
		if got[k] != w {
			t.Errorf("%s: buffers differ from %s:\n got %.300s\nwant %.300s", k, intervalsFile, got[k], w)
		}
	}
}
