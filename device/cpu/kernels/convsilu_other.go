//go:build !amd64 || purego

package kernels

import "github.com/kilnai/kiln/internal/fastmath"

// convSiLU sets dst[i] = src[i] * Sigmoid(src[i]) (fastmath.SiLU).
func convSiLU(dst, src []float32) { fastmath.SiLU(dst, src) }
