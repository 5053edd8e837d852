package cpu

// ToBlocked writes x, [n, c, hw] (NCHW with the plane flattened), into y,
// [n, Blocks(c), hw, Block], its pad lanes zero.
func ToBlocked(n, c, hw int, x, y []float32) {
	cb := Blocks(c)
	_ = x[n*c*hw-1]
	_ = y[n*cb*hw*Block-1]
	for i := 0; i < n; i++ {
		for b := 0; b < cb; b++ {
			dst := y[(i*cb+b)*hw*Block : (i*cb+b+1)*hw*Block]
			for l := 0; l < Block; l++ {
				ch := b*Block + l
				if ch >= c {
					for p := 0; p < hw; p++ {
						dst[p*Block+l] = 0
					}
					continue
				}
				src := x[(i*c+ch)*hw : (i*c+ch+1)*hw]
				for p, v := range src {
					dst[p*Block+l] = v
				}
			}
		}
	}
}

// FromBlocked writes x, [n, Blocks(c), hw, Block], into y, [n, c, hw],
// dropping the pad lanes.
func FromBlocked(n, c, hw int, x, y []float32) {
	cb := Blocks(c)
	_ = x[n*cb*hw*Block-1]
	_ = y[n*c*hw-1]
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			b, l := ch/Block, ch%Block
			src := x[(i*cb+b)*hw*Block : (i*cb+b+1)*hw*Block]
			dst := y[(i*c+ch)*hw : (i*c+ch+1)*hw]
			for p := range dst {
				dst[p] = src[p*Block+l]
			}
		}
	}
}
