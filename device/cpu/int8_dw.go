package cpu

import "fmt"

// Int8Depthwise computes a quantized depthwise convolution (one input
// channel per group: p.Group == p.C, p.M a multiple of p.C) of the
// float32 NCHW input x: each value is quantized as by QuantizeInt8 with
// xScale, convolved with the int8 weights wf (held as float32 integers,
// [M, 1, KH, KW]) and the exact sum acc turned into
//
//	y = clamp(float32(acc)*scale[m] + bias[m] + z, lo, hi)
//
// (bias and z may be nil). The float32 depthwise kernels compute acc
// exactly: the products and sums of at most 1024 int8 pairs are integers
// below 2^24. Each input plane is quantized straight into the padded
// plane those kernels read and each output plane is scaled while it is in
// cache. p.Act is ignored. It panics if p is invalid, not depthwise, has
// more than 1024 taps, or a slice is too short.
func Int8Depthwise(p Conv2DParams, x []float32, xScale float32, wf, scale, bias, z, y []float32, lo, hi float32) {
	if err := p.Validate(); err != nil {
		panic(fmt.Sprintf("cpu: Int8Depthwise: %v", err))
	}
	khw := p.KH * p.KW
	if p.Group != p.C || p.M%p.C != 0 || khw > 1024 {
		panic(fmt.Sprintf("cpu: Int8Depthwise: not a depthwise convolution of at most 1024 taps: %+v", p))
	}
	oh, ow := p.OutH(), p.OutW()
	hw, ohw := p.H*p.W, oh*ow
	if len(x) < p.N*p.C*hw || len(wf) < p.M*khw || len(scale) < p.M || (bias != nil && len(bias) < p.M) ||
		len(y) < p.N*p.M*ohw || (z != nil && len(z) < p.N*p.M*ohw) {
		panic("cpu: Int8Depthwise: short slices")
	}
	mult := p.M / p.C
	ph := (oh-1)*p.StrideH + (p.KH-1)*p.DilH + 1
	pw := max((ow-1)*p.StrideW+(p.KW-1)*p.DilW+1, p.W+p.PadLeft)
	planes := p.N * p.C
	grain := max(1, (1<<15)/max(1, mult*ohw*khw))
	pq := p
	pq.Act = ActNone
	ParallelFor(planes, grain, func(lo2, hi2 int) {
		bufp := padPool.get(ph*pw + dwSlack)
		buf := *bufp
		for pl := lo2; pl < hi2; pl++ {
			n, c := pl/p.C, pl%p.C
			quantPadPlane(buf[:ph*pw], x[pl*hw:pl*hw+hw], p, ph, pw, xScale)
			clear(buf[ph*pw:])
			for q := 0; q < mult; q++ {
				oc := c*mult + q
				at := (n*p.M + oc) * ohw
				dst := y[at : at+ohw]
				dwPlane(pq, buf, pw, wf[oc*khw:oc*khw+khw], 0, dst, oh, ow)
				var b float32
				if bias != nil {
					b = bias[oc]
				}
				var zp []float32
				if z != nil {
					zp = z[at : at+ohw]
				}
				scaleRow(dst, dst, scale[oc], b, zp, lo, hi)
			}
		}
		padPool.put(bufp)
	})
}

// quantPadPlane is padPlane storing QuantizeInt8Float of the values.
func quantPadPlane(dst, src []float32, p Conv2DParams, ph, pw int, scale float32) {
	dst = dst[:ph*pw]
	top := min(p.PadTop, ph)
	clear(dst[:top*pw])
	r := top
	for ; r < ph && r-p.PadTop < p.H; r++ {
		row := dst[r*pw : r*pw+pw]
		for i := range row[:p.PadLeft] {
			row[i] = 0
		}
		n := min(p.W, pw-p.PadLeft)
		quantF32(row[p.PadLeft:p.PadLeft+n], src[(r-p.PadTop)*p.W:(r-p.PadTop)*p.W+n], scale)
		rest := row[p.PadLeft+n:]
		for i := range rest {
			rest[i] = 0
		}
	}
	clear(dst[r*pw:])
}
