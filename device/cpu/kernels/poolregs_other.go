//go:build !amd64 || purego

package kernels

// poolRegRun is not reached without the assembly (poolRegPlanes needs
// poolAsm).
func poolRegRun(y, x []float32, p *poolRegPlan, planes int) { panic("nn: poolRegRun without AVX-512") }
