package cpu

import "fmt"

// ConvAlgo names one implementation of a 2-D convolution. Conv2D picks one
// by shape; Conv2DWith runs the one asked for, so that a builder can time
// each on the shapes it builds for and keep the fastest.
type ConvAlgo string

// The convolution algorithms.
const (
	// ConvIm2col builds im2col tiles (x itself for 1x1 stride-1
	// convolutions) and multiplies them with the packed GEMM. It computes
	// every convolution.
	ConvIm2col ConvAlgo = "im2col"
	// ConvImplicit is an implicit GEMM over a zero-padded copy of the
	// input, without an im2col matrix: stride 1, kernels larger than 1x1,
	// at least two input channels per group.
	ConvImplicit ConvAlgo = "implicit"
	// ConvDepthwise is the direct kernel of convolutions with one input
	// channel per group (C == Group).
	ConvDepthwise ConvAlgo = "depthwise"
	// ConvDepthwiseDirect is the AVX-512 depthwise kernel that reads the
	// input planes in place, the pads being masked lanes: 3x3 taps, one
	// output channel per input channel, stride 1 with an output of the
	// input's size or stride 2 (ConvDepthwise where there is no AVX-512).
	ConvDepthwiseDirect ConvAlgo = "depthwise-direct"
	// ConvWinograd2 is Winograd's F(2x2, 3x3): 3x3 kernels, stride and
	// dilation 1, at least two input channels per group.
	ConvWinograd2 ConvAlgo = "winograd2x2"
	// ConvWinograd4 is Winograd's F(4x4, 3x3), for the same convolutions as
	// ConvWinograd2, with fewer multiplications and a little more rounding.
	ConvWinograd4 ConvAlgo = "winograd4x4"
)

// AllConvAlgos lists every algorithm, applicable or not.
func AllConvAlgos() []ConvAlgo {
	return []ConvAlgo{ConvIm2col, ConvImplicit, ConvDepthwise, ConvDepthwiseDirect, ConvWinograd2, ConvWinograd4}
}

// ConvAlgoFor returns the algorithm Conv2D uses for p.
func ConvAlgoFor(p Conv2DParams) ConvAlgo {
	switch {
	case p.C/p.Group == 1 && dwDirectOK(p) && dwDirectAsm():
		return ConvDepthwiseDirect
	case p.C/p.Group == 1:
		return ConvDepthwise
	case implicitOK(p):
		return ConvImplicit
	}
	return ConvIm2col
}

// ConvAlgoApplies reports whether algorithm a can compute p (p itself
// being valid).
func ConvAlgoApplies(a ConvAlgo, p Conv2DParams) bool {
	cg := p.C / p.Group
	switch a {
	case ConvIm2col:
		return true
	case ConvDepthwise:
		return cg == 1
	case ConvDepthwiseDirect:
		return dwDirectOK(p)
	case ConvImplicit:
		return cg >= 2 && p.StrideH == 1 && p.StrideW == 1 && p.KH*p.KW > 1
	case ConvWinograd2, ConvWinograd4:
		return winogradOK(p)
	}
	return false
}

// ConvAlgos returns the algorithms that can compute p, the one Conv2D picks
// first; nil if p is not valid.
func ConvAlgos(p Conv2DParams) []ConvAlgo {
	if p.Validate() != nil {
		return nil
	}
	def := ConvAlgoFor(p)
	out := []ConvAlgo{def}
	for _, a := range AllConvAlgos() {
		if a != def && ConvAlgoApplies(a, p) {
			out = append(out, a)
		}
	}
	return out
}

// Conv2DWith is Conv2D computed with algorithm a. It panics, as Conv2D
// does, if p is not valid or a slice is too short, and if a cannot compute
// p (see ConvAlgoApplies). For the Winograd algorithms it transforms the
// weights on every call; Conv2DWinograd reuses a transformed filter.
func Conv2DWith(a ConvAlgo, p Conv2DParams, x, w, bias, y []float32) {
	checkConv(p, x, w, bias, y)
	if !ConvAlgoApplies(a, p) {
		panic(fmt.Sprintf("cpu: Conv2DWith: algorithm %q does not apply to %+v", a, p))
	}
	switch a {
	case ConvDepthwise:
		depthwise(p, x, w, bias, y)
	case ConvDepthwiseDirect:
		dwDirect(p, x, w, bias, y)
	case ConvImplicit:
		convImplicit(p, x, w, bias, y)
	case ConvWinograd2, ConvWinograd4:
		f, err := NewWinogradFilter(a, p, w)
		if err != nil {
			panic(err)
		}
		winograd(p, x, f, bias, y)
	default:
		convGemm(p, x, w, bias, y)
	}
}

// Conv2DBlocked is Conv2D computed with ConvIm2col and the GEMM cache
// blocking bl. It panics as Conv2D does, and if bl is not valid.
func Conv2DBlocked(bl Blocking, p Conv2DParams, x, w, bias, y []float32) {
	checkConv(p, x, w, bias, y)
	if err := bl.Validate(); err != nil {
		panic(err)
	}
	convGemmBlocked(p, bl, x, w, bias, y)
}

// checkConv panics unless p is valid and the slices are long enough.
func checkConv(p Conv2DParams, x, w, bias, y []float32) {
	checkConvIO(p, x, bias, y)
	needLen("w", w, p.M*(p.C/p.Group)*p.KH*p.KW)
}

// checkConvIO is checkConv without the weights.
func checkConvIO(p Conv2DParams, x, bias, y []float32) {
	if err := p.Validate(); err != nil {
		panic(err)
	}
	needLen("x", x, p.N*p.C*p.H*p.W)
	needLen("y", y, p.N*p.M*p.OutH()*p.OutW())
	if bias != nil {
		needLen("bias", bias, p.M)
	}
}

func needLen(name string, s []float32, n int) {
	if len(s) < n {
		panic(fmt.Sprintf("cpu: Conv2D: len(%s) = %d < %d", name, len(s), n))
	}
}
