package cpu

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mobilenetDW are mobilenet_v2's depthwise layers (3x3, pad 1, Clip(0,
// 6)): channels, input side, stride.
var mobilenetDW = []struct{ c, hw, s int }{
	{32, 112, 1}, {96, 112, 2}, {144, 56, 1}, {144, 56, 2}, {192, 28, 1}, {192, 28, 2},
	{384, 14, 1}, {576, 14, 1}, {576, 14, 2}, {960, 7, 1},
}

// bdwProcCPU is the CPU time of the whole process (every thread), ns.
func bdwProcCPU() int64 {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// abRound times calls of f for about d: wall and process CPU ns per call.
func abRound(f func(), d time.Duration) (wall, cpu float64) {
	f()
	n := 0
	c0, t0 := bdwProcCPU(), time.Now()
	for time.Since(t0) < d {
		f()
		n++
	}
	el := time.Since(t0)
	return float64(el.Nanoseconds()) / float64(n), float64(bdwProcCPU()-c0) / float64(n)
}

func median(s []float64) float64 {
	s = slices.Clone(s)
	slices.Sort(s)
	return s[len(s)/2]
}

// abCompare runs a and b in alternating rounds and prints the medians of
// their wall and CPU time per call and how many rounds b won on each.
func abCompare(t *testing.T, name string, rounds int, d time.Duration, a, b func()) {
	var aw, ac, bw, bc []float64
	wonW, wonC := 0, 0
	for r := 0; r < rounds; r++ {
		w1, c1 := abRound(a, d)
		w2, c2 := abRound(b, d)
		aw, ac, bw, bc = append(aw, w1), append(ac, c1), append(bw, w2), append(bc, c2)
		if w2 < w1 {
			wonW++
		}
		if c2 < c1 {
			wonC++
		}
	}
	t.Logf("%-28s A wall %8.1f us cpu %8.1f us | B wall %8.1f us cpu %8.1f us | B/A wall %.2f cpu %.2f | B won %d/%d wall, %d/%d cpu",
		name, median(aw)/1e3, median(ac)/1e3, median(bw)/1e3, median(bc)/1e3,
		median(bw)/median(aw), median(bc)/median(ac), wonW, rounds, wonC, rounds)
}

// benchEnv returns the rounds of an A/B test run when KILN_BLOCKED_BENCH
// is set (its value, default 7), skipping the test otherwise.
func benchEnv(t *testing.T) int {
	v := os.Getenv("KILN_BLOCKED_BENCH")
	if v == "" {
		t.Skip("set KILN_BLOCKED_BENCH=rounds to run")
	}
	r, err := strconv.Atoi(v)
	if err != nil || r < 1 {
		r = 7
	}
	return r
}

// TestBlockedDWBench compares, layer by layer, mobilenet_v2's depthwise
// convolutions in NCHW (A: cpu.Conv2D, dwDirect) and blocked (B:
// BlockedConv2D) at 1 and 2 threads, in alternating rounds.
// KILN_BLOCKED_BENCH=7 go test ./device/cpu -run TestBlockedDWBench -v
func TestBlockedDWBench(t *testing.T) {
	rounds := benchEnv(t)
	defer SetThreads(0)
	for _, th := range []int{1, 2} {
		if th > runtime.GOMAXPROCS(0) {
			continue
		}
		SetThreads(th)
		for _, l := range mobilenetDW {
			p := Conv2DParams{N: 1, C: l.c, H: l.hw, W: l.hw, M: l.c, KH: 3, KW: 3, Group: l.c, StrideH: l.s, StrideW: l.s,
				DilH: 1, DilW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, Act: ActClip, ActMin: 0, ActMax: 6}
			r := rand.New(rand.NewPCG(1, 2))
			x, w, bias := randSlice(r, l.c*l.hw*l.hw), randSlice(r, 9*l.c), randSlice(r, l.c)
			y := make([]float32, p.M*p.OutH()*p.OutW())
			xb := make([]float32, BlockedLen(1, l.c, l.hw*l.hw))
			ToBlocked(1, l.c, l.hw*l.hw, x, xb)
			yb := make([]float32, BlockedLen(1, l.c, p.OutH()*p.OutW()))
			f := PackBlockedFilter(p, false, w)
			abCompare(t, fmt.Sprintf("t%d c%d %d s%d", th, l.c, l.hw, l.s), rounds, 150*time.Millisecond,
				func() { Conv2D(p, x, w, bias, y) },
				func() { BlockedConv2D(f, xb, bias, nil, yb) })
		}
	}
}

// reorderSerial is ToBlocked (to) or FromBlocked in plain serial loops,
// the baseline of TestBlockedReorderBench.
func reorderSerial(n, c, hw int, x, y []float32, to bool) {
	cb := Blocks(c)
	for i := 0; i < n; i++ {
		for ch := 0; ch < cb*Block; ch++ {
			b, l := ch/Block, ch%Block
			blk := (i*cb + b) * hw * Block
			if to {
				if ch >= c {
					for p := 0; p < hw; p++ {
						y[blk+p*Block+l] = 0
					}
					continue
				}
				for p, v := range x[(i*c+ch)*hw : (i*c+ch+1)*hw] {
					y[blk+p*Block+l] = v
				}
			} else if ch < c {
				dst := y[(i*c+ch)*hw : (i*c+ch+1)*hw]
				for p := range dst {
					dst[p] = x[blk+p*Block+l]
				}
			}
		}
	}
}

// TestBlockedReorderBench compares the serial loops (A) with ToBlocked
// and FromBlocked (B) on 3x224x224, 64x56x56 and 1280x7x7 at 1 and 2
// threads, in alternating rounds.
// KILN_BLOCKED_BENCH=7 go test ./device/cpu -run TestBlockedReorderBench -v
func TestBlockedReorderBench(t *testing.T) {
	rounds := benchEnv(t)
	defer SetThreads(0)
	for _, th := range []int{1, 2} {
		if th > runtime.GOMAXPROCS(0) {
			continue
		}
		SetThreads(th)
		for _, s := range [][2]int{{3, 224 * 224}, {64, 56 * 56}, {1280, 49}} {
			c, hw := s[0], s[1]
			r := rand.New(rand.NewPCG(1, 2))
			x := randSlice(r, c*hw)
			b := make([]float32, BlockedLen(1, c, hw))
			y := make([]float32, c*hw)
			abCompare(t, fmt.Sprintf("t%d to c%d hw%d", th, c, hw), rounds, 100*time.Millisecond,
				func() { reorderSerial(1, c, hw, x, b, true) },
				func() { ToBlocked(1, c, hw, x, b) })
			abCompare(t, fmt.Sprintf("t%d from c%d hw%d", th, c, hw), rounds, 100*time.Millisecond,
				func() { reorderSerial(1, c, hw, b, y, false) },
				func() { FromBlocked(1, c, hw, b, y) })
		}
	}
}

// BenchmarkBlockedDW: mobilenet_v2's depthwise layers, NCHW (Conv2D) and
// blocked (BlockedConv2D), at the pool's default threads.
func BenchmarkBlockedDW(b *testing.B) {
	for _, l := range mobilenetDW {
		p := Conv2DParams{N: 1, C: l.c, H: l.hw, W: l.hw, M: l.c, KH: 3, KW: 3, Group: l.c, StrideH: l.s, StrideW: l.s,
			DilH: 1, DilW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, Act: ActClip, ActMin: 0, ActMax: 6}
		r := rand.New(rand.NewPCG(1, 2))
		x, w, bias := randSlice(r, l.c*l.hw*l.hw), randSlice(r, 9*l.c), randSlice(r, l.c)
		y := make([]float32, p.M*p.OutH()*p.OutW())
		xb := make([]float32, BlockedLen(1, l.c, l.hw*l.hw))
		yb := make([]float32, BlockedLen(1, l.c, p.OutH()*p.OutW()))
		f := PackBlockedFilter(p, false, w)
		b.Run(fmt.Sprintf("nchw/c%d_%d_s%d", l.c, l.hw, l.s), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				Conv2D(p, x, w, bias, y)
			}
		})
		b.Run(fmt.Sprintf("blocked/c%d_%d_s%d", l.c, l.hw, l.s), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				BlockedConv2D(f, xb, bias, nil, yb)
			}
		})
	}
}

// TestBlockedDW5x5Bench compares NCHW (A) and blocked (B) on 5x5 and
// dilated depthwise layers, which the blocked path runs in Go.
// KILN_BLOCKED_BENCH=3 go test ./device/cpu -run TestBlockedDW5x5Bench -v
func TestBlockedDW5x5Bench(t *testing.T) {
	rounds := benchEnv(t)
	defer SetThreads(0)
	SetThreads(1)
	for _, l := range []struct{ c, hw, k, s int }{{240, 14, 5, 1}, {144, 28, 5, 2}} {
		pad := l.k / 2
		p := Conv2DParams{N: 1, C: l.c, H: l.hw, W: l.hw, M: l.c, KH: l.k, KW: l.k, Group: l.c, StrideH: l.s, StrideW: l.s,
			DilH: 1, DilW: 1, PadTop: pad, PadLeft: pad, PadBottom: pad, PadRight: pad, Act: ActClip, ActMin: 0, ActMax: 6}
		r := rand.New(rand.NewPCG(1, 2))
		x, w, bias := randSlice(r, l.c*l.hw*l.hw), randSlice(r, l.k*l.k*l.c), randSlice(r, l.c)
		y := make([]float32, p.M*p.OutH()*p.OutW())
		xb := make([]float32, BlockedLen(1, l.c, l.hw*l.hw))
		yb := make([]float32, BlockedLen(1, l.c, p.OutH()*p.OutW()))
		f := PackBlockedFilter(p, false, w)
		abCompare(t, fmt.Sprintf("c%d %d k%d s%d", l.c, l.hw, l.k, l.s), rounds, 150*time.Millisecond,
			func() { Conv2D(p, x, w, bias, y) },
			func() { BlockedConv2D(f, xb, bias, nil, yb) })
	}
}
