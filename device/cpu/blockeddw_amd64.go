//go:build amd64 && !purego

package cpu

// bdwAsmOK reports whether bdwRow3x3 runs p.
func bdwAsmOK(p *Conv2DParams) bool { return false }

// bdwRow3x3 computes output row i like bdwRowGo.
func bdwRow3x3(p *Conv2DParams, xs, ws []float32, v *bdwVecs, zs, ys []float32, i int) {
	bdwRowGo(p, xs, ws, v, zs, ys, i)
}
