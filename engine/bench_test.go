package engine

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkModels times one inference of every shared model, as loaded (O0)
// and optimized (O3), with the arena (one context, as a serving instance
// holds) and without (NoArena: every output a fresh zeroed allocation).
// The reported arena-B and intermediate-B are Memory()'s ArenaBytes and
// IntermediateBytes.
//
//	go test ./engine -run x -bench Models -benchtime 20x
func BenchmarkModels(b *testing.B) {
	for _, name := range sharedModels(b) {
		for _, level := range []int{0, 3} {
			for _, noArena := range []bool{false, true} {
				mode := "arena"
				if noArena {
					mode = "noarena"
				}
				b.Run(fmt.Sprintf("%s/O%d/%s", name, level, mode), func(b *testing.B) {
					probe, err := New(loadModel(b, name, level))
					if err != nil {
						b.Fatal(err)
					}
					in, shapes := modelInputs(b, name, probe)
					e, err := NewWithOptions(loadModel(b, name, level), Options{MaxShapes: shapes, NoArena: noArena})
					if err != nil {
						b.Fatal(err)
					}
					c := e.NewContext()
					if _, err := c.Run(context.Background(), in); err != nil { // warm up: arena, scratch pools
						b.Fatal(err)
					}
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if _, err := c.Run(context.Background(), in); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					m := e.Memory()
					b.ReportMetric(float64(m.ArenaBytes), "arena-B")
					b.ReportMetric(float64(m.IntermediateBytes), "intermediate-B")
				})
			}
		}
	}
}
