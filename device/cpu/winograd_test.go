package cpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// winogradCases are 3x3 stride-1 convolutions with ragged tiles, pads of
// every kind, groups, batches and activations.
func winogradCases() []Conv2DParams {
	cases := []Conv2DParams{
		conv(1, 2, 4, 4, 1, 3, 1, 1, 1, 1),
		conv(1, 3, 8, 8, 4, 3, 1, 1, 1, 1),
		conv(1, 5, 7, 9, 3, 3, 1, 1, 1, 1),     // ragged tiles both ways
		conv(2, 6, 11, 13, 9, 3, 3, 1, 1, 1),   // groups, batch 2
		conv(1, 8, 5, 6, 7, 3, 1, 1, 1, 0),     // unpadded
		conv(1, 4, 3, 3, 5, 3, 1, 1, 1, 0),     // one output pixel
		conv(1, 4, 2, 2, 5, 3, 1, 1, 1, 2),     // pads larger than the input
		conv(1, 64, 28, 28, 32, 3, 1, 1, 1, 1), // many tiles
		conv(1, 32, 7, 7, 64, 3, 1, 1, 1, 1),
		conv(3, 16, 9, 10, 8, 3, 2, 1, 1, 1),
	}
	asym := conv(1, 4, 9, 12, 5, 3, 1, 1, 1, 0)
	asym.PadTop, asym.PadLeft, asym.PadBottom, asym.PadRight = 2, 0, 1, 3
	relu := conv(1, 8, 10, 10, 8, 3, 1, 1, 1, 1)
	relu.Act = ActRelu
	clip := conv(2, 6, 9, 11, 4, 3, 2, 1, 1, 1)
	clip.Act, clip.ActMin, clip.ActMax = ActClip, -0.5, 0.75
	return append(cases, asym, relu, clip)
}

// checkConvOut compares y with the float64 reference of p; every element
// must have been written (y starts as NaN).
func checkConvOut(t *testing.T, name string, p Conv2DParams, y []float32, want, scale []float64) {
	t.Helper()
	for j, got := range y {
		if math.IsNaN(float64(got)) || math.Abs(float64(got)-want[j]) > 1e-4*scale[j]+1e-6 {
			t.Fatalf("%s %+v: y[%d] = %g, want %g (scale %g)", name, p, j, got, want[j], scale[j])
		}
	}
}

func nanSlice(n int) []float32 {
	y := make([]float32, n)
	for i := range y {
		y[i] = float32(math.NaN())
	}
	return y
}

func TestConv2DWinograd(t *testing.T) {
	saved, savedMin := winoBudget, winoMinTiles
	defer func() { winoBudget, winoMinTiles = saved, savedMin }()
	r := rand.New(rand.NewPCG(21, 22))
	for _, budget := range []struct{ floats, minTiles int }{{saved, savedMin}, {1, 1}, {2000, 3}} {
		winoBudget, winoMinTiles = budget.floats, budget.minTiles
		for i, p := range winogradCases() {
			if !ConvAlgoApplies(ConvWinograd2, p) || !ConvAlgoApplies(ConvWinograd4, p) {
				t.Fatalf("case %d %+v: Winograd does not apply", i, p)
			}
			x := randSlice(r, p.N*p.C*p.H*p.W)
			w := randSlice(r, p.M*p.C/p.Group*9)
			var bias []float32
			if i%2 == 0 {
				bias = randSlice(r, p.M)
			}
			want, scale := refConv2D(p, x, w, bias)
			for _, a := range []ConvAlgo{ConvWinograd2, ConvWinograd4} {
				y := nanSlice(len(want))
				Conv2DWith(a, p, x, w, bias, y)
				checkConvOut(t, string(a), p, y, want, scale)
				f, err := NewWinogradFilter(a, p, w)
				if err != nil {
					t.Fatal(err)
				}
				y2 := nanSlice(len(want))
				Conv2DWinograd(p, x, f, bias, y2)
				for j := range y {
					if y[j] != y2[j] {
						t.Fatalf("%s %+v: Conv2DWinograd y[%d] = %g, Conv2DWith %g", a, p, j, y2[j], y[j])
					}
				}
			}
		}
	}
}

// TestWinogradRows checks the vector kernels (coefficient matrices) against
// the Go transforms on rows of every length around the vector width.
func TestWinogradRows(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	for _, k := range []*winoKind{wino2, wino4} {
		for n := 0; n <= 50; n++ {
			var src, want, got rows
			for i := 0; i < k.a; i++ {
				src[i] = randSlice(r, n)
				want[i] = make([]float32, n)
				got[i] = make([]float32, n)
			}
			for _, tc := range []struct {
				nd      int
				goFn    func(s, d *rows)
				applyFn func(s, d *rows)
				coef    []float32
			}{{k.a, k.input, k.applyInput, k.inCoef}, {k.m, k.output, k.applyOutput, k.outCoef}} {
				if len(tc.coef) != tc.nd*k.a {
					t.Fatalf("F(%d): %d coefficients, want %d", k.m, len(tc.coef), tc.nd*k.a)
				}
				tc.goFn(&src, &want)
				tc.applyFn(&src, &got)
				for i := 0; i < tc.nd; i++ {
					for j := 0; j < n; j++ {
						var ref float64
						for q := 0; q < k.a; q++ {
							ref += float64(tc.coef[i*k.a+q]) * float64(src[q][j])
						}
						if math.Abs(float64(want[i][j])-ref) > 1e-5*(1+math.Abs(ref)) || math.Abs(float64(got[i][j])-ref) > 1e-5*(1+math.Abs(ref)) {
							t.Fatalf("F(%d) n=%d row %d elem %d: Go %g, applied %g, coefficients %g", k.m, n, i, j, want[i][j], got[i][j], ref)
						}
					}
				}
			}
		}
	}
}

// TestWinogradGatherScatter checks the vector gather and scatter against
// the Go loops, with skipped lanes, NaNs and every length around the
// vector width, for each kernel of this CPU.
func TestWinogradGatherScatter(t *testing.T) {
	saved := active
	defer func() { active = saved }()
	r := rand.New(rand.NewPCG(27, 28))
	src := randSlice(r, 300)
	src[7] = float32(math.NaN())
	for _, k := range kernels() {
		active = k
		for n := 0; n <= 50; n++ {
			base := make([]int32, n)
			for i := range base {
				base[i] = int32(r.IntN(290))
				if r.IntN(4) == 0 {
					base[i] = -1
				}
			}
			base = append(base, 7) // a NaN lane
			got := make([]float32, n+1)
			winoGather(got, src, base, 3)
			for i, b := range base {
				if b >= 0 && !(got[i] == src[b+3] || math.IsNaN(float64(src[b+3])) && math.IsNaN(float64(got[i]))) {
					t.Fatalf("%s gather n=%d: d[%d] = %g, want %g", k.name, n, i, got[i], src[b+3])
				}
			}
			// Scatter to distinct places.
			perm := r.Perm(290)
			obase := make([]int32, n+1)
			vals := randSlice(r, n+1)
			vals[n] = float32(math.NaN())
			for i := range obase {
				obase[i] = int32(perm[i])
				if i < n && r.IntN(4) == 0 {
					obase[i] = -1
				}
			}
			for _, clamp := range [][2]float32{{float32(math.Inf(-1)), float32(math.Inf(1))}, {-0.5, 0.75}} {
				dst := make([]float32, 300)
				winoScatter(dst, vals, obase, 2, 0.25, clamp[0], clamp[1])
				for i, o := range obase {
					if o < 0 {
						continue
					}
					want := min(max(vals[i]+0.25, clamp[0]), clamp[1])
					if g := dst[o+2]; !(g == want || math.IsNaN(float64(g)) && math.IsNaN(float64(want))) {
						t.Fatalf("%s scatter n=%d clamp %v: dst[%d] = %g, want %g", k.name, n, clamp, o+2, g, want)
					}
				}
			}
		}
	}
}

func TestWinogradFilterErrors(t *testing.T) {
	ok := conv(1, 4, 8, 8, 4, 3, 1, 1, 1, 1)
	w := make([]float32, 4*4*9)
	for _, tc := range []struct {
		name string
		a    ConvAlgo
		p    Conv2DParams
		w    []float32
	}{
		{"not winograd", ConvIm2col, ok, w},
		{"5x5", ConvWinograd2, conv(1, 4, 8, 8, 4, 5, 1, 1, 1, 1), make([]float32, 4*4*25)},
		{"stride 2", ConvWinograd4, conv(1, 4, 8, 8, 4, 3, 1, 2, 1, 1), w},
		{"depthwise", ConvWinograd4, conv(1, 4, 8, 8, 4, 3, 4, 1, 1, 1), w},
		{"short weights", ConvWinograd2, ok, w[:10]},
		{"invalid", ConvWinograd2, conv(1, 0, 8, 8, 4, 3, 1, 1, 1, 1), w},
	} {
		if _, err := NewWinogradFilter(tc.a, tc.p, tc.w); !errors.Is(err, ErrInvalidConv) {
			t.Errorf("%s: err = %v, want ErrInvalidConv", tc.name, err)
		}
	}
	f, err := NewWinogradFilter(ConvWinograd2, ok, w)
	if err != nil {
		t.Fatal(err)
	}
	if f.Algo() != ConvWinograd2 {
		t.Errorf("Algo = %q", f.Algo())
	}
	other := ok
	other.M = 8
	defer func() {
		if recover() == nil {
			t.Error("Conv2DWinograd with a filter of another shape did not panic")
		}
	}()
	Conv2DWinograd(other, make([]float32, 4*64), f, nil, make([]float32, 8*64))
}

// TestConv2DWith runs every applicable algorithm, and im2col with every
// candidate GEMM blocking, on every test convolution against the reference,
// with each kernel of this CPU.
func TestConv2DWith(t *testing.T) {
	saved := active
	defer func() { active = saved }()
	r := rand.New(rand.NewPCG(23, 24))
	cases := append(convCases(), winogradCases()...)
	seen := map[ConvAlgo]int{}
	for i, p := range cases {
		algos := ConvAlgos(p)
		if len(algos) == 0 || algos[0] != ConvAlgoFor(p) {
			t.Fatalf("case %d %+v: ConvAlgos = %v, want %q first", i, p, algos, ConvAlgoFor(p))
		}
		x := randSlice(r, p.N*p.C*p.H*p.W)
		w := randSlice(r, p.M*p.C/p.Group*p.KH*p.KW)
		var bias []float32
		if i%3 != 0 {
			bias = randSlice(r, p.M)
		}
		want, scale := refConv2D(p, x, w, bias)
		for _, k := range kernels() {
			active = k
			for _, a := range algos {
				seen[a]++
				y := nanSlice(len(want))
				Conv2DWith(a, p, x, w, bias, y)
				checkConvOut(t, k.name+" "+string(a), p, y, want, scale)
			}
			for _, bl := range append(Blockings()[1:], Blocking{MC: 5, KC: 7, NC: 33}) {
				y := nanSlice(len(want))
				Conv2DBlocked(bl, p, x, w, bias, y)
				checkConvOut(t, k.name+" im2col "+bl.String(), p, y, want, scale)
			}
		}
	}
	for _, a := range AllConvAlgos() {
		if seen[a] == 0 {
			t.Errorf("no test case runs %q", a)
		}
	}
}

func TestConvAlgos(t *testing.T) {
	// Where the direct depthwise kernel has its assembly, it is the
	// default of the 3x3 depthwise convolutions it computes.
	dw3x3Algos := []ConvAlgo{ConvDepthwise, ConvIm2col, ConvDepthwiseDirect}
	if dwDirectAsm() {
		dw3x3Algos = []ConvAlgo{ConvDepthwiseDirect, ConvIm2col, ConvDepthwise}
	}
	for _, tc := range []struct {
		name string
		p    Conv2DParams
		want []ConvAlgo
	}{
		{"3x3 few channels", conv(1, 8, 10, 10, 8, 3, 1, 1, 1, 1), []ConvAlgo{ConvIm2col, ConvImplicit, ConvWinograd2, ConvWinograd4}},
		{"3x3 many channels", conv(1, 64, 28, 28, 64, 3, 1, 1, 1, 1), []ConvAlgo{ConvImplicit, ConvIm2col, ConvWinograd2, ConvWinograd4}},
		{"3x3 stride 2", conv(1, 64, 28, 28, 64, 3, 1, 2, 1, 1), []ConvAlgo{ConvIm2col}},
		{"5x5", conv(1, 8, 10, 10, 8, 5, 1, 1, 1, 2), []ConvAlgo{ConvIm2col, ConvImplicit}},
		{"pointwise", conv(1, 8, 10, 10, 8, 1, 1, 1, 1, 0), []ConvAlgo{ConvIm2col}},
		{"depthwise", conv(1, 8, 10, 10, 8, 3, 8, 1, 1, 1), dw3x3Algos},
		{"depthwise multiplier 2", conv(1, 8, 10, 10, 16, 3, 8, 1, 1, 1), []ConvAlgo{ConvDepthwise, ConvIm2col}},
		{"depthwise stride 2", conv(1, 8, 10, 10, 8, 3, 8, 2, 1, 1), dw3x3Algos},
		{"depthwise unpadded", conv(1, 8, 10, 10, 8, 3, 8, 1, 1, 0), []ConvAlgo{ConvDepthwise, ConvIm2col}},
		{"invalid", conv(1, 8, 10, 10, 8, 3, 3, 1, 1, 1), nil},
	} {
		got := ConvAlgos(tc.p)
		if len(got) != len(tc.want) {
			t.Errorf("%s: ConvAlgos = %v, want %v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: ConvAlgos = %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Conv2DWith of an algorithm that does not apply did not panic")
		}
	}()
	p := conv(1, 8, 10, 10, 8, 3, 1, 2, 1, 1)
	Conv2DWith(ConvWinograd2, p, make([]float32, 800), make([]float32, 8*8*9), nil, make([]float32, 8*25))
}

// BenchmarkConvAlgos times every applicable algorithm on typical 3x3
// layers (run with -benchtime 3x or so; the machine is shared).
func BenchmarkConvAlgos(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, p := range []Conv2DParams{
		conv(1, 64, 56, 56, 64, 3, 1, 1, 1, 1),
		conv(1, 128, 28, 28, 128, 3, 1, 1, 1, 1),
		conv(1, 256, 14, 14, 256, 3, 1, 1, 1, 1),
		conv(1, 512, 7, 7, 512, 3, 1, 1, 1, 1),
	} {
		x := randSlice(r, p.N*p.C*p.H*p.W)
		w := randSlice(r, p.M*p.C/p.Group*p.KH*p.KW)
		y := make([]float32, p.N*p.M*p.OutH()*p.OutW())
		for _, a := range ConvAlgos(p) {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", p.C, p.H, p.W, a), func(b *testing.B) {
				b.ReportAllocs()
				if f, err := NewWinogradFilter(a, p, w); err == nil {
					for b.Loop() {
						Conv2DWinograd(p, x, f, nil, y)
					}
					return
				}
				for b.Loop() {
					Conv2DWith(a, p, x, w, nil, y)
				}
			})
		}
	}
}
