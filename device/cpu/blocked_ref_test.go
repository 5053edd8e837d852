package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// blockedCase runs p through Conv2D (NCHW) and through the blocked layout
// (ToBlocked, BlockedConv2D, FromBlocked) and returns the largest
// difference, and whether every pad lane of the blocked output is zero.
func blockedCase(t *testing.T, p Conv2DParams, inNCHW, residual bool, conv func(*BlockedFilter, []float32, []float32, []float32, []float32)) (float64, bool) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, uint64(p.C*131+p.M)))
	rnd := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = r.Float32()*2 - 1
		}
		return s
	}
	oh, ow := p.OutH(), p.OutW()
	x := rnd(p.N * p.C * p.H * p.W)
	w := rnd(p.M * p.C / p.Group * p.KH * p.KW)
	bias := rnd(p.M)
	want := make([]float32, p.N*p.M*oh*ow)
	act := p
	act.Act = ActNone
	Conv2D(act, x, w, bias, want)
	var zb []float32
	if residual {
		z := rnd(len(want))
		for i := range want {
			want[i] += z[i]
		}
		zb = make([]float32, BlockedLen(p.N, p.M, oh*ow))
		ToBlocked(p.N, p.M, oh*ow, z, zb)
	}
	for i, v := range want {
		switch p.Act {
		case ActRelu:
			want[i] = max(v, 0)
		case ActClip:
			want[i] = min(max(v, p.ActMin), p.ActMax)
		}
	}
	xb := x
	if !inNCHW {
		xb = make([]float32, BlockedLen(p.N, p.C, p.H*p.W))
		ToBlocked(p.N, p.C, p.H*p.W, x, xb)
	}
	f := PackBlockedFilter(p, inNCHW, w)
	yb := make([]float32, BlockedLen(p.N, p.M, oh*ow))
	for i := range yb {
		yb[i] = float32(math.NaN())
	}
	conv(f, xb, bias, zb, yb)
	padsZero := true
	for i, v := range yb {
		if ((i/(oh*ow*Block))%Blocks(p.M))*Block+i%Block >= p.M && v != 0 {
			padsZero = false
		}
	}
	got := make([]float32, len(want))
	FromBlocked(p.N, p.M, oh*ow, yb, got)
	worst := 0.0
	for i := range want {
		d := math.Abs(float64(got[i] - want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		worst = max(worst, d)
	}
	return worst, padsZero
}

func blockedConvCases() []struct {
	name             string
	p                Conv2DParams
	inNCHW, residual bool
} {
	c := func(n, ch, h, w, m, k, s, pad, g int, act Activation) Conv2DParams {
		return Conv2DParams{N: n, C: ch, H: h, W: w, M: m, KH: k, KW: k, Group: g, StrideH: s, StrideW: s, DilH: 1, DilW: 1,
			PadTop: pad, PadLeft: pad, PadBottom: pad, PadRight: pad, Act: act, ActMin: 0, ActMax: 6}
	}
	return []struct {
		name             string
		p                Conv2DParams
		inNCHW, residual bool
	}{
		{"3x3 16->16", c(1, 16, 9, 11, 16, 3, 1, 1, 1, ActRelu), false, false},
		{"3x3 24->40 residual", c(2, 24, 7, 6, 40, 3, 1, 1, 1, ActNone), false, true},
		{"3x3/2 32->64", c(1, 32, 13, 13, 64, 3, 2, 1, 1, ActClip), false, false},
		{"1x1 48->20", c(1, 48, 5, 7, 20, 1, 1, 0, 1, ActRelu), false, true},
		{"7x7/2 stem NCHW 3->16", c(1, 3, 23, 21, 16, 7, 2, 3, 1, ActRelu), true, false},
		{"3x3/2 stem NCHW 3->24", c(1, 3, 17, 17, 24, 3, 2, 1, 1, ActNone), true, false},
		{"depthwise 3x3 24", c(1, 24, 9, 9, 24, 3, 1, 1, 24, ActClip), false, false},
		{"depthwise 3x3/2 32", c(2, 32, 10, 9, 32, 3, 2, 1, 32, ActRelu), false, true},
		{"depthwise 5x5 40", c(1, 40, 8, 8, 40, 5, 1, 2, 40, ActNone), false, false},
	}
}

func TestBlockedConvRef(t *testing.T) {
	for _, tc := range blockedConvCases() {
		worst, pads := blockedCase(t, tc.p, tc.inNCHW, tc.residual, blockedConvRef)
		if worst > 1e-4 {
			t.Errorf("%s: largest difference %g from Conv2D", tc.name, worst)
		}
		if !pads {
			t.Errorf("%s: a pad lane of the output is not zero", tc.name)
		}
	}
}

func TestBlockedReorder(t *testing.T) {
	for _, s := range [][3]int{{1, 3, 5}, {2, 16, 4}, {1, 40, 9}, {3, 17, 1}} {
		n, c, hw := s[0], s[1], s[2]
		x := make([]float32, n*c*hw)
		for i := range x {
			x[i] = float32(i + 1)
		}
		b := make([]float32, BlockedLen(n, c, hw))
		for i := range b {
			b[i] = -1
		}
		ToBlocked(n, c, hw, x, b)
		for i, v := range b {
			ch := (i/(hw*Block))%Blocks(c)*Block + i%Block
			if ch >= c && v != 0 {
				t.Fatalf("%v: pad lane %d is %g", s, i, v)
			}
		}
		y := make([]float32, len(x))
		FromBlocked(n, c, hw, b, y)
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("%v: element %d: %g after the round trip, want %g", s, i, y[i], x[i])
			}
		}
	}
}
