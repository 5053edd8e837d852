package kernels

import "github.com/kilnai/kiln/device/cpu"

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

// DirectConvResidual returns the direct convolution of p with the weights
// w packed once and the residual z added before a ReLU, as the "direct"
// tactic runs a FusedConv with a residual input; with pass, the residual
// and the ReLU in a pass after the kernels instead of in them (for the
// benchmarks).
func DirectConvResidual(p cpu.Conv2DParams, w []float32, pass bool) func(x, bias, z, y []float32) {
	if !directApplies(p) {
		return nil
	}
	f := newDirectFilter(w, p.M, p.C, p.KH, p.KW)
	ep := &epilogue{act: actRelu}
	return func(x, bias, z, y []float32) {
		directZPass = pass
		convDirect(p, x, f, bias, y, z, ep)
		directZPass = false
	}
}

// SetCLOrder makes the channels-as-lanes convolution visit its (group,
// block) items group by group ("tile"), block by block ("block") or as
// clBlockOuter chooses (anything else), for the benchmarks.
func SetCLOrder(order string) {
	switch order {
	case "tile":
		clOrder = orderTile
	case "block":
		clOrder = orderBlock
	default:
		clOrder = orderAuto
	}
}
