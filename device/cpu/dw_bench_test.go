package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func dwThreadCPU() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}

// dwCPULoop runs f b.N times on a locked thread and reports its CPU ns per call.
func dwCPULoop(b *testing.B, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f()
	b.ResetTimer()
	c0 := dwThreadCPU()
	for i := 0; i < b.N; i++ {
		f()
	}
	b.ReportMetric(float64(dwThreadCPU()-c0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkDWProbe: the same layer on 96 distinct planes against one plane repeated (input in L1/L2).
func BenchmarkDWProbe(b *testing.B) {
	for _, l := range []struct{ c, hw, s int }{{96, 112, 2}, {32, 112, 1}, {144, 56, 1}, {144, 56, 2}} {
		p := dwCase(1, l.c, l.hw, l.hw, l.s, 1, 1, 1, 1, ActClip)
		r := rand.New(rand.NewPCG(1, 2))
		x, w, bias := randSlice(r, l.c*l.hw*l.hw), randSlice(r, 9*l.c), randSlice(r, l.c)
		y := make([]float32, p.M*p.OutH()*p.OutW())
		hw := l.hw * l.hw
		ohw := p.OutH() * p.OutW()
		g := dwGeometry(p)
		lo, hi := actBounds(p)
		b.Run(fmt.Sprintf("c%d_%d_s%d/all", l.c, l.hw, l.s), func(b *testing.B) {
			dwCPULoop(b, func() {
				if l.s == 2 {
					dwRowsS2Run(x, hw, 1, w, bias, y, p.OutH(), p.OutW(), g, l.c, lo, hi)
				} else {
					dwFlatS1Run(x, hw, l.hw, -(l.hw + 1), w, bias, y, g, l.c/2, lo, hi)
				}
			})
		})
		b.Run(fmt.Sprintf("c%d_%d_s%d/oneplane", l.c, l.hw, l.s), func(b *testing.B) {
			dwCPULoop(b, func() {
				for c := 0; c < l.c; c += 2 {
					if l.s == 2 {
						dwRowsS2Run(x[:2*hw], hw, 1, w[9*c:], bias[c:], y[c*ohw:], p.OutH(), p.OutW(), g, 2, lo, hi)
					} else {
						dwFlatS1Run(x[:2*hw], hw, l.hw, -(l.hw + 1), w[9*c:], bias[c:], y[c*ohw:], g, 1, lo, hi)
					}
				}
			})
		})
	}
}

// BenchmarkDWS2P1: mobilenet_v2's stride-2 depthwise layers with
// dwRowsS2RunAVX512 (old) and dwRowsS2P1RunAVX512 (new), CPU ns per call.
func BenchmarkDWS2P1(b *testing.B) {
	for _, l := range []struct{ c, hw int }{{96, 112}, {144, 56}, {192, 28}, {576, 14}} {
		p := dwCase(1, l.c, l.hw, l.hw, 2, 1, 1, 1, 1, ActClip)
		r := rand.New(rand.NewPCG(1, 2))
		x, w, bias := randSlice(r, l.c*l.hw*l.hw), randSlice(r, 9*l.c), randSlice(r, l.c)
		y := make([]float32, p.M*p.OutH()*p.OutW())
		for _, on := range []bool{false, true} {
			name := map[bool]string{false: "old", true: "new"}[on]
			b.Run(fmt.Sprintf("%s/c%d_%d", name, l.c, l.hw), func(b *testing.B) {
				dwS2P1 = on
				defer func() { dwS2P1 = true }()
				dwCPULoop(b, func() { dwDirect(p, x, w, bias, y) })
			})
		}
	}
}

// BenchmarkDWFresh: the stride-2 and stride-1 112x112 / 56x56 layers with
// their input as the benchmarks leave it (read by the previous call: clean
// lines) and freshly written before each call (dirty lines, as the expand
// convolution leaves them in a model), CPU ns of the depthwise call only.
func BenchmarkDWFresh(b *testing.B) {
	for _, l := range []struct{ c, hw, s int }{{96, 112, 2}, {144, 56, 1}, {144, 56, 2}, {32, 112, 1}} {
		p := dwCase(1, l.c, l.hw, l.hw, l.s, 1, 1, 1, 1, ActClip)
		r := rand.New(rand.NewPCG(1, 2))
		x, w, bias := randSlice(r, l.c*l.hw*l.hw), randSlice(r, 9*l.c), randSlice(r, l.c)
		y := make([]float32, p.M*p.OutH()*p.OutW())
		for _, fresh := range []bool{false, true} {
			name := map[bool]string{false: "clean", true: "fresh"}[fresh]
			b.Run(fmt.Sprintf("%s/c%d_%d_s%d", name, l.c, l.hw, l.s), func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				var cpu int64
				for i := 0; b.Loop(); i++ {
					if fresh {
						for j := range x {
							x[j] = float32(j&255) * 0.01
						}
					}
					c0 := dwThreadCPU()
					dwDirect(p, x, w, bias, y)
					cpu += dwThreadCPU() - c0
				}
				b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
