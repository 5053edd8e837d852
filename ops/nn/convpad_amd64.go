//go:build amd64 && !purego

package nn

// padPlane sets dst (hq rows of wq floats) to the h x w plane src placed at
// row padTop, column padLeft, with zeros around it, with padPlaneAVX512,
// and reports true; false (dst untouched) without AVX-512 or for rows of
// more than 2048 floats.
func padPlane(dst, src []float32, h, w, hq, wq, padTop, padLeft int) bool {
	nch := (wq + 15) / 16
	if !directAsm || padPlaneOff || nch > 128 || h <= 0 || w <= 0 || hq <= 0 || len(dst) < hq*wq || len(src) < h*w ||
		padTop < 0 || padLeft < 0 || padLeft+w > wq {
		return false
	}
	var masks [2 * 128]uint16
	for c := range nch {
		var ld, st uint16
		for l := range 16 {
			j := 16*c + l
			if j < wq {
				st |= 1 << l
			}
			if s := j - padLeft; s >= 0 && s < w && j < wq {
				ld |= 1 << l
			}
		}
		masks[2*c], masks[2*c+1] = ld, st
	}
	padPlaneAVX512(&dst[0], &src[0], h, w, hq, wq, padTop, padLeft, &masks[0], nch)
	return true
}

// padPlaneS2 sets dst (hq rows of wq floats) to the stride-2 phase plane
// dst[i][j] = src[r0+2i][c0+2j] of the h x w plane src (0 outside it) with
// padPlaneS2AVX512, and reports true; false (dst untouched) without
// AVX-512 or for rows of more than 2048 floats.
func padPlaneS2(dst, src []float32, h, w, hq, wq, r0, c0 int) bool {
	nch := (wq + 15) / 16
	if !directAsm || padPlaneOff || nch > 128 || h <= 0 || w <= 0 || hq <= 0 || wq <= 0 || len(dst) < hq*wq || len(src) < h*w {
		return false
	}
	var masks [3 * 128]uint16
	for c := range nch {
		var ld1, ld2, st uint16
		for l := range 16 {
			if 16*c+l < wq {
				st |= 1 << l
			}
			if s := c0 + 32*c + l; s >= 0 && s < w {
				ld1 |= 1 << l
			}
			if s := c0 + 32*c + 16 + l; s >= 0 && s < w {
				ld2 |= 1 << l
			}
		}
		masks[3*c], masks[3*c+1], masks[3*c+2] = ld1, ld2, st
	}
	padPlaneS2AVX512(&dst[0], &src[0], h, w, hq, wq, r0, c0, &masks[0], nch)
	return true
}

//go:noescape
func padPlaneS2AVX512(dst, src *float32, h, w, hq, wq, r0, c0 int, masks *uint16, nch int)

//go:noescape
func padPlaneAVX512(dst, src *float32, h, w, hq, wq, padTop, padLeft int, masks *uint16, nch int)
