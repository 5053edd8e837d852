package tactic

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
)

// fakeTimer measures each candidate as its table says, and records what
// Choose asked.
type fakeTimer struct {
	name  string
	names []string
	times map[string]Result
	err   error // returned by Time
	// calls: the names of each call's todo; known: its known argument.
	calls [][]string
	known [][]time.Duration
}

func (f *fakeTimer) Name() string { return f.name }

func (f *fakeTimer) Time(_ context.Context, todo []int, known []time.Duration) ([]Result, error) {
	var names []string
	for _, i := range todo {
		names = append(names, f.names[i])
	}
	f.calls = append(f.calls, names)
	f.known = append(f.known, slices.Clone(known))
	if f.err != nil {
		return nil, f.err
	}
	res := make([]Result, len(todo))
	for k, n := range names {
		r, ok := f.times[n]
		if !ok {
			r.Err = fmt.Errorf("the fake has no time for %s", n)
		}
		res[k] = r
	}
	return res, nil
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

func TestChoose(t *testing.T) {
	fp := device.Fingerprint{"cpu": "fake"}
	const sig = "layer sig"
	type cached struct {
		tactic, timer string
		d             time.Duration
		scratch       int64 // -1: none recorded
	}
	broken := errors.New("launch failed")
	for _, tc := range []struct {
		name       string
		cands      []string
		times      map[string]Result
		timerName  string
		cache      []cached
		noCache    bool
		timerErr   error
		rule       Rule
		want       string // chosen tactic ("" with wantErr)
		wantIndex  int
		wantCalls  [][]string      // the todo of each Time call
		wantKnown  []time.Duration // known of the first call
		wantFailed []string
		wantErr    error
		errHas     string
		cachedAll  bool
		measured   int
		stored     map[string]time.Duration // what the cache holds afterwards under the timer's name
	}{
		{
			name:      "fastest",
			cands:     []string{"a", "b", "c"},
			times:     map[string]Result{"a": {Time: ms(3)}, "b": {Time: ms(1)}, "c": {Time: ms(2)}},
			want:      "b",
			wantIndex: 1,
			wantCalls: [][]string{{"a", "b", "c"}},
			wantKnown: []time.Duration{0, 0, 0},
			measured:  3,
			stored:    map[string]time.Duration{"a": ms(3), "b": ms(1), "c": ms(2)},
		},
		{
			name:      "tie keeps the default",
			cands:     []string{"a", "b"},
			times:     map[string]Result{"a": {Time: ms(1)}, "b": {Time: ms(1)}},
			want:      "a",
			wantCalls: [][]string{{"a", "b"}},
			measured:  2,
		},
		{
			name:      "tie keeps the earlier after the default",
			cands:     []string{"a", "b", "c"},
			times:     map[string]Result{"a": {Time: ms(2)}, "b": {Time: ms(1)}, "c": {Time: ms(1)}},
			want:      "b",
			wantIndex: 1,
			measured:  3,
		},
		{
			name:      "cache hits: only misses measured, known carries the hits",
			cands:     []string{"a", "b", "c"},
			times:     map[string]Result{"b": {Time: ms(2)}, "a": {Time: ms(9)}, "c": {Time: ms(9)}},
			cache:     []cached{{"a", "", ms(3), -1}, {"c", "", ms(1), -1}},
			want:      "c",
			wantIndex: 2,
			wantCalls: [][]string{{"b"}},
			wantKnown: []time.Duration{ms(3), 0, ms(1)},
			measured:  1,
			stored:    map[string]time.Duration{"a": ms(3), "b": ms(2), "c": ms(1)},
		},
		{
			name:      "all from the cache: no timing",
			cands:     []string{"a", "b"},
			times:     map[string]Result{"a": {Time: ms(1)}, "b": {Time: ms(1)}},
			cache:     []cached{{"a", "", ms(2), -1}, {"b", "", ms(1), -1}},
			want:      "b",
			wantIndex: 1,
			cachedAll: true,
		},
		{
			name:      "another timer's entries are not used",
			cands:     []string{"a", "b"},
			timerName: CPUTimer,
			times:     map[string]Result{"a": {Time: ms(1)}, "b": {Time: ms(2)}},
			cache:     []cached{{"a", "", ms(5), -1}, {"b", "", ms(1), -1}},
			want:      "a",
			wantCalls: [][]string{{"a", "b"}},
			measured:  2,
			stored:    map[string]time.Duration{"a": ms(1), "b": ms(2)},
		},
		{
			name:      "no cache: everything measured",
			cands:     []string{"a", "b"},
			noCache:   true,
			times:     map[string]Result{"a": {Time: ms(2)}, "b": {Time: ms(1)}},
			want:      "b",
			wantIndex: 1,
			wantCalls: [][]string{{"a", "b"}},
			measured:  2,
		},
		{
			name:       "a failing candidate is skipped with its reason, not stored",
			cands:      []string{"a", "b", "c"},
			times:      map[string]Result{"a": {Time: ms(3)}, "b": {Err: broken}, "c": {Time: ms(2)}},
			want:       "c",
			wantIndex:  2,
			wantFailed: []string{"b"},
			measured:   2,
			stored:     map[string]time.Duration{"a": ms(3), "c": ms(2)},
		},
		{
			name:       "the default failing",
			cands:      []string{"a", "b"},
			times:      map[string]Result{"a": {Err: broken}, "b": {Time: ms(2)}},
			rule:       Rule{MinGain: 0.5},
			want:       "b",
			wantIndex:  1,
			wantFailed: []string{"a"},
			measured:   1,
		},
		{
			name:       "none runs",
			cands:      []string{"a", "b"},
			times:      map[string]Result{"a": {Err: broken}},
			wantErr:    ErrNoCandidate,
			errHas:     "a: launch failed; b: the fake has no time for b",
			wantFailed: []string{"a", "b"},
		},
		{
			name:     "the timer's error ends the choice",
			cands:    []string{"a", "b"},
			timerErr: ErrRun,
			wantErr:  ErrRun,
		},
		{
			name:      "zero time counts as one nanosecond",
			cands:     []string{"a", "b"},
			times:     map[string]Result{"a": {Time: 0}, "b": {Time: 1}},
			want:      "a",
			measured:  2,
			stored:    map[string]time.Duration{"a": 1, "b": 1},
			wantCalls: [][]string{{"a", "b"}},
		},
		{
			name:      "a name given twice is measured once",
			cands:     []string{"a", "b", "a"},
			times:     map[string]Result{"a": {Time: ms(1)}, "b": {Time: ms(2)}},
			want:      "a",
			wantCalls: [][]string{{"a", "b"}},
			measured:  2,
		},
		{
			name:      "MinGain: not enough faster keeps the default",
			cands:     []string{"a", "b"},
			times:     map[string]Result{"a": {Time: ms(1.04)}, "b": {Time: ms(1)}},
			rule:      Rule{MinGain: 0.05},
			want:      "a",
			measured:  2,
			wantCalls: [][]string{{"a", "b"}},
		},
		{
			name:      "MinGain: enough faster",
			cands:     []string{"a", "b"},
			times:     map[string]Result{"a": {Time: ms(1.06)}, "b": {Time: ms(1)}},
			rule:      Rule{MinGain: 0.05},
			want:      "b",
			wantIndex: 1,
			measured:  2,
		},
		{
			name:      "workspace: the fastest that fits",
			cands:     []string{"a", "b", "c"},
			times:     map[string]Result{"a": {Time: ms(3), HasScratch: true, Scratch: 10}, "b": {Time: ms(1), HasScratch: true, Scratch: 1000}, "c": {Time: ms(2), HasScratch: true, Scratch: 100}},
			rule:      Rule{Workspace: 100},
			want:      "c",
			wantIndex: 2,
			measured:  3,
		},
		{
			name:      "workspace: the default that does not fit is not kept by MinGain",
			cands:     []string{"a", "b"},
			times:     map[string]Result{"a": {Time: ms(1), HasScratch: true, Scratch: 1000}, "b": {Time: ms(1.01), HasScratch: true, Scratch: 0}},
			rule:      Rule{Workspace: 100, MinGain: 0.5},
			want:      "b",
			wantIndex: 1,
			measured:  2,
		},
		{
			name:    "workspace: none fits",
			cands:   []string{"a", "b"},
			times:   map[string]Result{"a": {Time: ms(1), HasScratch: true, Scratch: 300}, "b": {Time: ms(1), HasScratch: true, Scratch: 200}},
			rule:    Rule{Workspace: 100},
			wantErr: ErrWorkspace,
			errHas:  `the smallest, "b", needs 200`,
		},
		{
			name:      "workspace: a cached time without its scratch is measured again",
			cands:     []string{"a", "b"},
			times:     map[string]Result{"a": {Time: ms(2), HasScratch: true, Scratch: 10}, "b": {Time: ms(3), HasScratch: true, Scratch: 10}},
			cache:     []cached{{"a", "", ms(5), 10}, {"b", "", ms(1), -1}},
			rule:      Rule{Workspace: 100},
			want:      "b",
			wantIndex: 1,
			wantCalls: [][]string{{"b"}},
			wantKnown: []time.Duration{ms(5), 0},
			measured:  1,
			stored:    map[string]time.Duration{"a": ms(5), "b": ms(3)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cache *Cache
			if !tc.noCache {
				cache = New()
				for _, e := range tc.cache {
					cache.StoreTimer(fp, sig, e.tactic, e.timer, e.d)
					if e.scratch >= 0 {
						cache.StoreScratchTimer(fp, sig, e.tactic, e.timer, e.scratch)
					}
				}
			}
			timer := &fakeTimer{name: tc.timerName, names: tc.cands, times: tc.times, err: tc.timerErr}
			var order []string
			rule := tc.rule
			rule.Progress = func(i int, d time.Duration, cached bool) {
				order = append(order, fmt.Sprintf("%s/%v", tc.cands[i], cached))
			}
			c, err := Choose(context.Background(), fp, cache, Layer{Name: "n", Op: "Conv", Sig: sig, Candidates: tc.cands}, timer, rule)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.errHas) || (tc.errHas != "" && !strings.Contains(err.Error(), `node "n" (Conv)`)) {
					t.Fatalf("error %v, want %v containing %q", err, tc.wantErr, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Tactic != tc.want || c.Index != tc.wantIndex || c.Default != tc.cands[0] {
				t.Errorf("chose %q (index %d, default %q), want %q (index %d)", c.Tactic, c.Index, c.Default, tc.want, tc.wantIndex)
			}
			if c.Time != c.Times[c.Tactic] {
				t.Errorf("time %v, want the chosen one's %v", c.Time, c.Times[c.Tactic])
			}
			if c.Cached != tc.cachedAll || c.Measured != tc.measured {
				t.Errorf("cached %v, measured %d; want %v, %d", c.Cached, c.Measured, tc.cachedAll, tc.measured)
			}
			if tc.cachedAll && len(timer.calls) != 0 {
				t.Errorf("all cached, the timer was called %v", timer.calls)
			}
			if len(timer.calls) > 1 {
				t.Errorf("the timer was called %d times, want once per layer", len(timer.calls))
			}
			if tc.wantCalls != nil && !slices.EqualFunc(timer.calls, tc.wantCalls, slices.Equal) {
				t.Errorf("timed %v, want %v", timer.calls, tc.wantCalls)
			}
			if tc.wantKnown != nil && (len(timer.known) == 0 || !slices.Equal(timer.known[0], tc.wantKnown)) {
				t.Errorf("known %v, want %v", timer.known, tc.wantKnown)
			}
			var failed []string
			for n, err := range c.Failed {
				if err == nil {
					t.Errorf("%s failed with no reason", n)
				}
				failed = append(failed, n)
			}
			slices.Sort(failed)
			if !slices.Equal(failed, tc.wantFailed) {
				t.Errorf("failed %v, want %v", failed, tc.wantFailed)
			}
			for n, want := range tc.stored {
				if d, ok := cache.LookupTimer(fp, sig, n, tc.timerName); !ok || d != want {
					t.Errorf("cache %s: %v %v, want %v", n, d, ok, want)
				}
			}
			if tc.stored != nil {
				for _, n := range tc.wantFailed {
					if _, ok := cache.LookupTimer(fp, sig, n, tc.timerName); ok {
						t.Errorf("the failed %s is in the cache", n)
					}
				}
			}
			if tc.rule.Workspace > 0 {
				for n, r := range tc.times {
					if _, measured := c.Times[n]; !measured || !slices.Contains(timer.calls[0], n) {
						continue
					}
					if b, ok := cache.LookupScratchTimer(fp, sig, n, tc.timerName); !ok || b != r.Scratch || c.Scratch[n] != r.Scratch {
						t.Errorf("scratch of %s: cache %d %v, choice %d, want %d", n, b, ok, c.Scratch[n], r.Scratch)
					}
				}
			}
			// Progress: the cached first, in order, then the measured.
			var want []string
			for i, n := range tc.cands {
				if i == slices.Index(tc.cands, n) && c.Times[n] > 0 && !slices.ContainsFunc(timer.calls, func(todo []string) bool { return slices.Contains(todo, n) }) {
					want = append(want, n+"/true")
				}
			}
			for _, todo := range timer.calls {
				for _, n := range todo {
					if _, ok := c.Failed[n]; !ok {
						want = append(want, n+"/false")
					}
				}
			}
			if !slices.Equal(order, want) {
				t.Errorf("progress %v, want %v", order, want)
			}
		})
	}
}

// TestKeeps: the margin rule both devices use.
func TestKeeps(t *testing.T) {
	for _, tc := range []struct {
		t, def time.Duration
		gain   float64
		want   bool
	}{
		{ms(1), ms(1), 0, true},
		{ms(1), ms(0.999), 0, false},
		{ms(1), ms(1.05), 0.05, true},
		{ms(1), ms(1.049), 0.05, false},
		{ms(2), ms(1), 0, false},
	} {
		if got := Keeps(tc.t, tc.def, tc.gain); got != tc.want {
			t.Errorf("Keeps(%v, %v, %g) = %v, want %v", tc.t, tc.def, tc.gain, got, tc.want)
		}
	}
}

// refSelectLayer is Select's choice of one layer before it went through
// Choose (selectLayer's lookups, store and rule as they were, the
// measurement a function), kept as the reference that
// TestChooseSameAsSelect compares Choose with.
func refSelectLayer(tactics []string, sig string, fp device.Fingerprint, cache *Cache, minGain float64, workspace int64, measure func([]string) (map[string]time.Duration, map[string]int64), progress func(string, time.Duration, bool)) (Choice, error) {
	c := Choice{Default: tactics[0], Cached: true, Times: make(map[string]time.Duration, len(tactics))}
	var todo []string
	limit := workspace > 0
	if limit {
		c.Scratch = map[string]int64{}
	}
	for _, t := range tactics {
		if d, ok := cache.LookupTimer(fp, sig, t, CPUTimer); ok {
			if limit {
				b, ok := cache.LookupScratchTimer(fp, sig, t, CPUTimer)
				if !ok {
					todo = append(todo, t)
					continue
				}
				c.Scratch[t] = b
			}
			c.Times[t] = d
			progress(t, d, true)
			continue
		}
		todo = append(todo, t)
	}
	if len(todo) > 0 {
		c.Cached = false
		best, scratch := measure(todo)
		for _, t := range todo {
			d := best[t]
			c.Times[t] = d
			cache.StoreTimer(fp, sig, t, CPUTimer, d)
			if b, ok := scratch[t]; ok {
				c.Scratch[t] = b
				cache.StoreScratchTimer(fp, sig, t, CPUTimer, b)
			}
			progress(t, d, false)
		}
	}
	fits := func(t string) bool { return !limit || c.Scratch[t] <= workspace }
	for _, t := range tactics {
		if d := c.Times[t]; fits(t) && (c.Tactic == "" || d < c.Time) {
			c.Tactic, c.Time = t, d
		}
	}
	if c.Tactic == "" {
		return Choice{}, ErrWorkspace
	}
	if def := c.Times[c.Default]; minGain > 0 && fits(c.Default) && float64(c.Time)*(1+minGain) > float64(def) {
		c.Tactic, c.Time = c.Default, def
	}
	return c, nil
}

// TestChooseSameAsSelect: on the same timings (random, with ties; times
// and scratch in the cache or not; with and without a workspace limit and
// a margin), Choose with the CPU's timer name makes the choice Select made
// before: the same tactic and time, the same times and scratch, the same
// progress lines in the same order, the same cache afterwards.
func TestChooseSameAsSelect(t *testing.T) {
	fp := device.Fingerprint{"cpu": "fake"}
	const sig = "sig"
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 3000 {
		n := 2 + r.IntN(5)
		tactics := make([]string, n)
		times := map[string]time.Duration{}
		scratch := map[string]int64{}
		for j := range n {
			tactics[j] = fmt.Sprintf("t%d", j)
			times[tactics[j]] = time.Duration(100 + r.IntN(8)*5)
			scratch[tactics[j]] = int64(r.IntN(4) * 100)
		}
		var workspace int64
		if r.IntN(2) == 0 {
			workspace = int64(100 + r.IntN(3)*100)
		}
		minGain := []float64{0, 0, 0.05, 0.2}[r.IntN(4)]
		type entry struct {
			d          time.Duration
			b          int64
			hasScratch bool
		}
		pre := map[string]entry{}
		for _, tc := range tactics {
			if r.IntN(3) == 0 {
				pre[tc] = entry{time.Duration(100 + r.IntN(8)*5), int64(r.IntN(4) * 100), r.IntN(2) == 0}
			}
		}
		fill := func() *Cache {
			c := New()
			for tc, e := range pre {
				c.StoreTimer(fp, sig, tc, CPUTimer, e.d)
				if e.hasScratch {
					c.StoreScratchTimer(fp, sig, tc, CPUTimer, e.b)
				}
			}
			c.StoreTimer(fp, sig, tactics[0], "", 1) // another timer's: never used
			return c
		}
		measure := func(todo []string) (map[string]time.Duration, map[string]int64) {
			best, sc := map[string]time.Duration{}, map[string]int64{}
			for _, tc := range todo {
				best[tc] = times[tc]
				if workspace > 0 {
					sc[tc] = scratch[tc]
				}
			}
			return best, sc
		}
		var lines1, lines2 []string
		cache1, cache2 := fill(), fill()
		want, err1 := refSelectLayer(tactics, sig, fp, cache1, minGain, workspace, measure, func(tc string, d time.Duration, cached bool) {
			lines1 = append(lines1, fmt.Sprintf("%s %v %v", tc, d, cached))
		})
		timer := &fakeTimer{name: CPUTimer, names: tactics, times: map[string]Result{}}
		for _, tc := range tactics {
			timer.times[tc] = Result{Time: times[tc], Scratch: scratch[tc], HasScratch: workspace > 0}
		}
		got, err2 := Choose(context.Background(), fp, cache2, Layer{Name: "n", Op: "Conv", Sig: sig, Candidates: tactics}, timer, Rule{MinGain: minGain, Workspace: workspace, Progress: func(i int, d time.Duration, cached bool) {
			lines2 = append(lines2, fmt.Sprintf("%s %v %v", tactics[i], d, cached))
		}})
		if (err1 != nil) != (err2 != nil) || (err2 != nil && !errors.Is(err2, ErrWorkspace)) {
			t.Fatalf("trial %d: error %v, want %v", trial, err2, err1)
		}
		if err1 != nil {
			continue
		}
		if got.Tactic != want.Tactic || got.Time != want.Time || got.Cached != want.Cached || got.Index != slices.Index(tactics, want.Tactic) ||
			!maps.Equal(got.Times, want.Times) || !maps.Equal(got.Scratch, want.Scratch) || (got.Scratch == nil) != (want.Scratch == nil) {
			t.Fatalf("trial %d: %+v, want %+v", trial, got, want)
		}
		if !slices.Equal(lines1, lines2) {
			t.Fatalf("trial %d: progress %v, want %v", trial, lines2, lines1)
		}
		if cache1.Len() != cache2.Len() {
			t.Fatalf("trial %d: cache holds %d, want %d", trial, cache2.Len(), cache1.Len())
		}
		for _, tc := range tactics {
			d1, ok1 := cache1.LookupTimer(fp, sig, tc, CPUTimer)
			d2, ok2 := cache2.LookupTimer(fp, sig, tc, CPUTimer)
			b1, s1 := cache1.LookupScratchTimer(fp, sig, tc, CPUTimer)
			b2, s2 := cache2.LookupScratchTimer(fp, sig, tc, CPUTimer)
			if d1 != d2 || ok1 != ok2 || b1 != b2 || s1 != s2 {
				t.Fatalf("trial %d: cache of %s: %v %v %d %v, want %v %v %d %v", trial, tc, d2, ok2, b2, s2, d1, ok1, b1, s1)
			}
		}
	}
}
