package engine

import (
	"context"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// kernelCase is a node (or a few) whose outputs should come from the arena.
type kernelCase struct {
	name  string
	shape []int // of the float32 input x
	// build adds the nodes reading x and returns the values to check
	build func(b *ir.Builder, x *ir.Value) []*ir.Value
}

func f32c(b *ir.Builder, scale float32, shape ...int) *ir.Value {
	return b.Const("", ramp(tensor.NumElements(shape), scale, shape...))
}

func i64c(b *ir.Builder, v ...int64) *ir.Value {
	return b.Const("", tensor.FromInt64(v, len(v)))
}

func op(b *ir.Builder, typ string, in []*ir.Value, attrs ...*ir.Attr) []*ir.Value {
	return []*ir.Value{b.Op(typ, in, attrs...)}
}

func conv(b *ir.Builder, x *ir.Value, w []int, bias bool, attrs ...*ir.Attr) []*ir.Value {
	in := []*ir.Value{x, f32c(b, 0.1, w...)}
	if bias {
		in = append(in, f32c(b, 0.3, w[0]))
	}
	return op(b, "Conv", in, attrs...)
}

var kernelCases = []kernelCase{
	{"Add broadcast", []int{2, 3, 4}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return op(b, "Add", []*ir.Value{x, f32c(b, 0.5, 4)})
	}},
	{"Div Sub Mul", []int{3, 5}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		d := b.Op("Div", []*ir.Value{x, f32c(b, 0.7, 3, 1)})
		return []*ir.Value{d, b.Op("Sub", []*ir.Value{d, x}), b.Op("Mul", []*ir.Value{x, x})}
	}},
	{"Pow", []int{4, 4}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return op(b, "Pow", []*ir.Value{x, b.Const("", tensor.FromFloat32([]float32{2}, 1))})
	}},
	{"unary", []int{5, 7}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		var out []*ir.Value
		for _, u := range []string{"Relu", "Sigmoid", "Tanh", "Erf", "Neg", "Abs", "Exp"} {
			out = append(out, b.Op(u, []*ir.Value{x}))
		}
		return out
	}},
	{"Clip PRelu", []int{2, 3, 5}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		lo := b.Const("", tensor.FromFloat32([]float32{-1}))
		hi := b.Const("", tensor.FromFloat32([]float32{2}))
		return []*ir.Value{b.Op("Clip", []*ir.Value{x, lo, hi}), b.Op("PRelu", []*ir.Value{x, f32c(b, 0.2, 5)})}
	}},
	{"compare Where Not", []int{4, 6}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		lt := b.Op("Less", []*ir.Value{x, f32c(b, 0.3, 6)})
		return []*ir.Value{lt, b.Op("Not", []*ir.Value{lt}), b.Op("Where", []*ir.Value{lt, x, f32c(b, 1, 4, 1)})}
	}},
	{"Cast", []int{3, 4}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		i := b.Op("Cast", []*ir.Value{x}, ir.IntAttr("to", int64(tensor.Int64)))
		return []*ir.Value{i, b.Op("Cast", []*ir.Value{i}, ir.IntAttr("to", int64(tensor.Float64)))}
	}},
	{"Sum Max Mean", []int{3, 4}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		y := f32c(b, 0.9, 4)
		return []*ir.Value{b.Op("Sum", []*ir.Value{x, y, x}), b.Op("Max", []*ir.Value{x, y}), b.Op("Mean", []*ir.Value{y, x})}
	}},
	{"Conv 3x3 pad bias", []int{1, 3, 9, 9}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return conv(b, x, []int{4, 3, 3, 3}, true, ir.IntsAttr("pads", 1, 1, 1, 1))
	}},
	{"Conv stride 2 no bias", []int{2, 3, 10, 9}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return conv(b, x, []int{5, 3, 3, 3}, false, ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 0, 1, 1, 0))
	}},
	{"Conv depthwise", []int{1, 4, 8, 8}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return conv(b, x, []int{4, 1, 3, 3}, true, ir.IntAttr("group", 4), ir.IntsAttr("pads", 1, 1, 1, 1))
	}},
	{"Conv 1x1", []int{1, 6, 5, 5}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return conv(b, x, []int{3, 6, 1, 1}, false)
	}},
	{"Conv 1-D", []int{2, 2, 11}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return conv(b, x, []int{3, 2, 3}, false, ir.IntsAttr("dilations", 2))
	}},
	{"Gemm", []int{3, 5}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return []*ir.Value{
			b.Op("Gemm", []*ir.Value{x, f32c(b, 0.2, 4, 5), f32c(b, 0.1, 4)}, ir.IntAttr("transB", 1)),
			b.Op("Gemm", []*ir.Value{x, f32c(b, 0.3, 5, 2)}, ir.FloatAttr("alpha", 0.5)),
		}
	}},
	{"MatMul", []int{2, 3, 4}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return []*ir.Value{
			b.Op("MatMul", []*ir.Value{x, f32c(b, 0.2, 4, 5)}),
			b.Op("MatMul", []*ir.Value{x, f32c(b, 0.4, 2, 4, 3)}),
		}
	}},
	{"MaxPool AveragePool", []int{1, 2, 9, 9}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return []*ir.Value{
			b.Op("MaxPool", []*ir.Value{x}, ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1)),
			b.Op("AveragePool", []*ir.Value{x}, ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("pads", 1, 1, 1, 1)),
			b.Op("AveragePool", []*ir.Value{x}, ir.IntsAttr("kernel_shape", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1), ir.IntAttr("count_include_pad", 1)),
			b.Op("GlobalAveragePool", []*ir.Value{x}),
			b.Op("GlobalMaxPool", []*ir.Value{x}),
		}
	}},
	{"MaxPool indices, 3-D", []int{1, 2, 4, 5, 6}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		out := b.OpN("MaxPool", 2, []*ir.Value{x}, ir.IntsAttr("kernel_shape", 2, 2, 2), ir.IntsAttr("pads", 1, 0, 1, 0, 1, 1))
		return append(out, b.Op("AveragePool", []*ir.Value{x}, ir.IntsAttr("kernel_shape", 2, 3, 2)))
	}},
	{"norms", []int{2, 3, 4, 5}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return []*ir.Value{
			b.Op("Softmax", []*ir.Value{x}, ir.IntAttr("axis", -1)),
			b.Op("Softmax", []*ir.Value{x}, ir.IntAttr("axis", 1)),
			b.Op("LayerNormalization", []*ir.Value{x, f32c(b, 0.2, 5), f32c(b, 0.1, 5)}, ir.IntAttr("axis", -1)),
			b.Op("BatchNormalization", []*ir.Value{x, f32c(b, 0.2, 3), f32c(b, 0.1, 3), f32c(b, 0.3, 3), b.Const("", tensor.FromFloat32([]float32{1, 2, 3}, 3))}),
		}
	}},
	{"Concat Split", []int{2, 6, 3}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		c := b.Op("Concat", []*ir.Value{x, f32c(b, 0.5, 2, 2, 3), x}, ir.IntAttr("axis", 1))
		s := b.OpN("Split", 3, []*ir.Value{x, i64c(b, 1, 2, 3)}, ir.IntAttr("axis", 1))
		return append([]*ir.Value{c}, s...)
	}},
	{"Gather Transpose Slice Expand", []int{4, 3, 5}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return []*ir.Value{
			b.Op("Gather", []*ir.Value{x, i64c(b, 2, 0, 2)}, ir.IntAttr("axis", 0)),
			b.Op("Gather", []*ir.Value{x, i64c(b, 4, 1)}, ir.IntAttr("axis", 2)),
			b.Op("Transpose", []*ir.Value{x}, ir.IntsAttr("perm", 2, 0, 1)),
			b.Op("Slice", []*ir.Value{x, i64c(b, 1, 0), i64c(b, 4, 5), i64c(b, 0, 2), i64c(b, 2, 2)}),
			b.Op("Expand", []*ir.Value{b.Op("Neg", []*ir.Value{x}), i64c(b, 2, 1, 1, 1)}),
		}
	}},
	{"reductions", []int{3, 4, 5}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return []*ir.Value{
			b.Op("ReduceMean", []*ir.Value{x, i64c(b, -1)}),
			b.Op("ReduceSum", []*ir.Value{x, i64c(b, 1)}, ir.IntAttr("keepdims", 0)),
			b.Op("ReduceMax", []*ir.Value{x, i64c(b, 0, 2)}),
			b.Op("ReduceL2", []*ir.Value{x}),
			b.Op("ReduceProd", []*ir.Value{x, i64c(b, 0)}),
			b.Op("ArgMax", []*ir.Value{x}, ir.IntAttr("axis", 1), ir.IntAttr("keepdims", 0)),
			b.Op("ArgMin", []*ir.Value{x}, ir.IntAttr("axis", 2), ir.IntAttr("select_last_index", 1)),
		}
	}},
	{"reductions over an empty axis", []int{2, 0, 3}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return []*ir.Value{
			b.Op("ReduceSum", []*ir.Value{x, i64c(b, 1)}),
			b.Op("ReduceProd", []*ir.Value{x, i64c(b, 1)}, ir.IntAttr("keepdims", 0)),
		}
	}},
	{"Pad Tile InstanceNormalization", []int{1, 2, 3, 4}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		return []*ir.Value{
			b.Op("Pad", []*ir.Value{x, i64c(b, 0, 1, 2, 0, 0, 2, 1, 3), b.Const("", tensor.FromFloat32([]float32{1.5}))}),
			b.Op("Pad", []*ir.Value{x, i64c(b, 0, 0, 0, 1, 0, 0, 0, 2)}),
			b.Op("Pad", []*ir.Value{x, i64c(b, 0, 0, 2, 1, 0, 0, 1, 3)}, ir.StringAttr("mode", "reflect")),
			b.Op("Pad", []*ir.Value{x, i64c(b, 0, 0, 1, 2, 0, 0, 2, 1)}, ir.StringAttr("mode", "edge")),
			b.Op("Tile", []*ir.Value{x, i64c(b, 2, 1, 3, 1)}),
			b.Op("InstanceNormalization", []*ir.Value{x, f32c(b, 0.5, 2), f32c(b, 0.2, 2)}),
		}
	}},
	{"ConstantOfShape", []int{3, 4}, func(b *ir.Builder, x *ir.Value) []*ir.Value {
		shape := b.Op("Shape", []*ir.Value{b.Op("Neg", []*ir.Value{x})})
		two := b.Op("ConstantOfShape", []*ir.Value{shape}, &ir.Attr{Name: "value", Type: ir.AttrTensor, T: tensor.FromFloat32([]float32{2}, 1)})
		zero := b.Op("ConstantOfShape", []*ir.Value{shape})
		return []*ir.Value{two, zero}
	}},
}

// TestKernelsWriteEveryElement runs each migrated kernel with its outputs
// in a poisoned arena and requires the results of a run without arena:
// a kernel that reads memory it did not write (relying on zeroed outputs)
// fails. It also checks that the outputs did come from the arena.
func TestKernelsWriteEveryElement(t *testing.T) {
	withStrictAlias(t)
	for _, tc := range kernelCases {
		t.Run(tc.name, func(t *testing.T) {
			build := func(o Options) (*Engine, []*ir.Value) {
				b := ir.NewBuilder("kernel", 18)
				x := b.Input("x", tensor.Float32, ir.KnownShape(tc.shape...)...)
				vals := tc.build(b, x)
				for i, v := range vals {
					// a consumer, so that v is an intermediate in the arena
					b.Output(b.Op("Cast", []*ir.Value{v}, ir.IntAttr("to", int64(tensor.Float64))), "y"+string(rune('a'+i)))
				}
				e, err := NewWithOptions(b.Graph(), o)
				if err != nil {
					t.Fatal(err)
				}
				return e, vals
			}
			ref, _ := build(Options{NoArena: true})
			e, vals := build(Options{})
			in := map[string]*tensor.Tensor{"x": ramp(tensor.NumElements(tc.shape), 0.37, tc.shape...)}
			want, err := ref.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			check := map[*ir.Value]bool{}
			for _, v := range vals {
				check[v] = true
			}
			c := e.NewContext()
			for run := 0; run < 2; run++ {
				if run > 0 {
					poison(c)
				}
				seen := 0
				got, err := c.RunObserved(context.Background(), in, func(v *ir.Value, tt *tensor.Tensor) {
					if check[v] {
						seen++
						if !c.inArena(tt) {
							t.Errorf("%s (%v) is not in the arena", v.Name, v.Producer)
						}
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				if seen != len(vals) {
					t.Fatalf("observed %d of %d values", seen, len(vals))
				}
				for name, w := range want {
					equal(t, name, got[name], w)
				}
			}
		})
	}
}
