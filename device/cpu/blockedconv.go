package cpu

// blockedDense is BlockedConv2D for group 1 (blocked or NCHW input).
func blockedDense(f *BlockedFilter, x, bias, z, y []float32) {
	blockedConvRef(f, x, bias, z, y)
}
