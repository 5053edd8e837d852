package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// TestLtSplitKOnGPU plans BERT-base's products at batch 1 (128 rows) in
// half precision with MatmulOptions.SplitK, as kiln's engines do, and runs
// every candidate, the split-K variants included, against a float64
// reference on the same half inputs (FFN-in with bias + GELU, FFN-out and
// the output projection with bias + residual through C, the QKV product
// with bias; FFN-out also with C = D, as when the residual's buffer is
// reused for the output); it logs each candidate's time (events around 50
// eager runs, after 5) so that the split-K variants can be compared with
// the heuristic's own. Needs a GPU.
func TestLtSplitKOnGPU(t *testing.T) {
	g := openGPU(t)
	lt, err := OpenCUBLASLt(Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := lt.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Destroy(h)
	const wsLimit = 64 << 20
	ws, err := g.d.MemAlloc(wsLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer g.d.MemFree(ws)
	start, err := g.d.EventCreate(0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.d.EventDestroy(start)
	end, err := g.d.EventCreate(0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.d.EventDestroy(end)
	tests := []struct {
		name                 string
		M, N, K              int
		gelu, resid, inPlace bool // inPlace: the residual C is D itself
	}{
		{"qkv 128x2304x768 bias", 128, 2304, 768, false, false, false},
		{"out 128x768x768 bias residual", 128, 768, 768, false, true, false},
		{"ffn-in 128x3072x768 bias gelu", 128, 3072, 768, true, false, false},
		{"ffn-out 128x768x3072 bias residual", 128, 768, 3072, false, true, false},
		{"ffn-out 128x768x3072 bias residual, C = D", 128, 768, 3072, false, true, true},
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.bind(t)
			M, N, K := tt.M, tt.N, tt.K
			rnd := func(n int, scale float32) []float32 {
				x := randoms(r, n)
				for i := range x {
					x[i] = tensorRound(x[i] * scale)
				}
				return x
			}
			// BERT-like magnitudes: activations ~1, weights ~0.02
			a, bw, bias, res := rnd(M*K, 0.3), rnd(K*N, 0.01), rnd(N, 0.1), rnd(M*N, 0.5)
			dA, dB, dBias, dC := g.upload(t, f16bytes(a)), g.upload(t, f16bytes(bw)), g.upload(t, f16bytes(bias)), g.upload(t, f16bytes(res))
			dY := g.upload(t, make([]byte, 2*M*N))
			o := MatmulOptions{Half: true, Bias: dBias, GELU: tt.gelu, Residual: tt.resid, SplitK: true}
			mm, err := lt.NewMatmulWith(h, M, N, K, o, wsLimit)
			if err != nil {
				t.Fatal(err)
			}
			defer mm.Destroy()
			want := make([]float64, M*N)
			for i := range M {
				for j := range N {
					var acc float64
					for k := range K {
						acc += float64(a[i*K+k]) * float64(bw[k*N+j])
					}
					acc += float64(bias[j])
					if tt.resid {
						acc += float64(res[i*N+j])
					}
					if tt.gelu {
						acc = 0.5 * acc * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(acc+0.044715*acc*acc*acc)))
					}
					want[i*N+j] = acc
				}
			}
			if tt.inPlace {
				dC = dY
			}
			run := func() error {
				if tt.resid {
					return mm.RunC(h, dA, dB, dC, dY, ws, wsLimit, Stream{})
				}
				return mm.Run(h, dA, dB, dY, ws, wsLimit, Stream{})
			}
			type timing struct {
				i         int
				us, worst float64
			}
			var times []timing
			splits := 0
			for i := range mm.Candidates {
				if mm.Splits[i].Parts > 1 {
					splits++
				}
				if err := mm.UseCandidate(i); err != nil {
					t.Fatal(err)
				}
				y0 := make([]byte, 2*M*N) // D starts as zeros, or as the residual when it is C
				if tt.inPlace {
					y0 = f16bytes(res)
				}
				if err := g.d.MemcpyHtoD(dY, y0); err != nil {
					t.Fatal(err)
				}
				if err := run(); err != nil {
					t.Errorf("candidate %s: %v", mm.CandidateString(i), err)
					continue
				}
				out := make([]byte, 2*M*N)
				if err := g.d.MemcpyDtoH(out, dY); err != nil {
					t.Fatal(err)
				}
				got := decode(out, true)
				worst := 0.0
				for k, w := range want {
					d := math.Abs(float64(got[k]) - w)
					worst = max(worst, d)
					if !(d <= 1e-2+5e-3*math.Abs(w)) {
						t.Errorf("candidate %s: y[%d] = %g, want %g", mm.CandidateString(i), k, got[k], w)
						break
					}
				}
				for range 5 {
					run()
				}
				g.d.EventRecord(start, Stream{})
				for range 50 {
					run()
				}
				g.d.EventRecord(end, Stream{})
				if err := g.d.EventSynchronize(end); err != nil {
					t.Fatal(err)
				}
				ms, _ := g.d.EventElapsed(start, end)
				times = append(times, timing{i, float64(ms) * 1000 / 50, worst})
			}
			sort.Slice(times, func(x, y int) bool { return times[x].us < times[y].us })
			var b []byte
			for _, tm := range times {
				b = fmt.Appendf(b, "\n  %7.2f us  %s (workspace %d, largest difference %.3g)", tm.us, mm.CandidateString(tm.i), mm.Candidates[tm.i].Workspace, tm.worst)
			}
			t.Logf("%d candidates, %d split-K variants, fastest first (eager, events around 50 runs):%s", len(mm.Candidates), splits, b)
		})
	}
}
