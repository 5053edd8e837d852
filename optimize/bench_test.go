package optimize

import (
	"context"
	"testing"

	"github.com/kilnai/kiln/engine"
)

// BenchmarkResNetMini compares the engine latency of resnet_mini on its
// test input without and with the level-2 passes.
func BenchmarkResNetMini(b *testing.B) {
	for _, bc := range []struct {
		name  string
		level int
	}{{"unoptimized", 0}, {"optimized", 2}} {
		b.Run(bc.name, func(b *testing.B) {
			g, dir := loadModel(b, "resnet_mini")
			if err := Run(g, bc.level, nil); err != nil {
				b.Fatal(err)
			}
			e, err := engine.New(g)
			if err != nil {
				b.Fatal(err)
			}
			in, _ := loadDataSet(b, e, dir)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := e.Run(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
