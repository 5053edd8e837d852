package cpu

// blockedDepthwise is BlockedConv2D for a depthwise filter (Group == C == M).
func blockedDepthwise(f *BlockedFilter, x, bias, z, y []float32) {
	blockedConvRef(f, x, bias, z, y)
}
