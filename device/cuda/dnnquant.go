package cuda

import (
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Quantized convolutions through cuDNN's graph API (issue 11): x and w
// in 8 bits (INT8 with INT32 accumulation, or FP8 E4M3 with float32
// accumulation on Hopper), NHWC, followed in the same operation graph by
// pointwise operations on float32 virtual tensors: a per-channel scale, the
// bias, the residual, ReLU and a per-channel post-scale, the result
// converted to y's data type (INT8, FP8, half or float32).

// cuDNN data types of quantized graphs (cudnnDataType_t).
const (
	cudnnDataInt8    = 3  // CUDNN_DATA_INT8
	cudnnDataInt32   = 4  // CUDNN_DATA_INT32
	cudnnDataFP8E4M3 = 12 // CUDNN_DATA_FP8_E4M3
)

// GraphDataType is the data type of a quantized graph's tensors.
type GraphDataType int32

// The data types of GraphQuant. DataDefault, as GraphQuant.Out, means
// the input's type.
const (
	DataDefault GraphDataType = iota
	DataFloat
	DataHalf
	DataInt8
	DataFP8 // FP8 E4M3 (4 exponent bits, 3 mantissa bits, no infinities, 448 the largest)
)

// String returns "float32", "half", "int8" or "fp8".
func (t GraphDataType) String() string {
	switch t {
	case DataFloat:
		return "float32"
	case DataHalf:
		return "half"
	case DataInt8:
		return "int8"
	case DataFP8:
		return "fp8"
	case DataDefault:
		return "default"
	}
	return "data type " + strconv.Itoa(int(t))
}

// Size returns the bytes of one element of t (0 for DataDefault).
func (t GraphDataType) Size() int {
	switch t {
	case DataFloat:
		return 4
	case DataHalf:
		return 2
	case DataInt8, DataFP8:
		return 1
	}
	return 0
}

// cudnn returns t's cudnnDataType_t.
func (t GraphDataType) cudnn() int32 {
	switch t {
	case DataHalf:
		return cudnnDataHalf
	case DataInt8:
		return cudnnDataInt8
	case DataFP8:
		return cudnnDataFP8E4M3
	}
	return cudnnDataFloat
}

// GraphQuant makes a graph convolution quantized:
//
//	y = Out(post[m] * act(conv(x, w) * scale[m] + bias[m] + z))
//
// x and w of type In (INT8: INT32 accumulation; FP8 E4M3: float32
// accumulation), NHWC, one group; scale, bias and post [1,M,1,1] float32
// tensors (each optional), z of y's shape and of y's type or Z (its
// values added as they are: fold its scale into scale, bias and post). The conversion to
// Out is cuDNN's (round to nearest, saturating). C and M must be
// multiples of 4 (pad them: QuantChannels).
type GraphQuant struct {
	In  GraphDataType // DataInt8 or DataFP8; DataDefault: not quantized
	Out GraphDataType // y and z: DataInt8, DataFP8, DataHalf, DataFloat; DataDefault: In
	// Scale multiplies the accumulator by a per-channel float32 tensor
	// (the x scale times the channel's weight scale, over y's scale).
	Scale bool
	// PostScale multiplies the activation's output by a per-channel
	// float32 tensor.
	PostScale bool
	// Z is the residual z's data type (DataInt8, DataFP8, DataHalf,
	// DataFloat); DataDefault: y's. A block whose residual stays in 8 bits
	// while y is half (or the reverse) reads it as it is, converted to
	// float32 by the pointwise add.
	Z GraphDataType
}

// on says whether q asks for a quantized graph.
func (q GraphQuant) on() bool { return q.In != DataDefault }

// out returns y's data type.
func (q GraphQuant) out() GraphDataType {
	if q.Out == DataDefault {
		return q.In
	}
	return q.Out
}

// zType returns z's data type.
func (q GraphQuant) zType() GraphDataType {
	if q.Z == DataDefault {
		return q.out()
	}
	return q.Z
}

// compute is the convolution's accumulator type.
func (q GraphQuant) compute() int32 {
	if q.In == DataInt8 {
		return cudnnDataInt32
	}
	return cudnnDataFloat
}

// check says why q does not fit p.
func (q GraphQuant) check(p ConvParams) error {
	if !q.on() {
		if q.Scale || q.PostScale || q.Out != DataDefault || q.Z != DataDefault {
			return fmt.Errorf("cuda: graph convolution: scales and output or residual types need a quantized input type (GraphQuant.In)")
		}
		return nil
	}
	switch {
	case q.In != DataInt8 && q.In != DataFP8:
		return fmt.Errorf("cuda: quantized graph convolution: input type %s, want int8 or fp8", q.In)
	case q.out() < DataFloat || q.out() > DataFP8:
		return fmt.Errorf("cuda: quantized graph convolution: output type %s", q.out())
	case q.zType() < DataFloat || q.zType() > DataFP8:
		return fmt.Errorf("cuda: quantized graph convolution: residual type %s", q.zType())
	case !p.NHWC:
		return fmt.Errorf("cuda: quantized graph convolution: NHWC only")
	case max(p.Group, 1) != 1:
		return fmt.Errorf("cuda: quantized graph convolution: %d groups, one only", p.Group)
	case p.C%4 != 0 || p.M%4 != 0:
		return fmt.Errorf("cuda: quantized graph convolution: C %d and M %d must be multiples of 4 (pad them with QuantChannels)", p.C, p.M)
	}
	return nil
}

// QuantChannels returns c rounded up to the channel multiple quantized
// graphs are given (16: one 16-byte vector of 8-bit values).
func QuantChannels(c int) int { return (c + 15) / 16 * 16 }

// ExecuteQuant queues a quantized graph's y = Out(post * act(conv(x, w) *
// scale + bias + z)) on h's stream with the chosen candidate: scale, bias,
// z and post are read only when the graph has them (0 otherwise), scale,
// bias and post M float32 values each. Otherwise as Execute.
func (c *GraphConv) ExecuteQuant(h CUDNNHandle, x, w, scale, bias, z, post, y, workspace DevicePtr) error {
	return c.execute(h, graphPtrs{x, w, y, bias, z, scale, post}, workspace)
}

// fp8Values are the 127 non-negative finite FP8 E4M3 values in increasing
// order: fp8Values[i] is byte i.
var fp8Values = func() [127]float32 {
	var v [127]float32
	for b := range 127 {
		v[b] = DecodeFP8(byte(b))
	}
	return v
}()

// DecodeFP8 returns the value of the FP8 E4M3 byte b (0x7f and 0xff are
// NaN).
func DecodeFP8(b byte) float32 {
	e, m := int(b>>3)&15, float64(b&7)
	var v float64
	switch {
	case b&0x7f == 0x7f:
		return float32(math.NaN())
	case e == 0:
		v = m / 8 * math.Ldexp(1, -6)
	default:
		v = (1 + m/8) * math.Ldexp(1, e-7)
	}
	if b&0x80 != 0 {
		v = -v
	}
	return float32(v)
}

// EncodeFP8 returns the FP8 E4M3 byte nearest v (ties to the even
// mantissa), saturating at ±448; NaN gives 0x7f.
func EncodeFP8(v float32) byte {
	if v != v {
		return 0x7f
	}
	var sign byte
	if math.Signbit(float64(v)) {
		sign, v = 0x80, -v
	}
	i := sort.Search(len(fp8Values), func(i int) bool { return fp8Values[i] >= v })
	switch {
	case i == len(fp8Values):
		i = len(fp8Values) - 1
	case i > 0:
		lo, hi := v-fp8Values[i-1], fp8Values[i]-v
		if lo < hi || lo == hi && (i-1)%2 == 0 {
			i--
		}
	}
	return sign | byte(i)
}

// QuantizeInt8 returns the INT8 value nearest v/scale (ties away from
// zero), saturated to [-127, 127].
func QuantizeInt8(v, scale float32) int8 {
	q := math.Round(float64(v) / float64(scale))
	return int8(max(-127, min(127, q)))
}

// zType returns the cuDNN data type of the residual z: y's (ydt) unless
// a quantized graph names another (GraphQuant.Z).
func (c *GraphConv) zType(ydt int32) int32 {
	if q := c.o.Quant; q.on() && q.Z != DataDefault {
		return q.Z.cudnn()
	}
	return ydt
}
