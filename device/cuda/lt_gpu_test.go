package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestLtEpiloguesOnGPU runs half products with each epilogue (bias, bias +
// ReLU, bias + GELU) and with the residual through C (RunC, beta 1, C
// distinct from D and C = D) on the GPU's cuBLASLt, and compares them with
// a float64 reference on the same half inputs: GELU is the tanh form
// cuBLASLt computes, and its distance to the erf form kiln's kernels
// compute is logged. Needs a GPU.
func TestLtEpiloguesOnGPU(t *testing.T) {
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
	const M, N, K = 96, 200, 72
	r := rand.New(rand.NewPCG(3, 4))
	rnd := func(n int, scale float32) []float32 {
		x := randoms(r, n)
		for i := range x {
			x[i] = tensorRound(x[i] * scale)
		}
		return x
	}
	a, bw, bias, res := rnd(M*K, 0.25), rnd(K*N, 0.25), rnd(N, 0.5), rnd(M*N, 0.5)
	gelu := func(x float64) float64 {
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	}
	ws, err := g.d.MemAlloc(32 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer g.d.MemFree(ws)
	dA, dB, dBias := g.upload(t, f16bytes(a)), g.upload(t, f16bytes(bw)), g.upload(t, f16bytes(bias))
	tests := []struct {
		o       MatmulOptions
		inPlace bool // C = D
	}{
		{MatmulOptions{Bias: dBias}, false},
		{MatmulOptions{Bias: dBias, ReLU: true}, false},
		{MatmulOptions{Bias: dBias, GELU: true}, false},
		{MatmulOptions{Residual: true}, false},
		{MatmulOptions{Bias: dBias, Residual: true}, false},
		{MatmulOptions{Bias: dBias, Residual: true}, true},
		{MatmulOptions{Bias: dBias, GELU: true, Residual: true}, false},
	}
	for _, tt := range tests {
		o := tt.o
		o.Half = true
		t.Run(fmt.Sprintf("bias=%v relu=%v gelu=%v residual=%v inplace=%v", o.Bias != 0, o.ReLU, o.GELU, o.Residual, tt.inPlace), func(t *testing.T) {
			g.bind(t)
			mm, err := lt.NewMatmulWith(h, M, N, K, o, 32<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer mm.Destroy()
			dC := g.upload(t, f16bytes(res))
			dY := g.upload(t, make([]byte, 2*M*N))
			if tt.inPlace {
				dY = dC
			}
			if o.Residual {
				err = mm.RunC(h, dA, dB, dC, dY, ws, 32<<20, Stream{})
			} else {
				err = mm.Run(h, dA, dB, dY, ws, 32<<20, Stream{})
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := g.d.StreamSynchronize(Stream{}); err != nil {
				t.Fatal(err)
			}
			out := make([]byte, 2*M*N)
			if err := g.d.MemcpyDtoH(out, dY); err != nil {
				t.Fatal(err)
			}
			got := decode(out, true)
			worst, erfGap := 0.0, 0.0
			for i := range M {
				for j := range N {
					var acc float64
					for k := range K {
						acc += float64(a[i*K+k]) * float64(bw[k*N+j])
					}
					if o.Residual {
						acc += float64(res[i*N+j])
					}
					if o.Bias != 0 {
						acc += float64(bias[j])
					}
					switch {
					case o.ReLU:
						acc = max(acc, 0)
					case o.GELU:
						erfGap = max(erfGap, math.Abs(gelu(acc)-0.5*acc*(1+math.Erf(acc/math.Sqrt2))))
						acc = gelu(acc)
					}
					d := math.Abs(float64(got[i*N+j]) - acc)
					worst = max(worst, d)
					if d > 1e-2+5e-3*math.Abs(acc) {
						t.Fatalf("y[%d,%d] = %g, want %g", i, j, got[i*N+j], acc)
					}
				}
			}
			t.Logf("largest difference %.3g; tanh against erf GELU at most %.3g (%d candidates)", worst, erfGap, len(mm.Candidates))
		})
	}
}

// tensorRound rounds x to the nearest half, so that the reference sees the
// inputs the GPU does.
func tensorRound(x float32) float32 { return decode(f16bytes([]float32{x}), true)[0] }
