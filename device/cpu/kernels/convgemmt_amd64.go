//go:build amd64 && !purego

package kernels

// gemmTOutAVX512 and gemmTInAVX512: see convgemmt_amd64.s.
//
//go:noescape
func gemmTOutAVX512(y, yt *float32, ldy, hw, nfull, tail, nj int, bias, z *float32, lo, hi float32, clamp bool)

//go:noescape
func gemmTIm2colAVX512(xt *float32, ldx int, src *float32, offs *int32, nfull, tail int, pos *int32, npos int)

//go:noescape
func gemmTInAVX512(xt *float32, ldx int, x *float32, plane int, pos *int32, npos, mask int)

// gemmTKernelGo makes convGemmT use its Go transposes (tests compare the
// two).
var gemmTKernelGo = !directAsm

// gemmTOut is gemmTOutGo (the same arguments), in AVX-512 unless
// gemmTKernelGo.
func gemmTOut(y []float32, hw int, yt []float32, ldy, i0, i1, j0, j1 int, bias, z []float32, lo, hi float32, clamp bool) {
	if gemmTKernelGo || i1 <= i0 || j1 <= j0 {
		gemmTOutGo(y, hw, yt, ldy, i0, i1, j0, j1, bias, z, lo, hi, clamp)
		return
	}
	// the last element each operand is read or written at
	_ = y[(j1-1)*hw+i1-1]
	_ = yt[(i1-1)*ldy+j1-1]
	_ = bias[j1-1]
	var zp *float32
	if z != nil {
		_ = z[(j1-1)*hw+i1-1]
		zp = &z[j0*hw+i0]
	}
	n := i1 - i0
	gemmTOutAVX512(&y[j0*hw+i0], &yt[i0*ldy+j0], ldy, hw, n/16, 1<<(n%16)-1, j1-j0, &bias[j0], zp, lo, hi, clamp)
}

// gemmTIn is gemmTInGo (the same arguments), in AVX-512 unless
// gemmTKernelGo.
func gemmTIn(xt []float32, ldx int, x []float32, plane int, pos []int32, c0, c1 int) {
	if gemmTKernelGo || len(pos) == 0 || c1 <= c0 {
		gemmTInGo(xt, ldx, x, plane, pos, c0, c1)
		return
	}
	maxPos := int32(0)
	for _, p := range pos {
		if p < 0 {
			panic("nn: gemm-t: negative position")
		}
		maxPos = max(maxPos, p)
	}
	_ = x[(c1-1)*plane+int(maxPos)]
	_ = xt[(len(pos)-1)*ldx+c1-1]
	for c := c0; c < c1; c += 16 {
		nc := min(16, c1-c)
		gemmTInAVX512(&xt[c], ldx, &x[c*plane], plane, &pos[0], len(pos), 1<<nc-1)
	}
}

// gemmTIm2col is gemmTIm2colGo (the same arguments), in AVX-512 unless
// gemmTKernelGo.
func gemmTIm2col(xt []float32, ldx int, src []float32, offs, pos []int32) {
	if gemmTKernelGo || len(pos) == 0 || len(offs) == 0 {
		gemmTIm2colGo(xt, ldx, src, offs, pos)
		return
	}
	var maxOff, maxPos int32
	for _, o := range offs {
		if o < 0 {
			panic("nn: gemm-t: negative tap offset")
		}
		maxOff = max(maxOff, o)
	}
	for _, p := range pos {
		if p < 0 {
			panic("nn: gemm-t: negative position")
		}
		maxPos = max(maxPos, p)
	}
	_ = src[int(maxOff)+int(maxPos)]
	_ = xt[(len(pos)-1)*ldx+len(offs)-1]
	k := len(offs)
	gemmTIm2colAVX512(&xt[0], ldx, &src[0], &offs[0], k/16, 1<<(k%16)-1, &pos[0], len(pos))
}
