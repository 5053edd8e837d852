package gpuexec

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

const intervalsFile = "testdata/memplan_intervals.txt"

// TestModelsIntervals: the buffers the executor gives the packer for
// every shared model (optimized, at its test_data_set_0 shapes, float32
// and half, and float32 with keep), their sizes and lifetimes in order,
// and the arena's size are those of testdata/memplan_intervals.txt
// (written with -update): a change to how lifetimes are computed that
// moves one interval shows here, not only in an arena's total. It needs
// no GPU (compiling only plans).
func TestModelsIntervals(t *testing.T) {
	got := map[string]string{}
	var keys []string
	for _, name := range []string{"bert_mini", "mobilenet_v2", "resnet_mini", "squeezenet1_1", "yolo_tiny"} {
		path := modelPath(t, name)
		g := optimizedGraph(t, path, testInputs(t, name))
		for _, cfg := range []struct{ keep, half bool }{{false, false}, {false, true}, {true, false}} {
			key := fmt.Sprintf("%s/keep=%v/half=%v", name, cfg.keep, cfg.half)
			p, err := compile(g, cfg.keep, cfg.half)
			if err != nil {
				got[key] = "error " + err.Error()
			} else {
				var b strings.Builder
				fmt.Fprintf(&b, "%d", p.arena)
				for _, s := range p.stores {
					fmt.Fprintf(&b, " %d:%d..%d", s.size, s.first, s.last)
				}
				got[key] = b.String()
			}
			keys = append(keys, key)
		}
	}
	if *updateGolden {
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s %s\n", k, got[k])
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
