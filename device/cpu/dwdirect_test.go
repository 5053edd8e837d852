package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// dwCase is a depthwise convolution C channels of H x W, stride s, pads
// (top, left, bottom, right), activation act.
func dwCase(n, c, h, w, s, pt, pl, pb, pr int, act Activation) Conv2DParams {
	p := Conv2DParams{N: n, C: c, H: h, W: w, M: c, KH: 3, KW: 3, Group: c, StrideH: s, StrideW: s,
		DilH: 1, DilW: 1, PadTop: pt, PadLeft: pl, PadBottom: pb, PadRight: pr, Act: act}
	if act == ActClip {
		p.ActMin, p.ActMax = 0, 0.6
	}
	return p
}

// TestDepthwiseDirect runs ConvDepthwiseDirect on edge shapes (planes
// smaller than, equal to and just over a vector, odd sizes, one row, one
// column, asymmetric pads, stride 2 with odd sizes, ReLU and ReLU6, batch
// 2) against the reference, with every kernel of this CPU (those without
// AVX-512 run ConvDepthwise), and checks that it writes nothing outside y.
func TestDepthwiseDirect(t *testing.T) {
	saved := active
	defer func() { active = saved }()
	cases := []Conv2DParams{
		dwCase(1, 4, 7, 7, 1, 1, 1, 1, 1, ActNone),
		dwCase(1, 3, 4, 4, 1, 1, 1, 1, 1, ActClip),
		dwCase(1, 5, 14, 14, 1, 1, 1, 1, 1, ActRelu),
		dwCase(2, 3, 112, 112, 1, 1, 1, 1, 1, ActClip),
		dwCase(1, 2, 1, 1, 1, 1, 1, 1, 1, ActNone),
		dwCase(1, 2, 1, 37, 1, 1, 1, 1, 1, ActNone),
		dwCase(1, 2, 19, 1, 1, 1, 1, 1, 1, ActNone),
		dwCase(1, 3, 9, 17, 1, 1, 1, 1, 1, ActNone),
		dwCase(1, 3, 5, 16, 1, 1, 1, 1, 1, ActRelu),
		dwCase(1, 3, 8, 11, 1, 2, 0, 0, 2, ActNone),
		dwCase(1, 3, 8, 11, 1, 0, 2, 2, 0, ActNone),
		dwCase(1, 4, 112, 112, 2, 1, 1, 1, 1, ActClip),
		dwCase(1, 4, 56, 56, 2, 0, 0, 1, 1, ActClip),
		dwCase(1, 4, 14, 14, 2, 1, 1, 1, 1, ActNone),
		dwCase(1, 4, 7, 7, 2, 1, 1, 1, 1, ActRelu),
		dwCase(2, 3, 15, 33, 2, 1, 1, 1, 1, ActNone),
		dwCase(1, 3, 2, 2, 2, 1, 1, 1, 1, ActNone),
		dwCase(1, 3, 3, 3, 2, 0, 0, 0, 0, ActNone),
		dwCase(1, 3, 9, 70, 2, 2, 2, 2, 2, ActNone),
		dwCase(1, 3, 10, 65, 2, 0, 1, 2, 0, ActClip),
		// runs of plane pairs (dwFlatS1Run): odd channel counts, batches
		// whose images end inside a pair, many channels, no bias
		dwCase(2, 5, 7, 7, 1, 1, 1, 1, 1, ActClip),
		dwCase(1, 33, 14, 14, 1, 1, 1, 1, 1, ActRelu),
		dwCase(3, 7, 9, 9, 1, 1, 1, 1, 1, ActNone),
		dwCase(1, 64, 7, 7, 1, 1, 1, 1, 1, ActClip),
		dwCase(2, 6, 3, 20, 1, 0, 2, 2, 0, ActNone),
		dwCase(1, 1, 5, 5, 1, 1, 1, 1, 1, ActNone),
		// runs of planes at stride 2 (dwRowsS2Run)
		dwCase(2, 5, 14, 14, 2, 1, 1, 1, 1, ActClip),
		dwCase(1, 40, 9, 9, 2, 0, 0, 1, 1, ActRelu),
		dwCase(3, 3, 28, 17, 2, 1, 1, 1, 1, ActNone),
		// left pad 1 at stride 2 (dwRowsS2P1RunAVX512): widths around the
		// 32 input columns of a vector, odd and even, no right pad, top
		// pads 0-2, one column, ReLU and ReLU6
		dwCase(1, 3, 5, 31, 2, 1, 1, 1, 1, ActClip),
		dwCase(1, 3, 5, 32, 2, 0, 1, 0, 1, ActNone),
		dwCase(1, 3, 6, 33, 2, 2, 1, 1, 0, ActRelu),
		dwCase(2, 3, 7, 63, 2, 1, 1, 1, 1, ActNone),
		dwCase(1, 3, 4, 64, 2, 1, 1, 1, 1, ActClip),
		dwCase(1, 3, 4, 65, 2, 1, 1, 2, 2, ActNone),
		dwCase(1, 3, 9, 1, 2, 1, 1, 1, 1, ActNone),
		dwCase(1, 3, 3, 16, 2, 1, 1, 1, 0, ActNone),
		dwCase(1, 2, 56, 56, 2, 1, 1, 1, 1, ActClip),
		dwCase(1, 2, 28, 28, 2, 1, 1, 1, 1, ActClip),
	}
	r := rand.New(rand.NewPCG(5, 6))
	for i, p := range cases {
		if !ConvAlgoApplies(ConvDepthwiseDirect, p) {
			t.Fatalf("case %d %+v: ConvDepthwiseDirect does not apply", i, p)
		}
		x := randSlice(r, p.N*p.C*p.H*p.W)
		w := randSlice(r, p.C*9)
		var bias []float32
		if i%4 != 1 {
			bias = randSlice(r, p.C)
		}
		want, scale := refConv2D(p, x, w, bias)
		for _, k := range kernels() {
			active = k
			for _, mode := range []struct{ pairs, runs, s2p1 bool }{{true, true, true}, {true, true, false}, {true, false, false}, {false, false, false}} {
				dwPairs, dwRuns, dwS2P1 = mode.pairs, mode.runs, mode.s2p1
				name := fmt.Sprintf("%s pairs=%v runs=%v s2p1=%v case %d %dx%dx%dx%d s%d", k.name, mode.pairs, mode.runs, mode.s2p1, i, p.N, p.C, p.H, p.W, p.StrideH)
				// Guards of NaN after y: a kernel writing past the output
				// shows as a non-NaN guard.
				buf := nanSlice(len(want) + 64)
				y := buf[:len(want)]
				Conv2DWith(ConvDepthwiseDirect, p, x, w, bias, y)
				checkConvOut(t, name, p, y, want, scale)
				for j, v := range buf[len(want):] {
					if v == v {
						t.Fatalf("%s: wrote %v past the output at %d", name, v, j)
					}
				}
			}
		}
	}
	dwPairs, dwRuns, dwS2P1 = true, true, true
}

// TestDepthwiseDirectApplies lists what the direct depthwise kernel
// leaves to the others.
func TestDepthwiseDirectApplies(t *testing.T) {
	mult := dwCase(1, 4, 8, 8, 1, 1, 1, 1, 1, ActNone)
	mult.M = 8
	k5 := dwCase(1, 4, 8, 8, 1, 2, 2, 2, 2, ActNone)
	k5.KH, k5.KW = 5, 5
	dil := dwCase(1, 4, 8, 8, 1, 1, 1, 1, 1, ActNone)
	dil.DilH, dil.DilW = 2, 2
	s21 := dwCase(1, 4, 8, 8, 2, 1, 1, 1, 1, ActNone)
	s21.StrideW = 1
	grouped := dwCase(1, 8, 8, 8, 1, 1, 1, 1, 1, ActNone)
	grouped.Group = 4
	for _, tc := range []struct {
		name string
		p    Conv2DParams
		want bool
	}{
		{"3x3 same", dwCase(1, 4, 8, 8, 1, 1, 1, 1, 1, ActNone), true},
		{"3x3 s2", dwCase(1, 4, 8, 8, 2, 1, 1, 1, 1, ActNone), true},
		{"3x3 s1 unpadded", dwCase(1, 4, 8, 8, 1, 0, 0, 0, 0, ActNone), false},
		{"3x3 s1 pads 3", dwCase(1, 4, 8, 8, 1, 1, 1, 2, 1, ActNone), false},
		{"3x3 s2 pad 3", dwCase(1, 4, 8, 8, 2, 3, 1, 1, 1, ActNone), false},
		{"multiplier 2", mult, false},
		{"5x5", k5, false},
		{"dilated", dil, false},
		{"stride 2x1", s21, false},
		{"two channels per group", grouped, false},
	} {
		if got := ConvAlgoApplies(ConvDepthwiseDirect, tc.p); got != tc.want {
			t.Errorf("%s: applies = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// BenchmarkDepthwise times mobilenet_v2's 3x3 depthwise layers at 224x224
// with the padded-copy kernel (depthwise) and the direct one, two planes
// per pass (the default) and one.
func BenchmarkDepthwise(b *testing.B) {
	for _, l := range []struct{ c, hw, s int }{{32, 112, 1}, {96, 112, 2}, {144, 56, 1}, {144, 56, 2}, {192, 28, 1}, {192, 28, 2}, {384, 14, 1}, {576, 14, 1}, {576, 14, 2}, {960, 7, 1}} {
		p := dwCase(1, l.c, l.hw, l.hw, l.s, 1, 1, 1, 1, ActClip)
		r := rand.New(rand.NewPCG(1, 2))
		x, w, bias := randSlice(r, l.c*l.hw*l.hw), randSlice(r, 9*l.c), randSlice(r, l.c)
		y := make([]float32, p.M*p.OutH()*p.OutW())
		for _, a := range []ConvAlgo{ConvDepthwise, ConvDepthwiseDirect, "depthwise-direct-single", "depthwise-direct-pair"} {
			b.Run(fmt.Sprintf("c%d_%d_s%d/%s", l.c, l.hw, l.s, a), func(b *testing.B) {
				// one plane per pass, as before dwFlatS1x2; one call
				// per pair of planes, as before dwFlatS1Run
				switch a {
				case "depthwise-direct-single":
					a = ConvDepthwiseDirect
					dwPairs = false
					defer func() { dwPairs = true }()
				case "depthwise-direct-pair":
					a = ConvDepthwiseDirect
					dwRuns = false
					defer func() { dwRuns = true }()
				}
				b.ReportAllocs()
				for b.Loop() {
					Conv2DWith(a, p, x, w, bias, y)
				}
			})
		}
	}
}

// FuzzDepthwiseDirect runs ConvDepthwiseDirect on shapes drawn from the
// fuzzer's bytes (planes of 1-40 x 1-40, stride 1 or 2, every pad the
// kernel takes, 1-3 channels, batch 1-2, each activation) against the
// reference, with NaN guards after the output:
//
//	go test ./device/cpu -run '^$' -fuzz FuzzDepthwiseDirect -fuzztime 30s
func FuzzDepthwiseDirect(f *testing.F) {
	f.Add(uint8(7), uint8(7), uint8(1), uint8(0x55), uint8(1), uint8(0), uint64(1))
	f.Add(uint8(17), uint8(3), uint8(2), uint8(0xa0), uint8(3), uint8(2), uint64(2))
	f.Add(uint8(1), uint8(40), uint8(1), uint8(0x12), uint8(2), uint8(1), uint64(3))
	f.Fuzz(func(t *testing.T, h, w, stride, pads, c, act uint8, seed uint64) {
		s := 1 + int(stride)%2
		pt, pl := int(pads)&3, int(pads>>2)&3
		pb, pr := int(pads>>4)&3, int(pads>>6)&3
		if s == 1 {
			// the kernel's stride-1 geometry: the output has the input's size
			pt, pl = pt%3, pl%3
			pb, pr = 2-pt, 2-pl
		} else {
			pt, pl = pt%3, pl%3
		}
		p := dwCase(1+int(seed%2), 1+int(c)%3, 1+int(h)%40, 1+int(w)%40, s, pt, pl, pb, pr, Activation(int(act)%3))
		if p.Validate() != nil {
			return
		}
		if !ConvAlgoApplies(ConvDepthwiseDirect, p) {
			t.Fatalf("%+v: ConvDepthwiseDirect does not apply", p)
		}
		r := rand.New(rand.NewPCG(seed, 7))
		x := randSlice(r, p.N*p.C*p.H*p.W)
		wt := randSlice(r, 9*p.C)
		bias := randSlice(r, p.C)
		want, scale := refConv2D(p, x, wt, bias)
		buf := nanSlice(len(want) + 32)
		Conv2DWith(ConvDepthwiseDirect, p, x, wt, bias, buf[:len(want)])
		checkConvOut(t, "depthwise-direct", p, buf[:len(want)], want, scale)
		for j, v := range buf[len(want):] {
			if v == v {
				t.Fatalf("%+v: wrote %v past the output at %d", p, v, j)
			}
		}
	})
}
