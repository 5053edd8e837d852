//go:build !amd64 || purego

package kernels

// Without assembly convCL is not offered (clApplies); the Go tile is what
// the tests compare.

func convCLTile(k int, w, src []float32, offs []int32, pos *[6]int32, y []float32, ypos *[6]int32, ys int, bias []float32, lo, hi float32, clamp bool, masks *[4]uint16, npos int) {
	convCLTileGo(k, w, src, offs, pos, y, ypos, ys, bias, lo, hi, clamp, masks, npos)
}

var clKernelGo = true
