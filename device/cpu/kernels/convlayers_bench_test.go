package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/device/cpu/kernels"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
)

// convLayer is one 2-D convolution of a shared model, as the optimizer
// leaves it.
type convLayer struct {
	name string
	p    cpu.Conv2DParams
}

// sharedConvs returns the 2-D float32 convolutions (Conv and FusedConv) of
// a shared model after optimize.Run at level 2, with the input shape of its
// test data set.
func sharedConvs(b *testing.B, model string) []convLayer {
	b.Helper()
	dir := filepath.Join(sharedModelsDir, model)
	path := filepath.Join(dir, "model.onnx")
	g := loadGraph(b, path)
	for i, v := range g.Inputs {
		if v.Const != nil {
			continue
		}
		t, _, err := onnx.ReadTensorFile(filepath.Join(dir, "test_data_set_0", fmt.Sprintf("input_%d.pb", i)))
		if err != nil {
			b.Skipf("needs the test input of %s: %v", model, err)
		}
		v.Type.Shape = ir.KnownShape(t.Shape...)
	}
	if err := optimize.Run(g, 2, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := ops.InferGraph(g); err != nil {
		b.Fatal(err)
	}
	var out []convLayer
	for _, n := range g.Nodes {
		if n.OpType != "Conv" && n.OpType != "FusedConv" {
			continue
		}
		xs, ok1 := n.Inputs[0].Type.Shape.Ints()
		ws, ok2 := n.Inputs[1].Type.Shape.Ints()
		ys, ok3 := n.Outputs[0].Type.Shape.Ints()
		if !ok1 || !ok2 || !ok3 || len(xs) != 4 {
			continue
		}
		a := ops.AttrsOf(n)
		pads := a.Ints("pads", []int64{0, 0, 0, 0})
		strides := a.Ints("strides", []int64{1, 1})
		dil := a.Ints("dilations", []int64{1, 1})
		if len(pads) != 4 || a.String("auto_pad", "NOTSET") != "NOTSET" {
			continue
		}
		p := cpu.Conv2DParams{N: xs[0], C: xs[1], H: xs[2], W: xs[3], M: ws[0], KH: ws[2], KW: ws[3],
			Group: int(a.Int("group", 1)), StrideH: int(strides[0]), StrideW: int(strides[1]),
			DilH: int(dil[0]), DilW: int(dil[1]), PadTop: int(pads[0]), PadLeft: int(pads[1]),
			PadBottom: int(pads[2]), PadRight: int(pads[3])}
		if p.Validate() != nil || p.OutH() != ys[2] || p.OutW() != ys[3] {
			continue
		}
		out = append(out, convLayer{name: n.Name, p: p})
	}
	return out
}

// BenchmarkConvLayers times every 2-D convolution of the shared CNNs with
// each algorithm that applies to it (cpu.ConvAlgos) and reports GFLOP/s
// (2*N*M*OutH*OutW*C/Group*KH*KW per run). It is the per-layer profile the
// notes in NOTES.md quote:
//
//	go test ./device/cpu/kernels -run '^$' -bench ConvLayers/resnet_mini -benchtime 50x
func BenchmarkConvLayers(b *testing.B) {
	for _, m := range []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "yolo_tiny"} {
		b.Run(m, func(b *testing.B) {
			layers := sharedConvs(b, m)
			for i, l := range layers {
				p := l.p
				r := rand.New(rand.NewPCG(1, uint64(i)))
				x := randF32(r, p.N*p.C*p.H*p.W)
				w := randF32(r, p.M*(p.C/p.Group)*p.KH*p.KW)
				bias := randF32(r, p.M)
				y := make([]float32, p.N*p.M*p.OutH()*p.OutW())
				flops := 2 * float64(p.N*p.M*p.OutH()*p.OutW()) * float64(p.C/p.Group*p.KH*p.KW)
				run := map[string]func(){}
				var names []string
				for _, a := range cpu.ConvAlgos(p) {
					names = append(names, string(a))
					run[string(a)] = func() { cpu.Conv2DWith(a, p, x, w, bias, y) }
					if a == cpu.ConvWinograd2 || a == cpu.ConvWinograd4 {
						// as a plan runs it: the filter transformed once
						if f, err := cpu.NewWinogradFilter(a, p, w); err == nil {
							run[string(a)] = func() { cpu.Conv2DWinograd(p, x, f, bias, y) }
						}
					}
				}
				if d := kernels.DirectConv(p, w); d != nil {
					names = append(names, "direct")
					run["direct"] = func() { d(x, bias, y) }
					if p.OutW() >= 40 && (p.PadLeft+p.PadRight > 0 || p.StrideW > 1) {
						// the same without the row-by-row tiling
						names = append(names, "direct-wide")
						run["direct-wide"] = func() {
							kernels.SetDirectWide(true)
							d(x, bias, y)
							kernels.SetDirectWide(false)
						}
					}
				}
				if d := kernels.CLConv(p, w); d != nil {
					names = append(names, "direct-cl")
					run["direct-cl"] = func() { d(x, bias, y) }
				}
				if d := kernels.GemmTConv(p, w); d != nil && kernels.GemmTOffered(p) {
					names = append(names, "gemm-t")
					run["gemm-t"] = func() { d(x, bias, y) }
				}
				if d := kernels.WinoConv(p, w, false); d != nil {
					names = append(names, "wino4-direct")
					run["wino4-direct"] = func() { d(x, bias, y) }
				}
				if d := kernels.WinoConv(p, w, true); d != nil {
					names = append(names, "wino4-cl")
					run["wino4-cl"] = func() { d(x, bias, y) }
				}
				for _, a := range names {
					name := fmt.Sprintf("%02d_c%d_m%d_%dx%d_k%d_s%d_g%d/%s", i, p.C, p.M, p.H, p.W, p.KH, p.StrideH, p.Group, a)
					f := run[a]
					b.Run(name, func(b *testing.B) {
						b.ReportAllocs()
						c0 := cpuTime()
						for b.Loop() {
							f()
						}
						b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
						b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-us/op")
					})
				}
			}
		})
	}
}

func randF32(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = r.Float32()*2 - 1
	}
	return s
}
