//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

//go:generate go run gen_convwino_amd64.go

// The AVX-512 transforms of the Winograd convolution (convwino.go); the Go
// versions (winoPadDeintGo, ...) say what they compute. The wrappers check
// every index the kernels touch, then pass strides in bytes.
//
//go:noescape
func winoInRowsAVX512(ph *float32, wp, nd, th int, t, v *float32, vp, tw, lp, na int)

//go:noescape
func winoPadDeintAVX512(x *float32, h, xs, padTop, hp int, masks *uint16, nb int, dst *float32, ld, ds, padLeft int)

//go:noescape
func winoOutRowsAVX512(mm *float32, mp, lt, th int, s, o, out *float32, wq, tw int, bias, lo, hi float32, clamp bool, tail uint64, nb int)

// winoKernelsGo makes convWino use the Go transforms (tests compare them).
var winoKernelsGo bool

// winoAsm is whether the CPU runs the AVX-512 transforms; without AVX-512
// convWino uses the Go ones whatever winoKernelsGo says.
var winoAsm = cpu.X86.HasAVX512F

// winoInRows runs, for each tile row ty < th, Bt down the six padded phase
// rows ph[(4ty+i)*wp:] (wp floats each) into t (6 rows of wp, reused for
// every ty), then across each row r of t into the rows (6r+s)*vp of v at
// column ty*tw (lt floats: whole vectors).
func winoInRows(ph []float32, wp, th int, t, v []float32, vp, tw, lp, lt int) {
	if th <= 0 {
		return
	}
	_ = ph[(4*th+1)*wp+wp-1]
	_ = t[5*wp+lp+1+lt-1]
	_ = v[35*vp+(th-1)*tw+lt-1]
	if winoKernelsGo || !winoAsm || wp%16 != 0 || lt%16 != 0 {
		winoInRowsGo(ph, wp, th, t, v, vp, tw, lp, lt)
		return
	}
	winoInRowsAVX512(&ph[0], 4*wp, wp/16, th, &t[0], &v[0], 4*vp, 4*tw, 4*lp, lt/16)
}

// winoPadDeint sets dst (hp rows of 4 phase rows of lp floats, wp = 4 lp
// floats a row) to the column phases of the h x w plane x placed at row
// padTop, column padLeft of a zero plane: dst[y*wp + q*lp + u] = xpad[y][4u+q]
// (what padPlane and a phase split would do in two passes), with the load
// masks of pm (made on first use for this geometry).
func winoPadDeint(x []float32, h, w, padTop, padLeft, hp, lp int, dst []float32, pm *winoPadMasks) {
	wp := 4 * lp
	_ = dst[hp*wp-1]
	_ = x[h*w-1]
	nb := wp / 64
	if winoKernelsGo || !winoAsm || wp%64 != 0 || padLeft < 0 || !pm.set(w, padLeft, nb) {
		winoPadDeintGo(x, h, w, padTop, padLeft, hp, lp, dst)
		return
	}
	winoPadDeintAVX512(&x[0], h, 4*w, padTop, hp, &pm.m[0], nb, &dst[0], 4*lp, 4*wp, 4*padLeft)
}

// winoOutRows writes the output tiles of one output channel: per tile row
// ty < th, At across the 36 product rows mm[(6r+j)*mp + ty*tw:] into s (24
// rows of lt), At down s into o (16 rows of lt), and the columns of o
// interleaved into the four output rows out[(4ty+i)*wq:] (the first wq
// floats of the 4 tw of a tile row, 4 tw - 4 < wq <= 4 tw) with bias and,
// with clamp, the clamp to [lo, hi].
func winoOutRows(mm []float32, mp, lt, th int, s, o, out []float32, wq, tw int, bias, lo, hi float32, clamp bool) {
	if th <= 0 || wq <= 0 {
		return
	}
	nb := (tw + 15) / 16
	_ = mm[35*mp+(th-1)*tw+lt-1]
	_ = s[24*lt-1]
	_ = o[16*lt-1]
	_ = out[4*th*wq-1]
	if winoKernelsGo || !winoAsm || lt%16 != 0 || lt < 16*nb || wq > 4*tw || wq <= 4*tw-4 {
		winoOutRowsGo(mm, mp, lt, th, s, o, out, wq, tw, bias, lo, hi, clamp)
		return
	}
	tail := ^uint64(0)
	if r := wq - 64*(nb-1); r < 64 {
		tail = 1<<uint(r) - 1
	}
	winoOutRowsAVX512(&mm[0], 4*mp, lt, th, &s[0], &o[0], &out[0], 4*wq, 4*tw, bias, lo, hi, clamp, tail, nb)
}
