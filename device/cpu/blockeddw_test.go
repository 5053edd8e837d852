package cpu

import (
	"fmt"
	"testing"
)

// blockedDWCases are depthwise convolutions for BlockedConv2D: odd widths
// (1, 7, 13, 15, 17, 112), channels not a multiple of 16 (24, 40), batch
// 2, residuals, Clip(0, 6), stride 2 with odd sizes, pads 0, 1, 2 and
// asymmetric, 5x5, dilation 2 and mobilenet_v2's shapes.
func blockedDWCases() []struct {
	name     string
	p        Conv2DParams
	residual bool
} {
	dw := func(n, c, h, w, k, s, pt, pl, pb, pr int, act Activation) Conv2DParams {
		return Conv2DParams{N: n, C: c, H: h, W: w, M: c, KH: k, KW: k, Group: c, StrideH: s, StrideW: s, DilH: 1, DilW: 1,
			PadTop: pt, PadLeft: pl, PadBottom: pb, PadRight: pr, Act: act, ActMin: 0, ActMax: 6}
	}
	type tc = struct {
		name     string
		p        Conv2DParams
		residual bool
	}
	var cases []tc
	for _, w := range []int{1, 2, 7, 13, 15, 17, 112} {
		for _, s := range []int{1, 2} {
			for _, pad := range []int{0, 1, 2} {
				if w+2*pad < 3 {
					continue
				}
				c := []int{16, 24, 40}[(w+s+pad)%3]
				act := []Activation{ActNone, ActRelu, ActClip}[(w+pad)%3]
				h := 5 + (w+s)%4
				cases = append(cases, tc{fmt.Sprintf("w%d s%d pad%d c%d act%d", w, s, pad, c, act),
					dw(1+(w+pad)%2, c, h, w, 3, s, pad, pad, pad, pad, act), (w+s)%2 == 1})
			}
		}
	}
	d2 := dw(1, 24, 11, 13, 3, 1, 2, 2, 2, 2, ActRelu)
	d2.DilH, d2.DilW = 2, 2
	d2s2 := dw(2, 40, 12, 15, 3, 2, 1, 2, 2, 1, ActClip)
	d2s2.DilH, d2s2.DilW = 2, 2
	sh2 := dw(1, 24, 11, 9, 3, 1, 1, 1, 1, 1, ActRelu)
	sh2.StrideH = 2
	sw2 := dw(2, 40, 9, 11, 3, 1, 1, 1, 1, 1, ActNone)
	sw2.StrideW = 2
	sw2k5 := dw(1, 16, 9, 12, 5, 1, 2, 2, 2, 2, ActNone)
	sw2k5.StrideW = 2
	clip := dw(2, 40, 9, 9, 3, 1, 1, 1, 1, 1, ActClip)
	clip.ActMin, clip.ActMax = 0.25, 0.5 // lo > 0: pad lanes must still be 0
	return append(cases,
		tc{"asymmetric pads", dw(1, 24, 8, 11, 3, 1, 2, 0, 0, 2, ActNone), false},
		tc{"asymmetric pads s2", dw(2, 40, 10, 65, 3, 2, 0, 1, 2, 0, ActClip), true},
		tc{"stride 2 odd", dw(2, 24, 15, 33, 3, 2, 1, 1, 1, 1, ActRelu), true},
		tc{"5x5", dw(1, 40, 8, 8, 5, 1, 2, 2, 2, 2, ActNone), false},
		tc{"5x5/2", dw(2, 24, 17, 13, 5, 2, 2, 2, 2, 2, ActClip), true},
		tc{"dilation 2", d2, false},
		tc{"dilation 2 s2", d2s2, true},
		tc{"stride (2, 1)", sh2, true},
		tc{"stride (1, 2)", sw2, false},
		tc{"5x5 stride (1, 2)", sw2k5, true},
		tc{"5x5 w1", dw(2, 24, 6, 1, 5, 1, 2, 2, 2, 2, ActRelu), true},
		tc{"5x5 w7 s2", dw(1, 40, 9, 7, 5, 2, 2, 2, 2, 2, ActClip), false},
		tc{"5x5 w17 pad1", dw(1, 16, 5, 17, 5, 1, 1, 1, 1, 1, ActNone), true},
		tc{"7x7 w13", dw(1, 24, 13, 13, 7, 1, 3, 3, 3, 3, ActRelu), false},
		tc{"9x9 (Go path)", dw(1, 16, 11, 12, 9, 1, 4, 4, 4, 4, ActNone), true},
		tc{"3x3 stride 3 (Go path)", dw(1, 24, 10, 11, 3, 3, 1, 1, 1, 1, ActNone), false},
		tc{"clip above 0", clip, true},
		tc{"one row", dw(1, 16, 1, 37, 3, 1, 1, 1, 1, 1, ActNone), false},
		tc{"pad larger than plane", dw(1, 24, 1, 1, 3, 1, 2, 2, 2, 2, ActNone), true},
		tc{"mobilenet 112 c32", dw(1, 32, 112, 112, 3, 1, 1, 1, 1, 1, ActClip), false},
		tc{"mobilenet 112/2 c96", dw(1, 96, 112, 112, 3, 2, 1, 1, 1, 1, ActClip), false},
		tc{"mobilenet 14 c576", dw(1, 576, 14, 14, 3, 1, 1, 1, 1, 1, ActClip), true},
		tc{"mobilenet 7 c960", dw(2, 960, 7, 7, 3, 1, 1, 1, 1, 1, ActClip), false},
	)
}

// TestBlockedDepthwise runs BlockedConv2D on blockedDWCases with every
// kernel of this CPU against cpu.Conv2D (through blockedCase), checks the
// pad lanes, and compares with blockedConvRef bit for bit within 1e-5.
func TestBlockedDepthwise(t *testing.T) {
	saved := active
	defer func() { active = saved }()
	for _, k := range kernels() {
		active = k
		for _, tc := range blockedDWCases() {
			worst, pads := blockedCase(t, tc.p, false, tc.residual, BlockedConv2D)
			if worst > 1e-4 {
				t.Errorf("%s %s: largest difference %g from Conv2D", k.name, tc.name, worst)
			}
			if !pads {
				t.Errorf("%s %s: a pad lane of the output is not zero", k.name, tc.name)
			}
		}
	}
}

// TestBlockedDepthwiseInPlace checks a residual added in place (z == y)
// against the same convolution with z a copy.
func TestBlockedDepthwiseInPlace(t *testing.T) {
	saved := active
	defer func() { active = saved }()
	for _, k := range kernels() {
		active = k
		for _, tc := range blockedDWCases() {
			p := tc.p
			oh, ow := p.OutH(), p.OutW()
			n := BlockedLen(p.N, p.C, p.H*p.W)
			x := make([]float32, n)
			zeroPadLanes := func(s []float32, hw int) {
				for i := range s {
					s[i] = float32((i*7919)%97)/48 - 1
					if (i/(hw*Block))%Blocks(p.C)*Block+i%Block >= p.C {
						s[i] = 0
					}
				}
			}
			zeroPadLanes(x, p.H*p.W)
			w := make([]float32, p.C*p.KH*p.KW)
			for i := range w {
				w[i] = float32((i*31)%17)/8 - 1
			}
			bias := w[:p.C]
			f := PackBlockedFilter(p, false, w)
			z := make([]float32, BlockedLen(p.N, p.C, oh*ow))
			zeroPadLanes(z, oh*ow)
			want := make([]float32, len(z))
			blockedConvRef(f, x, bias, z, want)
			y := append([]float32(nil), z...)
			BlockedConv2D(f, x, bias, y, y)
			for i := range y {
				if d := y[i] - want[i]; d > 1e-5 || d < -1e-5 || y[i] != y[i] {
					t.Fatalf("%s %s: element %d is %g in place, %g from the reference", k.name, tc.name, i, y[i], want[i])
				}
			}
		}
	}
}

// TestBlockedDepthwiseAllocs checks that a blocked depthwise call and the
// reorders allocate nothing once warm (their call structs are pooled).
func TestBlockedDepthwiseAllocs(t *testing.T) {
	p := Conv2DParams{N: 1, C: 40, H: 28, W: 28, M: 40, KH: 3, KW: 3, Group: 40, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1,
		PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, Act: ActClip, ActMin: 0, ActMax: 6}
	w := make([]float32, 9*p.C)
	bias := make([]float32, p.C)
	f := PackBlockedFilter(p, false, w)
	x := make([]float32, BlockedLen(1, p.C, p.H*p.W))
	y := make([]float32, BlockedLen(1, p.C, p.OutH()*p.OutW()))
	plain := make([]float32, p.C*p.H*p.W)
	p5 := p
	p5.KH, p5.KW, p5.PadTop, p5.PadLeft, p5.PadBottom, p5.PadRight = 5, 5, 2, 2, 2, 2
	f5 := PackBlockedFilter(p5, false, make([]float32, 25*p.C))
	for name, fn := range map[string]func(){
		"depthwise":     func() { BlockedConv2D(f, x, bias, y, y) },
		"depthwise 5x5": func() { BlockedConv2D(f5, x, bias, y, y) },
		"ToBlocked":     func() { ToBlocked(1, p.C, p.H*p.W, plain, x) },
		"FromBlocked":   func() { FromBlocked(1, p.C, p.H*p.W, x, plain) },
	} {
		if n := testing.AllocsPerRun(50, fn); n > 0 {
			t.Errorf("%s: %g allocations per call", name, n)
		}
	}
}
