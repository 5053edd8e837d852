//go:build !amd64 || purego

package image

const up2Asm = false

func up2x2(dst, src []uint32, w int) { up2x2Go(dst, src, w) }
