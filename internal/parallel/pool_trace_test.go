//go:build kilnpooltrace

package parallel_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/internal/parallel"
)

// TestPoolTrace runs the plans of KILN_POOL_TRACE_PLANS (comma-separated,
// each named MODEL.plan for a model of ../shared/models, whose
// test_data_set_0 gives the inputs) KILN_POOL_TRACE_ITERS times (default
// 40), alternating GOMAXPROCS 1 and 2 per inference, and prints where
// each inference's time goes: outside any For/DynamicFor call (one
// thread), in calls that ran on the caller alone, in split calls (their
// work, its ideal halving, the first worker's start, the caller's wait for
// the last range), and per range function, one thread against two.
//
//	go test -tags kilnpooltrace ./internal/parallel -run PoolTrace -v
func TestPoolTrace(t *testing.T) {
	plans := os.Getenv("KILN_POOL_TRACE_PLANS")
	if plans == "" {
		t.Skip("set KILN_POOL_TRACE_PLANS to plan files named MODEL.plan")
	}
	iters := 40
	if v, err := strconv.Atoi(os.Getenv("KILN_POOL_TRACE_ITERS")); err == nil && v > 0 {
		iters = v
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, p := range strings.Split(plans, ",") {
		name := strings.TrimSuffix(filepath.Base(p), ".plan")
		m, err := kiln.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		in := map[string]*kiln.Tensor{}
		files, _ := filepath.Glob(filepath.Join("../../../shared/models", name, "test_data_set_0", "input_*.pb"))
		sort.Strings(files)
		for i, f := range files {
			x, n, err := kiln.ReadTensorFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if n == "" && i < len(m.Inputs()) {
				n = m.Inputs()[i].Name
			}
			in[n] = x
		}
		if len(in) == 0 {
			t.Fatalf("%s: no inputs in ../shared/models/%s/test_data_set_0", p, name)
		}
		var runs [3][]inference
		solo := os.Getenv("KILN_POOL_TRACE_SOLO") != ""
		parallel.TraceCPU.Store(os.Getenv("KILN_POOL_TRACE_CPU") != "")
		for i := range 2*iters + 4 {
			procs := 1 + i%2
			runtime.GOMAXPROCS(procs)
			parallel.TraceSolo.Store(solo)
			if os.Getenv("KILN_POOL_TRACE_NOGC") == "" {
				runtime.GC() // (empties sync.Pools: scratch buffers are made again)
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			mallocs, bytes := ms.Mallocs, ms.TotalAlloc
			parallel.TraceStart()
			start := parallel.TraceNow()
			if _, err := m.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			end := parallel.TraceNow()
			calls := parallel.TraceStop()
			runtime.ReadMemStats(&ms)
			if i >= 4 {
				runs[procs] = append(runs[procs], inference{start, end, calls, float64(ms.Mallocs - mallocs), float64(ms.TotalAlloc - bytes)})
			}
		}
		m.Close()
		parallel.TraceSolo.Store(false)
		report(t, name, runs[1], runs[2])
	}
}

type inference struct {
	start, end      int64
	calls           []parallel.TraceCall
	mallocs, allocB float64 // allocations during the inference (the trace's own included)
}

// covered returns the time inside any call (the union of their spans).
func (r inference) covered() int64 {
	s := slices.Clone(r.calls)
	sort.Slice(s, func(a, b int) bool { return s[a].Start < s[b].Start })
	var total, end int64
	for _, c := range s {
		lo := max(c.Start, end)
		if c.End > lo {
			total += c.End - lo
		}
		end = max(end, c.End)
	}
	return total
}

func med(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func minOf(v []float64) float64 { return slices.Min(v) }

func nil2(v []float64) []float64 { return make([]float64, len(v)) }

func report(t *testing.T, name string, one, two []inference) {
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	type stats struct {
		wall, serial, inline, inlineCPU, split, work, workCPU, callerWork, pickup, wait, splitCalls, inlineCalls, noWorker []float64
		perFunc, perFuncWork, gapBefore                                                                                    map[uintptr][]float64
	}
	gather := func(runs []inference) stats {
		s := stats{perFunc: map[uintptr][]float64{}, perFuncWork: map[uintptr][]float64{}, gapBefore: map[uintptr][]float64{}}
		for k, r := range runs {
			s.wall = append(s.wall, us(r.end-r.start))
			s.serial = append(s.serial, us(r.end-r.start-r.covered()))
			// time outside any call before each top-level call (the
			// calls in start order; nested ones lie inside their parent)
			byStart := slices.Clone(r.calls)
			sort.Slice(byStart, func(a, b int) bool { return byStart[a].Start < byStart[b].Start })
			prevEnd := r.start
			for _, c := range byStart {
				if c.Start < prevEnd {
					continue
				}
				if len(s.gapBefore[c.Func]) < k+1 {
					s.gapBefore[c.Func] = append(s.gapBefore[c.Func], make([]float64, k+1-len(s.gapBefore[c.Func]))...)
				}
				s.gapBefore[c.Func][k] += us(c.Start - prevEnd)
				prevEnd = c.End
			}
			var inl, inlc, spl, work, wcpu, cw, pick, wait, nspl, ninl, now int64
			for _, c := range r.calls {
				if len(s.perFunc[c.Func]) < k+1 {
					s.perFunc[c.Func] = append(s.perFunc[c.Func], make([]float64, k+1-len(s.perFunc[c.Func]))...)
				}
				s.perFunc[c.Func][k] += us(c.End - c.Start)
				if len(s.perFuncWork[c.Func]) < k+1 {
					s.perFuncWork[c.Func] = append(s.perFuncWork[c.Func], make([]float64, k+1-len(s.perFuncWork[c.Func]))...)
				}
				s.perFuncWork[c.Func][k] += us(c.CallerWork + c.WorkerWork)
				if c.Inline {
					inl += c.End - c.Start
					inlc += c.CallerCPU
					ninl++
					continue
				}
				nspl++
				spl += c.End - c.Start
				work += c.CallerWork + c.WorkerWork
				wcpu += c.CallerCPU + c.WorkerCPU
				cw += c.CallerWork
				wait += c.End - c.CallerDone
				if c.Pickup > 0 {
					pick += c.Pickup - c.Start
				} else {
					now++
				}
			}
			s.inline = append(s.inline, us(inl))
			s.inlineCPU = append(s.inlineCPU, us(inlc))
			s.workCPU = append(s.workCPU, us(wcpu))
			s.split = append(s.split, us(spl))
			s.work = append(s.work, us(work))
			s.callerWork = append(s.callerWork, us(cw))
			s.pickup = append(s.pickup, us(pick))
			s.wait = append(s.wait, us(wait))
			s.splitCalls = append(s.splitCalls, float64(nspl))
			s.inlineCalls = append(s.inlineCalls, float64(ninl))
			s.noWorker = append(s.noWorker, float64(now))
		}
		for f, v := range s.perFunc {
			if len(v) < len(runs) {
				s.perFunc[f] = append(v, make([]float64, len(runs)-len(v))...)
			}
		}
		return s
	}
	a, b := gather(one), gather(two)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s: %d inferences per GOMAXPROCS, medians (min) in us\n", name, len(one))
	row := func(what string, x, y []float64) {
		fmt.Fprintf(&sb, "  %-34s %9.0f (%6.0f) %9.0f (%6.0f)\n", what, med(x), minOf(x), med(y), minOf(y))
	}
	fmt.Fprintf(&sb, "  %-34s %18s %18s\n", "", "GOMAXPROCS=1", "GOMAXPROCS=2")
	row("wall", a.wall, b.wall)
	allocs := func(r []inference, bytes bool) []float64 {
		var v []float64
		for _, x := range r {
			if bytes {
				v = append(v, x.allocB)
			} else {
				v = append(v, x.mallocs)
			}
		}
		return v
	}
	row("allocations (count, trace's included)", allocs(one, false), allocs(two, false))
	row("allocated bytes", allocs(one, true), allocs(two, true))
	row("outside calls (one thread)", a.serial, b.serial)
	row("calls run inline", a.inline, b.inline)
	row("  their thread's CPU time", a.inlineCPU, b.inlineCPU)
	row("inline calls (count)", a.inlineCalls, b.inlineCalls)
	row("split calls", a.split, b.split)
	row("split calls (count)", a.splitCalls, b.splitCalls)
	row("  their work (both threads)", a.work, b.work)
	row("  their threads' CPU time", a.workCPU, b.workCPU)
	row("  of it on the caller", a.callerWork, b.callerWork)
	row("  first worker's start, summed", a.pickup, b.pickup)
	row("  calls no worker joined (count)", a.noWorker, b.noWorker)
	row("  caller's wait for the last range", a.wait, b.wait)
	// how often the caller's CPU changed from one split call to the next,
	// and how often the worker ran on the caller's previous CPU
	var moved, swapped []float64
	for _, r := range two {
		var m, sw float64
		prev := -1
		for _, c := range r.calls {
			if c.Inline {
				continue
			}
			if prev >= 0 && c.CallerOn != prev {
				m++
			}
			if prev >= 0 && c.WorkerOn == prev {
				sw++
			}
			prev = c.CallerOn
		}
		moved = append(moved, m)
		swapped = append(swapped, sw)
	}
	row("  calls the caller changed CPU", nil2(a.wait), moved)
	row("  calls the worker took its CPU", nil2(a.wait), swapped)
	type fr struct {
		name       string
		t1, t2, w2 float64
	}
	var fs []fr
	for f, v := range a.perFunc {
		fs = append(fs, fr{parallel.FuncName(f), med(v), med(b.perFunc[f]), med(b.perFuncWork[f])})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].t1 > fs[j].t1 })
	fmt.Fprintf(&sb, "  per range function, median us per inference: 1 thread, 2 threads, speedup, work on 2 threads / 1 thread\n")
	for i, f := range fs {
		if i == 20 {
			break
		}
		fmt.Fprintf(&sb, "    %-50s %8.0f %8.0f %5.2f %5.2f\n", strings.TrimPrefix(f.name, "github.com/kilnai/kiln/"), f.t1, f.t2, f.t1/max(f.t2, 1e-9), f.w2/max(f.t1, 1e-9))
	}
	fmt.Fprintf(&sb, "  time outside calls, by the call that follows it, median us per inference: 1 thread, 2 threads\n")
	type gr struct {
		name   string
		g1, g2 float64
	}
	var gs []gr
	for f, v := range a.gapBefore {
		gs = append(gs, gr{parallel.FuncName(f), med(v), med(b.gapBefore[f])})
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].g2 > gs[j].g2 })
	for i, g := range gs {
		if i == 12 {
			break
		}
		fmt.Fprintf(&sb, "    %-50s %8.0f %8.0f\n", strings.TrimPrefix(g.name, "github.com/kilnai/kiln/"), g.g1, g.g2)
	}
	// Per split call of the median-wall inference at GOMAXPROCS=2: when
	// the worker took the job and started a range, after the call began.
	if os.Getenv("KILN_POOL_TRACE_CALLS") != "" {
		k := slices.IndexFunc(b.wall, func(v float64) bool { return v == med(b.wall) })
		r := two[k]
		fmt.Fprintf(&sb, "  split calls of the median inference (us from the call's start): dequeued, started, caller done, end, ranges\n")
		for _, c := range r.calls {
			if c.Inline {
				continue
			}
			rel := func(v int64) float64 {
				if v == 0 {
					return -1
				}
				return us(v - c.Start)
			}
			fmt.Fprintf(&sb, "    %8.0f %-40s %6.1f %6.1f %6.1f %6.1f %3d/%d\n", us(c.Start-r.start), strings.TrimPrefix(parallel.FuncName(c.Func), "github.com/kilnai/kiln/"),
				rel(c.Dequeued), rel(c.Pickup), rel(c.CallerDone), rel(c.End), c.WorkerRanges, c.Ranges)
		}
	}
	t.Log("\n" + sb.String())
	_ = time.Now
}
