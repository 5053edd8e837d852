package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/kilnai/kiln/device/cpu"
)

// cpuUsed is the CPU time so far of the calling thread (self false) or of
// the process (self true).
func cpuUsed(self bool) time.Duration {
	who := 1 // RUSAGE_THREAD
	if self {
		who = syscall.RUSAGE_SELF
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// partsShapes are resnet50's stride-2 3x3 convolutions, a stride-1 one of
// the same work, a 56x56 pointwise one and two stems.
var partsShapes = []cpu.Conv2DParams{
	{N: 1, C: 128, H: 56, W: 56, M: 128, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 256, H: 28, W: 28, M: 256, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 128, H: 28, W: 28, M: 128, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 256, H: 56, W: 56, M: 64, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},
	{N: 1, C: 3, H: 224, W: 224, M: 64, KH: 7, KW: 7, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 3, PadLeft: 3, PadBottom: 3, PadRight: 3},
	{N: 1, C: 3, H: 224, W: 224, M: 64, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2},
	// small K: mobilenet_v2's stem and first expand, yolo_tiny's stem
	{N: 1, C: 3, H: 224, W: 224, M: 32, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 16, H: 112, W: 112, M: 96, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},
	{N: 1, C: 3, H: 320, W: 320, M: 16, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	// mobilenet_v2's first project (32 -> 16 at 112x112) and a 14x14 one
	{N: 1, C: 32, H: 112, W: 112, M: 16, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},
	{N: 1, C: 384, H: 14, W: 14, M: 64, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},
	// mobilenet_v2's 14x14 and 7x7 pointwise layers (im2col in its plans)
	{N: 1, C: 96, H: 14, W: 14, M: 576, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},
	{N: 1, C: 576, H: 14, W: 14, M: 96, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},
	{N: 1, C: 960, H: 7, W: 7, M: 160, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},
	{N: 1, C: 320, H: 7, W: 7, M: 1280, KH: 1, KW: 1, Group: 1, DilH: 1, DilW: 1, StrideH: 1, StrideW: 1},
	// yolo_tiny's second and third stride-2 3x3 layers
	{N: 1, C: 16, H: 160, W: 160, M: 32, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
	{N: 1, C: 32, H: 80, W: 80, M: 64, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
}

// BenchmarkDirectParts times the direct convolution of partsShapes whole
// (and with its variants: without the pfChannel kernel, with it on every
// layer, in tile and block order), direct-cl, and the direct input copy
// alone, with the weights cold (copies cycled through 32 MiB), at one
// thread (t1: the calling thread's CPU time per call) and two (t2: the
// process's), ops/nn/NOTES.md section 30:
//
//	go test ./device/cpu/kernels -run '^$' -bench 'DirectParts/.*/t1' -benchtime 300x
func BenchmarkDirectParts(b *testing.B) {
	for i, p := range partsShapes {
		r := rand.New(rand.NewPCG(9, uint64(i)))
		x := make([]float32, p.N*p.C*p.H*p.W)
		for j := range x {
			x[j] = r.Float32()*2 - 1
		}
		w := make([]float32, p.M*p.C*p.KH*p.KW)
		for j := range w {
			w[j] = r.Float32()*2 - 1
		}
		bias := make([]float32, p.M)
		y := make([]float32, p.N*p.M*p.OutH()*p.OutW())
		copies := max(2, (32<<20)/(4*len(w)))
		p := p
		p.Act = cpu.ActRelu
		flops := 2 * float64(p.M*p.OutH()*p.OutW()) * float64(p.C*p.KH*p.KW)
		name := fmt.Sprintf("c%d_m%d_%dx%d_k%d_s%d", p.C, p.M, p.H, p.W, p.KH, p.StrideH)
		run := func(b *testing.B, threads int, f func(j int)) {
			if err := cpu.SetThreads(threads); err != nil {
				b.Fatal(err)
			}
			defer cpu.SetThreads(0)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			c0 := cpuUsed(threads > 1)
			j := 0
			for b.Loop() {
				f(j)
				j++
			}
			us := float64((cpuUsed(threads > 1) - c0).Microseconds()) / float64(b.N)
			b.ReportMetric(us, "cpu-us/op")
			b.ReportMetric(flops/us/1e3, "GFLOP/cpu-s")
		}
		var fs []*directFilter
		var cls []*clFilter
		for _, o := range []struct {
			name    string
			order   int
			pc, any bool
			cl, div bool
		}{
			{"direct", orderAuto, true, false, false, false},
			{"nopc", orderAuto, false, false, false, false},
			{"nopartpc", orderAuto, true, false, false, false},
			{"div", orderAuto, true, false, false, true},
			{"pcany", orderAuto, true, true, false, false},
			{"tileorder", orderTile, true, false, false, false},
			{"blockorder", orderBlock, true, false, false, false},
			{"cl", orderAuto, true, false, true, false},
		} {
			if o.cl && !clApplies(p) {
				continue
			}
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/t%d", name, o.name, threads), func(b *testing.B) {
					if o.cl {
						for len(cls) < copies {
							cls = append(cls, newCLFilter(w, p.M, p.C, p.KH, p.KW))
						}
						run(b, threads, func(j int) { convCL(p, x, cls[j%copies], bias, y, nil, nil) })
						return
					}
					for len(fs) < copies {
						fs = append(fs, newDirectFilter(w, p.M, p.C, p.KH, p.KW))
					}
					directOrder, directPC, directPCAny, directItemsDiv = o.order, o.pc, o.any, o.div
					directPartialNoPC = o.name == "nopartpc"
					defer func() {
						directOrder, directPC, directPCAny, directItemsDiv, directPartialNoPC = orderAuto, true, false, false, false
					}()
					run(b, threads, func(j int) { convDirect(p, x, fs[j%copies], bias, y, nil, nil) })
				})
			}
		}
		// the other tactics, on the same copies of the weights
		wcs := make([][]float32, copies)
		for j := range wcs {
			wcs[j] = append([]float32(nil), w...)
		}
		b.Run(name+"/im2col/t1", func(b *testing.B) {
			run(b, 1, func(j int) { cpu.Conv2DWith(cpu.ConvIm2col, p, x, wcs[j%copies], bias, y) })
		})
		if gemmTApplies(p) {
			var gs []*gemmTFilter
			b.Run(name+"/gemm-t/t1", func(b *testing.B) {
				for len(gs) < copies {
					gs = append(gs, newGemmTFilter(wcs[len(gs)], p.M, p.C, p.KH, p.KW))
				}
				run(b, 1, func(j int) { convGemmT(p, x, gs[j%copies], bias, y, nil, nil) })
			})
		}
		sh, sw := p.StrideH, p.StrideW
		hq := (p.H + p.PadTop + p.PadBottom + sh - 1) / sh
		wq := (p.W + p.PadLeft + p.PadRight + sw - 1) / sw
		ph, pw := min(sh, p.KH), min(sw, p.KW)
		if p.KH > 1 {
			buf := make([]float32, p.C*ph*pw*hq*wq+directSlack+p.KW)
			b.Run(name+"/input/t1", func(b *testing.B) {
				run(b, 1, func(int) { directInput(p, x, buf, hq, wq, ph, pw) })
			})
		}
	}
}

// BenchmarkDirectTileL1 runs the direct kernel's tiles (8 output channels x
// 48, 32 and 16 positions, and the prefetching variants) on operands that
// stay in L1 (K taps of one input plane, the weights of one block), one
// thread, reporting GFLOP per CPU second: the register tile's ceiling, to
// set against device/cpu's BenchmarkPeak on the same machine (NOTES.md
// section 30):
//
//	go test ./device/cpu/kernels -run '^$' -bench DirectTileL1 -benchtime 200000x
func BenchmarkDirectTileL1(b *testing.B) {
	for _, k := range []int{27, 64, 256} {
		r := rand.New(rand.NewPCG(1, uint64(k)))
		// k taps reading one plane of 64 floats at shifts of 0-15 floats:
		// k x 192 bytes of loads from 4 lines, all in L1
		src := make([]float32, 256)
		for i := range src {
			src[i] = r.Float32()
		}
		offs := make([]int32, k+pcTaps)
		for q := range k {
			offs[q] = int32(q % 16)
		}
		a := make([]float32, k*directMR)
		for i := range a {
			a[i] = r.Float32()
		}
		out := make([]float32, directMR*64)
		var bias [directMR]float32
		for _, c := range []struct {
			name string
			n    int
			pf   int
		}{{"x3", 48, pfNone}, {"x3pc", 48, pfChannel}, {"x3pf", 48, pfNext}, {"x2", 32, pfNone}, {"x1", 16, pfNone}} {
			b.Run(fmt.Sprintf("k%d/%s", k, c.name), func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				c0 := cpuUsed(false)
				for b.Loop() {
					convDirectTileK(c.pf, k, a, src, offs, 0, out, 64, &bias[0], 0, 1, true, c.n, directMR, nil)
				}
				s := (cpuUsed(false) - c0).Seconds()
				b.ReportMetric(2*float64(k*directMR*c.n)*float64(b.N)/s/1e9, "GFLOP/cpu-s")
			})
		}
		// the vector tiles (convDirectVecs), 1-3 vectors 48 floats apart
		for nv := 1; nv <= 3; nv++ {
			vec := directVecs{in: [3]int64{0, 48, 96}, out: [3]int64{0, 16, 32}, mask: [3]int64{0xffff, 0xffff, 0xffff}}
			src := make([]float32, 256)
			for i := range src {
				src[i] = 0.5
			}
			b.Run(fmt.Sprintf("k%d/g%d", k, nv), func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				c0 := cpuUsed(false)
				for b.Loop() {
					convDirectVecs(nv, k, a, src, offs, &vec, out, 64, &bias[0], 0, 1, true, directMR, nil)
				}
				s := (cpuUsed(false) - c0).Seconds()
				b.ReportMetric(2*float64(k*directMR*16*nv)*float64(b.N)/s/1e9, "GFLOP/cpu-s")
			})
		}
	}
}
