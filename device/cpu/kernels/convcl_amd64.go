//go:build amd64 && !purego

package kernels

//go:generate go run gen_convcl_amd64.go

// convCLAVX512 is the kernel of convCL (see gen_convcl_amd64.go for what
// it computes).
//
//go:noescape
func convCLAVX512(k int, w, src *float32, offs *int32, pos *[6]int32, y *float32, ypos *[6]int32, ys int, bias *float32, lo, hi float32, clamp bool, masks *[4]uint16, npos int)

// convCLTile computes one tile: see convCLTileGo. The caller checks that
// src holds every offset it reads and y every offset it writes.
func convCLTile(k int, w, src []float32, offs []int32, pos *[6]int32, y []float32, ypos *[6]int32, ys int, bias []float32, lo, hi float32, clamp bool, masks *[4]uint16, npos int) {
	_ = w[k*clNV-1]
	_ = offs[k-1]
	_ = bias[clNV-1]
	if clKernelGo || !directAsm {
		convCLTileGo(k, w, src, offs, pos, y, ypos, ys, bias, lo, hi, clamp, masks, npos)
		return
	}
	convCLAVX512(k, &w[0], &src[0], &offs[0], pos, &y[0], ypos, 4*ys, &bias[0], lo, hi, clamp, masks, npos)
}

// clKernelGo makes convCL use convCLTileGo (tests compare the two).
var clKernelGo bool
