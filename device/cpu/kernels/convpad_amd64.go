//go:build amd64 && !purego

package kernels

// padPlane sets dst (hq rows of wq floats) to the h x w plane src placed at
// row padTop, column padLeft, with zeros around it, with padPlaneAVX512
// (masks from pm), and reports true; false (dst untouched) without
// AVX-512 or for rows of more than 2048 floats.
func padPlane(dst, src []float32, h, w, hq, wq, padTop, padLeft int, pm *padMasks) bool {
	if !directAsm || padPlaneOff || h <= 0 || w <= 0 || hq <= 0 || len(dst) < hq*wq || len(src) < h*w ||
		padTop < 0 || padLeft < 0 || padLeft+w > wq || !pm.set(wq, -padLeft, w, 1) {
		return false
	}
	if pm.nch <= 3 && !padSmallOff {
		padPlaneSmallAVX512(&dst[0], &src[0], h, w, hq, wq, padTop, padLeft, &pm.m[0], pm.nch)
		return true
	}
	padPlaneAVX512(&dst[0], &src[0], h, w, hq, wq, padTop, padLeft, &pm.m[0], pm.nch)
	return true
}

// padPlaneS2 sets dst (hq rows of wq floats) to the stride-2 phase plane
// dst[i][j] = src[r0+2i][c0+2j] of the h x w plane src (0 outside it) with
// padPlaneS2AVX512 (masks from pm), and reports true; false (dst
// untouched) without AVX-512 or for rows of more than 2048 floats.
func padPlaneS2(dst, src []float32, h, w, hq, wq, r0, c0 int, pm *padMasks) bool {
	if !directAsm || padPlaneOff || h <= 0 || w <= 0 || hq <= 0 || wq <= 0 || len(dst) < hq*wq || len(src) < h*w ||
		!pm.set(wq, c0, w, 2) {
		return false
	}
	padPlaneS2AVX512(&dst[0], &src[0], h, w, hq, wq, r0, c0, &pm.m[0], pm.nch)
	return true
}

// padPlaneS2x2 is padPlaneS2 for both column phases of a row phase: dst
// (hq rows of wq floats) gets column phase 0 (src[r0+2i][c0+2j]) and
// dst[plane:] column phase 1 (src[r0+2i][c0+1+2j]), from one read of each
// source row (padPlaneS2x2AVX512).
func padPlaneS2x2(dst, src []float32, h, w, hq, wq, r0, c0, plane int, pm *padMasks) bool {
	if !directAsm || padPlaneOff || padPairOff || h <= 0 || w <= 0 || hq <= 0 || wq <= 0 || plane < hq*wq ||
		len(dst) < plane+hq*wq || len(src) < h*w || !pm.set(wq, c0, w, 2) {
		return false
	}
	padPlaneS2x2AVX512(&dst[0], &src[0], h, w, hq, wq, r0, c0, &pm.m[0], pm.nch, plane)
	return true
}

// padPlaneRows is padPlane for a band of rows of a plane: padTop may be
// negative (the band starts -padTop rows into src) or past hq (all zeros).
func padPlaneRows(dst, src []float32, h, w, hq, wq, padTop, padLeft int, pm *padMasks) bool {
	if !directAsm || padPlaneOff || h <= 0 || w <= 0 || hq <= 0 || len(dst) < hq*wq || len(src) < h*w ||
		padLeft < 0 || padLeft+w > wq || !pm.set(wq, -padLeft, w, 1) {
		return false
	}
	padPlaneAVX512(&dst[0], &src[0], h, w, hq, wq, padTop, padLeft, &pm.m[0], pm.nch)
	return true
}

//go:noescape
func padPlaneS2AVX512(dst, src *float32, h, w, hq, wq, r0, c0 int, masks *uint16, nch int)

//go:noescape
func padPlaneS2x2AVX512(dst, src *float32, h, w, hq, wq, r0, c0 int, masks *uint16, nch, plane int)

//go:noescape
func padPlaneSmallAVX512(dst, src *float32, h, w, hq, wq, padTop, padLeft int, masks *uint16, nch int)

//go:noescape
func padPlaneAVX512(dst, src *float32, h, w, hq, wq, padTop, padLeft int, masks *uint16, nch int)
