package gpuexec

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// stickyCUDA matches the CUDA errors that leave the context unusable: the
// rest of the process's GPU work fails after one of them.
var stickyCUDA = regexp.MustCompile(`CUDA_ERROR_(ILLEGAL_ADDRESS|LAUNCH_FAILED|MISALIGNED_ADDRESS|ILLEGAL_INSTRUCTION|HARDWARE_STACK_ERROR|INVALID_PC|ASSERT)`)

// opCase is one graph of new ops run on the GPU against the CPU engine:
// inputs in order (their shapes and types declare the graph's inputs),
// build makes the outputs.
type opCase struct {
	name  string
	in    []*tensor.Tensor
	build func(b *ir.Builder, x []*ir.Value) []*ir.Value
	noF16 bool // float64, or integers computed from floats (half rounds them otherwise)
}

// opCases are the op families added to the registry, each run in float32
// and float16.
func opCases() []opCase {
	r := rand.New(rand.NewPCG(5, 6))
	rnd := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64())
		}
		return x
	}
	pos := func(shape ...int) *tensor.Tensor {
		x := rnd(shape...)
		for i, v := range x.Float32s() {
			x.Float32s()[i] = float32(math.Abs(float64(v))) + 0.5
		}
		return x
	}
	ints := func(lo, hi int64, shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Int64, shape...)
		for i := range x.Int64s() {
			x.Int64s()[i] = lo + r.Int64N(hi-lo)
		}
		return x
	}
	// Cases added later draw from their own generator, so that the inputs
	// of the cases before them stay the ones a GPU run has checked (FP16
	// cases near a singularity, such as Tan's poles, depend on them).
	rOwn := rand.New(rand.NewPCG(9, 10))
	rndOwn := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(rOwn.NormFloat64())
		}
		return x
	}
	i64 := func(v ...int64) *tensor.Tensor { return tensor.FromInt64(v, len(v)) }
	f32 := func(v ...float32) *tensor.Tensor { return tensor.FromFloat32(v, len(v)) }
	op := func(b *ir.Builder, name string, in []*ir.Value, attrs ...*ir.Attr) []*ir.Value {
		return []*ir.Value{b.Op(name, in, attrs...)}
	}
	str := func(name, v string) *ir.Attr { return ir.StringAttr(name, v) }
	cases := []opCase{
		{"ConvTranspose 2-D stride 2 pads output_padding bias", []*tensor.Tensor{rnd(2, 4, 7, 6)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "ConvTranspose", []*ir.Value{x[0], b.Const("w", rnd(4, 3, 3, 3)), b.Const("b", rnd(3))},
				ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 0, 1, 1), ir.IntsAttr("output_padding", 1, 0))
		}, false},
		{"ConvTranspose groups dilations", []*tensor.Tensor{rnd(1, 6, 5, 5)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "ConvTranspose", []*ir.Value{x[0], b.Const("w", rnd(6, 2, 3, 2))},
				ir.IntAttr("group", 3), ir.IntsAttr("dilations", 2, 1), ir.IntsAttr("strides", 1, 3))
		}, false},
		{"ConvTranspose SAME_UPPER", []*tensor.Tensor{rnd(1, 3, 5, 4)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "ConvTranspose", []*ir.Value{x[0], b.Const("w", rnd(3, 2, 3, 3))}, ir.IntsAttr("strides", 2, 2), str("auto_pad", "SAME_UPPER"))
		}, false},
		{"ConvTranspose 1-D", []*tensor.Tensor{rnd(2, 3, 9)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "ConvTranspose", []*ir.Value{x[0], b.Const("w", rnd(3, 5, 4)), b.Const("b", rnd(5))}, ir.IntsAttr("strides", 3))
		}, false},
		{"Conv 1-D pads dilations, MaxPool 1-D ceil_mode, AveragePool 1-D count_include_pad", []*tensor.Tensor{rnd(2, 3, 30)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			y := b.Op("Conv", []*ir.Value{x[0], b.Const("w", rnd(4, 3, 5)), b.Const("b", rnd(4))}, ir.IntsAttr("pads", 2, 1), ir.IntsAttr("dilations", 2))
			return []*ir.Value{y, b.Op("MaxPool", []*ir.Value{y}, ir.IntsAttr("kernel_shape", 3), ir.IntsAttr("strides", 2), ir.IntAttr("ceil_mode", 1)),
				b.Op("AveragePool", []*ir.Value{y}, ir.IntsAttr("kernel_shape", 4), ir.IntsAttr("pads", 1, 2), ir.IntAttr("count_include_pad", 1))}
		}, false},
		{"HardSigmoid", []*tensor.Tensor{rnd(3, 40)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "HardSigmoid", x[:1], ir.FloatAttr("alpha", 0.3), ir.FloatAttr("beta", 0.4))
		}, false},
		{"CumSum exclusive reverse", []*tensor.Tensor{rnd(3, 17, 5)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "CumSum", []*ir.Value{x[0], b.Const("axis", i64(1))}, ir.IntAttr("exclusive", 1), ir.IntAttr("reverse", 1))
		}, false},
		{"CumSum int64", []*tensor.Tensor{ints(-50, 50, 4, 33)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "CumSum", []*ir.Value{x[0], b.Const("axis", i64(-1))})
		}, false},
		{"ArgMax keepdims", []*tensor.Tensor{rnd(3, 50, 4)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "ArgMax", x[:1], ir.IntAttr("axis", 1))
		}, false},
		{"ArgMin select_last_index", []*tensor.Tensor{rnd(6, 70)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "ArgMin", x[:1], ir.IntAttr("axis", -1), ir.IntAttr("keepdims", 0), ir.IntAttr("select_last_index", 1))
		}, false},
		{"Conv 3-D groups pads strides dilations bias", []*tensor.Tensor{rndOwn(2, 4, 6, 7, 5)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "Conv", []*ir.Value{x[0], b.Const("w", rndOwn(6, 2, 3, 2, 3)), b.Const("b", rndOwn(6))}, ir.IntAttr("group", 2),
				ir.IntsAttr("pads", 1, 0, 1, 1, 1, 0), ir.IntsAttr("strides", 1, 2, 1), ir.IntsAttr("dilations", 1, 1, 2))
		}, false},
		{"MaxPool 3-D, AveragePool 3-D count_include_pad, SAME_UPPER", []*tensor.Tensor{rndOwn(1, 3, 7, 6, 9)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{
				b.Op("MaxPool", x[:1], ir.IntsAttr("kernel_shape", 3, 2, 3), ir.IntsAttr("strides", 2, 1, 2), ir.IntsAttr("pads", 1, 0, 1, 1, 1, 1)),
				b.Op("AveragePool", x[:1], ir.IntsAttr("kernel_shape", 2, 3, 3), ir.IntsAttr("pads", 1, 1, 1, 0, 1, 1), ir.IntAttr("count_include_pad", 1)),
				b.Op("AveragePool", x[:1], ir.IntsAttr("kernel_shape", 3, 3, 2), ir.IntsAttr("strides", 2, 2, 2), ir.StringAttr("auto_pad", "SAME_UPPER")),
			}
		}, false},
		// TopK on values that half represents exactly (multiples of 1/8,
		// many ties), so that FP16 plans give the same indices.
		{"TopK largest last axis", []*tensor.Tensor{eighths(rndOwn(6, 300))}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return b.OpN("TopK", 2, []*ir.Value{x[0], b.Const("k", i64(10))})
		}, false},
		{"TopK smallest middle axis ties", []*tensor.Tensor{eighths(rndOwn(3, 64, 5))}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return b.OpN("TopK", 2, []*ir.Value{x[0], b.Const("k", i64(7))}, ir.IntAttr("axis", 1), ir.IntAttr("largest", 0))
		}, false},
		{"TopK whole axis, values only", []*tensor.Tensor{eighths(rndOwn(2, 33))}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return b.OpN("TopK", 2, []*ir.Value{x[0], b.Const("k", i64(33))})[:1]
		}, false},
		{"Softmax axis 0, LogSoftmax, Hardmax", []*tensor.Tensor{rnd(5, 6, 7)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("Softmax", x[:1], ir.IntAttr("axis", 0)), b.Op("LogSoftmax", x[:1], ir.IntAttr("axis", 1)), b.Op("Hardmax", x[:1])}
		}, false},
		{"Where of Greater, Not, And, Or, Xor", []*tensor.Tensor{rnd(4, 9), rnd(9)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			gt := b.Op("Greater", []*ir.Value{x[0], x[1]})
			lt := b.Op("Less", []*ir.Value{x[0], b.Const("z", f32(0.3))})
			mix := b.Op("Xor", []*ir.Value{b.Op("And", []*ir.Value{gt, lt}), b.Op("Or", []*ir.Value{b.Op("Not", []*ir.Value{gt}), lt})})
			return []*ir.Value{b.Op("Where", []*ir.Value{mix, x[0], x[1]}), b.Op("Equal", []*ir.Value{gt, lt})}
		}, false},
		{"int64 Add Sub Mul Div Mod broadcast", []*tensor.Tensor{ints(-100, 100, 3, 1, 5), ints(1, 9, 4, 1)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("Add", x), b.Op("Sub", x), b.Op("Mul", x), b.Op("Div", x), b.Op("Mod", x),
				b.Op("LessOrEqual", x), b.Op("Max", x)}
		}, false},
		{"float Mod fmod, Pow, Sum, Mean, Max of 3", []*tensor.Tensor{rnd(2, 3, 4), pos(3, 4), rnd(4)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("Mod", []*ir.Value{x[0], x[1]}, ir.IntAttr("fmod", 1)), b.Op("Pow", []*ir.Value{x[1], x[2]}),
				b.Op("Sum", x), b.Op("Mean", x), b.Op("Max", x), b.Op("Min", x)}
		}, false},
		{"Pow with an int64 exponent", []*tensor.Tensor{rnd(3, 7), ints(0, 4, 7)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "Pow", x)
		}, false},
		{"Cast float int32 bool float16", []*tensor.Tensor{rnd(5, 8)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			s := b.Op("Mul", []*ir.Value{x[0], b.Const("k", f32(10))})
			i := b.Op("Cast", []*ir.Value{s}, ir.IntAttr("to", int64(tensor.Int32)))
			bo := b.Op("Cast", []*ir.Value{i}, ir.IntAttr("to", int64(tensor.Bool)))
			h := b.Op("Cast", []*ir.Value{x[0]}, ir.IntAttr("to", int64(tensor.Float16)))
			return []*ir.Value{i, bo, b.Op("Cast", []*ir.Value{h}, ir.IntAttr("to", int64(tensor.Float32)))}
		}, true}, // half inputs truncate to other integers
		{"Clip computed bounds, int Clip", []*tensor.Tensor{rnd(4, 10), ints(-20, 20, 30)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			lo := b.Op("ReduceMean", x[:1], ir.IntAttr("keepdims", 0))
			return []*ir.Value{b.Op("Clip", []*ir.Value{x[0], lo, b.Const("hi", tensor.FromFloat32([]float32{1}))}),
				b.Op("Clip", []*ir.Value{x[1], b.Const("l", tensor.FromInt64([]int64{-5})), nil})}
		}, false},
		{"Pad constant reflect edge", []*tensor.Tensor{rnd(2, 3, 5, 6)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			p := b.Const("p", i64(0, 1, 2, 1, 0, 0, 1, 3))
			return []*ir.Value{b.Op("Pad", []*ir.Value{x[0], p, b.Const("v", f32(1.5))}), b.Op("Pad", []*ir.Value{x[0], p}, str("mode", "reflect")),
				b.Op("Pad", []*ir.Value{x[0], p}, str("mode", "edge"))}
		}, false},
		{"Tile Expand", []*tensor.Tensor{rnd(2, 1, 3)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("Tile", []*ir.Value{x[0], b.Const("r", i64(2, 3, 2))}), b.Op("Expand", []*ir.Value{x[0], b.Const("s", i64(4, 2, 5, 3))})}
		}, false},
		{"DepthToSpace DCR CRD, SpaceToDepth", []*tensor.Tensor{rnd(2, 8, 3, 5)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("DepthToSpace", x[:1], ir.IntAttr("blocksize", 2)), b.Op("DepthToSpace", x[:1], ir.IntAttr("blocksize", 2), str("mode", "CRD")),
				b.Op("SpaceToDepth", []*ir.Value{b.Op("DepthToSpace", x[:1], ir.IntAttr("blocksize", 2))}, ir.IntAttr("blocksize", 2))}
		}, false},
		{"GatherElements ScatterElements ScatterND", []*tensor.Tensor{rnd(4, 6), ints(-4, 4, 3, 6), rnd(3, 6)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			sidx := b.Const("si", func() *tensor.Tensor { // distinct rows per column: a defined result
				t := tensor.New(tensor.Int64, 3, 6)
				for j := range 6 {
					for i := range 3 {
						t.Int64s()[i*6+j] = int64((i + j) % 4)
					}
				}
				return t
			}())
			nd := b.Const("ni", tensor.FromInt64([]int64{2, 0}, 2, 1))
			return []*ir.Value{b.Op("GatherElements", []*ir.Value{x[0], x[1]}, ir.IntAttr("axis", 0)),
				b.Op("ScatterElements", []*ir.Value{x[0], sidx, x[2]}, ir.IntAttr("axis", 0)),
				b.Op("ScatterND", []*ir.Value{x[0], nd, b.Const("u", rnd(2, 6))})}
		}, false},
		{"PRelu, GatherND, Size", []*tensor.Tensor{rnd(2, 3, 4, 5)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("PRelu", []*ir.Value{x[0], b.Const("sl", tensor.FromFloat32([]float32{0.1, -0.2, 0.3}, 3, 1, 1))}),
				b.Op("GatherND", []*ir.Value{x[0], b.Const("i", tensor.FromInt64([]int64{1, 2, 0, 0, 1, -1}, 3, 2))}),
				b.Op("Size", x[:1])}
		}, false},
		{"QuantizeLinear DequantizeLinear per tensor and per axis", []*tensor.Tensor{rnd(2, 3, 8)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			q := b.Op("QuantizeLinear", []*ir.Value{x[0], b.Const("s", tensor.FromFloat32([]float32{0.02})), b.Const("z", func() *tensor.Tensor {
				t := tensor.New(tensor.Uint8)
				t.Data[0] = 128
				return t
			}())})
			qa := b.Op("QuantizeLinear", []*ir.Value{x[0], b.Const("sa", tensor.FromFloat32([]float32{0.01, 0.02, 0.03}, 3)),
				b.Const("za", tensor.New(tensor.Int8, 3))}, ir.IntAttr("axis", 1))
			return []*ir.Value{q, qa, b.Op("DequantizeLinear", []*ir.Value{qa, b.Const("sd", tensor.FromFloat32([]float32{0.01, 0.02, 0.03}, 3))}, ir.IntAttr("axis", 1))}
		}, true}, // half inputs round to other integers
		{"LRN, Dropout with its mask", []*tensor.Tensor{rnd(2, 7, 3, 5)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			d := b.OpN("Dropout", 2, x[:1])
			return []*ir.Value{b.Op("LRN", []*ir.Value{d[0]}, ir.IntAttr("size", 3), ir.FloatAttr("alpha", 0.01), ir.FloatAttr("bias", 2)), d[1]}
		}, false},
		{"OneHot, EyeLike", []*tensor.Tensor{ints(-4, 4, 3, 5), rnd(4, 6)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("OneHot", []*ir.Value{x[0], b.Const("d", tensor.FromInt64([]int64{4})), b.Const("v", tensor.FromFloat32([]float32{-1, 2}, 2))}, ir.IntAttr("axis", 1)),
				b.Op("EyeLike", x[1:2], ir.IntAttr("k", 1))}
		}, false},
		{"GridSample bilinear zeros, bicubic border align_corners, nearest reflection", []*tensor.Tensor{rnd(2, 3, 5, 6), func() *tensor.Tensor {
			g := rnd(2, 4, 7, 2)
			for i := range g.Float32s() {
				g.Float32s()[i] *= 0.8 // some outside [-1, 1]
			}
			return g
		}()}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("GridSample", x),
				b.Op("GridSample", x, str("mode", "bicubic"), str("padding_mode", "border"), ir.IntAttr("align_corners", 1)),
				b.Op("GridSample", x, str("mode", "nearest"), str("padding_mode", "reflection"))}
		}, false},
		{"Trilu upper lower", []*tensor.Tensor{rnd(2, 5, 7)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("Trilu", []*ir.Value{x[0], b.Const("k", tensor.FromInt64([]int64{1}))}), b.Op("Trilu", x[:1], ir.IntAttr("upper", 0))}
		}, false},
		{"InstanceNormalization BatchNormalization", []*tensor.Tensor{rnd(2, 3, 6, 7)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("InstanceNormalization", []*ir.Value{x[0], b.Const("s", rnd(3)), b.Const("b", rnd(3))}),
				b.Op("BatchNormalization", []*ir.Value{x[0], b.Const("g", rnd(3)), b.Const("bb", rnd(3)), b.Const("m", rnd(3)), b.Const("v", pos(3))})}
		}, false},
		{"LayerNormalization Mean InvStdDev", []*tensor.Tensor{rnd(4, 5, 24)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return b.OpN("LayerNormalization", 3, []*ir.Value{x[0], b.Const("g", rnd(24)), b.Const("b", rnd(24))})
		}, false},
		{"NegativeLogLikelihoodLoss SoftmaxCrossEntropyLoss", []*tensor.Tensor{rnd(3, 5, 4), ints(0, 5, 3, 4)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			w := b.Const("w", pos(5))
			nll := b.Op("NegativeLogLikelihoodLoss", []*ir.Value{x[0], x[1], w}, ir.IntAttr("ignore_index", 2))
			none := b.Op("NegativeLogLikelihoodLoss", []*ir.Value{x[0], x[1]}, str("reduction", "none"))
			sce := b.OpN("SoftmaxCrossEntropyLoss", 2, []*ir.Value{x[0], x[1]}, str("reduction", "sum"))
			return []*ir.Value{nll, none, sce[0], sce[1]}
		}, false},
		{"float64 ReduceLogSumExp", []*tensor.Tensor{func() *tensor.Tensor {
			t := tensor.New(tensor.Float64, 3, 4, 5)
			for i := range t.Float64s() {
				t.Float64s()[i] = r.NormFloat64()
			}
			return t
		}()}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "ReduceLogSumExp", []*ir.Value{x[0], b.Const("a", i64(1))})
		}, true},
	}
	for _, red := range []string{"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare", "ReduceLogSum"} {
		in := pos(2, 7, 3, 45)
		if red == "ReduceProd" { // products of 945 values: near 1, so that they stay finite in half
			for i, v := range in.Float32s() {
				in.Float32s()[i] = 1 + (v-1.3)/100
			}
		}
		cases = append(cases, opCase{red + " axes 1 3, all, keepdims 0", []*tensor.Tensor{in}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op(red, []*ir.Value{x[0], b.Const("a", i64(1, -1))}), b.Op(red, x[:1], ir.IntAttr("keepdims", 0))}
		}, false})
	}
	for _, res := range []struct {
		name string
		in   []int
		sc   []float32
		at   []*ir.Attr
	}{
		{"linear half_pixel x2", []int{1, 2, 5, 7}, []float32{1, 1, 2, 2}, []*ir.Attr{str("mode", "linear")}},
		{"linear align_corners down", []int{2, 3, 9, 8}, []float32{1, 1, 0.5, 0.75}, []*ir.Attr{str("mode", "linear"), str("coordinate_transformation_mode", "align_corners")}},
		{"linear asymmetric", []int{1, 2, 6, 6}, []float32{1, 1, 1.5, 2.5}, []*ir.Attr{str("mode", "linear"), str("coordinate_transformation_mode", "asymmetric")}},
		{"linear pytorch_half_pixel", []int{1, 2, 4, 9}, []float32{1, 1, 3, 0.4}, []*ir.Attr{str("mode", "linear"), str("coordinate_transformation_mode", "pytorch_half_pixel")}},
		{"linear half_pixel_symmetric", []int{1, 1, 5, 5}, []float32{1, 1, 1.7, 2.3}, []*ir.Attr{str("mode", "linear"), str("coordinate_transformation_mode", "half_pixel_symmetric")}},
		{"linear antialias down", []int{1, 2, 12, 10}, []float32{1, 1, 0.4, 0.6}, []*ir.Attr{str("mode", "linear"), ir.IntAttr("antialias", 1)}},
		{"cubic half_pixel", []int{1, 2, 6, 5}, []float32{1, 1, 2, 1.6}, []*ir.Attr{str("mode", "cubic")}},
		{"cubic exclude_outside a -0.5", []int{2, 1, 7, 7}, []float32{1, 1, 0.8, 1.4}, []*ir.Attr{str("mode", "cubic"), ir.IntAttr("exclude_outside", 1), ir.FloatAttr("cubic_coeff_a", -0.5)}},
		{"cubic antialias down", []int{1, 1, 16, 12}, []float32{1, 1, 0.5, 0.3}, []*ir.Attr{str("mode", "cubic"), ir.IntAttr("antialias", 1)}},
	} {
		cases = append(cases, opCase{"Resize " + res.name, []*tensor.Tensor{rnd(res.in...)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "Resize", []*ir.Value{x[0], nil, b.Const("sc", f32(res.sc...))}, res.at...)
		}, false})
	}
	for _, u := range []struct {
		name  string
		input *tensor.Tensor
		attrs []*ir.Attr
	}{
		{"Erf", rnd(3, 50), nil}, {"Exp", rnd(3, 50), nil}, {"Log", pos(3, 50), nil}, {"Sqrt", pos(3, 50), nil},
		{"Abs", rnd(3, 50), nil}, {"Neg", rnd(3, 50), nil}, {"Floor", rnd(3, 50), nil}, {"Ceil", rnd(3, 50), nil},
		{"Reciprocal", pos(3, 50), nil}, {"Tanh", rnd(3, 50), nil}, {"Softplus", rnd(3, 50), nil}, {"Softsign", rnd(3, 50), nil},
		{"Elu", rnd(3, 50), []*ir.Attr{ir.FloatAttr("alpha", 0.7)}}, {"Selu", rnd(3, 50), nil}, {"Celu", rnd(3, 50), nil},
		{"Sin", rnd(3, 50), nil}, {"Cos", rnd(3, 50), nil}, {"Tan", rnd(3, 50), nil}, {"Atan", rnd(3, 50), nil},
		{"Sinh", rnd(3, 50), nil}, {"Cosh", rnd(3, 50), nil}, {"Asinh", rnd(3, 50), nil}, {"Sign", rnd(3, 50), nil},
		{"ThresholdedRelu", rnd(3, 50), []*ir.Attr{ir.FloatAttr("alpha", 0.5)}}, {"Shrink", rnd(3, 50), []*ir.Attr{ir.FloatAttr("bias", 0.2), ir.FloatAttr("lambd", 0.4)}},
		{"Mish", rnd(3, 50), nil}, {"Round", rnd(3, 50), nil}, {"Neg int64", ints(-9, 9, 40), nil}, {"Abs int64", ints(-9, 9, 40), nil},
	} {
		name := u.name
		if i := len(name) - len(" int64"); i > 0 && name[i:] == " int64" {
			name = name[:i]
		}
		cases = append(cases, opCase{u.name, []*tensor.Tensor{u.input}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, name, x[:1], u.attrs...)
		}, false})
	}
	cases = append(cases, longTailCases()...)
	return cases
}

// TestNewOpsOnGPU runs each op family of the registry on the GPU, in
// float32 (rtol 1e-3, atol 1e-4 against kiln's CPU engine) and float16
// (cosine similarity at least minCosine); integer and bool outputs must be
// equal (in float16 at most 2% may differ, from inputs rounded to half).
// Each case is its own subtest. KILN_GPU_FROM=<case> starts after that
// case: after a CUDA error that leaves the context unusable the test stops
// with "STICKY CUDA ERROR in <case>", and bench/gpu-ops.sh resumes after
// it.
func TestNewOpsOnGPU(t *testing.T) {
	needGPU(t)
	from := os.Getenv("KILN_GPU_FROM")
	skipping := from != ""
	for _, tc := range opCases() {
		if skipping {
			skipping = tc.name != from
			continue
		}
		for _, half := range []bool{false, true} {
			if half && tc.noF16 {
				continue
			}
			prec := map[bool]string{false: "fp32", true: "fp16"}[half]
			var sticky error
			t.Run(tc.name+"/"+prec, func(t *testing.T) {
				sticky = runOpCase(t, tc, half)
			})
			if sticky != nil {
				t.Fatalf("STICKY CUDA ERROR in %s: %v", tc.name, sticky)
			}
		}
	}
}

// opGraph builds the graph of a case.
func opGraph(t *testing.T, tc opCase) (*ir.Graph, map[string]*tensor.Tensor) {
	t.Helper()
	b := ir.NewBuilder("ops", 18)
	var xs []*ir.Value
	in := map[string]*tensor.Tensor{}
	for i, x := range tc.in {
		var dims []ir.Dim
		for _, d := range x.Shape {
			dims = append(dims, ir.D(int64(d)))
		}
		name := fmt.Sprintf("x%d", i)
		xs = append(xs, b.Input(name, x.DType, dims...))
		in[name] = x
	}
	for i, o := range tc.build(b, xs) {
		b.Output(o, fmt.Sprintf("out%d", i))
	}
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g, in
}

// TestNewOpsCompile checks, without a GPU, what TestNewOpsOnGPU needs of
// each case: the CPU engine runs it, Supports accepts every node, and the
// GPU compiler makes a program of known kernels within their buffers, in
// float32 and float16.
func TestNewOpsCompile(t *testing.T) {
	for _, tc := range opCases() {
		t.Run(tc.name, func(t *testing.T) {
			g, in := opGraph(t, tc)
			ce, err := engine.New(g.Clone())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ce.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			for _, n := range g.Nodes {
				if err := Supports(n, g); err != nil {
					t.Errorf("Supports(%s): %v", n.OpType, err)
				}
			}
			for _, half := range []bool{false, true} {
				if half && tc.noF16 {
					continue
				}
				p, err := compile(g, false, half)
				if err != nil {
					t.Fatalf("half %v: %v", half, err)
				}
				checkProgram(t, p)
			}
		})
	}
}

// runOpCase runs one case and returns an error only when it left the CUDA
// context unusable.
func runOpCase(t *testing.T, tc opCase, half bool) (sticky error) {
	defer func() {
		if x := recover(); x != nil {
			t.Errorf("panic: %v", x)
		}
	}()
	// one graph, cloned for each engine: the cases' constants are drawn
	// from a random source when the graph is built, so a second build
	// would give the GPU other weights than the CPU reference
	g0, in := opGraph(t, tc)
	mk := func() *ir.Graph {
		g := g0.Clone()
		if _, err := ops.InferGraph(g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	ce, err := engine.New(mk())
	if err != nil {
		t.Fatal(err)
	}
	want, err := ce.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	g := mk()
	for _, n := range g.Nodes {
		if err := Supports(n, g); err != nil {
			t.Errorf("Supports(%s): %v", n.OpType, err)
		}
	}
	check := func(err error) bool {
		if err == nil {
			return false
		}
		if stickyCUDA.MatchString(err.Error()) {
			sticky = err
		}
		t.Error(err)
		return true
	}
	e, err := NewEngine(g, Options{FP16: half, SyncEachLayer: true})
	if check(err) {
		return
	}
	defer e.Close()
	c, err := e.NewContext()
	if check(err) {
		return
	}
	defer c.Close()
	for run := range 2 { // eager, then captured as a CUDA graph
		got, err := c.Run(context.Background(), in)
		if check(err) {
			return
		}
		for name, w := range want {
			gv := got[name]
			if gv == nil {
				t.Errorf("run %d: no output %s", run, name)
				continue
			}
			compareOutput(t, fmt.Sprintf("run %d %s", run, name), gv, w, half)
		}
	}
	return
}

// compareOutput compares one output with the CPU's.
func compareOutput(t *testing.T, name string, got, want *tensor.Tensor, half bool) {
	t.Helper()
	if got.DType != want.DType || tensor.ShapeString(got.Shape) != tensor.ShapeString(want.Shape) {
		t.Errorf("%s: %v%v, want %v%v", name, got.DType, got.Shape, want.DType, want.Shape)
		return
	}
	switch {
	case want.DType.IsFloat() && half:
		if cos, rel := cosine(got, want); !(cos >= minCosine) {
			t.Errorf("%s: fp16 cosine similarity %.6f < %g (relative L2 error %.3g)", name, cos, minCosine, rel)
		}
	case want.DType.IsFloat():
		bad, worst := 0, 0.0
		for i := range want.Len() {
			g, w := got.Float(i), want.Float(i)
			d := math.Abs(g - w)
			if (math.IsNaN(g) != math.IsNaN(w)) || (!math.IsNaN(w) && !(d <= atol+rtol*math.Abs(w)) && !(math.IsInf(w, 0) && g == w)) {
				if bad < 5 {
					t.Errorf("%s[%d] = %g, want %g", name, i, g, w)
				}
				bad++
				worst = max(worst, d)
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d elements differ (largest difference %g)", name, bad, want.Len(), worst)
		}
	default:
		bad := 0
		for i := range want.Len() {
			if got.Float(i) != want.Float(i) {
				if bad < 5 && !half {
					t.Errorf("%s[%d] = %v, want %v", name, i, got.Float(i), want.Float(i))
				}
				bad++
			}
		}
		if bad > 0 && (!half || bad*50 > want.Len()) {
			t.Errorf("%s: %d of %d elements differ", name, bad, want.Len())
		}
	}
}

// gpuExec is the cuda device's executor as a build uses it: Supports
// deciding, compilePlan compiling each GPU segment.
type gpuExec struct{}

func (gpuExec) Name() string { return "cuda" }
func (gpuExec) Fingerprint() (device.Fingerprint, error) {
	return cuda.FingerprintOf(0)
}
func (gpuExec) Supports(n *ir.Node, g *ir.Graph) error { return Supports(n, g) }
func (gpuExec) Compile(g *ir.Graph, o device.ExecOptions) (device.Program, error) {
	return compilePlan(g, o)
}

// TestNodeSuiteOnGPU runs every ONNX node test that the CPU engine passes
// partitioned for the GPU (each GPU segment compiled and run on it, the
// rest on the CPU) and compares with the expected outputs (rtol 1e-3,
// atol 1e-4). It logs "GPU node suite: P passed of N (G entirely on the
// GPU, F with fallback)". KILN_NODE_DIR names the suite's folder;
// KILN_GPU_FROM=<test> starts after that test (after a CUDA error that
// leaves the context unusable the test stops with "STICKY CUDA ERROR in
// <test>"). Near the test's deadline (-test.timeout) it stops and logs
// what it ran.
func TestNodeSuiteOnGPU(t *testing.T) {
	needGPU(t)
	cases := nodeSuite(t)
	from := os.Getenv("KILN_GPU_FROM")
	skipping := from != ""
	var passed, onGPU, fellBack, failed, seen int
	defer func() {
		t.Logf("GPU node suite: %d passed of %d (%d entirely on the GPU, %d with fallback), %d failed", passed, seen, onGPU, fellBack, failed)
	}()
	deadline, hasDeadline := t.Deadline()
	for _, nc := range cases {
		if skipping {
			skipping = nc.name != from
			continue
		}
		if hasDeadline && time.Until(deadline) < 15*time.Second {
			t.Logf("stopped before %s: the test's deadline is near (%d of %d node tests not run)", nc.name, len(cases)-seen, len(cases))
			break
		}
		seen++
		prog, r, err := partitionGuarded(nc.g, gpuExec{})
		if err == nil {
			var out map[string]*tensor.Tensor
			func() {
				defer func() {
					if x := recover(); x != nil {
						err = fmt.Errorf("PANIC %v", x)
					}
				}()
				out, err = prog.Run(context.Background(), nc.in)
			}()
			prog.Close()
			if err == nil && !nc.check(out) {
				err = fmt.Errorf("outputs differ (%s)", r.Summary())
			}
		}
		if err != nil {
			failed++
			t.Errorf("%s: %v", nc.name, err)
			if stickyCUDA.MatchString(err.Error()) {
				t.Fatalf("STICKY CUDA ERROR in %s: %v", nc.name, err)
			}
			continue
		}
		passed++
		if len(r.Fallbacks) == 0 {
			onGPU++
		} else {
			fellBack++
		}
	}
}

// eighths rounds x's values to multiples of 1/8 (exact in half precision).
func eighths(x *tensor.Tensor) *tensor.Tensor {
	for i, v := range x.Float32s() {
		x.Float32s()[i] = float32(math.Round(float64(v)*8) / 8)
	}
	return x
}

// longTailCases are the ops of the long tail (op_groupnorm.go,
// op_upsample.go, op_lppool.go, ...), drawn from their own generator so
// that the inputs of the cases before them do not change.
func longTailCases() []opCase {
	r := rand.New(rand.NewPCG(13, 14))
	rnd := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64())
		}
		return x
	}
	f32 := func(v ...float32) *tensor.Tensor { return tensor.FromFloat32(v, len(v)) }
	op := func(b *ir.Builder, name string, in []*ir.Value, attrs ...*ir.Attr) []*ir.Value {
		return []*ir.Value{b.Op(name, in, attrs...)}
	}
	rndInts := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Int64, shape...)
		for i := range x.Int64s() {
			x.Int64s()[i] = r.Int64N(100) - 50
		}
		return x
	}
	bytes8 := func(dt tensor.DType, shape ...int) *tensor.Tensor {
		x := tensor.New(dt, shape...)
		for i := range x.Data {
			x.Data[i] = byte(r.IntN(256))
		}
		return x
	}
	// small scales weights down, so that recurrences do not saturate
	small := func(x *tensor.Tensor) *tensor.Tensor {
		for i, v := range x.Float32s() {
			x.Float32s()[i] = v * 0.4
		}
		return x
	}
	return []opCase{
		{"GroupNormalization per channel, long rows", []*tensor.Tensor{rnd(2, 6, 20, 30)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "GroupNormalization", []*ir.Value{x[0], b.Const("s", rnd(6)), b.Const("b", rnd(6))}, ir.IntAttr("num_groups", 3))
		}, false},
		{"GroupNormalization per group (opset 18) epsilon", []*tensor.Tensor{rnd(3, 8, 5)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "GroupNormalization", []*ir.Value{x[0], b.Const("s", rnd(4)), b.Const("b", rnd(4))},
				ir.IntAttr("num_groups", 4), ir.FloatAttr("epsilon", 0.01))
		}, false},
		{"MeanVarianceNormalization default axes", []*tensor.Tensor{rnd(3, 4, 5, 6)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "MeanVarianceNormalization", x[:1])
		}, false},
		{"MeanVarianceNormalization axes 1 and -1", []*tensor.Tensor{rnd(4, 7, 3, 9)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "MeanVarianceNormalization", x[:1], ir.IntsAttr("axes", 1, -1))
		}, false},
		{"LpNormalization p 2 last axis, p 1 middle axis", []*tensor.Tensor{rnd(4, 33, 6)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("LpNormalization", x[:1]), b.Op("LpNormalization", x[:1], ir.IntAttr("axis", 1), ir.IntAttr("p", 1))}
		}, false},
		{"Upsample nearest 2x3", []*tensor.Tensor{rnd(2, 3, 4, 5)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "Upsample", []*ir.Value{x[0], b.Const("sc", f32(1, 1, 2, 3))})
		}, false},
		{"Upsample linear 2x2.5", []*tensor.Tensor{rnd(1, 2, 6, 4)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "Upsample", []*ir.Value{x[0], b.Const("sc", f32(1, 1, 2, 2.5))}, ir.StringAttr("mode", "linear"))
		}, false},
		{"LpPool 2-D p 3 pads strides dilations", []*tensor.Tensor{rnd(2, 3, 9, 8)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "LpPool", x[:1], ir.IntsAttr("kernel_shape", 3, 2), ir.IntsAttr("strides", 2, 1), ir.IntsAttr("pads", 1, 0, 1, 1),
				ir.IntsAttr("dilations", 1, 2), ir.IntAttr("p", 3))
		}, false},
		{"LpPool 1-D p 2 SAME_UPPER", []*tensor.Tensor{rnd(2, 4, 17)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "LpPool", x[:1], ir.IntsAttr("kernel_shape", 4), ir.IntsAttr("strides", 3), ir.StringAttr("auto_pad", "SAME_UPPER"))
		}, false},
		{"GlobalLpPool p 2, p 1", []*tensor.Tensor{rnd(2, 5, 7, 6)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("GlobalLpPool", x[:1]), b.Op("GlobalLpPool", x[:1], ir.IntAttr("p", 1))}
		}, false},
		{"Einsum batched matmul, transpose, implicit", []*tensor.Tensor{rnd(3, 5, 7), rnd(3, 7, 4)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			eq := func(e string) *ir.Attr { return ir.StringAttr("equation", e) }
			return []*ir.Value{b.Op("Einsum", x[:2], eq("bij,bjk->bik")), b.Op("Einsum", x[:1], eq("bij->jib")), b.Op("Einsum", x[:2], eq("bij,bjk"))}
		}, false},
		{"Einsum ellipsis broadcast, diagonal, three operands", []*tensor.Tensor{rnd(2, 1, 6, 6), rnd(4, 6, 3)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			eq := func(e string) *ir.Attr { return ir.StringAttr("equation", e) }
			return []*ir.Value{b.Op("Einsum", x[:2], eq("...ij,...jk->...ik")), b.Op("Einsum", x[:1], eq("abii->abi")),
				b.Op("Einsum", []*ir.Value{x[0], x[1], b.Const("w", rnd(3, 5))}, eq("abij,cjk,kl->abcil"))}
		}, false},
		{"Einsum sums: all, rows, long contraction", []*tensor.Tensor{rnd(40, 300)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			eq := func(e string) *ir.Attr { return ir.StringAttr("equation", e) }
			return []*ir.Value{b.Op("Einsum", x[:1], eq("ij->")), b.Op("Einsum", x[:1], eq("ij->i")), b.Op("Einsum", []*ir.Value{x[0], x[0]}, eq("ij,kj->ik"))}
		}, false},
		{"RNN forward defaults", []*tensor.Tensor{rnd(5, 3, 4)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return b.OpN("RNN", 2, []*ir.Value{x[0], b.Const("w", small(rnd(1, 6, 4))), b.Const("r", small(rnd(1, 6, 6)))}, ir.IntAttr("hidden_size", 6))
		}, false},
		{"RNN bidirectional bias initial_h sequence_lens", []*tensor.Tensor{rnd(6, 3, 5)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			lens := tensor.New(tensor.Int32, 3)
			copy(lens.Int32s(), []int32{6, 2, 4})
			return b.OpN("RNN", 2, []*ir.Value{x[0], b.Const("w", small(rnd(2, 7, 5))), b.Const("r", small(rnd(2, 7, 7))), b.Const("b", small(rnd(2, 14))),
				b.Const("lens", lens), b.Const("h0", rnd(2, 3, 7))}, ir.IntAttr("hidden_size", 7), ir.StringAttr("direction", "bidirectional"),
				&ir.Attr{Name: "activations", Type: ir.AttrStrings, Strings: []string{"Relu", "Tanh"}})
		}, false},
		{"GRU bidirectional bias", []*tensor.Tensor{rnd(4, 2, 5)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return b.OpN("GRU", 2, []*ir.Value{x[0], b.Const("w", small(rnd(2, 18, 5))), b.Const("r", small(rnd(2, 18, 6))), b.Const("b", small(rnd(2, 36)))},
				ir.IntAttr("hidden_size", 6), ir.StringAttr("direction", "bidirectional"))
		}, false},
		{"GRU reverse linear_before_reset initial_h clip", []*tensor.Tensor{rnd(5, 3, 4)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return b.OpN("GRU", 2, []*ir.Value{x[0], b.Const("w", small(rnd(1, 15, 4))), b.Const("r", small(rnd(1, 15, 5))), b.Const("b", small(rnd(1, 30))),
				nil, b.Const("h0", rnd(1, 3, 5))}, ir.IntAttr("hidden_size", 5), ir.StringAttr("direction", "reverse"),
				ir.IntAttr("linear_before_reset", 1), ir.FloatAttr("clip", 1.5))
		}, false},
		{"LSTM forward peepholes initial states", []*tensor.Tensor{rnd(6, 2, 5)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return b.OpN("LSTM", 3, []*ir.Value{x[0], b.Const("w", small(rnd(1, 24, 5))), b.Const("r", small(rnd(1, 24, 6))), b.Const("b", small(rnd(1, 48))),
				nil, b.Const("h0", rnd(1, 2, 6)), b.Const("c0", rnd(1, 2, 6)), b.Const("p", small(rnd(1, 18)))}, ir.IntAttr("hidden_size", 6))
		}, false},
		{"LSTM bidirectional batch first sequence_lens, Y_h and Y_c", []*tensor.Tensor{rnd(3, 5, 4)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return b.OpN("LSTM", 3, []*ir.Value{x[0], b.Const("w", small(rnd(2, 20, 4))), b.Const("r", small(rnd(2, 20, 5))), nil,
				b.Const("lens", tensor.FromInt64([]int64{5, 3, 1}, 3))}, ir.IntAttr("hidden_size", 5), ir.StringAttr("direction", "bidirectional"),
				ir.IntAttr("layout", 1), ir.IntAttr("input_forget", 1))[1:]
		}, false},
		{"RoiAlign avg half_pixel sampling 2, max output_half_pixel adaptive", []*tensor.Tensor{rnd(2, 3, 10, 12)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			rois := f32(1, 1.5, 6.25, 7, 0, 0, 11.5, 9.5, 3.125, 2, 4, 3, 8, 6.5, 10, 9.75)
			rois.Shape = []int{4, 4}
			bi := tensor.FromInt64([]int64{0, 1, 1, 0}, 4)
			in := []*ir.Value{x[0], b.Const("rois", rois), b.Const("bi", bi)}
			return []*ir.Value{b.Op("RoiAlign", in, ir.IntAttr("output_height", 3), ir.IntAttr("output_width", 4), ir.IntAttr("sampling_ratio", 2)),
				b.Op("RoiAlign", in, ir.StringAttr("mode", "max"), ir.StringAttr("coordinate_transformation_mode", "output_half_pixel"),
					ir.IntAttr("output_height", 2), ir.IntAttr("output_width", 2), ir.FloatAttr("spatial_scale", 0.5))}
		}, false},
		{"MaxRoiPool spatial_scale", []*tensor.Tensor{rnd(2, 3, 9, 11)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			rois := f32(0, 0, 0, 10, 8, 1, 2, 1, 7, 5, 1, 4, 4, 4, 4, 0, 12, 6, 30, 20)
			rois.Shape = []int{4, 5}
			return op(b, "MaxRoiPool", []*ir.Value{x[0], b.Const("rois", rois)}, ir.IntsAttr("pooled_shape", 2, 3), ir.FloatAttr("spatial_scale", 0.75))
		}, false},
		{"MaxUnpool 2-D, and into a larger output_shape", []*tensor.Tensor{rnd(1, 2, 3, 3)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			// each element at a position of its own 2x2 window of the 6x6 output
			idx := tensor.New(tensor.Int64, 1, 2, 3, 3)
			for c := range 2 {
				for i := range 3 {
					for j := range 3 {
						idx.Int64s()[(c*3+i)*3+j] = int64(c*36 + (2*i+r.IntN(2))*6 + 2*j + r.IntN(2))
					}
				}
			}
			in := []*ir.Value{x[0], b.Const("i", idx)}
			at := []*ir.Attr{ir.IntsAttr("kernel_shape", 2, 2), ir.IntsAttr("strides", 2, 2)}
			return []*ir.Value{b.Op("MaxUnpool", in, at...), b.Op("MaxUnpool", append(in, b.Const("shape", tensor.FromInt64([]int64{1, 2, 7, 8}, 4))), at...)}
		}, false},
		{"DFT real onesided, complex inverse", []*tensor.Tensor{rnd(2, 16, 1), rnd(3, 10, 2)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("DFT", x[:1], ir.IntAttr("onesided", 1)), b.Op("DFT", x[1:2], ir.IntAttr("inverse", 1))}
		}, false},
		{"DFT zero-padded dft_length, inner axis", []*tensor.Tensor{rnd(2, 8, 3, 1)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return op(b, "DFT", []*ir.Value{x[0], b.Const("n", tensor.FromInt64([]int64{12}))})
		}, false},
		{"STFT onesided with a window, complex without", []*tensor.Tensor{rnd(2, 40, 1), rnd(1, 30, 2)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			step := func(v int64) *ir.Value { return b.Const("", tensor.FromInt64([]int64{v})) }
			win := tensor.New(tensor.Float32, 16)
			for i := range win.Float32s() {
				win.Float32s()[i] = float32(0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/16))
			}
			return []*ir.Value{b.Op("STFT", []*ir.Value{x[0], step(6), b.Const("win", win)}),
				b.Op("STFT", []*ir.Value{x[1], step(4), nil, step(8)}, ir.IntAttr("onesided", 0))}
		}, false},
		{"ReverseSequence time-major int64 lengths, batch-major int32 lengths of int64", []*tensor.Tensor{rnd(5, 3, 2), rndInts(4, 6)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			lens := tensor.New(tensor.Int32, 4)
			copy(lens.Int32s(), []int32{6, 1, 0, 4})
			return []*ir.Value{b.Op("ReverseSequence", []*ir.Value{x[0], b.Const("l", tensor.FromInt64([]int64{5, 2, 3}, 3))}),
				b.Op("ReverseSequence", []*ir.Value{x[1], b.Const("l32", lens)}, ir.IntAttr("batch_axis", 0), ir.IntAttr("time_axis", 1))}
		}, false},
		{"Det batched 4x4, 1x1", []*tensor.Tensor{rnd(3, 4, 4), rnd(2, 1, 1)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			return []*ir.Value{b.Op("Det", x[:1]), b.Op("Det", x[1:2])}
		}, false},
		{"MatMulInteger uint8 x int8 zero points per row and column, batched", []*tensor.Tensor{bytes8(tensor.Uint8, 2, 3, 7), bytes8(tensor.Int8, 2, 7, 4)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			az := bytes8(tensor.Uint8, 3)
			return op(b, "MatMulInteger", []*ir.Value{x[0], x[1], b.Const("az", az), b.Const("bz", bytes8(tensor.Int8, 4))})
		}, false},
		{"MatMulInteger int8 one B, QLinearMatMul uint8 per-column scales", []*tensor.Tensor{bytes8(tensor.Int8, 2, 3, 5), bytes8(tensor.Uint8, 4, 6)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			y0 := b.Op("MatMulInteger", []*ir.Value{x[0], b.Const("w", bytes8(tensor.Int8, 5, 2))})
			sc := func(v ...float32) *ir.Value { return b.Const("", tensor.FromFloat32(v, len(v))) }
			one := func(dt tensor.DType, v int) *ir.Value {
				t := tensor.New(dt, 1)
				t.Data[0] = byte(v)
				return b.Const("", t)
			}
			y1 := b.Op("QLinearMatMul", []*ir.Value{x[1], sc(0.05), one(tensor.Uint8, 120), b.Const("w2", bytes8(tensor.Uint8, 6, 3)),
				sc(0.02, 0.03, 0.01), one(tensor.Uint8, 128), sc(0.25), one(tensor.Uint8, 100)})
			return []*ir.Value{y0, y1}
		}, false},
		{"ConvInteger pads strides zero points, 1-D dilations", []*tensor.Tensor{bytes8(tensor.Uint8, 2, 3, 7, 6), bytes8(tensor.Int8, 1, 4, 11)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			xz := tensor.New(tensor.Uint8, 1)
			xz.Data[0] = 128
			y0 := b.Op("ConvInteger", []*ir.Value{x[0], b.Const("w", bytes8(tensor.Uint8, 4, 3, 3, 2)), b.Const("xz", xz), b.Const("wz", bytes8(tensor.Uint8, 4))},
				ir.IntsAttr("pads", 1, 0, 1, 1), ir.IntsAttr("strides", 2, 1))
			y1 := b.Op("ConvInteger", []*ir.Value{x[1], b.Const("w1", bytes8(tensor.Int8, 2, 4, 3))}, ir.IntsAttr("dilations", 2))
			return []*ir.Value{y0, y1}
		}, false},
		{"QLinearConv groups per-channel scales bias", []*tensor.Tensor{bytes8(tensor.Uint8, 1, 4, 6, 6)}, func(b *ir.Builder, x []*ir.Value) []*ir.Value {
			sc := func(v ...float32) *ir.Value { return b.Const("", tensor.FromFloat32(v, len(v))) }
			one := func(dt tensor.DType, v int) *ir.Value {
				t := tensor.New(dt, 1)
				t.Data[0] = byte(v)
				return b.Const("", t)
			}
			bias := tensor.New(tensor.Int32, 6)
			copy(bias.Int32s(), []int32{-300, 0, 250, 1000, -20, 7})
			return op(b, "QLinearConv", []*ir.Value{x[0], sc(0.03), one(tensor.Uint8, 120), b.Const("w", bytes8(tensor.Int8, 6, 2, 3, 3)),
				sc(0.002, 0.003, 0.001, 0.004, 0.0025, 0.0015), b.Const("wz", tensor.New(tensor.Int8, 6)), sc(0.05), one(tensor.Uint8, 110), b.Const("b", bias)},
				ir.IntAttr("group", 2), ir.IntsAttr("pads", 1, 1, 1, 1))
		}, false},
	}
}
