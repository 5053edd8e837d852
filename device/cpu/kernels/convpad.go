package kernels

// padSmallOff makes padPlane copy rows of up to 3 chunks with
// padPlaneAVX512, not padPlaneSmallAVX512 (benchmarks compare).
var padSmallOff bool

// padPairOff makes directInput copy the two column phases of a stride-2
// row phase with a padPlaneS2 call each, reading every source row twice,
// instead of with one padPlaneS2x2 call (tests and benchmarks compare).
var padPairOff bool

// padMasks holds the per-chunk masks of padPlane (load, store) or
// padPlaneS2 (two loads, store) for one row geometry, made on first use
// and kept while the geometry stays: directInput keeps one per phase
// column for each range of planes it copies.
type padMasks struct {
	wq, c0, w, stride int
	nch               int
	m                 [3 * 128]uint16
}

// set makes the masks of a padded row of wq floats whose column j reads
// source column c0 + stride*j of a row of w floats (stride 1 or 2), unless
// they are made already; false when a row has more than 128 chunks.
func (pm *padMasks) set(wq, c0, w, stride int) bool {
	nch := (wq + 15) / 16
	if nch > 128 || nch <= 0 {
		return false
	}
	if pm.nch == nch && pm.wq == wq && pm.c0 == c0 && pm.w == w && pm.stride == stride {
		return true
	}
	pm.wq, pm.c0, pm.w, pm.stride, pm.nch = wq, c0, w, stride, nch
	in := func(s int) bool { return s >= 0 && s < w }
	for c := range nch {
		var ld1, ld2, st uint16
		for l := range 16 {
			j := 16*c + l
			if j < wq {
				st |= 1 << l
			}
			if stride == 1 {
				if j < wq && in(c0+j) {
					ld1 |= 1 << l
				}
				continue
			}
			if in(c0 + 32*c + l) {
				ld1 |= 1 << l
			}
			if in(c0 + 32*c + 16 + l) {
				ld2 |= 1 << l
			}
		}
		if stride == 1 {
			pm.m[2*c], pm.m[2*c+1] = ld1, st
		} else {
			pm.m[3*c], pm.m[3*c+1], pm.m[3*c+2] = ld1, ld2, st
		}
	}
	return true
}
