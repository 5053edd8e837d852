package quant

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/tensor"
)

// bruteKL computes KL(P||Q) for the threshold of i bins the obvious way,
// building P and Q as arrays (the reference for klCandidate).
func bruteKL(bins []float64, i int) float64 {
	p := make([]float64, i)
	copy(p, bins[:i])
	for _, c := range bins[i:] {
		p[i-1] += c
	}
	// Q: bin j in level floor(j*QuantLevels/i), each level's count spread
	// over its bins that are non-empty in the histogram.
	q := make([]float64, i)
	sum := make([]float64, QuantLevels)
	nonEmpty := make([]float64, QuantLevels)
	for j := range i {
		k := j * QuantLevels / i
		sum[k] += bins[j]
		if bins[j] != 0 {
			nonEmpty[k]++
		}
	}
	for j := range i {
		if k := j * QuantLevels / i; bins[j] != 0 {
			q[j] = sum[k] / nonEmpty[k]
		}
	}
	ps, qs := 0.0, 0.0
	for j := range p {
		ps += p[j]
		qs += q[j]
	}
	kl := 0.0
	for j := range p {
		if p[j] == 0 {
			continue
		}
		if q[j] == 0 {
			return math.Inf(1)
		}
		kl += p[j] / ps * math.Log((p[j]/ps)/(q[j]/qs))
	}
	return kl
}

func histOf(x []float32) *histogram {
	h := &histogram{max: absMax(x)}
	h.add(x)
	return h
}

func samples(kind string, n int, seed int64) []float32 {
	r := rand.New(rand.NewSource(seed))
	x := make([]float32, n)
	for i := range x {
		switch kind {
		case "normal":
			x[i] = float32(r.NormFloat64())
		case "relu":
			x[i] = float32(max(0, r.NormFloat64()))
		case "uniform":
			x[i] = float32(r.Float64()*2 - 1)
		case "outliers":
			x[i] = float32(r.NormFloat64())
			if i%20000 == 0 {
				x[i] = float32(40 + r.Float64()*10)
			}
		case "sparse": // few distinct values: many empty bins
			x[i] = float32(r.Intn(7))
		}
	}
	return x
}

func TestKLCandidateMatchesBruteForce(t *testing.T) {
	for _, kind := range []string{"normal", "relu", "uniform", "outliers", "sparse"} {
		t.Run(kind, func(t *testing.T) {
			h := histOf(samples(kind, 20000, 1))
			var cnt, nz, clogc [HistogramBins + 1]float64
			for j, c := range h.bins {
				cnt[j+1] = cnt[j] + c
				nz[j+1] = nz[j]
				clogc[j+1] = clogc[j]
				if c > 0 {
					nz[j+1]++
					clogc[j+1] += c * math.Log(c)
				}
			}
			for _, i := range []int{128, 129, 255, 256, 300, 1000, 1023, 2000, 2047} {
				got := klCandidate(h.bins[:], cnt[:], nz[:], clogc[:], i, cnt[HistogramBins])
				want := bruteKL(h.bins[:], i)
				if math.IsInf(want, 1) != math.IsInf(got, 1) || !math.IsInf(want, 1) && math.Abs(got-want) > 1e-9+1e-9*math.Abs(want) {
					t.Errorf("i=%d: KL %v, brute force %v", i, got, want)
				}
			}
		})
	}
}

func TestAmaxMethods(t *testing.T) {
	tests := []struct {
		kind     string
		method   Method
		lo, hi   float64 // amax must fall in [lo, hi]
		clipping bool    // amax must be below max|x|
	}{
		{"uniform", MinMax, 0.999, 1, false},
		{"uniform", Percentile, 0.999, 1.0001, false},
		{"outliers", MinMax, 40, 50, false},
		// 99.99% of 200000 normal samples with 10 outliers lie below ~4.
		{"outliers", Percentile, 3, 6, true},
		// entropy clips the far outliers of a normal distribution.
		{"outliers", Entropy, 2, 20, true},
		{"normal", Entropy, 2, 6, true},
		// half the values are exact zeros: the spike in bin 0 must not pull
		// the threshold down to the 128th bin (about 0.3 here).
		{"relu", Entropy, 2, 6, true},
	}
	for _, tc := range tests {
		t.Run(tc.kind+"/"+tc.method.String(), func(t *testing.T) {
			x := samples(tc.kind, 200000, 2)
			h := histOf(x)
			var a float64
			switch tc.method {
			case MinMax:
				a = h.max
			case Percentile:
				a = h.percentileAmax(DefaultPercentile)
			case Entropy:
				a = h.entropyAmax()
			}
			if a < tc.lo || a > tc.hi {
				t.Errorf("amax %g, want in [%g, %g] (max|x| %g)", a, tc.lo, tc.hi, h.max)
			}
			if tc.clipping && a >= h.max {
				t.Errorf("amax %g does not clip max|x| %g", a, h.max)
			}
		})
	}
}

func TestParseMethod(t *testing.T) {
	for _, m := range []Method{Entropy, MinMax, Percentile} {
		got, err := ParseMethod(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMethod(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMethod("kmeans"); !errors.Is(err, ErrCalibration) {
		t.Errorf("ParseMethod(kmeans): %v, want ErrCalibration", err)
	}
}

// smallGraph is x[2,4] -> Relu -> Mul(3) -> y.
func smallGraph(t *testing.T) *ir.Graph {
	t.Helper()
	b := ir.NewBuilder("small", 13)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(4))
	r := b.Op("Relu", []*ir.Value{x})
	y := b.Op("Mul", []*ir.Value{r, b.Const("three", tensor.FromFloat32([]float32{3}, 1))})
	b.Output(y, "y")
	return b.Graph()
}

func TestCalibrate(t *testing.T) {
	eng, err := engine.New(smallGraph(t))
	if err != nil {
		t.Fatal(err)
	}
	few := []map[string]*tensor.Tensor{
		{"x": tensor.FromFloat32([]float32{-5, 1, 2, 0.5}, 1, 4)},
		{"x": tensor.FromFloat32([]float32{-1, 1, 2, 2.5, 0, 0, 0, 0}, 2, 4)},
	}
	// MinHistogramSamples distinct samples: the same ranges, five more
	// samples inside them
	enough := append([]map[string]*tensor.Tensor{}, few...)
	for k := range MinHistogramSamples - 3 {
		enough = append(enough, map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{0.1 * float32(k+1), 0.2, -0.3, 0.4}, 1, 4)})
	}
	for _, tc := range []struct {
		name         string
		batches      []map[string]*tensor.Tensor
		method, want Method // asked for, used
		runs         int
		x, relu, out float64 // wanted amax; entropy: upper bounds
	}{
		{"minmax", enough, MinMax, MinMax, 7, 5, 2.5, 7.5},
		{"percentile", enough, Percentile, Percentile, 14, 5, 2.5, 7.5},
		{"entropy", enough, Entropy, Entropy, 14, 5, 2.5, 7.5},
		// 3 distinct samples: the histogram methods give way to minmax
		{"minmax few", few, MinMax, MinMax, 2, 5, 2.5, 7.5},
		{"percentile few", few, Percentile, MinMax, 2, 5, 2.5, 7.5},
		{"entropy few", few, Entropy, MinMax, 2, 5, 2.5, 7.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs := 0
			tab, err := Calibrate(context.Background(), eng, tc.batches, tc.method, CalibOptions{Progress: func(done, total int) {
				runs++
				if done != runs || total != tc.runs {
					t.Errorf("progress %d/%d at run %d, want total %d", done, total, runs, tc.runs)
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			if runs != tc.runs {
				t.Errorf("%d progress calls, want %d", runs, tc.runs)
			}
			if tab.Method != tc.want || tab.Graph != GraphHash(eng.Graph()) {
				t.Errorf("table method %v graph %q, want method %v", tab.Method, tab.Graph, tc.want)
			}
			// the fallback, and only it, is explained
			fell := tc.want != tc.method
			if got := strings.Contains(tab.Note(), "calibrated with minmax instead"); got != fell || fell && !strings.Contains(tab.Note(), "these batches hold 3") {
				t.Errorf("table note %q (fallback %v)", tab.Note(), fell)
			}
			if len(tab.Entries) != 3 {
				t.Fatalf("entries %v, want x, the Relu output and y", tab.Entries)
			}
			relu := eng.Graph().Nodes[0].Outputs[0].Name
			for name, want := range map[string]float64{"x": tc.x, relu: tc.relu, "y": tc.out} {
				got := float64(tab.Entries[name])
				if tab.Method == Entropy {
					// a handful of samples: the threshold lies between the
					// 128th bin's edge and the max.
					if got > want || got < want*QuantLevels/HistogramBins {
						t.Errorf("%s: amax %g, want in [%g, %g]", name, got, want*QuantLevels/HistogramBins, want)
					}
					continue
				}
				if math.Abs(got-want) > 1e-6*want {
					t.Errorf("%s: amax %g, want %g", name, got, want)
				}
			}
			if s, ok := tab.Scale("y"); !ok || s != tab.Entries["y"]/127 {
				t.Errorf("Scale(y) = %v, %v", s, ok)
			}
		})
	}
}

func TestCalibrateErrors(t *testing.T) {
	eng, err := engine.New(smallGraph(t))
	if err != nil {
		t.Fatal(err)
	}
	good := []map[string]*tensor.Tensor{{"x": tensor.FromFloat32([]float32{1, 2, 3, 4}, 1, 4)}}
	tests := []struct {
		name    string
		batches []map[string]*tensor.Tensor
		method  Method
		opt     CalibOptions
	}{
		{"no batches", nil, Entropy, CalibOptions{}},
		{"bad input", []map[string]*tensor.Tensor{{"x": tensor.FromFloat32([]float32{1, 2}, 1, 2)}}, MinMax, CalibOptions{}},
		{"bad percentile", good, Percentile, CalibOptions{Percentile: 101}},
		{"bad method", good, Method(9), CalibOptions{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Calibrate(context.Background(), eng, tc.batches, tc.method, tc.opt)
			if !errors.Is(err, ErrCalibration) {
				t.Errorf("err %v, want ErrCalibration", err)
			}
		})
	}
}
