package cpu

import (
	"fmt"
	"testing"
)

// blockedDenseCases are the group-1 shapes TestBlockedDense runs: every
// kernel case (blocked input KxK at stride 1 and 2, dilation, NCHW stems,
// flat 1x1), odd widths, channels not multiples of Block, batch 2, a
// residual added in place, Clip.
func blockedDenseCases() []struct {
	name             string
	p                Conv2DParams
	inNCHW, residual bool
} {
	c := func(n, ch, h, w, m, k, s, pad, dil int, act Activation) Conv2DParams {
		return Conv2DParams{N: n, C: ch, H: h, W: w, M: m, KH: k, KW: k, Group: 1, StrideH: s, StrideW: s, DilH: dil, DilW: dil,
			PadTop: pad, PadLeft: pad, PadBottom: pad, PadRight: pad, Act: act, ActMin: -0.5, ActMax: 0.75}
	}
	type tc = struct {
		name             string
		p                Conv2DParams
		inNCHW, residual bool
	}
	cases := []tc{
		{"3x3 16->16", c(1, 16, 9, 11, 16, 3, 1, 1, 1, ActRelu), false, false},
		{"3x3 24->40 residual b2", c(2, 24, 7, 6, 40, 3, 1, 1, 1, ActNone), false, true},
		{"3x3/2 32->64 clip", c(1, 32, 13, 13, 64, 3, 2, 1, 1, ActClip), false, false},
		{"3x3 64->80 13x13", c(1, 64, 13, 13, 80, 3, 1, 1, 1, ActRelu), false, false},
		{"3x3 20->130 5x5", c(1, 20, 5, 5, 130, 3, 1, 1, 1, ActRelu), false, true},
		{"5x5 17->33 pad 2", c(1, 17, 11, 10, 33, 5, 1, 2, 1, ActClip), false, false},
		{"3x3 dil 2 16->32", c(1, 16, 12, 13, 32, 3, 1, 2, 2, ActRelu), false, false},
		{"3x3/2 dil 2 pad 1", c(2, 24, 15, 14, 24, 3, 2, 1, 2, ActNone), false, true},
		{"3x3 no pad 16->48", c(1, 16, 9, 12, 48, 3, 1, 0, 1, ActRelu), false, false},
		{"1x1 48->20 flat", c(1, 48, 5, 7, 20, 1, 1, 0, 1, ActRelu), false, true},
		{"1x1 64->250 flat 13x13", c(2, 64, 13, 13, 250, 1, 1, 0, 1, ActClip), false, false},
		{"1x1/2 48->64 14x14 residual", c(1, 48, 14, 14, 64, 1, 2, 0, 1, ActRelu), false, true},
		{"3x3 64->70 7x7 residual b2", c(2, 64, 7, 7, 70, 3, 1, 1, 1, ActClip), false, true},
		{"3x3 32->64 15x15", c(1, 32, 15, 15, 64, 3, 1, 1, 1, ActNone), false, false},
		{"1x1 40->100 flat 14x14 residual", c(1, 40, 14, 14, 100, 1, 1, 0, 1, ActClip), false, true},
		{"1x1 128->200 flat 16x15 residual", c(1, 128, 16, 15, 200, 1, 1, 0, 1, ActRelu), false, true},
		{"1x1/2 32->64", c(1, 32, 14, 13, 64, 1, 2, 0, 1, ActRelu), false, false},
		{"1x1/2 40->264 15x9 b2 residual", c(2, 40, 15, 9, 264, 1, 2, 0, 1, ActClip), false, true},
		{"1x1/3x2 24->260 13x20 (gathered: rows of 10)", func() Conv2DParams {
			q := c(1, 24, 13, 20, 260, 1, 2, 0, 1, ActRelu)
			q.StrideH = 3
			return q
		}(), false, true},
		{"1x1/2 20->256 9x9 b2", c(2, 20, 9, 9, 256, 1, 2, 0, 1, ActNone), false, false},
		{"1x1 40->56 flat 56x20 (8 bands)", c(1, 40, 56, 20, 56, 1, 1, 0, 1, ActRelu), false, true},
		{"1x1 32->120 flat 28x28 b2", c(2, 32, 28, 28, 120, 1, 1, 0, 1, ActClip), false, false},
		{"3x3 16->16 29x5 (row bands)", c(1, 16, 29, 5, 16, 3, 1, 1, 1, ActNone), false, false},
		{"1x1 pad 1 16->16", c(1, 16, 4, 5, 16, 1, 1, 1, 1, ActClip), false, false},
		{"7x7/2 stem NCHW 3->16", c(1, 3, 23, 21, 16, 7, 2, 3, 1, ActRelu), true, false},
		{"3x3/2 stem NCHW 3->24", c(1, 3, 17, 17, 24, 3, 2, 1, 1, ActNone), true, false},
		{"3x3 stem NCHW 3->64 b2", c(2, 3, 10, 9, 64, 3, 1, 1, 1, ActClip), true, true},
		{"7x7 NCHW larger than input", c(1, 5, 3, 4, 16, 7, 1, 3, 1, ActNone), true, false},
		{"5x5 larger than input", c(1, 16, 2, 3, 16, 5, 1, 2, 1, ActRelu), false, false},
	}
	asym := c(1, 20, 9, 10, 36, 3, 2, 0, 1, ActRelu)
	asym.PadTop, asym.PadLeft, asym.PadBottom, asym.PadRight = 0, 2, 1, 0
	asym.KW, asym.StrideH = 4, 1
	cases = append(cases, tc{"asymmetric pads 3x4 stride 1x2", asym, false, true})
	asym.C = 3
	cases = append(cases, tc{"asymmetric pads NCHW", asym, true, false})
	for _, w := range []int{1, 13, 55, 56, 57} {
		cases = append(cases,
			tc{fmt.Sprintf("3x3 W=%d 24->72", w), c(1, 24, 3, w, 72, 3, 1, 1, 1, ActRelu), false, w%2 == 1},
			tc{fmt.Sprintf("3x3/2 W=%d 16->32", w), c(2, 16, 4, w, 32, 3, 2, 1, 1, ActClip), false, false},
			tc{fmt.Sprintf("1x1 W=%d 40->36", w), c(1, 40, 2, w, 36, 1, 1, 0, 1, ActNone), false, true},
			tc{fmt.Sprintf("7x7/2 stem W=%d", w), c(1, 3, 9, w, 16, 7, 2, 3, 1, ActRelu), true, false},
			tc{fmt.Sprintf("3x3/2 stem 3->16 W=%d", w), c(2, 3, 7, w, 16, 3, 2, 1, 1, ActClip), true, w%2 == 0})
	}
	return cases
}

// TestBlockedDense runs BlockedConv2D's dense kernels, with every kernel of
// this CPU (the AVX-512 assembly, or the Go path) and at 1 and 2 threads,
// against Conv2D, and checks the pad lanes are zero.
func TestBlockedDense(t *testing.T) {
	saved := active
	defer func() { active = saved }()
	chunk, pfMin, pfMax := bdChunkBytes, bdPfMin, bdPfMaxSet
	defer func() {
		bdCols, bdStems, bdChunkBytes, bdBalanced, bdPfMin, bdPfMaxSet = true, true, chunk, true, pfMin, pfMax
		bdEvenBands, bdGather = true, true
	}()
	for _, threads := range []int{1, 2} {
		fixThreads(t, threads)
		for _, k := range kernels() {
			active = k
			for ci, tc := range blockedDenseCases() {
				// the next pass's weight prefetch (bdPf) on every layer or
				// only on large ones (the shapes here: none)
				bdPfMin, bdPfMaxSet = []int{pfMin, 0}[ci%2], []int{pfMax, 1 << 40}[ci%2]
				bdCols = threads == 1 || tc.p.W%2 == 0  // border columns both ways
				bdStems = threads == 1 || tc.p.H%2 == 1 // and the stems' kernel
				// the input blocks in chunks: of one block, of about
				// half a group's weights, or whole
				bdChunkBytes = []int{chunk, 1, bdGroupBytes(tc.p) / 2}[(ci+threads)%3]
				bdBalanced = (ci/2+threads)%2 == 0  // equal segments or maxR and a remainder
				bdEvenBands = (ci/3+threads)%2 == 1 // equal bands or bandLen and a remainder
				bdGather = (ci+threads)%2 == 1      // a strided 1x1 gathered first, or not
				worst, pads := blockedCase(t, tc.p, tc.inNCHW, tc.residual, BlockedConv2D)
				name := fmt.Sprintf("%s threads=%d cols=%v chunk=%d bal=%v even=%v gather=%v %s", k.name, threads, bdCols,
					bdChunkBytes, bdBalanced, bdEvenBands, bdGather, tc.name)
				if worst > 1e-4 {
					t.Errorf("%s: largest difference %g from Conv2D", name, worst)
				}
				if !pads {
					t.Errorf("%s: a pad lane of the output is not zero", name)
				}
			}
		}
	}
}

// TestBlockedDenseInPlace checks the dense kernels against blockedConvRef
// with the residual given as y itself (added in place).
func TestBlockedDenseInPlace(t *testing.T) {
	saved := active
	defer func() { active = saved }()
	chunk := bdChunkBytes
	defer func() { bdCols, bdChunkBytes = true, chunk }()
	for _, k := range kernels() {
		active = k
		for i, tc := range blockedDenseCases() {
			bdCols = i%2 == 0
			bdChunkBytes = []int{chunk, 1, bdGroupBytes(tc.p) / 2}[i%3]
			p := tc.p
			oh, ow := p.OutH(), p.OutW()
			xn := BlockedLen(p.N, p.C, p.H*p.W)
			if tc.inNCHW {
				xn = p.N * p.C * p.H * p.W
			}
			x := seqSlice(xn, 0.37)
			w := seqSlice(p.M*p.C*p.KH*p.KW, 0.11)
			bias := seqSlice(p.M, 0.5)
			if !tc.inNCHW {
				zeroPads(p.N, p.C, p.H*p.W, x)
			}
			f := PackBlockedFilter(p, tc.inNCHW, w)
			yn := BlockedLen(p.N, p.M, oh*ow)
			z := seqSlice(yn, 0.23)
			zeroPads(p.N, p.M, oh*ow, z)
			want := make([]float32, yn)
			blockedConvRef(f, x, bias, z, want)
			y := append([]float32(nil), z...)
			BlockedConv2D(f, x, bias, y, y)
			for i := range want {
				if d := want[i] - y[i]; d > 1e-4 || d < -1e-4 || y[i] != y[i] {
					t.Errorf("%s chunk=%d %s: element %d: %g in place, reference %g", k.name, bdChunkBytes, tc.name, i, y[i], want[i])
					break
				}
			}
		}
	}
}

// bdGroupBytes is the bytes of weights of one group of output blocks
// (blockedDense's bdChunkBytes compares it).
func bdGroupBytes(p Conv2DParams) int {
	mb := Blocks(p.M)
	ngroups := (mb + 3) / 4
	return (mb + ngroups - 1) / ngroups * Blocks(p.C) * p.KH * p.KW * Block * Block * 4
}

// seqSlice returns n values in [-1, 1) from a fixed sequence.
func seqSlice(n int, step float32) []float32 {
	s := make([]float32, n)
	v := float32(0)
	for i := range s {
		v += step
		for v >= 1 {
			v -= 2
		}
		s[i] = v
	}
	return s
}

// zeroPads zeroes the pad lanes of a blocked [n, c, hw] tensor.
func zeroPads(n, c, hw int, b []float32) {
	for i := range b {
		if (i/(hw*Block))%Blocks(c)*Block+i%Block >= c {
			b[i] = 0
		}
	}
}

// TestBlockedDenseAllocs checks that a call allocates nothing (its state
// is pooled, its scratch on the stack).
func TestBlockedDenseAllocs(t *testing.T) {
	fixThreads(t, 2)
	p := Conv2DParams{N: 1, C: 24, H: 9, W: 13, M: 40, KH: 3, KW: 3, Group: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1,
		PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, Act: ActRelu}
	f := PackBlockedFilter(p, false, seqSlice(p.M*p.C*9, 0.1))
	x := seqSlice(BlockedLen(1, p.C, p.H*p.W), 0.3)
	bias := seqSlice(p.M, 0.2)
	y := make([]float32, BlockedLen(1, p.M, p.OutH()*p.OutW()))
	if n := testing.AllocsPerRun(50, func() { BlockedConv2D(f, x, bias, y, y) }); n > 0.1 {
		t.Errorf("%.2f allocations per call", n)
	}
}
