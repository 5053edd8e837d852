//go:build kilnpooltrace

package kernels

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// TestDirectBandsTrace splits a chain of four 16 -> 16 3x3 direct layers at
// 56x56 at two threads into its pool calls (the input copy, the tiles, the
// copy out), with the input copy and the copy out by channel and by band,
// and prints per call kind the medians of the call's wall time, the time
// the caller and the worker spent in ranges, the worker's pickup delay and
// how long the caller waited at the end (NOTES.md section 32):
//
//	go test -tags kilnpooltrace ./device/cpu/kernels -run DirectBandsTrace -v
func TestDirectBandsTrace(t *testing.T) {
	defer cpu.SetThreads(0)
	if os.Getenv("KILN_BAND_CPU") != "" {
		cpu.TraceCPU.Store(true)
		defer cpu.TraceCPU.Store(false)
	}
	for _, s := range []struct{ c, hw int }{{16, 56}, {32, 28}, {64, 14}} {
		p := cpu.Conv2DParams{N: 1, C: s.c, H: s.hw, W: s.hw, M: s.c, KH: 3, KW: 3, Group: 1, DilH: 1, DilW: 1,
			StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, Act: cpu.ActRelu}
		r := rand.New(rand.NewPCG(3, 4))
		rnd := func(n int, scale float32) []float32 {
			v := make([]float32, n)
			for i := range v {
				v[i] = (r.Float32()*2 - 1) * scale
			}
			return v
		}
		const layers = 4
		var acts [layers + 1][]float32
		for i := range acts {
			acts[i] = rnd(p.C*p.H*p.W, 1)
		}
		var fs [layers]*directFilter
		for i := range fs {
			fs[i] = newDirectFilter(rnd(p.M*p.C*9, 0.1), p.M, p.C, 3, 3)
		}
		chain := layers
		if os.Getenv("KILN_BAND_CHAIN") == "1" {
			chain = 1
		}
		for round := 0; round < 2; round++ {
			for _, v := range []struct {
				threads int
				band    bool
			}{{1, false}, {2, false}, {2, true}} {
				band := v.band
				if err := cpu.SetThreads(v.threads); err != nil {
					t.Fatal(err)
				}
				directBand = band
				if os.Getenv("KILN_BAND_ORDER") == "tile" {
					directOrder = orderTile
				}
				for range 200 {
					for l := range chain {
						convDirect(p, acts[l], fs[l], nil, acts[l+1], nil, nil)
					}
				}
				cpu.TraceStart()
				for range 1000 {
					for l := range chain {
						convDirect(p, acts[l], fs[l], nil, acts[l+1], nil, nil)
					}
				}
				calls := cpu.TraceStop()
				// how often the caller's CPU changes between calls, and
				// how often the worker ran on the caller's CPU
				moves, same, prev := 0, 0, -1
				for _, c := range calls {
					if prev >= 0 && c.CallerOn != prev {
						moves++
					}
					prev = c.CallerOn
					if c.WorkerOn == c.CallerOn {
						same++
					}
				}
				t.Logf("caller CPU changed in %d of %d calls; worker on the caller's CPU in %d", moves, len(calls), same)
				by := map[string][][8]float64{}
				var names []string
				for _, c := range calls {
					n := cpu.FuncName(c.Func)
					n = n[strings.LastIndex(n, "/")+1:]
					if _, ok := by[n]; !ok {
						names = append(names, n)
					}
					wait := float64(c.End - c.CallerDone)
					pick := float64(c.Pickup - c.Start)
					if c.Pickup == 0 {
						pick = -1
					}
					by[n] = append(by[n], [8]float64{float64(c.End - c.Start), float64(c.CallerWork), float64(c.WorkerWork), pick, wait, float64(c.WorkerRanges), float64(c.CallerCPU), float64(c.WorkerCPU)})
				}
				var sb strings.Builder
				fmt.Fprintf(&sb, "c%d@%d t%d band=%v round %d:", s.c, s.hw, v.threads, band, round)
				total := 0.0
				for _, n := range names {
					v := by[n]
					med := func(k int) float64 {
						x := make([]float64, len(v))
						for i := range v {
							x[i] = v[i][k]
						}
						sort.Float64s(x)
						return x[len(x)/2] / 1e3
					}
					total += med(0)
					fmt.Fprintf(&sb, " [%s n=%d wall %.1f caller %.1f (cpu %.1f) worker %.1f (cpu %.1f) pickup %.1f wait %.1f wr %.0f]", n, len(v), med(0), med(1), med(6), med(2), med(7), med(3), med(4), med(5)*1e3)
				}
				fmt.Fprintf(&sb, " sum of medians per layer %.1f us", total)
				t.Log(sb.String())
			}
		}
	}
	directBand = false
	directOrder = orderAuto
}
