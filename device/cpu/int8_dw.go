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
	if int8DwPlane != nil && p.KH == 3 && p.KW == 3 && p.DilH == 1 && p.DilW == 1 && p.StrideH == p.StrideW && p.StrideH <= 2 {
		int8DepthwiseInt(p, x, xScale, wf, scale, bias, z, y, lo, hi, ph, pw)
		return
	}
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

// int8DwPlane, when not nil, computes one output plane of a 3x3 depthwise
// convolution of stride 1 or 2 in int8 (see int8DwVNNI): x is the padded
// int8 plane (row stride ld, int8DwSlack bytes readable past it), w the
// three rows of weights as (w0, w1, w2, 0) bytes, corr -128 times their
// sum; dst (oh rows of ow) = clamp(float32(acc)*scale + bias (+ z), lo, hi).
var int8DwPlane func(x []int8, ld int, w *[3]int32, corr int32, scale, bias float32, z, dst []float32, oh, ow, stride int, lo, hi float32)

// int8DwSlack is how many bytes past an int8 plane int8DwPlane may read.
const int8DwSlack = 64

// int8DepthwiseInt is Int8Depthwise for 3x3 kernels of stride 1 or 2 with
// int8DwPlane: each input plane quantized into a padded int8 plane.
func int8DepthwiseInt(p Conv2DParams, x []float32, xScale float32, wf, scale, bias, z, y []float32, lo, hi float32, ph, pw int) {
	oh, ow := p.OutH(), p.OutW()
	hw, ohw := p.H*p.W, oh*ow
	mult := p.M / p.C
	// The weights of each output channel as three dwords of bytes.
	wq := make([][3]int32, p.M)
	corr := make([]int32, p.M)
	for m := range wq {
		for kh := 0; kh < 3; kh++ {
			var d uint32
			for kw := 0; kw < 3; kw++ {
				v := int8(wf[m*9+kh*3+kw])
				d |= uint32(uint8(v)) << (8 * kw)
				corr[m] -= 128 * int32(v)
			}
			wq[m][kh] = int32(d)
		}
	}
	planes := p.N * p.C
	grain := max(1, (1<<15)/max(1, mult*ohw*9))
	ParallelFor(planes, grain, func(lo2, hi2 int) {
		buf := make([]int8, ph*pw+int8DwSlack)
		for pl := lo2; pl < hi2; pl++ {
			n, c := pl/p.C, pl%p.C
			quantPadPlaneInt8(buf[:ph*pw], x[pl*hw:pl*hw+hw], p, ph, pw, xScale)
			for q := 0; q < mult; q++ {
				oc := c*mult + q
				at := (n*p.M + oc) * ohw
				var b float32
				if bias != nil {
					b = bias[oc]
				}
				var zp []float32
				if z != nil {
					zp = z[at : at+ohw]
				}
				int8DwPlane(buf, pw, &wq[oc], corr[oc], scale[oc], b, zp, y[at:at+ohw], oh, ow, p.StrideH, lo, hi)
			}
		}
	})
}

// quantPadPlaneInt8 is quantPadPlane into int8.
func quantPadPlaneInt8(dst []int8, src []float32, p Conv2DParams, ph, pw int, scale float32) {
	dst = dst[:ph*pw]
	top := min(p.PadTop, ph)
	clear(dst[:top*pw])
	r := top
	for ; r < ph && r-p.PadTop < p.H; r++ {
		row := dst[r*pw : r*pw+pw]
		clear(row[:p.PadLeft])
		n := min(p.W, pw-p.PadLeft)
		quantRows(row[p.PadLeft:p.PadLeft+n], src[(r-p.PadTop)*p.W:(r-p.PadTop)*p.W+n], scale)
		clear(row[p.PadLeft+n:])
	}
	clear(dst[r*pw:])
}
