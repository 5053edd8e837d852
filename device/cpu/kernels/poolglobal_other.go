//go:build !amd64 || purego

package kernels

func planeSums(y, x []float32, size int) { planeSumsGo(y, x, size) }

func planeMax(y, x []float32, size int) { planeMaxGo(y, x, size) }
