package engine

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"
)

// BenchmarkModels times one inference of every shared model, as loaded (O0)
// and optimized (O3), with the arena (one context, as a serving instance
// holds) and without (NoArena: every output a fresh zeroed allocation),
// alternating the two in every iteration so that both see the same load.
// It reports the median milliseconds per inference of each (arena-ms,
// noarena-ms), the bytes each allocates per inference (arena-B/run,
// noarena-B/run) and the plan's ArenaBytes and IntermediateBytes.
//
//	go test ./engine -run x -bench Models -benchtime 20x
func BenchmarkModels(b *testing.B) {
	for _, name := range sharedModels(b) {
		for _, level := range []int{0, 3} {
			b.Run(fmt.Sprintf("%s/O%d", name, level), func(b *testing.B) {
				probe, err := New(loadModel(b, name, level))
				if err != nil {
					b.Fatal(err)
				}
				in, shapes := modelInputs(b, name, probe)
				var ctxs [2]*Context // arena, NoArena
				for i, noArena := range []bool{false, true} {
					e, err := NewWithOptions(loadModel(b, name, level), Options{MaxShapes: shapes, NoArena: noArena})
					if err != nil {
						b.Fatal(err)
					}
					ctxs[i] = e.NewContext()
					if _, err := ctxs[i].Run(context.Background(), in); err != nil { // warm up: arena, scratch pools
						b.Fatal(err)
					}
				}
				var times [2][]float64
				var bytes [2]uint64
				var ms runtime.MemStats
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for j, c := range ctxs {
						runtime.ReadMemStats(&ms)
						before := ms.TotalAlloc
						start := time.Now()
						if _, err := c.Run(context.Background(), in); err != nil {
							b.Fatal(err)
						}
						times[j] = append(times[j], float64(time.Since(start))/1e6)
						runtime.ReadMemStats(&ms)
						bytes[j] += ms.TotalAlloc - before
					}
				}
				b.StopTimer()
				m := ctxs[0].Engine().Memory()
				b.ReportMetric(median(times[0]), "arena-ms")
				b.ReportMetric(median(times[1]), "noarena-ms")
				b.ReportMetric(float64(bytes[0])/float64(b.N), "arena-B/run")
				b.ReportMetric(float64(bytes[1])/float64(b.N), "noarena-B/run")
				b.ReportMetric(float64(m.ArenaBytes), "ArenaBytes")
				b.ReportMetric(float64(m.IntermediateBytes), "IntermediateBytes")
			})
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
