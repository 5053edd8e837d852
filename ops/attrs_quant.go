package ops

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// QuantAxisAttrs are the attributes of QuantizeLinear and DequantizeLinear
// (ops/nn), read by the CPU kernels and the CUDA kernels alike (see
// Def.Attrs).
type QuantAxisAttrs struct {
	// Axis is "axis" (1 by default), possibly negative: the axis of a
	// per-axis scale (ONNX defines it from opset 13; it is read at every
	// opset, as both devices always did).
	Axis int64
	// BlockSize is "block_size" (from opset 21; 0 by default, not
	// negative): blocks of that many elements along Axis share a scale.
	// Not read before opset 21.
	BlockSize int64
	// OutputDType is QuantizeLinear's "output_dtype" (from opset 21;
	// undefined by default: the zero point's type, else uint8): an
	// integer type of at most 16 bits.
	OutputDType tensor.DType
	// Saturate is QuantizeLinear's "saturate" (from opset 19; 1 by
	// default, any other value than 0 is 1): float8 outputs clamp to
	// their range. Its type is checked at every opset, as the CPU always
	// did.
	Saturate bool
}

// ParseQuantAxisAttrs reads a QuantizeLinear or DequantizeLinear node's
// attributes.
func ParseQuantAxisAttrs(n *ir.Node, opset int64) (QuantAxisAttrs, error) {
	a := AttrsOf(n)
	q := QuantAxisAttrs{Axis: a.Int("axis", 1)}
	if opset >= 21 {
		if q.BlockSize = a.Int("block_size", 0); q.BlockSize < 0 {
			a.Fail("block_size", "must not be negative, got %d", q.BlockSize)
		}
	}
	if n.OpType == "QuantizeLinear" {
		if opset >= 21 {
			switch dt := tensor.DType(a.Int("output_dtype", 0)); dt {
			case tensor.Undefined, tensor.Uint8, tensor.Int8, tensor.Uint16, tensor.Int16:
				q.OutputDType = dt
			default:
				a.Fail("output_dtype", "unsupported type %v", dt)
			}
		}
		q.Saturate = a.Int("saturate", 1) != 0
	}
	return q, a.Err()
}
