package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestLtEnumerateOnGPU (opt-in: KILN_LT_ALGO_BENCH=1) plans BERT-base's
// four half-precision products at batch 32 (M = 4096 rows) and batch 1
// (M = 128) with MatmulOptions.Enumerate, with the epilogues kiln's
// engine uses (QKV: bias; output projection and FFN-out: bias + residual
// through C; FFN-in: bias + GELU), runs every candidate, compares each
// one's output with the heuristic's first (and that one with a float64
// reference on sampled outputs), times each (CUDA events around 200 eager
// runs after 10) and prints, per product, the candidates fastest first and
// a summary: the heuristic's best against the best enumerated one. Needs a
// GPU.
func TestLtEnumerateOnGPU(t *testing.T) {
	if os.Getenv("KILN_LT_ALGO_BENCH") == "" {
		t.Skip("opt-in: KILN_LT_ALGO_BENCH=1 (times BERT-base's products with cuBLASLt's enumerated algorithms)")
	}
	g := openGPU(t)
	sms, err := g.d.Attribute(g.dev, AttrMultiprocessorCount)
	if err != nil {
		t.Fatal(err)
	}
	lt, err := OpenCUBLASLt(Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := lt.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Destroy(h)
	const wsLimit = 32 << 20 // the engine's maxWorkspace
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
	type shape struct {
		name        string
		N, K        int
		gelu, resid bool
	}
	shapes := []shape{
		{"qkv %dx2304x768 bias", 2304, 768, false, false},
		{"out %dx768x768 bias residual", 768, 768, false, true},
		{"ffn-in %dx3072x768 bias gelu", 3072, 768, true, false},
		{"ffn-out %dx768x3072 bias residual", 768, 3072, false, true},
	}
	var summary []string
	r := rand.New(rand.NewPCG(11, 12))
	for _, M := range []int{4096, 128} {
		for _, sh := range shapes {
			name := fmt.Sprintf(sh.name, M)
			t.Run(name, func(t *testing.T) {
				g.bind(t)
				N, K := sh.N, sh.K
				rnd := func(n int, scale float32) []float32 {
					x := randoms(r, n)
					for i := range x {
						x[i] = tensorRound(x[i] * scale)
					}
					return x
				}
				a, bw, bias, res := rnd(M*K, 0.3), rnd(K*N, 0.01), rnd(N, 0.1), rnd(M*N, 0.5)
				dA, dB, dBias, dC := g.upload(t, f16bytes(a)), g.upload(t, f16bytes(bw)), g.upload(t, f16bytes(bias)), g.upload(t, f16bytes(res))
				dY := g.upload(t, make([]byte, 2*M*N))
				o := MatmulOptions{Half: true, Bias: dBias, GELU: sh.gelu, Residual: sh.resid, Enumerate: true, SMs: sms}
				mm, err := lt.NewMatmulWith(h, M, N, K, o, wsLimit)
				if err != nil {
					t.Fatal(err)
				}
				defer mm.Destroy()
				run := func() error {
					if sh.resid {
						return mm.RunC(h, dA, dB, dC, dY, ws, wsLimit, Stream{})
					}
					return mm.Run(h, dA, dB, dY, ws, wsLimit, Stream{})
				}
				output := func(i int) ([]float32, error) {
					if err := mm.UseCandidate(i); err != nil {
						return nil, err
					}
					if err := g.d.MemcpyHtoD(dY, make([]byte, 2*M*N)); err != nil {
						return nil, err
					}
					if err := run(); err != nil {
						return nil, err
					}
					out := make([]byte, 2*M*N)
					if err := g.d.MemcpyDtoH(out, dY); err != nil {
						return nil, err
					}
					return decode(out, true), nil
				}
				ref, err := output(0)
				if err != nil {
					t.Fatalf("the heuristic's first (%s): %v", mm.CandidateString(0), err)
				}
				// the heuristic's first against float64 on 512 sampled outputs
				for range 512 {
					i, j := r.IntN(M), r.IntN(N)
					var acc float64
					for k := range K {
						acc += float64(a[i*K+k]) * float64(bw[k*N+j])
					}
					acc += float64(bias[j])
					if sh.resid {
						acc += float64(res[i*N+j])
					}
					if sh.gelu {
						acc = 0.5 * acc * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(acc+0.044715*acc*acc*acc)))
					}
					if got := float64(ref[i*N+j]); !(math.Abs(got-acc) <= 1e-2+5e-3*math.Abs(acc)) {
						t.Fatalf("the heuristic's first (%s): y[%d,%d] = %g, want %g", mm.CandidateString(0), i, j, got, acc)
					}
				}
				type timing struct {
					i         int
					us, worst float64
				}
				var times []timing
				bad := 0
				for i := range mm.Candidates {
					got, err := output(i)
					if err != nil {
						t.Logf("candidate %s does not run: %v", mm.CandidateString(i), err)
						bad++
						continue
					}
					worst := 0.0
					wrong := false
					for k, w := range ref {
						d := math.Abs(float64(got[k]) - float64(w))
						worst = max(worst, d)
						if !(d <= 1e-2+5e-3*math.Abs(float64(w))) {
							t.Errorf("candidate %s: y[%d] = %g, the heuristic's first gives %g", mm.CandidateString(i), k, got[k], w)
							wrong = true
							break
						}
					}
					if wrong {
						bad++
						continue
					}
					for range 10 {
						run()
					}
					g.d.EventRecord(start, Stream{})
					for range 200 {
						run()
					}
					g.d.EventRecord(end, Stream{})
					if err := g.d.EventSynchronize(end); err != nil {
						t.Fatal(err)
					}
					ms, _ := g.d.EventElapsed(start, end)
					times = append(times, timing{i, float64(ms) * 1000 / 200, worst})
				}
				slices.SortStableFunc(times, func(x, y timing) int {
					if x.us < y.us {
						return -1
					}
					if x.us > y.us {
						return 1
					}
					return 0
				})
				flops := 2 * float64(M) * float64(N) * float64(K)
				var b strings.Builder
				bestH, bestE := -1, -1
				for _, tm := range times {
					fmt.Fprintf(&b, "\n  %8.2f us %6.1f TFLOP/s  %s (workspace %d, largest difference %.3g)", tm.us, flops/tm.us/1e6,
						mm.CandidateString(tm.i), mm.Candidates[tm.i].Workspace, tm.worst)
					if mm.Candidates[tm.i].Index >= 0 && bestH < 0 {
						bestH = tm.i
					}
					if mm.Candidates[tm.i].Index < 0 && bestE < 0 {
						bestE = tm.i
					}
				}
				tilesOf := map[string]int{} // enumerated candidates by algorithm and tile
				for i, c := range mm.Candidates {
					if lc, err := ParseLtConfig(mm.Config(i)); err == nil && c.Index < 0 {
						tilesOf[fmt.Sprintf("algo %d %s", lc.Algo, lc.TileString())]++
					}
				}
				t.Logf("%d SMs, %d candidates (%d enumerated: %v; %d failed), fastest first (eager, events around 200 runs):%s",
					sms, len(mm.Candidates), mm.enumerated(), tilesOf, bad, b.String())
				us := func(i int) float64 {
					for _, tm := range times {
						if tm.i == i {
							return tm.us
						}
					}
					return math.NaN()
				}
				line := fmt.Sprintf("| %-32s | %8.2f | %8.2f | %5.3f | %s | %s |", name, us(bestH), us(bestE), us(bestH)/us(bestE),
					cand(mm, bestH), cand(mm, bestE))
				summary = append(summary, line)
			})
		}
	}
	t.Logf("heuristic's best against the best enumerated candidate (us a call; speedup = heuristic / enumerated):\n"+
		"| product | heuristic us | enumerated us | speedup | heuristic's best | best enumerated |\n| --- | --- | --- | --- | --- | --- |\n%s",
		strings.Join(summary, "\n"))
}

func cand(mm *LtMatmul, i int) string {
	if i < 0 {
		return "none"
	}
	s := mm.CandidateString(i)
	if c, err := ParseLtConfig(mm.Config(i)); err == nil {
		s += " [" + c.TileString() + "]"
	}
	return s
}

// enumerated counts the candidates Enumerate added.
func (p *LtMatmul) enumerated() int {
	n := 0
	for _, a := range p.Candidates {
		if a.Index < 0 {
			n++
		}
	}
	return n
}
