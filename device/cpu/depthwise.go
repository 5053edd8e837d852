package cpu

import "math"

var padPool floatPool

// depthwise computes a convolution whose groups each have one input channel
// (C/Group == 1, so Group == C, with M/C output channels per input channel)
// directly: no im2col, one goroutine per range of (image, channel) planes.
// Each input plane is copied into a zero-bordered buffer when the
// convolution pads, so the inner loops run without bounds tests.
func depthwise(p Conv2DParams, x, w, bias, y []float32) {
	oh, ow := p.OutH(), p.OutW()
	mult := p.M / p.C
	hw := p.H * p.W
	khw := p.KH * p.KW
	is3x3 := p.KH == 3 && p.KW == 3 && p.DilH == 1 && p.DilW == 1 && p.StrideH == p.StrideW && p.StrideH <= 2
	// The 3x3 kernels read whole vectors past the end of rows: they always
	// get a copy with slack after it.
	padded := is3x3 || p.PadTop != 0 || p.PadLeft != 0 || p.PadBottom != 0 || p.PadRight != 0
	// Rows and columns of the (padded) plane the output reads.
	ph := (oh-1)*p.StrideH + (p.KH-1)*p.DilH + 1
	pw := max((ow-1)*p.StrideW+(p.KW-1)*p.DilW+1, p.W+p.PadLeft)
	planes := p.N * p.C
	work := planes * mult * oh * ow * khw
	grain := max(1, (1<<15)/max(1, work/planes))
	ParallelFor(planes, grain, func(lo, hi int) {
		var bufp *[]float32
		var buf []float32
		if padded {
			// A few spare floats: vector kernels may read past the last
			// row's used columns.
			bufp = padPool.get(ph*pw + dwSlack)
			buf = *bufp
		}
		for pl := lo; pl < hi; pl++ {
			n, c := pl/p.C, pl%p.C
			src := x[pl*hw : pl*hw+hw]
			in, ld := src, p.W
			if padded {
				padPlane(buf[:ph*pw], src, p, ph, pw)
				clear(buf[ph*pw:])
				in, ld = buf, pw
			}
			for q := 0; q < mult; q++ {
				oc := c*mult + q
				var b float32
				if bias != nil {
					b = bias[oc]
				}
				dst := y[(n*p.M+oc)*oh*ow : (n*p.M+oc+1)*oh*ow]
				dwPlane(p, in, ld, w[oc*khw:oc*khw+khw], b, dst, oh, ow)
			}
		}
		if bufp != nil {
			padPool.put(bufp)
		}
	})
}

// padPlane copies the H x W plane src into the ph x pw buffer dst at
// (PadTop, PadLeft), zeroing the rest.
func padPlane(dst, src []float32, p Conv2DParams, ph, pw int) {
	dst = dst[:ph*pw]
	top := min(p.PadTop, ph)
	clear(dst[:top*pw])
	r := top
	for ; r < ph && r-p.PadTop < p.H; r++ {
		row := dst[r*pw : r*pw+pw]
		// Pads are a pixel or two: loops beat calls to clear.
		for i := range row[:p.PadLeft] {
			row[i] = 0
		}
		n := copy(row[p.PadLeft:], src[(r-p.PadTop)*p.W:(r-p.PadTop+1)*p.W])
		rest := row[p.PadLeft+n:]
		for i := range rest {
			rest[i] = 0
		}
	}
	clear(dst[r*pw:])
}

// dwPlane computes one output plane (oh x ow) of a depthwise convolution
// from its input plane in (row stride ld, already padded, with dwSlack
// floats after it for the 3x3 kernels), the KH x KW weights wt and the bias
// b, then applies p.Act.
func dwPlane(p Conv2DParams, in []float32, ld int, wt []float32, b float32, dst []float32, oh, ow int) {
	lo, hi := float32(math.Inf(-1)), float32(math.Inf(1))
	switch p.Act {
	case ActRelu:
		lo = 0
	case ActClip:
		lo, hi = p.ActMin, p.ActMax
	}
	switch {
	case p.KH == 3 && p.KW == 3 && p.DilH == 1 && p.DilW == 1 && p.StrideH == 1 && p.StrideW == 1:
		active.dw3x3s1(in, ld, wt, dst, ow, oh, ow, b, lo, hi)
	case p.KH == 3 && p.KW == 3 && p.DilH == 1 && p.DilW == 1 && p.StrideH == 2 && p.StrideW == 2:
		active.dw3x3s2(in, ld, wt, dst, ow, oh, ow, b, lo, hi)
	default:
		dwGeneric(p, in, ld, wt, b, dst, oh, ow)
		if p.Act != ActNone {
			epilogue(p, dst, ow, oh, ow, nil)
		}
	}
}

// dwGeneric is the direct depthwise kernel for any size, stride and
// dilation: one multiply-add pass per kernel tap over each output row.
func dwGeneric(p Conv2DParams, in []float32, ld int, wt []float32, b float32, dst []float32, oh, ow int) {
	sw := p.StrideW
	for y := 0; y < oh; y++ {
		out := dst[y*ow : y*ow+ow]
		for i := range out {
			out[i] = b
		}
		for kh := 0; kh < p.KH; kh++ {
			row := in[(y*p.StrideH+kh*p.DilH)*ld:]
			for kw := 0; kw < p.KW; kw++ {
				wv := wt[kh*p.KW+kw]
				src := row[kw*p.DilW : kw*p.DilW+(ow-1)*sw+1]
				if sw == 1 {
					src = src[:len(out)]
					for i := range out {
						out[i] += wv * src[i]
					}
					continue
				}
				for i := range out {
					out[i] += wv * src[i*sw]
				}
			}
		}
	}
}

// dw3x3s1Go is the 3x3, stride 1 depthwise kernel in pure Go.
func dw3x3s1Go(in []float32, ld int, wt, dst []float32, ldo, oh, ow int, b, lo, hi float32) {
	wt = wt[:9]
	w0, w1, w2, w3, w4, w5, w6, w7, w8 := wt[0], wt[1], wt[2], wt[3], wt[4], wt[5], wt[6], wt[7], wt[8]
	for y := 0; y < oh; y++ {
		out := dst[y*ldo : y*ldo+ow]
		r0 := in[y*ld : y*ld+ow+2]
		r1 := in[(y+1)*ld : (y+1)*ld+ow+2]
		r2 := in[(y+2)*ld : (y+2)*ld+ow+2]
		for i := range out {
			s := b + w0*r0[i] + w1*r0[i+1] + w2*r0[i+2]
			s += w3*r1[i] + w4*r1[i+1] + w5*r1[i+2]
			s += w6*r2[i] + w7*r2[i+1] + w8*r2[i+2]
			out[i] = min(max(s, lo), hi)
		}
	}
}

// dw3x3s2Go is the 3x3, stride 2 depthwise kernel in pure Go.
func dw3x3s2Go(in []float32, ld int, wt, dst []float32, ldo, oh, ow int, b, lo, hi float32) {
	wt = wt[:9]
	w0, w1, w2, w3, w4, w5, w6, w7, w8 := wt[0], wt[1], wt[2], wt[3], wt[4], wt[5], wt[6], wt[7], wt[8]
	for y := 0; y < oh; y++ {
		out := dst[y*ldo : y*ldo+ow]
		r0 := in[2*y*ld : 2*y*ld+2*ow+1]
		r1 := in[(2*y+1)*ld : (2*y+1)*ld+2*ow+1]
		r2 := in[(2*y+2)*ld : (2*y+2)*ld+2*ow+1]
		for i := range out {
			j := 2 * i
			s := b + w0*r0[j] + w1*r0[j+1] + w2*r0[j+2]
			s += w3*r1[j] + w4*r1[j+1] + w5*r1[j+2]
			s += w6*r2[j] + w7*r2[j+1] + w8*r2[j+2]
			out[i] = min(max(s, lo), hi)
		}
	}
}
