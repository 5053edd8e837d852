//go:build !amd64 || purego

package cpu

// winoRowsAsm has no assembly to run here: it does nothing.
func winoRowsAsm(coef []float32, ns, nd int, src, dst *rows) int { return 0 }

func winoGather(d, src []float32, base []int32, off int) { winoGatherGo(d, src, base, off) }

func winoScatter(dst, s []float32, obase []int32, off int, b, lo, hi float32) {
	winoScatterGo(dst, s, obase, off, b, lo, hi)
}
