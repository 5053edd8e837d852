package nn

// SetDirectOrder makes the direct convolution visit its (tile, weight
// block) items tile by tile ("tile"), block by block ("block") or as
// directBlockOuter chooses (anything else), for the benchmarks.
func SetDirectOrder(order string) {
	switch order {
	case "tile":
		directOrder = orderTile
	case "block":
		directOrder = orderBlock
	default:
		directOrder = orderAuto
	}
}
