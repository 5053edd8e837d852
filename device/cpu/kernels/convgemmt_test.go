package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// TestConvGemmT compares the transposed-GEMM convolution (gemm-t) with
// cpu.Conv2D on resnet50's small-plane 1x1 and 3x3 shapes and edge cases:
// positions that are not a multiple of the GEMM's 14-row tile or of 16
// (the transposes' masked lanes), channels and taps that are not a
// multiple of 16 or 32, stride 2 (gathered input), pads on one side,
// 5x5 and 3x1 kernels, products small enough for the GEMM's
// single-goroutine path, ReLU
// and clip in the write, the residual with every epilogue, SiLU alone, no
// bias, batches; with the AVX-512 transposes and the Go ones.
func TestConvGemmT(t *testing.T) {
	cases := []struct {
		name string
		p    cpu.Conv2DParams
	}{
		{"resnet50 layer4 conv1 2048 -> 512 at 7x7", cpu.Conv2DParams{N: 1, C: 2048, H: 7, W: 7, M: 512, Act: cpu.ActRelu}},
		{"resnet50 layer4 downsample 1024 -> 2048 /2 at 14x14", cpu.Conv2DParams{N: 1, C: 1024, H: 14, W: 14, M: 2048, StrideH: 2, StrideW: 2}},
		{"resnet50 layer3 conv3 256 -> 1024 at 14x14, batch 2", cpu.Conv2DParams{N: 2, C: 256, H: 14, W: 14, M: 1024}},
		{"odd channels 37 -> 100 at 9x11", cpu.Conv2DParams{N: 1, C: 37, H: 9, W: 11, M: 100, Act: cpu.ActClip, ActMin: 0, ActMax: 6}},
		{"stride 2 on odd sizes, 16 -> 33, 13x10", cpu.Conv2DParams{N: 2, C: 16, H: 13, W: 10, M: 33, StrideH: 2, StrideW: 2}},
		{"small product, 16 -> 32 at 3x3", cpu.Conv2DParams{N: 1, C: 16, H: 3, W: 3, M: 32, Act: cpu.ActRelu}},
		{"stride 1x2, 24 -> 48 at 28x28", cpu.Conv2DParams{N: 1, C: 24, H: 28, W: 28, M: 48, StrideH: 1, StrideW: 2}},
		{"resnet50 layer4 conv2 3x3 512 at 7x7", cpu.Conv2DParams{N: 1, C: 512, H: 7, W: 7, M: 512, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, Act: cpu.ActRelu}},
		{"resnet50 layer3.0 conv2 3x3/2 256 at 28x28, batch 2", cpu.Conv2DParams{N: 2, C: 256, H: 28, W: 28, M: 256, KH: 3, KW: 3, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}},
		{"3x3 asymmetric pads, 5 -> 33 at 9x11 (k 45)", cpu.Conv2DParams{N: 1, C: 5, H: 9, W: 11, M: 33, KH: 3, KW: 3, PadTop: 0, PadLeft: 2, PadBottom: 2, PadRight: 0}},
		{"5x5/2 same, 3 -> 40 at 17x13 (k 75)", cpu.Conv2DParams{N: 1, C: 3, H: 17, W: 13, M: 40, KH: 5, KW: 5, StrideH: 2, StrideW: 2, PadTop: 2, PadLeft: 2, PadBottom: 2, PadRight: 2, Act: cpu.ActClip, ActMin: -0.2, ActMax: 0.4}},
		{"stem 7x7/2 3 -> 64 at 96x96: two bands of positions, batch 2", cpu.Conv2DParams{N: 2, C: 3, H: 96, W: 96, M: 64, KH: 7, KW: 7, StrideH: 2, StrideW: 2, PadTop: 3, PadLeft: 3, PadBottom: 3, PadRight: 3, Act: cpu.ActRelu}},
		{"1x1 64 -> 48 at 64x64: bands of positions", cpu.Conv2DParams{N: 1, C: 64, H: 64, W: 64, M: 48}},
		{"3x1 no pads, 16 -> 64 at 6x6 (k 48)", cpu.Conv2DParams{N: 1, C: 16, H: 6, W: 6, M: 64, KH: 3, KW: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			p.DilH, p.DilW, p.Group = 1, 1, 1
			if p.KH == 0 {
				p.KH, p.KW = 1, 1
			}
			if p.StrideH == 0 {
				p.StrideH, p.StrideW = 1, 1
			}
			if !gemmTApplies(p) {
				t.Fatalf("gemmTApplies(%+v) = false", p)
			}
			r := rand.New(rand.NewPCG(11, uint64(p.C*p.M)))
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
			f := newGemmTFilter(w, p.M, p.C, p.KH, p.KW)
			if !f.fits(p) {
				t.Fatal("the filter does not fit its own shape")
			}
			defer func(old bool) { gemmTKernelGo = old }(gemmTKernelGo)
			kernels := []bool{true}
			if directAsm {
				kernels = []bool{false, true}
			}
			for _, goKernel := range kernels {
				gemmTKernelGo = goKernel
				for _, b := range [][]float32{bias, nil} {
					// "": p.Act in the write; "silu alone": the epilogue
					// without a residual; the others with the residual
					for _, act := range []string{"", actSiLU, actRelu, actClip, actNone, "silu alone"} {
						residual := act != "" && act != "silu alone"
						want := make([]float32, n)
						var ep *epilogue
						var zz []float32
						pn := p
						pn.Act = cpu.ActNone
						switch {
						case act == "":
							cpu.Conv2D(p, x, w, b, want)
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
						convGemmT(p, x, f, b, got, zz, ep)
						for i := range want {
							if d := math.Abs(float64(got[i] - want[i])); !(d <= 1e-4*(1+math.Abs(float64(want[i])))) {
								t.Fatalf("go %v, bias %v, %q: output %d = %g, cpu.Conv2D %g",
									goKernel, b != nil, act, i, got[i], want[i])
							}
						}
					}
				}
			}
		})
	}
}

// TestGemmTApplies pins which convolutions the tactic computes and which
// FusedConv offers it for.
func TestGemmTApplies(t *testing.T) {
	base := cpu.Conv2DParams{N: 1, C: 512, H: 7, W: 7, M: 2048, KH: 1, KW: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1}
	for _, c := range []struct {
		name           string
		edit           func(p *cpu.Conv2DParams)
		apply, offered bool
	}{
		{"resnet50 layer4 conv3", func(p *cpu.Conv2DParams) {}, true, true},
		{"3x3", func(p *cpu.Conv2DParams) { p.KH, p.KW = 3, 3 }, true, true},
		{"padded", func(p *cpu.Conv2DParams) { p.PadTop = 1 }, true, true},
		{"dilated 3x3", func(p *cpu.Conv2DParams) { p.KH, p.KW, p.DilH, p.DilW = 3, 3, 2, 2 }, false, false},
		{"1x1 of 15 input channels", func(p *cpu.Conv2DParams) { p.C = 15 }, false, false},
		{"3x3 of 2 input channels", func(p *cpu.Conv2DParams) { p.C, p.KH, p.KW = 2, 3, 3 }, true, true},
		{"resnet50 stem 7x7/2 3 -> 64 at 224x224", func(p *cpu.Conv2DParams) {
			p.C, p.M, p.H, p.W, p.KH, p.KW, p.StrideH, p.StrideW, p.PadTop, p.PadLeft, p.PadBottom, p.PadRight = 3, 64, 224, 224, 7, 7, 2, 2, 3, 3, 3, 3
		}, true, false},
		{"3x3 at 28x28 of 512 channels: X^T past 4 MiB", func(p *cpu.Conv2DParams) {
			p.H, p.W, p.KH, p.KW, p.PadTop, p.PadLeft, p.PadBottom, p.PadRight = 28, 28, 3, 3, 1, 1, 1, 1
		}, true, false},
		{"two groups", func(p *cpu.Conv2DParams) { p.Group, p.M = 2, 2048 }, false, false},
		{"16 output channels", func(p *cpu.Conv2DParams) { p.M = 16 }, false, false},
		{"14x14", func(p *cpu.Conv2DParams) { p.H, p.W = 14, 14 }, true, true},
		{"20x20", func(p *cpu.Conv2DParams) { p.H, p.W = 20, 20 }, true, false},
		{"28x28", func(p *cpu.Conv2DParams) { p.H, p.W = 28, 28 }, true, false},
		{"28x28 stride 2", func(p *cpu.Conv2DParams) { p.H, p.W, p.StrideH, p.StrideW = 28, 28, 2, 2 }, true, true},
		{"56x56 stride 2", func(p *cpu.Conv2DParams) { p.H, p.W, p.StrideH, p.StrideW = 56, 56, 2, 2 }, true, false},
	} {
		p := base
		c.edit(&p)
		if got := gemmTApplies(p); got != c.apply {
			t.Errorf("%s: gemmTApplies = %v, want %v", c.name, got, c.apply)
		}
		if got := gemmTOffered(p); got != c.offered {
			t.Errorf("%s: gemmTOffered = %v, want %v", c.name, got, c.offered)
		}
	}
}

// TestGemmTBand pins the bands of positions convGemmT computes at a time on
// the shapes TestConvGemmT runs and resnet50's.
func TestGemmTBand(t *testing.T) {
	for _, c := range []struct {
		name         string
		hw, ldx, ldy int
		band, nbands int
	}{
		{"resnet50 layer4 3x3: one band", 49, gemmTLd(4608), gemmTLd(512), 49, 1},
		{"resnet50 layer3 1x1 1024 -> 256: one band", 196, gemmTLd(1024), gemmTLd(256), 196, 1},
		{"stem 7x7/2 3 -> 64 at 96x96", 48 * 48, gemmTLd(147), gemmTLd(64), 1162, 2},
		{"1x1 64 -> 48 at 64x64", 64 * 64, gemmTLd(64), gemmTLd(48), 2338, 2},
		{"resnet50 stem", 112 * 112, gemmTLd(147), gemmTLd(64), 1162, 11},
	} {
		b := gemmTBand(c.hw, c.ldx, c.ldy)
		if n := (c.hw + b - 1) / b; b != c.band || n != c.nbands {
			t.Errorf("%s: band %d (%d bands), want %d (%d)", c.name, b, n, c.band, c.nbands)
		}
		if b < c.hw && (b%14 != 0 || 4*b*(c.ldx+c.ldy) > 1<<20) {
			t.Errorf("%s: band %d is not a multiple of 14 that fits 1 MiB", c.name, b)
		}
	}
}

// TestConvGemmTConcurrent runs one packed filter from several goroutines at
// once, as concurrent requests of a served plan do (each call takes its own
// pooled state and scratch), and checks every result.
func TestConvGemmTConcurrent(t *testing.T) {
	p := cpu.Conv2DParams{N: 1, C: 64, H: 7, W: 7, M: 96, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1,
		PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, Act: cpu.ActRelu}
	r := rand.New(rand.NewPCG(13, 14))
	w := make([]float32, p.M*p.C*9)
	for i := range w {
		w[i] = r.Float32()*2 - 1
	}
	f := newGemmTFilter(w, p.M, p.C, p.KH, p.KW)
	const workers = 4
	xs, wants := make([][]float32, workers), make([][]float32, workers)
	for g := range workers {
		xs[g] = make([]float32, p.C*p.H*p.W)
		for i := range xs[g] {
			xs[g][i] = r.Float32()*2 - 1
		}
		wants[g] = make([]float32, p.M*p.OutH()*p.OutW())
		cpu.Conv2D(p, xs[g], w, nil, wants[g])
	}
	errs := make(chan string, workers)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := make([]float32, len(wants[g]))
			for range 20 {
				convGemmT(p, xs[g], f, nil, got, nil, nil)
				for i, v := range got {
					if d := math.Abs(float64(v - wants[g][i])); !(d <= 1e-4*(1+math.Abs(float64(wants[g][i])))) {
						errs <- fmt.Sprintf("goroutine %d: output %d = %g, want %g", g, i, v, wants[g][i])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
