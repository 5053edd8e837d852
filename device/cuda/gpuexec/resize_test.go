package gpuexec

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// emulateResize runs a resize_nearest launch on the CPU as kernels/nn.cu
// does, reading its index tables from the program's weights.
func emulateResize(t *testing.T, p *program, l launch, x []byte, elem int) []byte {
	t.Helper()
	if len(l.args) != 8 {
		t.Fatalf("launch %s with %d arguments, want a resize_nearest", l.kernel, len(l.args))
	}
	metaAt := func(i int64) int64 {
		off := l.args[2].ref.off + 8*i
		return int64(binary.LittleEndian.Uint64(p.weights[off : off+8]))
	}
	nc, h, w, oh, ow := l.args[3].i, l.args[4].i, l.args[5].i, l.args[6].i, l.args[7].i
	y := make([]byte, nc*oh*ow*int64(elem))
	for i := range nc * oh * ow {
		o, r, c := i/(oh*ow), i/ow%oh, i%ow
		src := ((o*h+metaAt(r))*w + metaAt(oh+c)) * int64(elem)
		copy(y[i*int64(elem):], x[src:src+int64(elem)])
	}
	return y
}

// TestResizeNearest checks the Resize launches (the kernel emulated on the
// CPU) against the CPU engine, over coordinate modes, rounding modes,
// enlarging and shrinking, scales and sizes.
func TestResizeNearest(t *testing.T) {
	f32 := func(v ...float32) *tensor.Tensor { return tensor.FromFloat32(v, len(v)) }
	i64 := func(v ...int64) *tensor.Tensor { return tensor.FromInt64(v, len(v)) }
	tests := []struct {
		name   string
		opset  int64
		scales *tensor.Tensor
		sizes  *tensor.Tensor
		attrs  []*ir.Attr
	}{
		{name: "yolo upsample x2", opset: 17, scales: f32(1, 1, 2, 2), attrs: []*ir.Attr{ir.StringAttr("mode", "nearest"),
			ir.StringAttr("coordinate_transformation_mode", "asymmetric"), ir.StringAttr("nearest_mode", "floor")}},
		{name: "half pixel sizes", opset: 13, sizes: i64(2, 3, 7, 11)},
		{name: "shrink round prefer ceil", opset: 13, sizes: i64(2, 3, 3, 2), attrs: []*ir.Attr{ir.StringAttr("nearest_mode", "round_prefer_ceil")}},
		{name: "align corners ceil", opset: 13, scales: f32(1, 1, 1.5, 0.8), attrs: []*ir.Attr{
			ir.StringAttr("coordinate_transformation_mode", "align_corners"), ir.StringAttr("nearest_mode", "ceil")}},
		{name: "pytorch half pixel", opset: 13, scales: f32(1, 1, 3, 1), attrs: []*ir.Attr{
			ir.StringAttr("coordinate_transformation_mode", "pytorch_half_pixel")}},
		{name: "tf half pixel for nn", opset: 13, scales: f32(1, 1, 0.5, 2.5), attrs: []*ir.Attr{
			ir.StringAttr("coordinate_transformation_mode", "tf_half_pixel_for_nn")}},
		{name: "opset 10", opset: 10, scales: f32(1, 1, 2, 0.6)},
	}
	for _, tt := range tests {
		for _, half := range []bool{false, true} {
			name := tt.name
			if half {
				name += "/half"
			}
			t.Run(name, func(t *testing.T) {
				x := tensor.New(tensor.Float32, 2, 3, 5, 4)
				for i := range x.Len() {
					x.SetFloat(i, float64(i*7%23)-11)
				}
				mk := func() *ir.Graph {
					b := ir.NewBuilder("g", tt.opset)
					in := []*ir.Value{b.Input("x", tensor.Float32, ir.D(2), ir.D(3), ir.D(5), ir.D(4))}
					switch {
					case tt.opset < 11:
						in = append(in, b.Const("scales", tt.scales))
					case tt.scales != nil:
						in = append(in, nil, b.Const("scales", tt.scales))
					default:
						in = append(in, nil, nil, b.Const("sizes", tt.sizes))
					}
					b.Output(b.Op("Resize", in, tt.attrs...), "y")
					g := b.Graph()
					if _, err := ops.InferGraph(g); err != nil {
						t.Fatal(err)
					}
					return g
				}
				ce, err := engine.New(mk())
				if err != nil {
					t.Fatal(err)
				}
				want, err := ce.Run(context.Background(), map[string]*tensor.Tensor{"x": x})
				if err != nil {
					t.Fatal(err)
				}
				p, err := compile(mk(), false, half)
				if err != nil {
					t.Fatal(err)
				}
				var l launch
				for _, s := range p.steps {
					if s.node.OpType == "Resize" && len(s.launches) == 1 {
						l = s.launches[0]
					}
				}
				if wk := map[bool]string{false: "resize_nearest_f32", true: "resize_nearest_f16"}[half]; l.kernel != wk {
					t.Fatalf("launch %q, want %s", l.kernel, wk)
				}
				src, ws := x.Data, want["y"].Data
				elem := 4
				if half { // compare the half bits: the values are small integers, exact in half
					src, ws, elem = toHalf(x), toHalf(want["y"]), 2
				}
				if got := emulateResize(t, p, l, src, elem); !bytes.Equal(got, ws) {
					t.Errorf("resize to %v: got %v, want %v", want["y"].Shape, got, ws)
				}
			})
		}
	}
}

func toHalf(t *tensor.Tensor) []byte { return halfBytes(t) }

// TestHalfBytes checks the conversion of float32 constants, saturating at
// the largest finite half.
func TestHalfBytes(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{{0, 0}, {1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {1e6, 0x7bff}, {-3.4e38, 0xfbff}, {0.5, 0x3800}}
	for _, tt := range tests {
		b := halfBytes(tensor.FromFloat32([]float32{tt.in}, 1))
		if got := uint16(b[0]) | uint16(b[1])<<8; got != tt.want {
			t.Errorf("%g: %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

// TestFlatRepeat checks when a broadcasting binary op can index b by a
// modulo (binary_flat).
func TestFlatRepeat(t *testing.T) {
	tests := []struct {
		a, b, y []int
		bn      int64
		ok      bool
	}{
		{[]int{2, 3, 4}, []int{2, 3, 4}, []int{2, 3, 4}, 24, true},
		{[]int{2, 3, 4}, []int{4}, []int{2, 3, 4}, 4, true},
		{[]int{2, 3, 4}, []int{1, 3, 4}, []int{2, 3, 4}, 12, true},
		{[]int{2, 3, 4}, []int{}, []int{2, 3, 4}, 1, true},
		{[]int{2, 3, 4}, []int{1, 1}, []int{2, 3, 4}, 1, true},
		{[]int{2, 3, 4}, []int{3, 1}, []int{2, 3, 4}, 0, false},
		{[]int{2, 1, 4}, []int{2, 3, 4}, []int{2, 3, 4}, 0, false},
		{[]int{2, 3, 4}, []int{2, 1, 4}, []int{2, 3, 4}, 0, false},
	}
	for _, tt := range tests {
		bn, ok := flatRepeat(tt.a, tt.b, tt.y)
		if ok != tt.ok || (ok && bn != tt.bn) {
			t.Errorf("flatRepeat(%v, %v, %v) = %d, %v; want %d, %v", tt.a, tt.b, tt.y, bn, ok, tt.bn, tt.ok)
		}
	}
}
