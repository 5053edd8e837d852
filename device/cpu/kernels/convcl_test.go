package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// TestConvCL compares the channels-as-lanes direct convolution with
// cpu.Conv2D on small-plane layer shapes of the shared CNNs and edge
// cases: output channels that are not a multiple of 64 (masked lanes),
// positions that are not a multiple of 6, strides 2, 1x1 read in place,
// pads on one side, ReLU and clip in the kernel, the residual with every
// epilogue, no bias, batches; with the assembly and with the Go tile, the
// items visited group by group and block by block.
func TestConvCL(t *testing.T) {
	if !directAsm {
		t.Skip("the direct convolutions need AVX-512 (amd64 without purego); this CPU or build has none")
	}
	cases := []struct {
		name string
		p    cpu.Conv2DParams
	}{
		{"resnet c128 7x7", pad1(cpu.Conv2DParams{N: 1, C: 128, H: 7, W: 7, M: 128, KH: 3, KW: 3, StrideH: 1, StrideW: 1, Act: cpu.ActRelu})},
		{"resnet 3x3/2 c64 14 to 128", pad1(cpu.Conv2DParams{N: 1, C: 64, H: 14, W: 14, M: 128, KH: 3, KW: 3, StrideH: 2, StrideW: 2})},
		{"mobilenet 1x1 c320 7 to 1280 (m 100)", cpu.Conv2DParams{N: 2, C: 37, H: 7, W: 7, M: 100, KH: 1, KW: 1, StrideH: 1, StrideW: 1, Act: cpu.ActClip, ActMin: 0, ActMax: 6}},
		{"squeezenet 3x3 c48 13 to 192", pad1(cpu.Conv2DParams{N: 1, C: 48, H: 13, W: 13, M: 192, KH: 3, KW: 3, StrideH: 1, StrideW: 1})},
		{"asymmetric pads, m 33", cpu.Conv2DParams{N: 1, C: 5, H: 9, W: 11, M: 33, KH: 3, KW: 3, StrideH: 1, StrideW: 1, PadTop: 0, PadLeft: 2, PadBottom: 2, PadRight: 0}},
		{"1x1/2, 1 position short of 6", cpu.Conv2DParams{N: 1, C: 16, H: 9, W: 9, M: 64, KH: 1, KW: 1, StrideH: 2, StrideW: 2}},
		{"one position", cpu.Conv2DParams{N: 1, C: 3, H: 3, W: 3, M: 40, KH: 3, KW: 3, StrideH: 1, StrideW: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			p.DilH, p.DilW, p.Group = 1, 1, 1
			if !clApplies(p) {
				t.Fatalf("clApplies(%+v) = false", p)
			}
			r := rand.New(rand.NewPCG(9, uint64(p.C*p.M)))
			x := make([]float32, p.N*p.C*p.H*p.W)
			w := make([]float32, p.M*p.C*p.KH*p.KW)
			bias := make([]float32, p.M)
			for _, s := range [][]float32{x, w, bias} {
				for i := range s {
					s[i] = r.Float32()*2 - 1
				}
			}
			n := p.N * p.M * p.OutH() * p.OutW()
			z := make([]float32, n)
			for i := range z {
				z[i] = r.Float32()*2 - 1
			}
			f := newCLFilter(w, p.M, p.C, p.KH, p.KW)
			defer func(old bool, order int) { clKernelGo, clOrder = old, order }(clKernelGo, clOrder)
			for i, goKernel := range []bool{false, true, false} {
				clKernelGo = goKernel
				// the items group by group, block by block, and by the rule
				clOrder = []int{orderTile, orderBlock, orderAuto}[i]
				for _, b := range [][]float32{bias, nil} {
					// "silu alone": the epilogue without a residual
					for _, act := range []string{"", actSiLU, actRelu, actClip, actNone, "silu alone"} {
						residual := act != ""
						want := make([]float32, n)
						cpu.Conv2D(p, x, w, b, want)
						var ep *epilogue
						var zz []float32
						pn := p
						pn.Act = cpu.ActNone
						switch {
						case act == "silu alone":
							ep = &epilogue{act: actSiLU}
							cpu.Conv2D(pn, x, w, b, want)
							ep.apply(want)
						case residual:
							ep, zz = &epilogue{act: act, p0: -0.5, p1: 0.7}, z
							cpu.Conv2D(pn, x, w, b, want)
							ep.applyAdd(want, z)
						}
						got := make([]float32, n)
						for i := range got {
							got[i] = float32(math.NaN())
						}
						convCL(p, x, f, b, got, zz, ep)
						for i := range want {
							if d := math.Abs(float64(got[i] - want[i])); !(d <= 1e-4*(1+math.Abs(float64(want[i])))) {
								t.Fatalf("go %v, order %d, bias %v, residual and %q: output %d = %g, cpu.Conv2D %g",
									goKernel, clOrder, b != nil, act, i, got[i], want[i])
							}
						}
					}
				}
			}
		})
	}
}

// TestCLBlockOuter pins the order of convCL's items (see clBlockOuter) on
// layers of the shared models: block by block for weights past 1 MiB at any
// thread count, and with two threads or more where there are two blocks or
// more and the weights outweigh the padded input.
func TestCLBlockOuter(t *testing.T) {
	for _, c := range []struct {
		name                     string
		wBytes, inBytes, mb, thr int
		want                     bool
	}{
		{"squeezenet classifier 512 -> 1000, 1 thread", 4 * 1000 * 512, 4 * 512 * 169, 16, 1, true},
		{"resnet_mini 128 -> 128 3x3 at 7x7, 1 thread", 4 * 128 * 1152, 4 * 128 * 81, 2, 1, false},
		{"resnet_mini 128 -> 128 3x3 at 7x7, 2 threads", 4 * 128 * 1152, 4 * 128 * 81, 2, 2, true},
		{"resnet_mini 64 -> 64 3x3 at 14x14, 2 threads: one block", 4 * 64 * 576, 4 * 64 * 256, 1, 2, false},
		{"mobilenet_v2 960 -> 160 1x1 at 7x7, 2 threads: 3 blocks", 4 * 192 * 960, 4 * 960 * 49, 3, 2, true},
		{"mobilenet_v2 24 -> 144 1x1 at 56x56, 2 threads: input past the weights", 4 * 192 * 24, 4 * 24 * 56 * 56, 3, 2, false},
		{"2 blocks over 4 threads", 4 * 128 * 1152, 4 * 128 * 81, 2, 4, true},
	} {
		if got := clBlockOuter(c.wBytes, c.inBytes, c.mb, c.thr); got != c.want {
			t.Errorf("%s: clBlockOuter = %v, want %v", c.name, got, c.want)
		}
	}
}
