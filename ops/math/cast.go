package math

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// cast is ONNX Cast (to from an attribute) and CastLike (to from the second
// input's type). Numbers convert as numpy's astype does; conversion to
// bfloat16 truncates, as the ONNX backend tests expect; strings format
// floats the way numpy prints them and parse with strconv ("NaN", "INF",
// "-inf" included).
type cast struct {
	name string
	to   tensor.DType // Cast; Undefined for CastLike
}

func castable(dt tensor.DType) bool {
	return dt == tensor.String || dt == tensor.Bool || numericTypes.has(dt)
}

func (k *cast) Infer(in []*ir.Value) ([]ir.Type, error) {
	n := 1
	if k.to == tensor.Undefined {
		n = 2
	}
	if err := checkInputs(k.name, in, n, n); err != nil {
		return nil, err
	}
	if dt := in[0].Type.DType; dt != tensor.Undefined && !castable(dt) {
		return nil, badType(k.name, dt)
	}
	to := k.to
	if n == 2 {
		to = in[1].Type.DType
	}
	return []ir.Type{{DType: to, Shape: in[0].Type.Shape.Clone()}}, nil
}

// ShapeValue lets shape computations that cast between integer types keep
// their symbolic dims.
func (k *cast) ShapeValue(in []*ir.Value) []ir.Dim {
	to := k.to
	if to == tensor.Undefined && len(in) > 1 && in[1] != nil {
		to = in[1].Type.DType
	}
	if len(in) == 0 || in[0] == nil || (to != tensor.Int64 && to != tensor.Int32) {
		return nil
	}
	return in[0].ShapeValue
}

func (k *cast) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	n := 1
	if k.to == tensor.Undefined {
		n = 2
	}
	if err := checkTensors(k.name, in, n, n); err != nil {
		return nil, err
	}
	to := k.to
	if n == 2 {
		to = in[1].DType
	}
	x := in[0]
	if !castable(x.DType) {
		return nil, badType(k.name, x.DType)
	}
	if !castable(to) {
		return nil, fmt.Errorf("%w: %s to %v", ops.ErrBadInput, k.name, to)
	}
	if x.DType == to {
		return env.One(x), nil
	}
	out, err := ops.NewOutput(env, to, x.Shape)
	if err != nil {
		return nil, err
	}
	switch {
	case x.DType == tensor.String:
		if err := parseStrings(x.Strings[:x.Len()], out); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ops.ErrBadInput, k.name, err)
		}
	case to == tensor.String:
		formatStrings(x, out.Strings)
	case to == tensor.BFloat16:
		truncBF16(numbers[float32](x), elems[uint16](out))
	default:
		castNumbers(x, out)
	}
	return env.One(out), nil
}

// castNumbers converts between numeric and bool tensors.
func castNumbers(x, out *tensor.Tensor) {
	switch x.DType {
	case tensor.Float64:
		store(out, elems[float64](x)[:x.Len()])
	case tensor.Float32:
		store(out, elems[float32](x)[:x.Len()])
	case tensor.Float16, tensor.BFloat16:
		store(out, halfToF32(x))
	case tensor.Int8:
		store(out, elems[int8](x)[:x.Len()])
	case tensor.Int16:
		store(out, elems[int16](x)[:x.Len()])
	case tensor.Int32:
		store(out, elems[int32](x)[:x.Len()])
	case tensor.Int64:
		store(out, elems[int64](x)[:x.Len()])
	case tensor.Uint8:
		store(out, elems[uint8](x)[:x.Len()])
	case tensor.Uint16:
		store(out, elems[uint16](x)[:x.Len()])
	case tensor.Uint32:
		store(out, elems[uint32](x)[:x.Len()])
	case tensor.Uint64:
		store(out, elems[uint64](x)[:x.Len()])
	case tensor.Bool:
		store(out, numbers[uint8](x))
	}
}

// truncBF16 stores v as bfloat16 by dropping the low 16 bits of each
// float32 (NaNs stay NaN), which is what the ONNX backend tests of Cast to
// bfloat16 expect.
func truncBF16(v []float32, dst []uint16) {
	for i, f := range v {
		b := math.Float32bits(f)
		if f != f {
			b |= 0x00400000 // keep a quiet NaN after truncation
		}
		dst[i] = uint16(b >> 16)
	}
}

// parseStrings converts strings to the numeric or bool tensor out.
func parseStrings(s []string, out *tensor.Tensor) error {
	switch {
	case out.DType == tensor.Float32 || isHalf(out.DType):
		v := make([]float32, len(s))
		for i, x := range s {
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 32)
			if err != nil && !isRange(err) {
				return err
			}
			v[i] = float32(f)
		}
		store(out, v)
	case out.DType == tensor.Float64:
		v := elems[float64](out)
		for i, x := range s {
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil && !isRange(err) {
				return err
			}
			v[i] = f
		}
	case out.DType == tensor.Uint64:
		v := elems[uint64](out)
		for i, x := range s {
			u, err := strconv.ParseUint(strings.TrimSpace(x), 10, 64)
			if err != nil {
				f, ferr := strconv.ParseFloat(strings.TrimSpace(x), 64)
				if ferr != nil {
					return err
				}
				u = uint64(f)
			}
			v[i] = u
		}
	default: // signed and narrow integers, bool
		v := make([]int64, len(s))
		for i, x := range s {
			n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
			if err != nil {
				f, ferr := strconv.ParseFloat(strings.TrimSpace(x), 64)
				if ferr != nil {
					if out.DType == tensor.Bool {
						// numpy: a non-empty string is true
						if strings.TrimSpace(x) != "" {
							n = 1
						}
						v[i] = n
						continue
					}
					return err
				}
				n = truncInt(f)
			}
			v[i] = n
		}
		store(out, v)
	}
	return nil
}

func isRange(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// formatStrings writes the elements of x as numpy prints them.
func formatStrings(x *tensor.Tensor, dst []string) {
	n := x.Len()
	switch x.DType {
	case tensor.Float32:
		for i, v := range elems[float32](x)[:n] {
			dst[i] = formatFloat(float64(v), 32)
		}
	case tensor.Float64:
		for i, v := range elems[float64](x)[:n] {
			dst[i] = formatFloat(v, 64)
		}
	case tensor.Float16, tensor.BFloat16:
		for i, v := range halfToF32(x) {
			dst[i] = formatFloat(float64(v), int(x.DType))
		}
	case tensor.Bool:
		for i, v := range elems[uint8](x)[:n] {
			dst[i] = "False"
			if v != 0 {
				dst[i] = "True"
			}
		}
	case tensor.Uint64:
		for i, v := range elems[uint64](x)[:n] {
			dst[i] = strconv.FormatUint(v, 10)
		}
	default:
		for i, v := range numbers[int64](x) {
			dst[i] = strconv.FormatInt(v, 10)
		}
	}
}

// formatFloat formats v like numpy's str of a float scalar of the given
// kind (32, 64, or tensor.Float16/BFloat16): the shortest digits that
// round-trip in that type, positional for 1e-4 <= |v| < 1e16 (with ".0"
// for integers), scientific otherwise ("1e-05", "1.5e+16").
func formatFloat(v float64, kind int) string {
	switch {
	case math.IsNaN(v):
		return "nan"
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	}
	var m string // d.ddde±x
	switch kind {
	case 32, 64:
		m = strconv.FormatFloat(v, 'e', -1, kind)
	default:
		m = shortestHalf(v, tensor.DType(kind))
	}
	neg := strings.HasPrefix(m, "-")
	m = strings.TrimPrefix(m, "-")
	ei := strings.IndexByte(m, 'e')
	exp, _ := strconv.Atoi(m[ei+1:])
	digits := strings.Replace(m[:ei], ".", "", 1)
	sign := ""
	if neg {
		sign = "-"
	}
	if a := math.Abs(v); a != 0 && (a < 1e-4 || a >= 1e16) {
		s := digits[:1]
		if len(digits) > 1 {
			s += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es, exp = "-", -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, s, es, exp)
	}
	// positional: digits d1 d2 ... with the point after exp+1 digits
	point := exp + 1
	var s string
	switch {
	case point <= 0:
		s = "0." + strings.Repeat("0", -point) + digits
	case point >= len(digits):
		s = digits + strings.Repeat("0", point-len(digits)) + ".0"
	default:
		s = digits[:point] + "." + digits[point:]
	}
	return sign + s
}

// shortestHalf returns v (a float16 or bfloat16 value) in 'e' format with
// the fewest digits that round back to it in that type.
func shortestHalf(v float64, dt tensor.DType) string {
	back := func(f float64) uint16 {
		if dt == tensor.BFloat16 {
			return tensor.Float32ToBF16(toOddF32(f))
		}
		return tensor.Float32ToHalf(toOddF32(f))
	}
	want := back(v)
	for prec := 0; prec < 17; prec++ {
		s := strconv.FormatFloat(v, 'e', prec, 64)
		f, err := strconv.ParseFloat(s, 64)
		if err == nil && back(f) == want {
			return s
		}
	}
	return strconv.FormatFloat(v, 'e', -1, 64)
}

func init() {
	ops.Register(ops.Def{Type: "Cast", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseCastAttrs(n, opset) }, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseCastAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		to := a.To
		if !castable(to) {
			return nil, fmt.Errorf("%w %q: unsupported target type %v", ops.ErrBadAttr, "to", to)
		}
		return &cast{name: "Cast", to: to}, nil
	}, Traits: ops.MayViewInput0 | ops.HasFloat16 | ops.ElementwiseUnary})
	ops.Register(ops.Def{Type: "CastLike", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseCastLikeAttrs(n, opset) }, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		if _, err := ops.ParseCastLikeAttrs(n, opset); err != nil {
			return nil, err
		}
		return &cast{name: "CastLike"}, nil
	}, Traits: ops.MayViewInput0 | ops.HasFloat16})
}
