package partition

import (
	"context"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// BenchmarkHostArena runs a context of a partitioned program (two CPU
// segments of unary ops between three fake-device segments, x[64,1024]:
// 256 KiB per tensor) and reports the host bytes and allocations per run,
// the context's memory (ArenaBytes, the fake device's included) and its
// host arena's: with device contexts that return tensors of their own
// ("device-owned outputs"), and with device contexts that write them into
// the host arena (device.OutputsInto: "device outputs in the arena"; their
// ArenaBytes is memExec's model, not memory).
func BenchmarkHostArena(b *testing.B) {
	bd := ir.NewBuilder("bench", 17)
	x := bd.Input("x", tensor.Float32, ir.S("batch"), ir.D(1024))
	v := bd.Op("Relu", []*ir.Value{x})
	for _, op := range []string{"Tanh", "Neg"} {
		v = bd.Op(op, []*ir.Value{v})
	}
	v = bd.Op("Sigmoid", []*ir.Value{v})
	for _, op := range []string{"Abs", "Neg", "Tanh"} {
		v = bd.Op(op, []*ir.Value{v})
	}
	bd.Output(bd.Op("Relu", []*ir.Value{v}), "y")
	g := bd.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		x    func() device.Executor
	}{
		{"device-owned outputs", func() device.Executor { return &ctxExec{fakeExec: &fakeExec{name: "gpu", ops: gpuOps}} }},
		{"device outputs in the arena", func() device.Executor {
			return memExec{&ctxExec{fakeExec: &fakeExec{name: "gpu", ops: gpuOps}}}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			prog, _, err := Compile(g.Clone(), bc.x(), device.ExecOptions{MaxShapes: map[string][]int{"x": {64, 1024}}}, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer prog.Close()
			c, err := prog.(device.Contexts).NewContext()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			in := map[string]*tensor.Tensor{"x": tensor.New(tensor.Float32, 64, 1024)}
			for i := range in["x"].Float32s() {
				in["x"].Float32s()[i] = float32(i%13) - 6
			}
			for range 3 {
				if _, err := c.Run(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Run(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
			host, _, _ := HostArena(c)
			b.ReportMetric(float64(c.ArenaBytes()), "ArenaBytes")
			b.ReportMetric(float64(host), "HostArenaBytes")
		})
	}
}
