package kernels

import (
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestBlockedWino checks BlockedConv's Winograd tactic against the
// blocked direct kernel: channel counts that are not multiples of the
// block, batch 2, pads, no pads, planes run in bands and image-wide, with
// and without bias, each activation the kernel applies; the output's pad
// lanes zero. The tolerance is convwino_test's: it scales with the sum of
// the products' magnitudes (the transforms round differently).
func TestBlockedWino(t *testing.T) {
	if !directAsm {
		t.Skip("the Winograd convolution needs AVX-512 (winoApplies)")
	}
	cases := []struct {
		name string
		p    cpu.Conv2DParams
	}{
		{"16 -> 16 at 8x8", pad1(cpu.Conv2DParams{N: 1, C: 16, H: 8, W: 8, M: 16})},
		{"20 -> 40 at 13x11, batch 2", pad1(cpu.Conv2DParams{N: 2, C: 20, H: 13, W: 11, M: 40})},
		{"3 -> 7 at 9x30, no pads", cpu.Conv2DParams{N: 1, C: 3, H: 9, W: 30, M: 7}},
		{"64 -> 64 at 28x28 (bands)", pad1(cpu.Conv2DParams{N: 1, C: 64, H: 28, W: 28, M: 64})},
		{"33 -> 17 at 56x20", pad1(cpu.Conv2DParams{N: 1, C: 33, H: 56, W: 20, M: 17})},
		{"40 -> 40 at 14x14, batch 2 (in place)", pad1(cpu.Conv2DParams{N: 2, C: 40, H: 14, W: 14, M: 40})},
		{"64 -> 64 at 7x9 (in place)", pad1(cpu.Conv2DParams{N: 1, C: 64, H: 7, W: 9, M: 64})},
		{"5 -> 21 at 6x17, no pads, batch 2", cpu.Conv2DParams{N: 2, C: 5, H: 6, W: 17, M: 21}},
	}
	acts := []struct {
		name     string
		act      cpu.Activation
		min, max float32
	}{{"none", cpu.ActNone, 0, 0}, {"relu", cpu.ActRelu, 0, 0}, {"clip", cpu.ActClip, -0.3, 0.4}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			p.KH, p.KW, p.StrideH, p.StrideW, p.DilH, p.DilW, p.Group = 3, 3, 1, 1, 1, 1, 1
			if !blockedWinoOffered(p, false, false) {
				t.Fatalf("blockedWinoOffered(%+v) = false", p)
			}
			if blockedWinoOffered(p, true, false) {
				t.Fatal("offered for an NCHW input")
			}
			r := rand.New(rand.NewPCG(7, uint64(p.C*p.M+p.H)))
			x := make([]float32, p.N*p.C*p.H*p.W)
			w := make([]float32, p.M*p.C*9)
			bias := make([]float32, p.M)
			for _, s := range [][]float32{x, w, bias} {
				for i := range s {
					s[i] = r.Float32()*2 - 1
				}
			}
			hw, ohw := p.H*p.W, p.OutH()*p.OutW()
			xb := make([]float32, cpu.BlockedLen(p.N, p.C, hw))
			cpu.ToBlocked(p.N, p.C, hw, x, xb)
			// the tolerance's scale: the products' magnitudes, blocked
			pa := p
			pa.Act = cpu.ActNone
			absX, absW := make([]float32, len(x)), make([]float32, len(w))
			for i, v := range x {
				absX[i] = float32(math.Abs(float64(v)))
			}
			for i, v := range w {
				absW[i] = float32(math.Abs(float64(v)))
			}
			scale := make([]float32, p.N*p.M*ohw)
			cpu.Conv2D(pa, absX, absW, nil, scale)
			scaleB := make([]float32, cpu.BlockedLen(p.N, p.M, ohw))
			cpu.ToBlocked(p.N, p.M, ohw, scale, scaleB)
			f := newWinoFilter(w, p.M, p.C, false)
			defer func(old int) { winoMode = old }(winoMode)
			defer func(old bool) { blockedWinoReorder = old }(blockedWinoReorder)
			defer func() { _ = cpu.SetThreads(0) }()
			// a residual (pad lanes zero, as the blocked layout keeps them)
			zb := make([]float32, cpu.BlockedLen(p.N, p.M, ohw))
			for i := range zb {
				if (i/(ohw*cpu.Block))%cpu.Blocks(p.M)*cpu.Block+i%cpu.Block < p.M {
					zb[i] = r.Float32()*2 - 1
				}
			}
			// in place: y is x where the shapes allow it, y is z
			inPlace := []int{0, 2}
			if p.C == p.M && p.OutH() == p.H && p.OutW() == p.W {
				inPlace = append(inPlace, 1)
			}
			for _, threads := range []int{1, 2} {
				if err := cpu.SetThreads(threads); err != nil {
					t.Fatal(err)
				}
				for _, reorder := range []bool{false, true} {
					blockedWinoReorder = reorder
					for _, mode := range []int{winoAuto, winoImage, winoBandsOf2} {
						winoMode = mode
						for _, b := range [][]float32{bias, nil} {
							for _, a := range acts {
								for _, zz := range [][]float32{nil, zb} {
									if zz != nil && !blockedWinoOffered(p, false, true) {
										if mode != winoBandsOf2 && winoBandRows(p, winoGeom(p)) == 0 {
											t.Fatalf("mode %d: not offered with a residual on a plane of the image-wide phases", mode)
										}
										continue
									}
									for _, ip := range inPlace {
										if ip == 2 && zz == nil {
											continue
										}
										p.Act, p.ActMin, p.ActMax = a.act, a.min, a.max
										want := make([]float32, len(scaleB))
										cpu.BlockedConv2D(cpu.PackBlockedFilter(p, false, w), xb, b, zz, want)
										got := make([]float32, len(scaleB))
										in, zin := xb, zz
										switch ip {
										case 1:
											copy(got, xb)
											in = got
										case 2:
											copy(got, zz)
											zin = got
										default:
											for i := range got {
												got[i] = float32(math.NaN())
											}
										}
										blockedWino(p, f, in, b, zin, got)
										for i := range want {
											tol := 2e-5 * (2 + float64(scaleB[i]))
											if d := math.Abs(float64(got[i] - want[i])); !(d <= tol) {
												t.Fatalf("%d threads, reorder %v, mode %d, bias %v, %s, residual %v, in place %d: output %d = %g, blocked direct %g (tolerance %g)",
													threads, reorder, mode, b != nil, a.name, zz != nil, ip, i, got[i], want[i], tol)
											}
											if lane := i % cpu.Block; (i/(ohw*cpu.Block))%cpu.Blocks(p.M)*cpu.Block+lane >= p.M && got[i] != 0 {
												t.Fatalf("pad lane %d of output float %d = %g, want 0", lane, i, got[i])
											}
										}
									}
								}
							}
						}
					}
				}
			}
		})
	}
}

// TestBlockedConvWinoTactic: kiln::BlockedConv offers the Winograd tactic
// where it applies and not elsewhere; with it set the op's output (every
// activation, including those run after the kernel) matches the blocked
// direct kernel's, run after run, and a residual at run time falls back
// to the direct kernel.
func TestBlockedConvWinoTactic(t *testing.T) {
	if !directAsm {
		t.Skip("the Winograd convolution needs AVX-512 (winoApplies)")
	}
	r := rand.New(rand.NewPCG(9, 3))
	node := func(act string, params []float32, nIn int, attrs ...*ir.Attr) *ir.Node {
		n := fusedNode("BlockedConv", nIn, act, params, attrs...)
		n.Attrs["group"] = ir.IntAttr("group", 1)
		return n
	}
	pads := ir.IntsAttr("pads", 1, 1, 1, 1)
	x := randTensor(r, tensor.Float32, 2, 2, 9, 10, cpu.Block) // 20 channels in 2 blocks
	for i := range x.Float32s() {
		if i%cpu.Block >= 4 && (i/(9*10*cpu.Block))%2 == 1 {
			x.Float32s()[i] = 0 // pad lanes of the second block
		}
	}
	w := randTensor(r, tensor.Float32, 24, 20, 3, 3)
	bias := randTensor(r, tensor.Float32, 24)
	for _, a := range fusedActs {
		k, tactics := tacticKernel(t, node(a.act, a.params, 3, pads), []*tensor.Tensor{x, w, bias}, map[int]bool{1: true, 2: true})
		if want := []string{blockedDirectTactic, blockedWinoTactic}; !slices.Equal(tactics, want) {
			t.Fatalf("%s: tactics %v, want %v", a.act, tactics, want)
		}
		want, err := k.Run(nanArena(), []*tensor.Tensor{x, w, bias})
		if err != nil {
			t.Fatal(err)
		}
		if err := k.(ops.Tactical).SetTactic(blockedWinoTactic); err != nil {
			t.Fatal(err)
		}
		for run := 0; run < 2; run++ {
			got, err := k.Run(nanArena(), []*tensor.Tensor{x, w, bias})
			if err != nil {
				t.Fatal(err)
			}
			sameResult(t, "BlockedConv "+a.act+" "+blockedWinoTactic, got[0], want[0])
		}
		// a residual (its pad lanes not zero: the output's are, either
		// way): offered on this plane (image-wide), the direct kernel's
		// result within the tolerance
		z := randTensor(r, tensor.Float32, want[0].Shape...)
		kz, tz := tacticKernel(t, node(a.act, a.params, 4, pads), []*tensor.Tensor{x, w, bias, z}, map[int]bool{1: true, 2: true})
		if want := []string{blockedDirectTactic, blockedWinoTactic}; !slices.Equal(tz, want) {
			t.Fatalf("%s with a residual: tactics %v, want %v", a.act, tz, want)
		}
		wantZ, err := kz.Run(nanArena(), []*tensor.Tensor{x, w, bias, z})
		if err != nil {
			t.Fatal(err)
		}
		if err := kz.(ops.Tactical).SetTactic(blockedWinoTactic); err != nil {
			t.Fatal(err)
		}
		gotZ, err := kz.Run(nanArena(), []*tensor.Tensor{x, w, bias, z})
		if err != nil {
			t.Fatal(err)
		}
		sameResult(t, "BlockedConv "+a.act+" with a residual "+blockedWinoTactic, gotZ[0], wantZ[0])
		for i, v := range gotZ[0].Float32s() {
			if i%cpu.Block >= 8 && (i/(9*10*cpu.Block))%2 == 1 && v != 0 {
				t.Fatalf("%s with a residual: pad lane %d of output float %d = %g", a.act, i%cpu.Block, i, v)
			}
		}
	}
	// a residual on a plane run in bands (16 channels at 64x64)
	xl := randTensor(r, tensor.Float32, 1, 1, 64, 64, cpu.Block)
	wl := randTensor(r, tensor.Float32, 24, 16, 3, 3)
	zl := randTensor(r, tensor.Float32, 1, 2, 64, 64, cpu.Block)
	pl := cpu.Conv2DParams{N: 1, C: 16, H: 64, W: 64, M: 24, KH: 3, KW: 3, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1,
		StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1}
	if winoBandRows(pl, winoGeom(pl)) == 0 {
		t.Fatal("16 -> 24 at 64x64: not in bands")
	}
	kl, tl := tacticKernel(t, node(actRelu, nil, 4, pads), []*tensor.Tensor{xl, wl, bias, zl}, map[int]bool{1: true, 2: true})
	if want := []string{blockedDirectTactic, blockedWinoTactic}; !slices.Equal(tl, want) {
		t.Fatalf("residual on a plane in bands: tactics %v, want %v", tl, want)
	}
	wantL, err := kl.Run(nanArena(), []*tensor.Tensor{xl, wl, bias, zl})
	if err != nil {
		t.Fatal(err)
	}
	if err := kl.(ops.Tactical).SetTactic(blockedWinoTactic); err != nil {
		t.Fatal(err)
	}
	gotL, err := kl.Run(nanArena(), []*tensor.Tensor{xl, wl, bias, zl})
	if err != nil {
		t.Fatal(err)
	}
	sameResult(t, "BlockedConv with a residual in bands "+blockedWinoTactic, gotL[0], wantL[0])
	// Not offered: stride 2, a 1x1 kernel, an NCHW input.
	for _, tc := range []struct {
		name string
		n    *ir.Node
		in   []*tensor.Tensor
	}{
		{"stride 2", node(actRelu, nil, 3, pads, ir.IntsAttr("strides", 2, 2)), []*tensor.Tensor{x, w, bias}},
		{"1x1", node(actRelu, nil, 3), []*tensor.Tensor{x, randTensor(r, tensor.Float32, 24, 20, 1, 1), bias}},
	} {
		if _, tactics := tacticKernel(t, tc.n, tc.in, map[int]bool{1: true, 2: true}); tactics != nil {
			t.Errorf("%s: tactics %v, want none", tc.name, tactics)
		}
	}
	k, _ := tacticKernel(t, node(actRelu, nil, 3, pads), []*tensor.Tensor{x, w, bias}, map[int]bool{1: true, 2: true})
	if err := k.(ops.Tactical).SetTactic("winograd8x8"); !errors.Is(err, ops.ErrBadAttr) {
		t.Errorf("SetTactic of an unknown name: %v, want ErrBadAttr", err)
	}
}

// BenchmarkBlockedWinoAB times BlockedConv's two tactics on resnet50's
// stride-1 3x3 layers in alternating rounds (wall time per call, medians;
// "won" counts the rounds the Winograd tactic was faster), the weights
// cold as in a model at batch 1: each call uses the next of copies sets of
// weights, together larger than the caches.
//
//	go test ./device/cpu/kernels -run '^$' -bench BlockedWinoAB -cpu 1,2 -benchtime 1x
func BenchmarkBlockedWinoAB(b *testing.B) {
	if !directAsm {
		b.Skip("the Winograd convolution needs AVX-512")
	}
	if err := cpu.SetThreads(runtime.GOMAXPROCS(0)); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cpu.SetThreads(0) }()
	for _, l := range []struct {
		name    string
		c, h, m int
	}{{"r50_64-64_3x3_56", 64, 56, 64}, {"r50_128-128_3x3_28", 128, 28, 128}, {"r50_256-256_3x3_14", 256, 14, 256}} {
		b.Run(l.name, func(b *testing.B) {
			p := cpu.Conv2DParams{N: 1, C: l.c, H: l.h, W: l.h, M: l.m, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1,
				Group: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, Act: cpu.ActRelu}
			r := rand.New(rand.NewPCG(1, uint64(l.c)))
			copies := max(2, (256<<20)/(36*l.c*l.m*4))
			direct := make([]*cpu.BlockedFilter, copies)
			wino := make([]*winoFilter, copies)
			for i := range copies {
				w := make([]float32, l.m*l.c*9)
				for j := range w {
					w[j] = r.Float32()*2 - 1
				}
				direct[i] = cpu.PackBlockedFilter(p, false, w)
				wino[i] = newWinoFilter(w, l.m, l.c, false)
			}
			x := make([]float32, cpu.BlockedLen(1, l.c, l.h*l.h))
			for i := range x {
				x[i] = r.Float32()
			}
			bias := make([]float32, l.m)
			y := make([]float32, cpu.BlockedLen(1, l.m, l.h*l.h))
			next := 0
			runA := func() { cpu.BlockedConv2D(direct[next%copies], x, bias, nil, y); next++ }
			runB := func() { blockedWino(p, wino[next%copies], x, bias, nil, y); next++ }
			timeIt := func(fn func()) float64 {
				t0 := time.Now()
				for range 4 {
					fn()
				}
				return float64(time.Since(t0).Microseconds()) / 4
			}
			runA()
			runB()
			var as, bs []float64
			won := 0
			for round := range 24 {
				var a, c float64
				if round%2 == 0 {
					a, c = timeIt(runA), timeIt(runB)
				} else {
					c, a = timeIt(runB), timeIt(runA)
				}
				as, bs = append(as, a), append(bs, c)
				if c < a {
					won++
				}
			}
			slices.Sort(as)
			slices.Sort(bs)
			b.ReportMetric(as[len(as)/2], "direct-us")
			b.ReportMetric(bs[len(bs)/2], "wino-us")
			b.ReportMetric(bs[len(bs)/2]/as[len(as)/2], "ratio")
			b.ReportMetric(float64(won), "won/24")
		})
	}
}

// BenchmarkBlockedWinoBlockedAB times the Winograd tactic's two forms on
// resnet50's stride-1 3x3 layers in alternating rounds: A reorders the
// whole input and output around convWino (blockedWinoReorder), B reads and
// writes the blocked layout in its transforms. Weights cold as in
// BenchmarkBlockedWinoAB; CPU time per call (process CPU time over the
// round). Only pairs in the same SMT mode count (ratio within 0.75-1.33,
// see device/cpu/NOTES-blocked.md): the median of their ratios B/A and
// how many B won.
//
//	go test ./device/cpu/kernels -run '^$' -bench BlockedWinoBlockedAB -cpu 1,2 -benchtime 1x
func BenchmarkBlockedWinoBlockedAB(b *testing.B) {
	if !directAsm {
		b.Skip("the Winograd convolution needs AVX-512")
	}
	if err := cpu.SetThreads(runtime.GOMAXPROCS(0)); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cpu.SetThreads(0) }()
	defer func(old bool) { blockedWinoReorder = old }(blockedWinoReorder)
	for _, l := range []struct {
		name    string
		c, h, m int
	}{{"r50_64-64_3x3_56", 64, 56, 64}, {"r50_128-128_3x3_28", 128, 28, 128}, {"r50_256-256_3x3_14", 256, 14, 256},
		{"rmini_16-16_3x3_56_bands", 16, 56, 16}} {
		b.Run(l.name, func(b *testing.B) {
			p := cpu.Conv2DParams{N: 1, C: l.c, H: l.h, W: l.h, M: l.m, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1,
				Group: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, Act: cpu.ActRelu}
			r := rand.New(rand.NewPCG(1, uint64(l.c)))
			copies := min(4096, max(2, (256<<20)/(36*l.c*l.m*4)))
			wino := make([]*winoFilter, copies)
			for i := range copies {
				w := make([]float32, l.m*l.c*9)
				for j := range w {
					w[j] = r.Float32()*2 - 1
				}
				wino[i] = newWinoFilter(w, l.m, l.c, false)
			}
			x := make([]float32, cpu.BlockedLen(1, l.c, l.h*l.h))
			for i := range x {
				x[i] = r.Float32()
			}
			bias := make([]float32, l.m)
			y := make([]float32, cpu.BlockedLen(1, l.m, l.h*l.h))
			next := 0
			run := func(reorder bool) func() {
				return func() { blockedWinoReorder = reorder; blockedWino(p, wino[next%copies], x, bias, nil, y); next++ }
			}
			runA, runB := run(true), run(false)
			reps := max(8, 16*64*64/(l.c*l.m)) // a round of several ms
			timeIt := func(fn func()) float64 {
				t0 := blockedWinoCPU()
				for range reps {
					fn()
				}
				return float64(blockedWinoCPU()-t0) / float64(reps) / 1e3
			}
			runA()
			runB()
			var as, bs, ratios []float64
			won := 0
			for round := range 40 {
				var a, c float64
				if round%2 == 0 {
					a, c = timeIt(runA), timeIt(runB)
				} else {
					c, a = timeIt(runB), timeIt(runA)
				}
				if q := c / a; q < 0.75 || q > 1.33 {
					continue
				}
				as, bs, ratios = append(as, a), append(bs, c), append(ratios, c/a)
				if c < a {
					won++
				}
			}
			if len(ratios) == 0 {
				b.Fatal("no same-mode pairs")
			}
			slices.Sort(as)
			slices.Sort(bs)
			slices.Sort(ratios)
			b.ReportMetric(as[len(as)/2], "reorder-us")
			b.ReportMetric(bs[len(bs)/2], "blocked-us")
			b.ReportMetric(ratios[len(ratios)/2], "ratio")
			b.ReportMetric(float64(won), "won")
			b.ReportMetric(float64(len(ratios)), "pairs")
		})
	}
}

// blockedWinoCPU returns the process's user and system CPU time.
func blockedWinoCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
