package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// refInt8Depthwise is Int8Depthwise written out: quantize, integer
// convolution with zero padding, the pure-Go epilogue.
func refInt8Depthwise(p Conv2DParams, x []float32, xScale float32, w []int8, scale, bias, z []float32, lo, hi float32) []float32 {
	oh, ow := p.OutH(), p.OutW()
	mult := p.M / p.C
	xq := make([]int8, len(x))
	quantRowsGo(xq, x, xScale)
	y := make([]float32, p.N*p.M*oh*ow)
	for n := 0; n < p.N; n++ {
		for m := 0; m < p.M; m++ {
			c := m / mult
			acc := make([]int32, oh*ow)
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					var s int32
					for kh := 0; kh < p.KH; kh++ {
						for kw := 0; kw < p.KW; kw++ {
							ih := i*p.StrideH - p.PadTop + kh*p.DilH
							iw := j*p.StrideW - p.PadLeft + kw*p.DilW
							if ih < 0 || ih >= p.H || iw < 0 || iw >= p.W {
								continue
							}
							s += int32(xq[((n*p.C+c)*p.H+ih)*p.W+iw]) * int32(w[(m*p.KH+kh)*p.KW+kw])
						}
					}
					acc[i*ow+j] = s
				}
			}
			at := (n*p.M + m) * oh * ow
			var b float32
			if bias != nil {
				b = bias[m]
			}
			var zp []float32
			if z != nil {
				zp = z[at : at+oh*ow]
			}
			int8RowGo(acc, scale[m], b, zp, y[at:at+oh*ow], lo, hi)
		}
	}
	return y
}

// TestInt8Depthwise checks Int8Depthwise bit for bit against the integer
// reference, with each float32 kernel (whose depthwise loops it runs).
func TestInt8Depthwise(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	cases := []Conv2DParams{
		{N: 1, C: 5, H: 9, W: 11, M: 5, KH: 3, KW: 3, Group: 5, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
		{N: 2, C: 3, H: 12, W: 13, M: 3, KH: 3, KW: 3, Group: 3, StrideH: 2, StrideW: 2, DilH: 1, DilW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
		{N: 1, C: 4, H: 8, W: 37, M: 8, KH: 3, KW: 3, Group: 4, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1},
		{N: 1, C: 2, H: 10, W: 10, M: 2, KH: 5, KW: 5, Group: 2, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, PadTop: 2, PadLeft: 2, PadBottom: 2, PadRight: 2},
		{N: 1, C: 3, H: 9, W: 9, M: 3, KH: 3, KW: 3, Group: 3, StrideH: 2, StrideW: 1, DilH: 2, DilW: 2, PadTop: 0, PadLeft: 1, PadBottom: 2, PadRight: 0},
		{N: 1, C: 2, H: 21, W: 50, M: 2, KH: 3, KW: 3, Group: 2, StrideH: 2, StrideW: 2, DilH: 1, DilW: 1, PadTop: 0, PadLeft: 1, PadBottom: 1, PadRight: 0},
		{N: 1, C: 3, H: 5, W: 70, M: 6, KH: 3, KW: 3, Group: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
		{N: 1, C: 1, H: 3, W: 3, M: 1, KH: 3, KW: 3, Group: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1},
	}
	saved, savedDw := active, int8DwPlane
	defer func() { active, int8DwPlane = saved, savedDw }()
	type impl struct {
		name string
		k    *kernel
		dw   func(x []int8, ld int, w *[3]int32, corr int32, scale, bias float32, z, dst []float32, oh, ow, stride int, lo, hi float32)
	}
	var impls []impl
	if savedDw != nil {
		impls = append(impls, impl{"int8 planes", saved, savedDw})
	}
	for _, k := range kernels() {
		impls = append(impls, impl{"float32 " + k.name, k, nil})
	}
	for _, im := range impls {
		active, int8DwPlane = im.k, im.dw
		k := im
		for ci, p := range cases {
			for _, withZ := range []bool{false, true} {
				name := fmt.Sprintf("%s case %d z=%v", k.name, ci, withZ)
				x := make([]float32, p.N*p.C*p.H*p.W)
				for i := range x {
					x[i] = float32(r.Float64()*4 - 2)
				}
				w := make([]int8, p.M*p.KH*p.KW)
				wf := make([]float32, len(w))
				for i := range w {
					w[i] = int8(r.IntN(256) - 128)
					wf[i] = float32(w[i])
				}
				scale, bias := make([]float32, p.M), make([]float32, p.M)
				for i := range scale {
					scale[i] = float32(r.Float64() * 1e-4)
					bias[i] = float32(r.Float64()*2 - 1)
				}
				outLen := p.N * p.M * p.OutH() * p.OutW()
				var z []float32
				if withZ {
					z = make([]float32, outLen)
					for i := range z {
						z[i] = float32(r.Float64()*2 - 1)
					}
				}
				const xs, lo, hi = 2.0 / 127, -1.5, 1.75
				want := refInt8Depthwise(p, x, xs, w, scale, bias, z, lo, hi)
				got := make([]float32, outLen)
				for i := range got {
					got[i] = 99
				}
				Int8Depthwise(p, x, xs, wf, scale, bias, z, got, lo, hi)
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%s: element %d = %g, want %g", name, i, got[i], want[i])
					}
				}
			}
		}
	}
}

func TestInt8DepthwisePanics(t *testing.T) {
	p := Conv2DParams{N: 1, C: 4, H: 5, W: 5, M: 4, KH: 3, KW: 3, Group: 2, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1}
	defer func() {
		if recover() == nil {
			t.Error("no panic for a grouped, not depthwise, convolution")
		}
	}()
	Int8Depthwise(p, make([]float32, 100), 1, make([]float32, 72), make([]float32, 4), nil, nil, make([]float32, 36), -1, 1)
}
