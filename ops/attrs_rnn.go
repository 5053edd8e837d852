package ops

import (
	"slices"

	"github.com/kilnai/kiln/ir"
)

// RNNAttrs are the attributes of RNN, GRU and LSTM (ops/nn), read by the
// CPU kernel and the CUDA kernel alike (see Def.Attrs).
type RNNAttrs struct {
	// HiddenSize is "hidden_size" (0 when absent: taken from the weights),
	// not negative.
	HiddenSize int64
	// Directions is 2 for "direction" "bidirectional", else 1.
	Directions int
	// Reverse is set for "direction" "reverse" ("forward" by default).
	Reverse bool
	// Layout is "layout" (from opset 14; 0 by default, 0 or 1): 1 puts
	// the batch first in X, Y, the initial and the last states.
	Layout int64
	// Clip is "clip" (0 when absent: no clipping), positive when given.
	Clip float32
	// Activations is "activations", one per activation function (RNN 1,
	// GRU 2, LSTM 3) and direction, the first direction's list repeated
	// for the second when it gives one direction's; the defaults (RNN
	// Tanh, GRU Sigmoid and Tanh, LSTM Sigmoid, Tanh and Tanh) when
	// absent. Names are as given: the kernels check them (case aside).
	Activations []string
	// ActivationAlpha and ActivationBeta are "activation_alpha" and
	// "activation_beta" (nil when absent): in order, the parameters of
	// the activations that take them; an activation past their end takes
	// ONNX's default.
	ActivationAlpha, ActivationBeta []float32
	// LinearBeforeReset is GRU's "linear_before_reset" (0 by default; any
	// other value is 1).
	LinearBeforeReset bool
	// InputForget is LSTM's "input_forget" (0 by default; any other value
	// is 1).
	InputForget bool
}

// RNNActivations returns the default activations of one direction of an
// RNN, GRU or LSTM node (their number is the op's activation count).
func RNNActivations(op string) []string {
	switch op {
	case "RNN":
		return []string{"Tanh"}
	case "GRU":
		return []string{"Sigmoid", "Tanh"}
	}
	return []string{"Sigmoid", "Tanh", "Tanh"}
}

// ParseRNNAttrs reads an RNN, GRU or LSTM node's attributes.
func ParseRNNAttrs(n *ir.Node, opset int64) (RNNAttrs, error) {
	a := AttrsOf(n)
	r := RNNAttrs{Directions: 1}
	def := RNNActivations(n.OpType)
	switch n.OpType {
	case "GRU":
		r.LinearBeforeReset = a.Int("linear_before_reset", 0) != 0
	case "LSTM":
		r.InputForget = a.Int("input_forget", 0) != 0
	}
	if r.HiddenSize = a.Int("hidden_size", 0); r.HiddenSize < 0 {
		a.Fail("hidden_size", "must be positive, got %d", r.HiddenSize)
	}
	switch d := a.String("direction", "forward"); d {
	case "forward":
	case "reverse":
		r.Reverse = true
	case "bidirectional":
		r.Directions = 2
	default:
		a.Fail("direction", "unsupported value %q", d)
	}
	if opset >= 14 {
		if r.Layout = a.Int("layout", 0); r.Layout != 0 && r.Layout != 1 {
			a.Fail("layout", "must be 0 or 1, got %d", r.Layout)
		}
	}
	if a.Has("clip") {
		if r.Clip = a.Float("clip", 0); r.Clip <= 0 {
			a.Fail("clip", "must be positive, got %g", r.Clip)
		}
	}
	names := slices.Clone(a.Strings("activations", nil))
	switch {
	case names == nil:
		for range r.Directions {
			names = append(names, def...)
		}
	case len(names) == len(def) && r.Directions == 2:
		names = append(names, names...)
	case len(names) != len(def)*r.Directions:
		a.Fail("activations", "%v: want %d for %d direction(s)", names, len(def)*r.Directions, r.Directions)
	}
	r.Activations = names
	r.ActivationAlpha = slices.Clone(a.Floats("activation_alpha", nil))
	r.ActivationBeta = slices.Clone(a.Floats("activation_beta", nil))
	return r, a.Err()
}
