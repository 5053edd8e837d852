//go:build !amd64 || purego

package nn

// poolS2 is not reached without the assembly (poolS2Planes needs poolAsm).
func poolS2(y, x []float32, p *poolS2Plan, planes int) { panic("nn: poolS2 without AVX-512") }
