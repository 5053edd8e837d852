package kernels

// addClampGo is addClamp in Go.
func addClampGo(dst, a, z []float32, lo, hi float32, clamp bool) {
	a, z = a[:len(dst)], z[:len(dst)]
	for i := range dst {
		v := a[i] + z[i]
		if clamp {
			v = min(max(v, lo), hi)
		}
		dst[i] = v
	}
}
