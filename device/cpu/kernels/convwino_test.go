package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// TestConvWino compares the Winograd F(4x4, 3x3) convolution with
// cpu.Conv2D on the 3x3 stride-1 layer shapes of the shared CNNs and on
// edge cases: outputs that are not a multiple of 4 (overhanging tiles
// copied out), outputs that are (written in place), output channels that
// are not a multiple of 8, more than 48 tiles, pads on one side or none,
// a 1x1 and a 2x3 output, ReLU and clip in the transform, the residual with
// every epilogue, no bias, batches; with the AVX-512 transforms and with
// the Go ones.
func TestConvWino(t *testing.T) {
	if !directAsm {
		t.Skip("the Winograd convolution needs AVX-512 (amd64 without purego); this CPU or build has none")
	}
	cases := []struct {
		name string
		p    cpu.Conv2DParams
	}{
		{"resnet c16 56", pad1(cpu.Conv2DParams{N: 1, C: 16, H: 56, W: 56, M: 16, Act: cpu.ActRelu})},
		{"resnet c128 7", pad1(cpu.Conv2DParams{N: 1, C: 128, H: 7, W: 7, M: 128})},
		{"squeezenet c16 55 to 64", pad1(cpu.Conv2DParams{N: 1, C: 16, H: 55, W: 55, M: 64, Act: cpu.ActRelu})},
		{"yolo c64 40", pad1(cpu.Conv2DParams{N: 1, C: 64, H: 40, W: 40, M: 64})},
		{"yolo c32 80 to 16, clip", pad1(cpu.Conv2DParams{N: 1, C: 32, H: 80, W: 80, M: 16, Act: cpu.ActClip, ActMin: -0.5, ActMax: 6})},
		{"m 13, batch 2, 9x10", pad1(cpu.Conv2DParams{N: 2, C: 5, H: 9, W: 10, M: 13})},
		{"no pads 9x10", cpu.Conv2DParams{N: 2, C: 4, H: 9, W: 10, M: 8}},
		{"asymmetric pads", cpu.Conv2DParams{N: 1, C: 7, H: 15, W: 13, M: 9, PadTop: 0, PadLeft: 2, PadBottom: 2, PadRight: 0}},
		{"1x1 output", cpu.Conv2DParams{N: 1, C: 3, H: 3, W: 3, M: 17}},
		{"2x3 output, pads 1", pad1(cpu.Conv2DParams{N: 1, C: 2, H: 2, W: 3, M: 3})},
		{"one wide row", pad1(cpu.Conv2DParams{N: 1, C: 3, H: 1, W: 150, M: 5})},
		{"many tiles", pad1(cpu.Conv2DParams{N: 1, C: 3, H: 100, W: 67, M: 9})},
		{"15 tiles a row", pad1(cpu.Conv2DParams{N: 1, C: 3, H: 8, W: 60, M: 8})},
		{"16 tiles a row, no pads", cpu.Conv2DParams{N: 1, C: 4, H: 10, W: 66, M: 8}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			p.KH, p.KW, p.StrideH, p.StrideW, p.DilH, p.DilW, p.Group = 3, 3, 1, 1, 1, 1, 1
			if !winoApplies(p) {
				t.Fatalf("winoApplies(%+v) = false", p)
			}
			r := rand.New(rand.NewPCG(5, uint64(p.C*p.M+p.H)))
			x := make([]float32, p.N*p.C*p.H*p.W)
			w := make([]float32, p.M*p.C*9)
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
			// The transforms round differently from the direct sum: the
			// tolerance scales with the sum of the products' magnitudes.
			absX := make([]float32, len(x))
			absW := make([]float32, len(w))
			for i, v := range x {
				absX[i] = float32(math.Abs(float64(v)))
			}
			for i, v := range w {
				absW[i] = float32(math.Abs(float64(v)))
			}
			pa := p
			pa.Act = cpu.ActNone
			scale := make([]float32, n)
			cpu.Conv2D(pa, absX, absW, nil, scale)
			fd := newWinoFilter(w, p.M, p.C, false)
			fc := newWinoFilter(w, p.M, p.C, true)
			defer func(old bool) { winoKernelsGo = old }(winoKernelsGo)
			defer func(old int) { winoMode = old }(winoMode)
			for _, mode := range []struct {
				goKernels bool
				mode      int
				cl        bool
			}{{false, winoAuto, false}, {false, winoImage, false}, {false, winoBandsOf2, false}, {true, winoAuto, false},
				{false, winoImage, true}, {false, winoBandsOf2, true}} {
				goKernels := mode.goKernels
				winoKernelsGo, winoMode = goKernels, mode.mode
				f := fd
				if mode.cl {
					f = fc
				}
				for _, b := range [][]float32{bias, nil} {
					// "silu alone": the epilogue without a residual (per plane)
					for _, act := range []string{"", actSiLU, actRelu, actClip, actNone, "silu alone"} {
						residual := act != ""
						want := make([]float32, n)
						cpu.Conv2D(p, x, w, b, want)
						var ep *epilogue
						var zz []float32
						switch {
						case act == "silu alone":
							ep = &epilogue{act: actSiLU}
							cpu.Conv2D(pa, x, w, b, want)
							ep.apply(want)
						case residual:
							ep, zz = &epilogue{act: act, p0: -0.5, p1: 0.7}, z
							cpu.Conv2D(pa, x, w, b, want)
							ep.applyAdd(want, z)
						}
						got := make([]float32, n)
						for i := range got {
							got[i] = float32(math.NaN())
						}
						convWino(p, x, f, b, got, zz, ep)
						for i := range want {
							tol := 2e-5 * (2 + float64(scale[i]))
							if d := math.Abs(float64(got[i] - want[i])); !(d <= tol) {
								t.Fatalf("go kernels %v, mode %d, cl %v, bias %v, residual and %q: output %d = %g, cpu.Conv2D %g (tolerance %g)",
									goKernels, mode.mode, mode.cl, b != nil, act, i, got[i], want[i], tol)
							}
						}
					}
				}
			}
		})
	}
}

// TestWinoKernels compares each AVX-512 transform with its Go version on
// random data, for the geometries of several layers (tile rows of 1 to 38
// tiles, pads on either side, masked last blocks).
func TestWinoKernels(t *testing.T) {
	if !directAsm {
		t.Skip("the Winograd transforms need AVX-512 (amd64 without purego); this CPU or build has none")
	}
	r := rand.New(rand.NewPCG(7, 8))
	rnd := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = r.Float32()*4 - 2
		}
		return s
	}
	both := func(f func()) {
		defer func(old bool) { winoKernelsGo = old }(winoKernelsGo)
		winoKernelsGo = false
		f()
		winoKernelsGo = true
		f()
	}
	eq := func(name string, a, b []float32) {
		t.Helper()
		for i := range a {
			if a[i] != b[i] && !(math.Abs(float64(a[i]-b[i])) <= 1e-5*(1+math.Abs(float64(b[i])))) {
				t.Fatalf("%s: element %d = %g, Go %g", name, i, a[i], b[i])
			}
		}
	}
	for _, c := range []struct{ h, w, top, left, c, m int }{
		{80, 80, 1, 1, 3, 2}, {7, 7, 1, 1, 2, 3}, {13, 60, 0, 2, 2, 2}, {3, 150, 2, 0, 1, 1}, {1, 1, 1, 1, 2, 9},
	} {
		p := cpu.Conv2DParams{N: 1, C: c.c, H: c.h, W: c.w, M: c.m, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1,
			Group: 1, PadTop: c.top, PadLeft: c.left, PadBottom: c.top, PadRight: c.left}
		g := winoGeom(p)
		x := rnd(c.h * c.w)
		var got, want []float32
		var pm winoPadMasks
		both(func() {
			ph := make([]float32, g.hp*g.wp)
			winoPadDeint(x, p.H, p.W, p.PadTop, p.PadLeft, g.hp, g.lp, ph, &pm)
			got, want = want, ph
		})
		eq("pad and phase split", got, want)

		ph := rnd(g.hp * g.wp)
		both(func() {
			tb, v := make([]float32, 6*g.wp+16), make([]float32, 36*g.vp)
			winoInRows(ph, g.wp, g.th, tb, v, g.vp, g.tw, g.lp, g.lt)
			got, want = want, v
		})
		eq("Bt", got, want)

		mm := rnd(36 * g.mp)
		// output rows of the 4 tw columns of the tiles, and of 1 and 3
		// fewer (an output width that is not a multiple of 4, in place)
		for _, wq := range []int{4 * g.tw, 4*g.tw - 1, 4*g.tw - 3} {
			if wq < 1 {
				continue
			}
			for _, clamp := range []bool{false, true} {
				both(func() {
					s, o, out := make([]float32, 24*g.lt), make([]float32, 16*g.lt), make([]float32, 4*g.th*wq+5)
					for i := range out {
						out[i] = -7
					}
					winoOutRows(mm, g.mp, g.lt, g.th, s, o, out, wq, g.tw, 0.25, -0.5, 0.75, clamp)
					got, want = want, out
				})
				eq(fmt.Sprintf("At and interleave, rows of %d", wq), got, want)
				for i := 4 * g.th * wq; i < len(got); i++ {
					if got[i] != -7 {
						t.Fatalf("rows of %d: element %d past the output written: %g", wq, i, got[i])
					}
				}
			}
		}
	}
}

// BenchmarkWinoPhases times the three phases of convWino on one layer
// shape (input transform, products, output transform) apart:
//
//	go test ./device/cpu/kernels -run '^$' -bench WinoPhases -cpu 1
func BenchmarkWinoPhases(b *testing.B) {
	if !directAsm {
		b.Skip("needs AVX-512")
	}
	for _, s := range []struct{ c, m, h int }{{16, 16, 80}, {16, 16, 56}, {64, 64, 40}, {32, 32, 28}} {
		p := cpu.Conv2DParams{N: 1, C: s.c, H: s.h, W: s.h, M: s.m, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1,
			PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}
		g := winoGeom(p)
		x := make([]float32, p.C*p.H*p.W)
		for i := range x {
			x[i] = float32(i%7) - 3
		}
		f := newWinoFilter(make([]float32, p.M*p.C*9), p.M, p.C, false)
		v := make([]float32, 36*g.vp)
		mm := make([]float32, 36*g.mp)
		out := make([]float32, p.M*4*g.th*4*g.tw)
		offs := make([]int32, p.C)
		for c := range offs {
			offs[c] = int32(c * g.ld)
		}
		name := func(ph string) string {
			return ph + "/" + "c" + itoa(s.c) + "_m" + itoa(s.m) + "_" + itoa(s.h)
		}
		b.Run(name("input"), func(b *testing.B) {
			for b.Loop() {
				winoInput(p, g, x, v)
			}
		})
		b.Run(name("products"), func(b *testing.B) {
			for b.Loop() {
				f.products(p.C, g.tiles, g.ld, g.vp, g.mp, v, mm, offs, 0, f.productItems(g.tiles))
			}
		})
		b.Run(name("output"), func(b *testing.B) {
			for b.Loop() {
				winoOutput(p, g, mm, nil, out, 0, 0, false, false)
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestWinoClOffered pins where FusedConv offers winograd4x4-cl: 32 output
// channels or more and at most 1 MiB of transformed weights.
func TestWinoClOffered(t *testing.T) {
	for _, c := range []struct {
		name string
		c, m int
		want bool
	}{
		{"resnet_mini / resnet50 64 ch (590 KB)", 64, 64, true},
		{"16 output channels", 64, 16, false},
		{"squeezenet1_1 48 -> 192 (1.3 MB)", 48, 192, false},
		{"resnet_mini 128 ch (2.4 MB)", 128, 128, false},
		{"resnet50 layer3 256 ch (9.4 MB)", 256, 256, false},
	} {
		p := cpu.Conv2DParams{N: 1, C: c.c, H: 14, W: 14, M: c.m, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}
		if got := winoClOffered(p); got != c.want {
			t.Errorf("%s: winoClOffered = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestWinoNoAllocs checks that the Winograd convolutions (both filter
// layouts, image-wide and in bands) allocate nothing per call once their
// pools are warm, on one thread (see TestDirectNoAllocs for why one).
func TestWinoNoAllocs(t *testing.T) {
	if err := cpu.SetThreads(1); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cpu.SetThreads(0) }()
	p := cpu.Conv2DParams{N: 1, C: 64, H: 28, W: 28, M: 64, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1,
		PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, Act: cpu.ActRelu}
	x := make([]float32, p.C*p.H*p.W)
	w := make([]float32, p.M*p.C*9)
	y := make([]float32, p.M*p.OutH()*p.OutW())
	z := make([]float32, len(y))
	relu := &epilogue{act: actRelu}
	for _, cl := range []bool{false, true} {
		f := newWinoFilter(w, p.M, p.C, cl)
		for _, mode := range []int{winoImage, winoBandsOf2} {
			winoMode = mode
			for _, c := range []struct {
				name string
				fn   func()
			}{
				{"ReLU", func() { convWino(p, x, f, nil, y, nil, nil) }},
				{"residual and ReLU", func() { convWino(p, x, f, nil, y, z, relu) }},
			} {
				if n := testing.AllocsPerRun(20, c.fn); n != 0 {
					t.Errorf("cl %v, mode %d, %s: %v allocations per call, want 0", cl, mode, c.name, n)
				}
			}
			winoMode = winoAuto
		}
	}
}
