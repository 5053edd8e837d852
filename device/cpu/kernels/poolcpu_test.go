//go:build linux

package kernels

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ops/nn"
)

// poolProcCPU is the process's user and system CPU time so far (the
// caller's thread and the pool's workers).
func poolProcCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// poolBenchCase is one pooling layer of the shared models.
type poolBenchCase struct {
	name             string
	kind             poolKind
	c, h, w          int
	k, s, pad        int
	ceil, includePad bool
	global           bool
}

var poolBenchCases = []poolBenchCase{
	{name: "squeezenet.2_64x111x111_k3s2c", kind: poolMax, c: 64, h: 111, w: 111, k: 3, s: 2, ceil: true},
	{name: "squeezenet.5_128x55x55_k3s2c", kind: poolMax, c: 128, h: 55, w: 55, k: 3, s: 2, ceil: true},
	{name: "squeezenet.8_256x27x27_k3s2c", kind: poolMax, c: 256, h: 27, w: 27, k: 3, s: 2, ceil: true},
	{name: "tinycnn_8x32x32_k2s2", kind: poolMax, c: 8, h: 32, w: 32, k: 2, s: 2},
	{name: "resnet_stem_64x112x112_k3s2p1", kind: poolMax, c: 64, h: 112, w: 112, k: 3, s: 2, pad: 1},
	{name: "sppf_128x10x10_k5s1p2", kind: poolMax, c: 128, h: 10, w: 10, k: 5, s: 1, pad: 2},
	{name: "avg_256x28x28_k3s1p1", kind: poolAvg, c: 256, h: 28, w: 28, k: 3, s: 1, pad: 1},
	{name: "avg_64x56x56_k2s2", kind: poolAvg, c: 64, h: 56, w: 56, k: 2, s: 2},
	{name: "gap_1000x13x13", kind: poolAvg, c: 1000, h: 13, w: 13, global: true},
	{name: "gap_1280x7x7", kind: poolAvg, c: 1280, h: 7, w: 7, global: true},
	{name: "gmp_1000x13x13", kind: poolMax, c: 1000, h: 13, w: 13, global: true},
}

// poolBenchVariants are the implementations TestPoolCPUTime compares: each
// returns false where it does not apply to the case.
var poolBenchVariants = []struct {
	name string
	run  func(k *poolKernel, g *nn.PoolGeometry, planes int, x, y []float32) bool
}{
	{"generic", func(k *poolKernel, g *nn.PoolGeometry, planes int, x, y []float32) bool {
		poolSep(k, g, planes, x, y)
		return true
	}},
	{"dispatch", func(k *poolKernel, g *nn.PoolGeometry, planes int, x, y []float32) bool {
		return maxPoolPlanes(k, g, planes, x, y) || poolFast2D(k, g, planes, x, y)
	}},
	{"regs", poolRegPlanes},
	{"regs-strip4", poolStripVariant(4)},
	{"regs-strip16", poolStripVariant(16)},
	{"regs-strip-all", poolStripVariant(1 << 30)},
	{"regs-inline", func(k *poolKernel, g *nn.PoolGeometry, planes int, x, y []float32) bool {
		if !poolAsm || !poolRegApplies(k, g) {
			return false
		}
		poolRegRun(y, x, k.regs.planFor(k, g), planes)
		return true
	}},
}

// poolStripVariant is poolRegPlanes with strips of the column pass of n
// rows.
func poolStripVariant(n int) func(k *poolKernel, g *nn.PoolGeometry, planes int, x, y []float32) bool {
	return func(k *poolKernel, g *nn.PoolGeometry, planes int, x, y []float32) bool {
		old, oldPlane := poolStripRows, poolStripPlane
		poolStripRows, poolStripPlane = n, 0
		defer func() { poolStripRows, poolStripPlane = old, oldPlane }()
		return poolRegPlanes(k, g, planes, x, y)
	}
}

// TestPoolCPUTime times the pooling layers of the shared models with each
// variant, in alternating rounds, as process CPU time per call (on a
// machine shared with other work, wall time counts the time the thread was
// descheduled). It prints the median per variant and how many rounds each
// won (and the median wall time per call, which counts the time the
// threads were descheduled but shows what splitting over threads gains).
// It runs only when KILN_POOL_BENCH is set:
//
//	KILN_POOL_BENCH=1 KILN_POOL_THREADS=1 go test ./device/cpu/kernels -run PoolCPUTime -v
//
// KILN_POOL_THREADS (default 1) fixes the thread count, KILN_POOL_ROUNDS
// (default 7) the rounds, KILN_POOL_CASES a substring of the case names
// and KILN_POOL_VARIANTS a comma-separated list of variants.
func TestPoolCPUTime(t *testing.T) {
	if os.Getenv("KILN_POOL_BENCH") == "" {
		t.Skip("set KILN_POOL_BENCH=1 to time the pools")
	}
	threads, rounds := 1, 7
	if v, err := strconv.Atoi(os.Getenv("KILN_POOL_THREADS")); err == nil && v > 0 {
		threads = v
	}
	if v, err := strconv.Atoi(os.Getenv("KILN_POOL_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	if threads > runtime.GOMAXPROCS(0) {
		t.Skipf("%d threads with GOMAXPROCS %d", threads, runtime.GOMAXPROCS(0))
	}
	if err := cpu.SetThreads(threads); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cpu.SetThreads(0) }()
	want := os.Getenv("KILN_POOL_VARIANTS")
	for _, c := range poolBenchCases {
		if f := os.Getenv("KILN_POOL_CASES"); f != "" && !strings.Contains(c.name, f) {
			continue
		}
		x := make([]float32, c.c*c.h*c.w)
		for i := range x {
			x[i] = float32((i*7919)%1021)/97 - 5
		}
		var k *poolKernel
		var g *nn.PoolGeometry
		if !c.global {
			var err error
			if k, g, err = testPool(t, c.kind, c.includePad, window{kernel: []int{c.k, c.k}, strides: []int{c.s, c.s},
				pads: []int{c.pad, c.pad, c.pad, c.pad}, ceil: c.ceil}, []int{c.h, c.w}); err != nil {
				t.Fatal(err)
			}
		}
		var names []string
		var runs []func(y []float32) bool
		for _, v := range poolBenchVariants {
			if want != "" && !slices.Contains(strings.Split(want, ","), v.name) {
				continue
			}
			v := v
			names = append(names, v.name)
			runs = append(runs, func(y []float32) bool { return v.run(k, g, c.c, x, y) })
		}
		if c.global && c.kind == poolAvg {
			names, runs = []string{"generic", "vector", "vector-inline"}, []func(y []float32) bool{
				func(y []float32) bool {
					planeSumsGo(y, x, c.h*c.w)
					for i := range y {
						y[i] /= float32(c.h * c.w)
					}
					return true
				},
				func(y []float32) bool { globalAvgF32(c.c, c.h*c.w, x, y); return true },
				func(y []float32) bool { globalAvgRange(y, x, c.h*c.w); return true },
			}
		} else if c.global {
			names, runs = []string{"generic", "vector"}, []func(y []float32) bool{
				func(y []float32) bool {
					planeMaxGo(y, x, c.h*c.w)
					return true
				},
				func(y []float32) bool { globalMaxF32(c.c, c.h*c.w, x, y); return true },
			}
		}
		outLen := c.c
		if g != nil {
			outLen = c.c * g.Out[0] * g.Out[1]
		}
		// calls per round: about 20 ms of work
		ref := make([]float32, outLen)
		runs[0](ref)
		t0 := poolProcCPU()
		n := 0
		for poolProcCPU()-t0 < 20*time.Millisecond {
			runs[0](ref)
			n++
		}
		n = max(n, 5)
		per := make([][]float64, len(runs))
		wall := make([][]float64, len(runs))
		ok := make([]bool, len(runs))
		ys := make([][]float32, len(runs))
		for v := range runs {
			ys[v] = make([]float32, outLen)
			ok[v] = runs[v](ys[v])
			if ok[v] {
				for i := range ref {
					if d := math.Abs(float64(ys[v][i] - ref[i])); !(d <= 1e-6*(1+math.Abs(float64(ref[i])))) {
						t.Fatalf("%s/%s: output %d = %g, %s %g", c.name, names[v], i, ys[v][i], names[0], ref[i])
					}
				}
			}
		}
		for r := 0; r < rounds; r++ {
			for i := range runs {
				v := i
				if r%2 == 1 {
					v = len(runs) - 1 - i // odd rounds in reverse: no variant always runs first
				}
				if !ok[v] {
					continue
				}
				c0, w0 := poolProcCPU(), time.Now()
				for i := 0; i < n; i++ {
					runs[v](ys[v])
				}
				per[v] = append(per[v], float64(poolProcCPU()-c0)/float64(n)/1e3)
				wall[v] = append(wall[v], float64(time.Since(w0))/float64(n)/1e3)
			}
		}
		wins := make([]int, len(runs))
		for r := 0; r < rounds; r++ {
			best := -1
			for v := range runs {
				if ok[v] && (best < 0 || per[v][r] < per[best][r]) {
					best = v
				}
			}
			wins[best]++
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "%-32s threads %d:", c.name, threads)
		for v := range runs {
			if !ok[v] {
				continue
			}
			s, w := slices.Clone(per[v]), slices.Clone(wall[v])
			slices.Sort(s)
			slices.Sort(w)
			fmt.Fprintf(&sb, "  %s %.1f us (won %d/%d, wall %.1f)", names[v], s[len(s)/2], wins[v], rounds, w[len(w)/2])
		}
		t.Log(sb.String())
	}
}
