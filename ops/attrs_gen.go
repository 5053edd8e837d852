package ops

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// Typed attributes of the ops that make a tensor from their attributes
// (Constant, ConstantOfShape, the random generators, the window
// functions), Reshape's and CastLike's. Only the CPU kernels read them
// (no CUDA kernel implements these ops); they are typed so that a default
// or a rule lives in one place (see Def.Attrs).

// ConstantAttrs are Constant's attributes: exactly one of "value" (a
// tensor), "value_float", "value_floats", "value_int", "value_ints",
// "value_string", "value_strings" (from opset 12; read at any opset, as
// kiln always has) gives Value; "sparse_value" is refused.
type ConstantAttrs struct {
	// Value is the output, made from whichever attribute is set: a scalar
	// for value_float, value_int and value_string, 1-D for the lists.
	Value *tensor.Tensor
}

// constantValueAttrs are the attributes of which a Constant has exactly
// one, in the order kiln reads them.
var constantValueAttrs = []string{"value", "value_float", "value_floats", "value_int", "value_ints", "value_string", "value_strings", "sparse_value"}

// ParseConstantAttrs reads a Constant node's attributes.
func ParseConstantAttrs(n *ir.Node, opset int64) (ConstantAttrs, error) {
	a := AttrsOf(n)
	var set []string
	for _, name := range constantValueAttrs {
		if a.Has(name) {
			set = append(set, name)
		}
	}
	if len(set) == 0 {
		a.Fail("value", "Constant has no value attribute")
		return ConstantAttrs{}, a.Err()
	}
	if len(set) > 1 {
		a.Fail(set[1], "Constant has both %q and %q: it takes exactly one value attribute", set[0], set[1])
		return ConstantAttrs{}, a.Err()
	}
	var v *tensor.Tensor
	switch set[0] {
	case "value":
		v = a.Tensor("value")
		if v == nil && a.Err() == nil {
			a.Fail("value", "Constant value is empty")
		}
	case "value_float":
		v = tensor.FromFloat32([]float32{a.Float("value_float", 0)})
		v.Shape = []int{}
	case "value_floats":
		f := a.Floats("value_floats", nil)
		v = tensor.FromFloat32(f, len(f))
	case "value_int":
		v = tensor.FromInt64([]int64{a.Int("value_int", 0)})
		v.Shape = []int{}
	case "value_ints":
		f := a.Ints("value_ints", nil)
		v = tensor.FromInt64(f, len(f))
	case "value_string":
		v = &tensor.Tensor{DType: tensor.String, Shape: []int{}, Strings: []string{a.String("value_string", "")}}
	case "value_strings":
		s := a.Strings("value_strings", nil)
		v = &tensor.Tensor{DType: tensor.String, Shape: []int{len(s)}, Strings: s}
	case "sparse_value":
		a.Fail("sparse_value", "is not supported")
	}
	if a.Err() != nil {
		return ConstantAttrs{}, a.Err()
	}
	return ConstantAttrs{Value: v}, nil
}

// ConstantOfShapeAttrs are ConstantOfShape's attributes.
type ConstantOfShapeAttrs struct {
	// Value is "value", a tensor of one element (any shape) whose type and
	// value fill the output: float32 0 by default.
	Value *tensor.Tensor
}

// ParseConstantOfShapeAttrs reads a ConstantOfShape node's attributes.
func ParseConstantOfShapeAttrs(n *ir.Node, opset int64) (ConstantOfShapeAttrs, error) {
	a := AttrsOf(n)
	v := a.Tensor("value")
	if a.Err() != nil {
		return ConstantOfShapeAttrs{}, a.Err()
	}
	if v == nil {
		return ConstantOfShapeAttrs{Value: tensor.New(tensor.Float32)}, nil
	}
	if v.Len() != 1 || !holdsElements(v) {
		a.Fail("value", "must hold one element, has shape %v", v.Shape)
	}
	return ConstantOfShapeAttrs{Value: v}, a.Err()
}

// holdsElements reports whether t's storage holds the elements its shape
// and element type say.
func holdsElements(t *tensor.Tensor) bool {
	if tensor.CheckShape(t.Shape) != nil {
		return false
	}
	if t.DType == tensor.String {
		return len(t.Strings) >= t.Len()
	}
	return t.DType.Valid() && len(t.Data) >= t.Len()*t.DType.Size()
}

// ReshapeAttrs are Reshape's attributes.
type ReshapeAttrs struct {
	// AllowZero is "allowzero" not 0 (0 by default; read at every opset,
	// defined from opset 14): a 0 in the target shape is a dimension of
	// size 0, not a copy of the input's.
	AllowZero bool
	// FromAttrs is set before opset 5, where the target shape is the
	// required attribute "shape" (Shape); from opset 5 it is input 1.
	FromAttrs bool
	Shape     []int64
}

// ParseReshapeAttrs reads a Reshape node's attributes.
func ParseReshapeAttrs(n *ir.Node, opset int64) (ReshapeAttrs, error) {
	a := AttrsOf(n)
	r := ReshapeAttrs{AllowZero: a.Int("allowzero", 0) != 0}
	if opset < 5 {
		r.FromAttrs = true
		r.Shape = a.Ints("shape", nil)
		if r.Shape == nil {
			a.Fail("shape", "required attribute is missing")
		}
	}
	return r, a.Err()
}

// CastLikeAttrs are CastLike's attributes.
type CastLikeAttrs struct {
	// Saturate is "saturate" not 0 (from opset 19, 1 by default): how a
	// cast to a float8 type clamps. kiln has no float8 type, so no kernel
	// acts on it; it is read so that a mistyped value is refused.
	Saturate bool
}

// ParseCastLikeAttrs reads a CastLike node's attributes.
func ParseCastLikeAttrs(n *ir.Node, opset int64) (CastLikeAttrs, error) {
	if opset < 19 {
		return CastLikeAttrs{}, nil
	}
	a := AttrsOf(n)
	return CastLikeAttrs{Saturate: a.Int("saturate", 1) != 0}, a.Err()
}

// RandomAttrs are the attributes of the random generators: RandomNormal,
// RandomUniform, their *Like forms, Bernoulli and Multinomial. A field
// the op does not have is zero.
type RandomAttrs struct {
	// Mean and Scale are RandomNormal(Like)'s "mean" (0) and "scale" (1).
	Mean, Scale float32
	// Low and High are RandomUniform(Like)'s "low" (0) and "high" (1);
	// high below low is refused.
	Low, High float32
	// Seeded is set when "seed" is given; Seed is its value.
	Seeded bool
	Seed   float32
	// DType is "dtype": a float type for RandomNormal and RandomUniform
	// (float32 by default) and their *Like forms (Undefined by default:
	// the input's); any numeric or bool type for Bernoulli (Undefined by
	// default: the input's); int32 or int64 for Multinomial (int32 by
	// default).
	DType tensor.DType
	// Shape is RandomNormal's and RandomUniform's required "shape".
	Shape []int64
	// SampleSize is Multinomial's "sample_size" (1 by default, positive).
	SampleSize int64
}

// ParseRandomAttrs reads the attributes of a random generator node (see
// RandomAttrs).
func ParseRandomAttrs(n *ir.Node, opset int64) (RandomAttrs, error) {
	a := AttrsOf(n)
	var r RandomAttrs
	r.Seeded, r.Seed = a.Has("seed"), a.Float("seed", 0)
	floatDType := func(def tensor.DType) tensor.DType {
		if !a.Has("dtype") {
			return def
		}
		dt := tensor.DType(a.Int("dtype", 0))
		if !isFloat(dt) {
			a.Fail("dtype", "%d (%v) is not float16, float32, float64 or bfloat16", int64(dt), dt)
		}
		return dt
	}
	switch n.OpType {
	case "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike":
		like := n.OpType == "RandomNormalLike" || n.OpType == "RandomUniformLike"
		if n.OpType == "RandomNormal" || n.OpType == "RandomNormalLike" {
			r.Mean, r.Scale = a.Float("mean", 0), a.Float("scale", 1)
		} else {
			r.Low, r.High = a.Float("low", 0), a.Float("high", 1)
		}
		if like {
			r.DType = floatDType(tensor.Undefined)
		} else {
			r.DType = floatDType(tensor.Float32)
			r.Shape = readShape(a)
		}
		if a.Err() == nil && r.High < r.Low {
			a.Fail("high", "%g is below low %g", r.High, r.Low)
		}
	case "Bernoulli":
		if a.Has("dtype") {
			r.DType = tensor.DType(a.Int("dtype", 0))
			if !r.DType.Valid() || r.DType == tensor.String || r.DType == tensor.Complex64 || r.DType == tensor.Complex128 {
				a.Fail("dtype", "%d is not a numeric or bool type", int64(r.DType))
			}
		}
	case "Multinomial":
		r.DType = tensor.DType(a.Int("dtype", int64(tensor.Int32)))
		r.SampleSize = a.Int("sample_size", 1)
		if r.DType != tensor.Int32 && r.DType != tensor.Int64 {
			a.Fail("dtype", "%d (%v) is not int32 or int64", int64(r.DType), r.DType)
		}
		if r.SampleSize < 1 || r.SampleSize > tensor.MaxElements {
			a.Fail("sample_size", "%d must be positive", r.SampleSize)
		}
	}
	if a.Err() != nil {
		return RandomAttrs{}, a.Err()
	}
	return r, nil
}

// readShape reads RandomNormal's and RandomUniform's "shape": required,
// no negative dimension, within tensor.CheckShape's bounds.
func readShape(a *Attrs) []int64 {
	if !a.Has("shape") {
		a.Fail("shape", "required attribute is missing")
	}
	s := a.Ints("shape", nil)
	shape := make([]int, len(s))
	for i, d := range s {
		if d < 0 {
			a.Fail("shape", "has a negative dimension %d", d)
		}
		shape[i] = int(d)
	}
	if a.Err() == nil {
		if err := tensor.CheckShape(shape); err != nil {
			a.Fail("shape", "%v", err)
		}
	}
	return s
}

// WindowFnAttrs are the attributes of the window generators (opset 17):
// HannWindow, HammingWindow, BlackmanWindow and MelWeightMatrix.
type WindowFnAttrs struct {
	// DType is "output_datatype" (float32 by default), a numeric type.
	DType tensor.DType
	// Periodic is "periodic" not 0 (1 by default; the windows only).
	Periodic bool
}

// ParseWindowFnAttrs reads a window generator node's attributes.
func ParseWindowFnAttrs(n *ir.Node, opset int64) (WindowFnAttrs, error) {
	a := AttrsOf(n)
	var w WindowFnAttrs
	if n.OpType != "MelWeightMatrix" {
		w.Periodic = a.Int("periodic", 1) != 0
	}
	v := a.Int("output_datatype", int64(tensor.Float32))
	w.DType = tensor.DType(v)
	if !w.DType.IsFloat() && !w.DType.IsInt() {
		a.Fail("output_datatype", "unsupported value %d", v)
		w.DType = tensor.Float32
	}
	return w, a.Err()
}
