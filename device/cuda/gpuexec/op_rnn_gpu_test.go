package gpuexec

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// TestRNNOnGPU runs each case of rnnTable on the GPU against kiln's CPU
// engine in float32 (rtol 1e-3, atol 1e-4) and float16 (cosine similarity
// at least minCosine), eager and captured as a CUDA graph; then the
// recurrent ONNX node tests partitioned for the GPU (each entirely on it,
// matching the expected outputs); then a CRNN-sized bidirectional LSTM
// (40 steps, batch 1, 8 and 32, 512 inputs, 256 hidden units) with each
// variant of the kernels, checked against the CPU, whose run times it logs
// ("rnn timing: ..."; nothing is asserted of them). The table runs with each of
// rnnVariants (subtests tiled/... and warp/...).
func TestRNNOnGPU(t *testing.T) {
	needGPU(t)
	defer func() { rnnTiledProj, rnnBatchTile = true, true }()
	for _, v := range rnnVariants {
		rnnTiledProj, rnnBatchTile = v.tiled, v.bt
		for _, tc := range rnnOpCases() {
			for _, half := range []bool{false, true} {
				prec := map[bool]string{false: "fp32", true: "fp16"}[half]
				var sticky error
				t.Run(v.name+"/"+tc.name+"/"+prec, func(t *testing.T) {
					sticky = runOpCase(t, tc, half)
				})
				if sticky != nil {
					t.Fatalf("STICKY CUDA ERROR in %s %s: %v", v.name, tc.name, sticky)
				}
			}
		}
	}
	rnnTiledProj, rnnBatchTile = true, true
	t.Run("node suite", func(t *testing.T) {
		cases := rnnNodeSuite(t)
		onGPU := 0
		for _, nc := range cases {
			prog, r, err := partitionGuarded(nc.g, gpuExec{})
			if err != nil {
				t.Errorf("%s: %v", nc.name, err)
				continue
			}
			out, err := prog.Run(context.Background(), nc.in)
			prog.Close()
			switch {
			case err != nil:
				t.Errorf("%s: %v", nc.name, err)
				if stickyCUDA.MatchString(err.Error()) {
					t.Fatalf("STICKY CUDA ERROR in %s: %v", nc.name, err)
				}
			case !nc.check(out):
				t.Errorf("%s: outputs differ", nc.name)
			case len(r.Fallbacks) > 0:
				t.Errorf("%s falls back: %q", nc.name, r.Lines())
			default:
				onGPU++
			}
		}
		t.Logf("recurrent node tests on the GPU: %d of %d pass entirely on it", onGPU, len(cases))
	})
	for _, B := range []int{1, 8, 32} {
		t.Run(fmt.Sprintf("CRNN-sized LSTM batch %d, each variant", B), func(t *testing.T) {
			defer func() { rnnTiledProj, rnnBatchTile = true, true }()
			rc := rnnCase{op: "LSTM", dir: "bidirectional", S: 40, B: B, I: 512, H: 256, bias: true}
			tc := rc.opCase(7)
			g0, in := opGraph(t, tc)
			ce, err := engine.New(g0.Clone())
			if err != nil {
				t.Fatal(err)
			}
			want, err := ce.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for range 2 {
				if _, err := ce.Run(context.Background(), in); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("rnn timing: %s on the CPU engine: %.3f ms a run", rc.name(), float64(time.Since(start).Microseconds())/2e3)
			for _, v := range append(rnnVariants, struct {
				name      string
				tiled, bt bool
			}{"tiled projection, a warp per item", true, false}) {
				rnnTiledProj, rnnBatchTile = v.tiled, v.bt
				for _, half := range []bool{false, true} {
					ms, err := timeRNN(t, g0, in, want, half)
					if err != nil {
						if stickyCUDA.MatchString(err.Error()) {
							t.Fatalf("STICKY CUDA ERROR (%s, fp16 %v): %v", v.name, half, err)
						}
						t.Errorf("%s, fp16 %v: %v", v.name, half, err)
						continue
					}
					t.Logf("rnn timing: batch %d, %s, fp16 %v: %.3f ms a run (CUDA graph, with the copies)", B, v.name, half, ms)
				}
			}
		})
	}
}

// rnnVariants are the kernels TestRNNOnGPU checks: the default (tiled
// projection, batch-tiled steps) and the first kernels (a warp per
// projected element, a warp per batch item and unit).
var rnnVariants = []struct {
	name      string
	tiled, bt bool
}{
	{"tiled", true, true},
	{"warp", false, false},
}

// timeRNN builds g0 for the GPU, checks its outputs against want (eager
// and captured) and returns the mean time of 20 captured runs.
func timeRNN(t *testing.T, g0 *ir.Graph, in, want map[string]*tensor.Tensor, half bool) (float64, error) {
	t.Helper()
	e, err := NewEngine(g0.Clone(), Options{FP16: half})
	if err != nil {
		return 0, err
	}
	defer e.Close()
	c, err := e.NewContext()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	for range 3 { // eager, captured, replayed
		got, err := c.Run(context.Background(), in)
		if err != nil {
			return 0, err
		}
		for name, w := range want {
			if got[name] == nil {
				t.Errorf("no output %s", name)
				continue
			}
			compareOutput(t, name, got[name], w, half)
		}
	}
	const runs = 20
	start := time.Now()
	for range runs {
		if _, err := c.Run(context.Background(), in); err != nil {
			return 0, err
		}
	}
	return float64(time.Since(start).Microseconds()) / 1e3 / runs, nil
}
