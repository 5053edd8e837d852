package kernels

import "github.com/kilnai/kiln/device/cpu"

// DirectConv returns the direct convolution of p with the weights w
// packed once, as the "direct" tactic runs it, or nil when it does not
// apply (for the benchmarks of package nn_test).
func DirectConv(p cpu.Conv2DParams, w []float32) func(x, bias, y []float32) {
	if !directApplies(p) {
		return nil
	}
	f := newDirectFilter(w, p.M, p.C, p.KH, p.KW)
	return func(x, bias, y []float32) { convDirect(p, x, f, bias, y, nil, nil) }
}

// SetDirectWide makes the direct convolution always use its wide scratch
// layout (on) or choose by cost (off), for the benchmarks.
func SetDirectWide(on bool) {
	directLayout = layoutAuto
	if on {
		directLayout = layoutWide
	}
}

// WinoConv returns the Winograd F(4x4, 3x3) convolution of p with the
// weights w transformed once, as the "winograd4x4-direct" tactic runs it,
// or nil when it does not apply (for the benchmarks of package nn_test).
func WinoConv(p cpu.Conv2DParams, w []float32, cl bool) func(x, bias, y []float32) {
	if !winoApplies(p) || cl && p.M < 32 {
		return nil
	}
	f := newWinoFilter(w, p.M, p.C, cl)
	return func(x, bias, y []float32) { convWino(p, x, f, bias, y, nil, nil) }
}

// CLConv returns the channels-as-lanes direct convolution of p with the
// weights w packed once, as the "direct-cl" tactic runs it, or nil when it
// does not apply (for the benchmarks of package nn_test).
func CLConv(p cpu.Conv2DParams, w []float32) func(x, bias, y []float32) {
	if !clApplies(p) {
		return nil
	}
	f := newCLFilter(w, p.M, p.C, p.KH, p.KW)
	return func(x, bias, y []float32) { convCL(p, x, f, bias, y, nil, nil) }
}

// SetDirectLayout makes the direct convolution lay its tiles out by
// rows, wide rows or vectors (directVecLayout), or choose by cost ("").
func SetDirectLayout(name string) {
	switch name {
	case "rows":
		directLayout = layoutRows
	case "wide":
		directLayout = layoutWide
	case "vecs":
		directLayout = layoutVecs
	default:
		directLayout = layoutAuto
	}
}

// SetDirectRowVecs turns directRowVecs on (the default) or off, for the
// benchmarks.
func SetDirectRowVecs(on bool) { directRowVecOff = !on }
