package cpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// refConv2D is the naive 7-loop convolution, in float64, with the sum of
// magnitudes of the terms of each output (the error scale).
func refConv2D(p Conv2DParams, x, w, bias []float32) (want, scale []float64) {
	oh, ow := p.OutH(), p.OutW()
	cg, mg := p.C/p.Group, p.M/p.Group
	want = make([]float64, p.N*p.M*oh*ow)
	scale = make([]float64, len(want))
	for n := 0; n < p.N; n++ {
		for m := 0; m < p.M; m++ {
			g := m / mg
			for y := 0; y < oh; y++ {
				for xo := 0; xo < ow; xo++ {
					var s, sa float64
					if bias != nil {
						s, sa = float64(bias[m]), math.Abs(float64(bias[m]))
					}
					for c := 0; c < cg; c++ {
						for kh := 0; kh < p.KH; kh++ {
							for kw := 0; kw < p.KW; kw++ {
								ih := y*p.StrideH - p.PadTop + kh*p.DilH
								iw := xo*p.StrideW - p.PadLeft + kw*p.DilW
								if ih < 0 || ih >= p.H || iw < 0 || iw >= p.W {
									continue
								}
								xv := float64(x[((n*p.C+g*cg+c)*p.H+ih)*p.W+iw])
								wv := float64(w[((m*cg+c)*p.KH+kh)*p.KW+kw])
								s += xv * wv
								sa += math.Abs(xv * wv)
							}
						}
					}
					switch p.Act {
					case ActRelu:
						s = math.Max(s, 0)
					case ActClip:
						s = math.Min(math.Max(s, float64(p.ActMin)), float64(p.ActMax))
					}
					i := ((n*p.M+m)*oh+y)*ow + xo
					want[i], scale[i] = s, sa
				}
			}
		}
	}
	return want, scale
}

// conv is a shorthand for square-ish test cases.
func conv(n, c, h, w, m, k, group, stride, dil, pad int) Conv2DParams {
	return Conv2DParams{N: n, C: c, H: h, W: w, M: m, KH: k, KW: k, Group: group,
		StrideH: stride, StrideW: stride, DilH: dil, DilW: dil,
		PadTop: pad, PadLeft: pad, PadBottom: pad, PadRight: pad}
}

func convCases() []Conv2DParams {
	cases := []Conv2DParams{
		conv(1, 3, 8, 8, 4, 3, 1, 1, 1, 1),
		conv(2, 8, 9, 7, 16, 1, 1, 1, 1, 0),     // pointwise, batch 2
		conv(1, 16, 14, 14, 24, 1, 1, 2, 1, 0),  // 1x1 stride 2
		conv(1, 4, 5, 5, 6, 1, 1, 1, 1, 1),      // 1x1 padded
		conv(2, 6, 11, 13, 9, 3, 3, 1, 1, 1),    // groups
		conv(1, 8, 12, 12, 8, 3, 2, 2, 1, 1),    // groups, stride 2
		conv(1, 3, 23, 23, 8, 7, 1, 2, 1, 3),    // a first layer
		conv(1, 3, 11, 75, 4, 7, 1, 2, 1, 3),    // stride 2, rows of 38
		conv(1, 8, 6, 9, 130, 3, 1, 1, 1, 1),    // many output channels
		conv(1, 5, 10, 10, 7, 3, 1, 1, 2, 2),    // dilation 2
		conv(1, 4, 9, 9, 5, 3, 1, 3, 3, 0),      // stride 3, dilation 3
		conv(1, 16, 15, 15, 16, 3, 16, 1, 1, 1), // depthwise 3x3 s1
		conv(2, 12, 16, 17, 12, 3, 12, 2, 1, 1), // depthwise 3x3 s2
		conv(1, 8, 13, 13, 16, 3, 8, 1, 1, 1),   // depthwise, multiplier 2
		conv(1, 6, 12, 12, 6, 5, 6, 1, 1, 2),    // depthwise 5x5
		conv(1, 6, 12, 12, 6, 5, 6, 2, 1, 2),    // depthwise 5x5 s2
		conv(1, 4, 11, 11, 4, 3, 4, 1, 2, 2),    // depthwise dilated
		conv(1, 4, 10, 10, 4, 3, 4, 1, 1, 0),    // depthwise unpadded
		conv(1, 4, 10, 11, 4, 3, 4, 2, 1, 0),    // depthwise unpadded s2
		conv(1, 32, 7, 7, 64, 3, 1, 1, 1, 1),    // few positions, many channels
		conv(1, 64, 28, 28, 32, 3, 1, 1, 1, 1),  // more than one im2col tile
		conv(3, 2, 6, 6, 3, 2, 1, 1, 1, 0),      // even kernel
		conv(1, 1, 1, 1, 1, 1, 1, 1, 1, 0),      // one pixel
		conv(1, 3, 9, 40, 3, 3, 3, 1, 1, 1),     // depthwise, rows of 2.5 vectors
		conv(1, 3, 9, 70, 3, 3, 3, 2, 1, 1),     // depthwise s2, rows of 35
		conv(1, 2, 6, 64, 2, 3, 2, 1, 1, 0),     // depthwise, whole vectors
		conv(1, 2, 7, 66, 2, 3, 2, 2, 1, 0),     // depthwise s2, whole vectors
		conv(2, 64, 20, 24, 20, 3, 2, 1, 1, 1),  // implicit GEMM, groups, batch 2
		conv(1, 32, 22, 30, 16, 3, 1, 1, 2, 2),  // implicit GEMM, dilated
		conv(1, 40, 19, 33, 50, 5, 1, 1, 1, 2),  // implicit GEMM, 5x5
	}
	// Asymmetric pads and rectangular kernels and strides.
	asym := conv(1, 4, 9, 12, 5, 3, 1, 1, 1, 0)
	asym.KW, asym.StrideW, asym.PadTop, asym.PadLeft, asym.PadBottom, asym.PadRight = 2, 2, 2, 0, 1, 3
	dwAsym := conv(1, 6, 10, 9, 6, 3, 6, 1, 1, 0)
	dwAsym.PadTop, dwAsym.PadLeft, dwAsym.PadBottom, dwAsym.PadRight = 0, 1, 2, 1
	dwAsym2 := dwAsym
	dwAsym2.StrideH, dwAsym2.StrideW = 2, 2
	rect := conv(2, 6, 8, 16, 4, 1, 2, 1, 1, 0)
	rect.KH, rect.KW, rect.PadLeft, rect.PadRight, rect.DilH = 3, 1, 0, 0, 2
	relu := conv(1, 8, 10, 10, 8, 3, 1, 1, 1, 1)
	relu.Act = ActRelu
	clip := conv(1, 8, 10, 10, 8, 3, 8, 1, 1, 1)
	clip.Act, clip.ActMin, clip.ActMax = ActClip, -0.5, 0.75
	clipPW := conv(1, 8, 10, 10, 8, 1, 1, 1, 1, 0)
	clipPW.Act, clipPW.ActMin, clipPW.ActMax = ActClip, 0, 6
	return append(cases, asym, dwAsym, dwAsym2, rect, relu, clip, clipPW)
}

func TestConv2D(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		testConv2D(t)
		implicitAlways = true
		defer func() { implicitAlways, packing = false, packAuto }()
		t.Run("implicit", testConv2D)
		packing = packAlways
		t.Run("implicit-packed", testConv2D)
	})
}

func testConv2D(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for i, p := range convCases() {
		if err := p.Validate(); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		x := randSlice(r, p.N*p.C*p.H*p.W)
		w := randSlice(r, p.M*p.C/p.Group*p.KH*p.KW)
		var bias []float32
		if i%2 == 0 {
			bias = randSlice(r, p.M)
		}
		y := make([]float32, p.N*p.M*p.OutH()*p.OutW())
		for j := range y {
			y[j] = float32(math.NaN())
		}
		want, scale := refConv2D(p, x, w, bias)
		Conv2D(p, x, w, bias, y)
		for j, got := range y {
			if math.IsNaN(float64(got)) || math.Abs(float64(got)-want[j]) > 1e-4*scale[j]+1e-6 {
				t.Fatalf("case %d %+v: y[%d] = %g, want %g", i, p, j, got, want[j])
			}
		}
	}
}

// TestConv2DTiling runs convolutions through small im2col tiles and with the
// items spread over the goroutines in each of the ways convGemm picks.
func TestConv2DTiling(t *testing.T) {
	saved := im2colTile
	defer func() { im2colTile, implicitAlways = saved, false }()
	r := rand.New(rand.NewPCG(11, 12))
	for _, tile := range []int{1, 300, 1 << 17, -1, -300} {
		im2colTile, implicitAlways = max(tile, -tile), tile < 0
		for i, p := range []Conv2DParams{
			conv(1, 8, 30, 30, 12, 3, 1, 1, 1, 1),
			conv(3, 8, 17, 17, 12, 3, 2, 2, 1, 1),
			conv(1, 16, 25, 25, 8, 1, 1, 1, 1, 0),
			conv(1, 16, 5, 5, 40, 3, 1, 1, 1, 1),
			conv(2, 32, 40, 9, 16, 3, 1, 1, 1, 1),
		} {
			x := randSlice(r, p.N*p.C*p.H*p.W)
			w := randSlice(r, p.M*p.C/p.Group*p.KH*p.KW)
			bias := randSlice(r, p.M)
			y := make([]float32, p.N*p.M*p.OutH()*p.OutW())
			want, scale := refConv2D(p, x, w, bias)
			Conv2D(p, x, w, bias, y)
			for j, got := range y {
				if math.Abs(float64(got)-want[j]) > 1e-4*scale[j]+1e-6 {
					t.Fatalf("tile %d case %d: y[%d] = %g, want %g", tile, i, j, got, want[j])
				}
			}
		}
	}
}

func TestGather2(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		for n := 0; n <= 50; n++ {
			for extra := 0; extra < 3; extra++ {
				src := make([]float32, max(2*n-1+extra, 0))
				for i := range src {
					src[i] = float32(i)
				}
				dst := make([]float32, n+1)
				dst[n] = -1
				active.gather2(dst[:n], src)
				for i := 0; i < n; i++ {
					if dst[i] != float32(2*i) {
						t.Fatalf("n=%d: dst[%d] = %g, want %d", n, i, dst[i], 2*i)
					}
				}
				if dst[n] != -1 {
					t.Fatalf("n=%d: wrote past dst", n)
				}
			}
		}
	})
}

func TestConv2DValidate(t *testing.T) {
	ok := conv(1, 4, 8, 8, 4, 3, 1, 1, 1, 1)
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid params: %v", err)
	}
	if ok.OutH() != 8 || ok.OutW() != 8 {
		t.Fatalf("OutH, OutW = %d, %d, want 8, 8", ok.OutH(), ok.OutW())
	}
	bad := map[string]func(p *Conv2DParams){
		"zero N":         func(p *Conv2DParams) { p.N = 0 },
		"negative H":     func(p *Conv2DParams) { p.H = -1 },
		"zero group":     func(p *Conv2DParams) { p.Group = 0 },
		"zero stride":    func(p *Conv2DParams) { p.StrideW = 0 },
		"zero dilation":  func(p *Conv2DParams) { p.DilH = 0 },
		"negative pad":   func(p *Conv2DParams) { p.PadLeft = -1 },
		"C % Group":      func(p *Conv2DParams) { p.Group = 3 },
		"M % Group":      func(p *Conv2DParams) { p.C, p.Group = 6, 3 },
		"kernel too big": func(p *Conv2DParams) { p.KH, p.PadTop, p.PadBottom = 11, 0, 0 },
		"dilated too big": func(p *Conv2DParams) {
			p.DilW, p.PadLeft, p.PadRight = 5, 0, 0
		},
		"empty clip":  func(p *Conv2DParams) { p.Act, p.ActMin, p.ActMax = ActClip, 1, 0 },
		"unknown act": func(p *Conv2DParams) { p.Act = 42 },
	}
	for name, f := range bad {
		p := ok
		f(&p)
		err := p.Validate()
		if !errors.Is(err, ErrInvalidConv) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidConv", name, err)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("Conv2D with a short y did not panic")
			}
		}()
		Conv2D(ok, make([]float32, 256), make([]float32, 144), nil, make([]float32, 10))
	}()
}

func ExampleConv2D() {
	// A 3x3 box filter over a 4x4 image of ones, padded by one.
	p := Conv2DParams{N: 1, C: 1, H: 4, W: 4, M: 1, KH: 3, KW: 3, Group: 1,
		StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}
	x := make([]float32, 16)
	for i := range x {
		x[i] = 1
	}
	w := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1}
	y := make([]float32, p.OutH()*p.OutW())
	Conv2D(p, x, w, nil, y)
	for i := 0; i < 4; i++ {
		fmt.Println(y[4*i : 4*i+4])
	}
	// Output:
	// [4 6 6 4]
	// [6 9 9 6]
	// [6 9 9 6]
	// [4 6 6 4]
}

// TestMeasureScratch: im2col takes scratch for its column tiles, a 1x1
// convolution (the input is its own column matrix) only the GEMM's packing
// buffers, and the Winograd filter transform counts.
func TestMeasureScratch(t *testing.T) {
	p := Conv2DParams{N: 1, C: 16, H: 20, W: 20, M: 16, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}
	x := make([]float32, p.N*p.C*p.H*p.W)
	w := make([]float32, p.M*p.C*p.KH*p.KW)
	y := make([]float32, p.N*p.M*p.OutH()*p.OutW())
	im2col := MeasureScratch(func() { Conv2DWith(ConvIm2col, p, x, w, nil, y) })
	if im2col < int64(p.C*p.KH*p.KW*4) {
		t.Errorf("im2col scratch %d bytes, want at least one column of %d", im2col, p.C*p.KH*p.KW*4)
	}
	wino := MeasureScratch(func() { Conv2DWith(ConvWinograd4, p, x, w, nil, y) })
	if wino < int64(p.M*p.C*36*4) {
		t.Errorf("winograd4x4 scratch %d bytes, want at least its transformed filter (%d)", wino, p.M*p.C*36*4)
	}
	q := p
	q.KH, q.KW, q.PadTop, q.PadLeft, q.PadBottom, q.PadRight = 1, 1, 0, 0, 0, 0
	w1 := make([]float32, q.M*q.C)
	if b := MeasureScratch(func() { Conv2DWith(ConvIm2col, q, x, w1, nil, y) }); b >= im2col {
		t.Errorf("1x1 convolution scratch %d bytes, not below the 3x3's %d", b, im2col)
	}
	if b := MeasureScratch(func() {}); b != 0 {
		t.Errorf("nothing run: %d bytes", b)
	}
}
