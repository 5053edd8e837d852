package build_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/build"
)

// TestMemoryLogInPlace checks the build log's memory line: it gives the
// arena and how many intermediates are written in place over a residual
// that dies there (engine.MemoryStats.InPlace), the count the CPU engine
// of the plan's graph at the profile's max shapes reports: none at level 1 (no blocked convolutions),
// some at level 2 (BlockedConv writes its output over its residual).
func TestMemoryLogInPlace(t *testing.T) {
	needBlocked(t)
	for _, tt := range []struct {
		level   int
		inPlace bool
	}{{1, false}, {2, true}} {
		t.Run(fmt.Sprintf("level %d", tt.level), func(t *testing.T) {
			var log []string
			res, err := build.Build(context.Background(), filepath.Join(sharedModels, "resnet_mini", "model.onnx"),
				build.Options{OptLevel: tt.level, NoTiming: true, Log: func(m string) { log = append(log, m) }})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			if len(res.Header.Profiles) != 1 {
				t.Fatalf("%d profiles, want the default one", len(res.Header.Profiles))
			}
			e, err := engine.NewWithOptions(res.Graph, engine.Options{MemoryLimit: -1, Profiles: res.Header.Profiles})
			if err != nil {
				t.Fatal(err)
			}
			m := e.Memory()
			if (m.InPlace > 0) != tt.inPlace {
				t.Fatalf("the engine writes %d intermediates in place, want some: %v", m.InPlace, tt.inPlace)
			}
			want := fmt.Sprintf("memory (default, profile 0): arena %d bytes for %d of %d intermediates totalling %d bytes, %d written in place over a residual",
				m.ArenaBytes, m.InArena, m.Values, m.IntermediateBytes, m.InPlace)
			if all := strings.Join(log, "\n"); !strings.Contains(all, want) {
				t.Errorf("the build log lacks %q:\n%s", want, all)
			}
		})
	}
}
