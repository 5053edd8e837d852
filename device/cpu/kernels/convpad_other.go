//go:build !amd64 || purego

package kernels

// padPlane reports false: directInput copies the plane row by row.
func padPlane(dst, src []float32, h, w, hq, wq, padTop, padLeft int, pm *padMasks) bool { return false }

// padPlaneS2 reports false: directInput gathers the phase plane row by row.
func padPlaneS2(dst, src []float32, h, w, hq, wq, r0, c0 int, pm *padMasks) bool { return false }

// padPlaneS2x2 reports false: directInput gathers the phase planes row by row.
func padPlaneS2x2(dst, src []float32, h, w, hq, wq, r0, c0, plane int, pm *padMasks) bool {
	return false
}

// padPlaneRows reports false: directInput copies the rows in Go.
func padPlaneRows(dst, src []float32, h, w, hq, wq, padTop, padLeft int, pm *padMasks) bool {
	return false
}
