package nn_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// blockedPoolGraph is x -> ToBlocked -> kiln::<op> -> FromBlocked (the
// blocked result also an output); onnxPoolGraph is ONNX <op> on x.
func blockedPoolGraph(op string, c int, xs []ir.Dim, attrs []*ir.Attr) *ir.Graph {
	b := ir.NewBuilder("blockedpool", 17)
	x := b.Input("x", tensor.Float32, xs...)
	yb := kilnOp(b, "Blocked"+op, []*ir.Value{kilnOp(b, "ToBlocked", []*ir.Value{x})}, attrs...)
	b.Output(kilnOp(b, "FromBlocked", []*ir.Value{yb}, ir.IntAttr("channels", int64(c))), "y")
	b.Output(yb, "yb")
	return b.Graph()
}

func onnxPoolGraph(op string, xs []int, attrs []*ir.Attr) *ir.Graph {
	b := ir.NewBuilder("pool", 17)
	x := b.Input("x", tensor.Float32, ir.KnownShape(xs...)...)
	b.Output(b.Op(op, []*ir.Value{x}, attrs...), "y")
	return b.Graph()
}

// TestBlockedPools: each blocked pool between ToBlocked and FromBlocked
// equals the ONNX pool on the same data (ceil_mode, pads, auto_pad,
// dilations, count_include_pad, strides; resnet's and squeezenet's
// maxpools), batch 1 and 2, channels a multiple of 16 or not, with the
// batch symbolic; the blocked result's pad lanes are zero.
func TestBlockedPools(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 2))
	ints := ir.IntsAttr
	k3s2 := []*ir.Attr{ints("kernel_shape", 3, 3), ints("strides", 2, 2)}
	cases := []struct {
		name  string
		op    string
		x     []int
		attrs []*ir.Attr
	}{
		{"resnet maxpool 3x3/2 pads 1", "MaxPool", []int{1, 20, 16, 16}, append(slices.Clone(k3s2), ints("pads", 1, 1, 1, 1))},
		{"squeezenet maxpool 3x3/2 ceil", "MaxPool", []int{2, 24, 13, 13}, append(slices.Clone(k3s2), ir.IntAttr("ceil_mode", 1))},
		{"maxpool 3x3/2 ceil odd", "MaxPool", []int{1, 32, 14, 11}, append(slices.Clone(k3s2), ir.IntAttr("ceil_mode", 1))},
		{"maxpool 2x2/2", "MaxPool", []int{2, 7, 8, 9}, []*ir.Attr{ints("kernel_shape", 2, 2), ints("strides", 2, 2)}},
		{"maxpool 3x3 dilation 2 pads", "MaxPool", []int{1, 17, 10, 9}, []*ir.Attr{ints("kernel_shape", 3, 3), ints("dilations", 2, 2), ints("pads", 2, 1, 0, 2)}},
		{"maxpool same_upper", "MaxPool", []int{1, 5, 7, 6}, []*ir.Attr{ints("kernel_shape", 3, 2), ints("strides", 2, 2), ir.StringAttr("auto_pad", "SAME_UPPER")}},
		{"maxpool 1x1/2", "MaxPool", []int{1, 16, 5, 5}, []*ir.Attr{ints("kernel_shape", 1, 1), ints("strides", 2, 2)}},
		{"avgpool 3x3 pads 1", "AveragePool", []int{1, 20, 9, 9}, []*ir.Attr{ints("kernel_shape", 3, 3), ints("pads", 1, 1, 1, 1)}},
		{"avgpool 3x3 pads 1 include pad", "AveragePool", []int{2, 20, 9, 8}, []*ir.Attr{ints("kernel_shape", 3, 3), ints("pads", 1, 1, 1, 1), ir.IntAttr("count_include_pad", 1)}},
		{"avgpool 3x3/2 ceil include pad", "AveragePool", []int{1, 33, 10, 10}, append(slices.Clone(k3s2), ir.IntAttr("ceil_mode", 1), ints("pads", 1, 1, 1, 1), ir.IntAttr("count_include_pad", 1))},
		{"avgpool 3x3/2 ceil", "AveragePool", []int{1, 16, 10, 11}, append(slices.Clone(k3s2), ir.IntAttr("ceil_mode", 1), ints("pads", 0, 1, 1, 0))},
		{"avgpool 2x2/2", "AveragePool", []int{2, 3, 6, 6}, []*ir.Attr{ints("kernel_shape", 2, 2), ints("strides", 2, 2)}},
		{"avgpool 7x7 valid", "AveragePool", []int{1, 40, 7, 7}, []*ir.Attr{ints("kernel_shape", 7, 7), ir.StringAttr("auto_pad", "VALID")}},
		{"avgpool dilation 2 same_lower", "AveragePool", []int{1, 18, 8, 8}, []*ir.Attr{ints("kernel_shape", 2, 3), ints("dilations", 2, 2), ir.StringAttr("auto_pad", "SAME_LOWER")}},
		{"global average", "GlobalAveragePool", []int{2, 20, 7, 5}, nil},
		{"global average 1 pixel", "GlobalAveragePool", []int{1, 16, 1, 1}, nil},
		{"global average 13x13", "GlobalAveragePool", []int{1, 100, 13, 13}, nil},
		{"global max", "GlobalMaxPool", []int{2, 20, 7, 5}, nil},
		{"global max 1 pixel", "GlobalMaxPool", []int{1, 3, 1, 1}, nil},
	}
	for _, tc := range cases {
		for _, symbolic := range []bool{false, true} {
			name := fmt.Sprintf("%s symbolic %v", tc.name, symbolic)
			x := blkRand(r, tc.x...)
			xs := ir.KnownShape(tc.x...)
			if symbolic {
				xs[0] = ir.S("batch")
			}
			in := map[string]*tensor.Tensor{"x": x}
			got := runGraph(t, blockedPoolGraph(tc.op, tc.x[1], xs, tc.attrs), in)
			want := runGraph(t, onnxPoolGraph(tc.op, tc.x, tc.attrs), in)[0]
			compareClose(t, name, got[0], want, blockedTol)
			checkPadLanes(t, name, got[1], tc.x[1])
		}
	}
}

// TestBlockedRoundTrip: FromBlocked(ToBlocked(x)) is x exactly (small
// tensors and larger ones, which cpu's reorders split over the cores), and
// ToBlocked's output is x's channels 16 a pixel with zero pad lanes.
func TestBlockedRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 3))
	for _, s := range [][]int{{1, 3, 5, 7}, {2, 16, 4, 4}, {3, 33, 2, 5}, {1, 1, 1, 1}, {2, 40, 1, 3}, {2, 40, 24, 24}, {1, 100, 30, 31}, {3, 16, 33, 32}} {
		b := ir.NewBuilder("roundtrip", 17)
		x := b.Input("x", tensor.Float32, ir.S("n"), ir.D(int64(s[1])), ir.S("h"), ir.S("w"))
		xb := kilnOp(b, "ToBlocked", []*ir.Value{x})
		b.Output(kilnOp(b, "FromBlocked", []*ir.Value{xb}, ir.IntAttr("channels", int64(s[1]))), "y")
		b.Output(xb, "xb")
		xt := blkRand(r, s...)
		got := runGraph(t, b.Graph(), map[string]*tensor.Tensor{"x": xt})
		name := fmt.Sprint(s)
		if !slices.Equal(got[0].Shape, s) || !slices.Equal(got[0].Float32s(), xt.Float32s()) {
			t.Errorf("%s: round trip gives %v %v, want %v", name, got[0].Shape, got[0].Float32s()[:min(4, got[0].Len())], xt.Float32s()[:min(4, xt.Len())])
		}
		checkPadLanes(t, name, got[1], s[1])
		n, c, hw := s[0], s[1], s[2]*s[3]
		xb5 := got[1].Float32s()
		for i := range n {
			for ch := range c {
				for p := range hw {
					v := xb5[(((i*cpu.Blocks(c)+ch/cpu.Block)*hw)+p)*cpu.Block+ch%cpu.Block]
					if w := xt.Float32s()[(i*c+ch)*hw+p]; v != w {
						t.Fatalf("%s: blocked [%d, %d, %d] = %g, want %g", name, i, ch, p, v, w)
					}
				}
			}
		}
	}
}
