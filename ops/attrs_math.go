package ops

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// Typed attributes of the elementwise math ops (ops/math), read by the CPU
// kernels and the CUDA kernels alike (see Def.Attrs).

// ActivationAttrs are the attributes of the activations that have some:
// LeakyRelu, Elu, Selu, Celu, ThresholdedRelu, HardSigmoid, HardSwish
// (none), Gelu and Shrink. A field the op does not have is zero.
type ActivationAttrs struct {
	// Alpha is "alpha": LeakyRelu 0.01, Elu 1, Selu 1.67326..., Celu 1
	// (not 0), ThresholdedRelu 1, HardSigmoid 0.2 by default.
	Alpha float32
	// Beta is HardSigmoid's "beta" (0.5 by default).
	Beta float32
	// Gamma is Selu's "gamma" (1.05070... by default).
	Gamma float32
	// Tanh is Gelu's "approximate" "tanh" (the default "none" is the erf
	// form).
	Tanh bool
	// Bias and Lambd are Shrink's "bias" (0) and "lambd" (0.5).
	Bias, Lambd float32
}

// ParseActivationAttrs reads the attributes of an activation node (see
// ActivationAttrs); kiln's fused Gelu reads as Gelu.
func ParseActivationAttrs(n *ir.Node, opset int64) (ActivationAttrs, error) {
	a := AttrsOf(n)
	var r ActivationAttrs
	switch n.OpType {
	case "LeakyRelu":
		r.Alpha = a.Float("alpha", 0.01)
	case "Elu", "ThresholdedRelu":
		r.Alpha = a.Float("alpha", 1)
	case "Selu":
		r.Alpha = a.Float("alpha", 1.67326319217681884765625)
		r.Gamma = a.Float("gamma", 1.05070102214813232421875)
	case "Celu":
		r.Alpha = a.Float("alpha", 1)
		if r.Alpha == 0 {
			a.Fail("alpha", "must not be 0")
		}
	case "HardSigmoid":
		r.Alpha, r.Beta = a.Float("alpha", 0.2), a.Float("beta", 0.5)
	case "Gelu":
		r.Tanh = a.OneOf("approximate", a.String("approximate", "none"), "none", "tanh") == "tanh"
	case "Shrink":
		r.Bias, r.Lambd = a.Float("bias", 0), a.Float("lambd", 0.5)
	}
	return r, a.Err()
}

// ClipAttrs are Clip's attributes.
type ClipAttrs struct {
	// FromAttrs is set before opset 11, where the bounds are the
	// attributes Min and Max; from opset 11 they are inputs 1 and 2.
	FromAttrs bool
	// Min and Max are "min" and "max" before opset 11 (-inf and +inf by
	// default); -inf and +inf from opset 11.
	Min, Max float32
}

// ParseClipAttrs reads a Clip node's attributes.
func ParseClipAttrs(n *ir.Node, opset int64) (ClipAttrs, error) {
	c := ClipAttrs{Min: float32(math.Inf(-1)), Max: float32(math.Inf(1))}
	if opset >= 11 {
		return c, nil
	}
	a := AttrsOf(n)
	c.FromAttrs = true
	c.Min, c.Max = a.Float("min", c.Min), a.Float("max", c.Max)
	return c, a.Err()
}

// ModAttrs are Mod's attributes.
type ModAttrs struct {
	// Fmod is "fmod" 1 (0 by default; 0 or 1): the remainder takes the
	// dividend's sign (C fmod), else the divisor's.
	Fmod bool
}

// ParseModAttrs reads a Mod node's attributes.
func ParseModAttrs(n *ir.Node, opset int64) (ModAttrs, error) {
	a := AttrsOf(n)
	f := a.Int("fmod", 0)
	if f != 0 && f != 1 {
		a.Fail("fmod", "must be 0 or 1, got %d", f)
	}
	return ModAttrs{Fmod: f == 1}, a.Err()
}

// BitShiftAttrs are BitShift's attributes.
type BitShiftAttrs struct {
	// Right is "direction" (required) "RIGHT"; "LEFT" leaves it false.
	Right bool
}

// ParseBitShiftAttrs reads a BitShift node's attributes.
func ParseBitShiftAttrs(n *ir.Node, opset int64) (BitShiftAttrs, error) {
	a := AttrsOf(n)
	d := a.OneOf("direction", a.String("direction", ""), "LEFT", "RIGHT")
	return BitShiftAttrs{Right: d == "RIGHT"}, a.Err()
}

// IsInfAttrs are IsInf's attributes.
type IsInfAttrs struct {
	// DetectPositive and DetectNegative are "detect_positive" and
	// "detect_negative" (1 by default) not 0.
	DetectPositive, DetectNegative bool
}

// ParseIsInfAttrs reads an IsInf node's attributes.
func ParseIsInfAttrs(n *ir.Node, opset int64) (IsInfAttrs, error) {
	a := AttrsOf(n)
	r := IsInfAttrs{DetectPositive: a.Int("detect_positive", 1) != 0, DetectNegative: a.Int("detect_negative", 1) != 0}
	return r, a.Err()
}

// CastAttrs are Cast's attributes.
type CastAttrs struct {
	// To is "to" (required), the element type of the output.
	To tensor.DType
}

// ParseCastAttrs reads a Cast node's attributes. Which types a device
// converts to is the device's to say.
func ParseCastAttrs(n *ir.Node, opset int64) (CastAttrs, error) {
	a := AttrsOf(n)
	if !a.Has("to") {
		a.Fail("to", "Cast needs it")
	}
	return CastAttrs{To: tensor.DType(a.Int("to", 0))}, a.Err()
}

// DropoutAttrs are Dropout's attributes.
type DropoutAttrs struct {
	// Ratio is "ratio" before opset 12 (0.5 by default; ignored there:
	// inference is the identity); from 12 the ratio is input 1.
	Ratio float32
	// Seed is "seed" (from opset 12) when given, else nil.
	Seed *int64
}

// ParseDropoutAttrs reads a Dropout node's attributes.
func ParseDropoutAttrs(n *ir.Node, opset int64) (DropoutAttrs, error) {
	a := AttrsOf(n)
	d := DropoutAttrs{Ratio: a.Float("ratio", 0.5)}
	if a.Has("seed") {
		s := a.Int("seed", 0)
		d.Seed = &s
	}
	return d, a.Err()
}

// BroadcastAttrs are the broadcasting attributes of the binary
// elementwise ops before opset 7 (Add, Sub, Mul, Div, Pow, And, Or, Xor,
// Equal, Less, Greater): "broadcast" 1 with "axis" lines the second input
// up with the first from that axis. From opset 7 broadcasting is
// multidirectional and they are not read.
type BroadcastAttrs struct {
	// Legacy is set before opset 7 when "broadcast" is 1 and "axis" is
	// given; without an axis the second input lines up with the first's
	// trailing dimensions, as multidirectional broadcasting does.
	Legacy bool
	// Axis is "axis" (possibly negative) when Legacy.
	Axis int64
}

// ParseBroadcastAttrs reads the broadcasting attributes of a binary
// elementwise node.
func ParseBroadcastAttrs(n *ir.Node, opset int64) (BroadcastAttrs, error) {
	if opset >= 7 {
		return BroadcastAttrs{}, nil
	}
	a := AttrsOf(n)
	if a.Int("broadcast", 0) != 1 || !a.Has("axis") {
		return BroadcastAttrs{}, a.Err()
	}
	return BroadcastAttrs{Legacy: true, Axis: a.Int("axis", 0)}, a.Err()
}
