package cpu

// BlockedPoolRowGo sets, for each of n outputs j (the Block lanes at
// dst[Block*j:]), the max of (or, when avg, scale times the sum of) the
// kh x kw Block-lane vectors at src[j*sx + a*rs + b*cs:], a < kh, b < kw
// (kh, kw >= 1): the row kernel of the blocked pools in Go, the oracle of
// BlockedPoolRow.
func BlockedPoolRowGo(dst, src []float32, n, kh, kw, sx, rs, cs int, avg bool, scale float32) {
	type vec = [Block]float32
	at := func(v []float32, o int) *vec { return (*vec)(v[o : o+Block]) }
	for j := range n {
		base := j * sx
		var acc vec
		if !avg {
			acc = *at(src, base)
		}
		for a := range kh {
			for b := range kw {
				v := at(src, base+a*rs+b*cs)
				if avg {
					for l := range acc {
						acc[l] += v[l]
					}
					continue
				}
				for l := range acc {
					acc[l] = max(acc[l], v[l])
				}
			}
		}
		if avg {
			for l := range acc {
				acc[l] *= scale
			}
		}
		*at(dst, j*Block) = acc
	}
}
