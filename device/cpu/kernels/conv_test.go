package kernels

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// registryAndRef prepares n (input i of in[i]'s type, the inputs in
// consts constant) with the registry, which must run it with name, and
// with the op's reference kernel (ops.Prepare, ops/nn's).
func registryAndRef(t *testing.T, name string, n *ir.Node, in []*tensor.Tensor, consts map[int]bool) (fast, ref ops.Kernel) {
	t.Helper()
	vals := make([]*ir.Value, len(in))
	for i, x := range in {
		if x == nil {
			n.Inputs[i] = nil
			continue
		}
		vals[i] = &ir.Value{Name: fmt.Sprintf("in%d", i), Type: ops.TypeOf(x)}
		if consts[i] {
			vals[i].Const = x
		}
		n.Inputs[i] = vals[i]
	}
	fast, got, err := Default().Prepare(n, 13)
	if err != nil {
		t.Fatal(err)
	}
	if got != name {
		t.Fatalf("%s runs %s, want %s", n.OpType, got, name)
	}
	if ref, err = ops.Prepare(n, 13); err != nil {
		t.Fatal(err)
	}
	for _, k := range []ops.Kernel{fast, ref} {
		if _, err := k.Infer(vals); err != nil {
			t.Fatal(err)
		}
	}
	return fast, ref
}

// closeTo checks got against want (the reference) within tol relative to
// magnitude, float64 comparisons of any float type; NaN never passes.
func closeTo(t *testing.T, name string, got, want *tensor.Tensor, tol float64) {
	t.Helper()
	if !slices.Equal(got.Shape, want.Shape) || got.DType != want.DType {
		t.Fatalf("%s: %v %v, reference %v %v", name, got.DType, got.Shape, want.DType, want.Shape)
	}
	for i := range want.Len() {
		g, w := got.Float(i), want.Float(i)
		if math.IsNaN(g) || math.Abs(g-w) > tol*(1+math.Abs(w)) {
			t.Fatalf("%s: y[%d] = %g, reference %g", name, i, g, w)
		}
	}
}

// TestConvRegistry: cpu.Conv (cpu.Conv2D on 2-D shapes) against ops/nn's
// Conv (im2col + GEMM) on 1-D, 2-D and 3-D convolutions with pads,
// strides, dilations, groups and auto_pad, with and without bias, in
// float32, float16 and bfloat16, into garbage-filled outputs; float64
// stays with the reference.
func TestConvRegistry(t *testing.T) {
	r := rand.New(rand.NewPCG(61, 62))
	cases := []struct {
		name  string
		x, w  []int
		attrs []*ir.Attr
	}{
		{"1-D", []int{2, 3, 11}, []int{5, 3, 3}, []*ir.Attr{ir.IntsAttr("pads", 1, 2)}},
		{"3x3 pad 1", []int{2, 4, 7, 6}, []int{6, 4, 3, 3}, []*ir.Attr{ir.IntsAttr("pads", 1, 1, 1, 1)}},
		{"3x3 stride 2 ragged pads", []int{1, 5, 12, 11}, []int{20, 5, 3, 3}, []*ir.Attr{ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 0, 2, 1)}},
		{"1x1", []int{1, 16, 5, 6}, []int{32, 16, 1, 1}, nil},
		{"groups", []int{1, 6, 8, 8}, []int{9, 2, 3, 3}, []*ir.Attr{ir.IntAttr("group", 3), ir.IntsAttr("pads", 1, 1, 1, 1)}},
		{"depthwise stride 2", []int{2, 8, 9, 9}, []int{8, 1, 3, 3}, []*ir.Attr{ir.IntAttr("group", 8), ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1)}},
		{"5x5 dilation 2 same_upper", []int{1, 3, 10, 9}, []int{4, 3, 5, 5}, []*ir.Attr{ir.IntsAttr("dilations", 2, 2), ir.StringAttr("auto_pad", "SAME_UPPER")}},
		{"7x7 stride 2 stem", []int{1, 3, 23, 21}, []int{16, 3, 7, 7}, []*ir.Attr{ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 3, 3, 3, 3)}},
		{"3-D", []int{1, 2, 5, 6, 4}, []int{3, 2, 3, 3, 3}, []*ir.Attr{ir.IntsAttr("pads", 1, 1, 1, 1, 1, 1)}},
		{"empty batch", []int{0, 4, 6, 6}, []int{4, 4, 3, 3}, nil},
	}
	// the float types' tolerances: float32 sums in another order; float16
	// and bfloat16 one rounding of the result (half an ulp each way)
	tols := map[tensor.DType]float64{tensor.Float32: 1e-4, tensor.Float16: 1e-3, tensor.BFloat16: 8e-3}
	for _, tc := range cases {
		for _, dt := range []tensor.DType{tensor.Float32, tensor.Float16, tensor.BFloat16} {
			for _, hasBias := range []bool{false, true} {
				name := fmt.Sprintf("%s %v bias %v", tc.name, dt, hasBias)
				x := randTensor(r, dt, tc.x...)
				w := randTensor(r, dt, tc.w...)
				in := []*tensor.Tensor{x, w}
				if hasBias {
					in = append(in, randTensor(r, dt, tc.w[0]))
				}
				n := opstest.Node("Conv", len(in), 1, tc.attrs...)
				fast, ref := registryAndRef(t, "cpu.Conv", n, in, map[int]bool{1: true, 2: true})
				want, err := ref.Run(garbageEnv(), in)
				if err != nil {
					t.Fatalf("%s: reference: %v", name, err)
				}
				for run := range 2 {
					got, err := fast.Run(garbageEnv(), in)
					if err != nil {
						t.Fatalf("%s run %d: %v", name, run, err)
					}
					closeTo(t, name, got[0], want[0], tols[dt])
				}
			}
		}
	}
	// float64 and the integer types: the registry says why not
	for _, dt := range []tensor.DType{tensor.Float64, tensor.Int32} {
		n := opstest.Node("Conv", 2, 1)
		n.Inputs[0].Type.DType, n.Inputs[1].Type.DType = dt, dt
		if _, err := Default().Supports(n, 13); !errors.Is(err, device.ErrUnsupported) {
			t.Errorf("Conv of %v: Supports err = %v, want ErrUnsupported", dt, err)
		}
	}
	// bad inputs: errors, as the reference's
	n := opstest.Node("Conv", 2, 1)
	x, w := randTensor(r, tensor.Float32, 1, 4, 6, 6), randTensor(r, tensor.Float32, 4, 3, 3, 3)
	fast, _ := registryAndRef(t, "cpu.Conv", n, []*tensor.Tensor{x, randTensor(r, tensor.Float32, 4, 4, 3, 3)}, nil)
	if _, err := fast.Run(garbageEnv(), []*tensor.Tensor{x, w}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("channels 4 against weights %v: err = %v, want ErrBadInput", w.Shape, err)
	}
	if _, err := fast.Run(garbageEnv(), []*tensor.Tensor{x, randTensor(r, tensor.Float16, 4, 4, 3, 3)}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("float16 weights of float32 input: err = %v, want ErrBadInput", err)
	}
}

// TestFusedConvRegistryFloat16: a float16 FusedConv runs the registry's
// kernel inside the float16 adapter, tactical, each tactic's result the
// reference's (the float32 convolution, rounded once to float16).
func TestFusedConvRegistryFloat16(t *testing.T) {
	r := rand.New(rand.NewPCG(63, 64))
	x := randTensor(r, tensor.Float16, 1, 8, 9, 10)
	w := randTensor(r, tensor.Float16, 16, 8, 3, 3)
	b := randTensor(r, tensor.Float16, 16)
	in := []*tensor.Tensor{x, w, b}
	n := fusedNode("FusedConv", 3, actRelu, nil, ir.IntsAttr("pads", 1, 1, 1, 1))
	fast, ref := registryAndRef(t, "cpu.FusedConv", n, in, map[int]bool{1: true, 2: true})
	tk, ok := fast.(ops.Tactical)
	if !ok {
		t.Fatalf("float16 FusedConv: %T is not ops.Tactical", fast)
	}
	tactics := tk.Tactics(n.Inputs)
	if len(tactics) < 2 {
		t.Fatalf("float16 FusedConv: tactics %v", tactics)
	}
	want, err := ref.Run(garbageEnv(), in)
	if err != nil {
		t.Fatal(err)
	}
	for _, tac := range tactics {
		if err := tk.SetTactic(tac); err != nil {
			t.Fatal(err)
		}
		got, err := fast.Run(garbageEnv(), in)
		if err != nil {
			t.Fatalf("%s: %v", tac, err)
		}
		closeTo(t, "float16 "+tac, got[0], want[0], 1e-3)
	}
}

// blockedCase is a BlockedConv geometry: x [n, c, h, w] (NCHW, made
// blocked unless nchw), weights [m, c/group, kh, kw].
type blockedCase struct {
	name                     string
	n, c, h, w, m, kh, kw, g int
	nchw                     bool
	attrs                    []*ir.Attr
}

var blockedCases = []blockedCase{
	{"3x3 pads 1", 1, 20, 9, 8, 24, 3, 3, 1, false, []*ir.Attr{ir.IntsAttr("pads", 1, 1, 1, 1)}},
	{"3x3 pads 1 batch 2, 16 channels", 2, 16, 9, 10, 24, 3, 3, 1, false, []*ir.Attr{ir.IntsAttr("pads", 1, 1, 1, 1)}},
	{"3x3 stride 2", 2, 16, 11, 10, 17, 3, 3, 1, false, []*ir.Attr{ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1)}},
	{"1x1", 1, 35, 7, 7, 40, 1, 1, 1, false, nil},
	{"7x7 stride 2 NCHW input", 2, 3, 23, 21, 20, 7, 7, 1, true, []*ir.Attr{ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 3, 3, 3, 3)}},
	{"depthwise 3x3", 1, 40, 10, 9, 40, 3, 3, 40, false, []*ir.Attr{ir.IntsAttr("pads", 1, 1, 1, 1)}},
	{"depthwise 5x5 dilation 2", 1, 16, 12, 11, 16, 5, 5, 16, false, []*ir.Attr{ir.IntsAttr("dilations", 2, 2), ir.IntsAttr("pads", 4, 4, 4, 4)}},
	{"2x2 stride 2 same_lower", 1, 18, 7, 9, 33, 2, 2, 1, false, []*ir.Attr{ir.IntsAttr("strides", 2, 2), ir.StringAttr("auto_pad", "SAME_LOWER")}},
}

// toBlockedRand is x, NCHW of c channels, made blocked with its pad lanes
// zero (as ToBlocked writes them).
func toBlockedRand(x *tensor.Tensor) *tensor.Tensor {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	cb := cpu.Blocks(c)
	y := tensor.New(tensor.Float32, n, cb, h, w, cpu.Block)
	for b := range n {
		for ch := range c {
			for p := range h * w {
				y.Float32s()[((b*cb+ch/cpu.Block)*h*w+p)*cpu.Block+ch%cpu.Block] = x.Float32s()[(b*c+ch)*h*w+p]
			}
		}
	}
	return y
}

// TestBlockedConvRegistry: cpu.BlockedConv against ops/nn's BlockedConv
// (plain loops through NCHW), each geometry (dense, strided, 1x1,
// depthwise, NCHW input, channels not multiples of the block), every
// activation, with and without bias and residual (the residual also as
// the output's own memory, as the memory planner places it), each tactic,
// run twice, into garbage-filled outputs; the output's pad lanes zero.
func TestBlockedConvRegistry(t *testing.T) {
	r := rand.New(rand.NewPCG(65, 66))
	for _, tc := range blockedCases {
		x := randTensor(r, tensor.Float32, tc.n, tc.c, tc.h, tc.w)
		if !tc.nchw {
			x = toBlockedRand(x)
		}
		w := randTensor(r, tensor.Float32, tc.m, tc.c/tc.g, tc.kh, tc.kw)
		bias := randTensor(r, tensor.Float32, tc.m)
		for _, a := range fusedActs {
			for _, hasBias := range []bool{false, true} {
				for _, residual := range []bool{false, true} {
					name := fmt.Sprintf("%s act %q bias %v residual %v", tc.name, a.act, hasBias, residual)
					attrs := append(slices.Clone(tc.attrs), ir.IntAttr("group", int64(tc.g)))
					if tc.nchw {
						attrs = append(attrs, ir.IntAttr("input_nchw", 1))
					}
					in := []*tensor.Tensor{x, w, nil}
					if hasBias {
						in[2] = bias
					}
					var z *tensor.Tensor
					if residual {
						_, ref := registryAndRef(t, "cpu.BlockedConv", fusedNode("BlockedConv", 3, a.act, a.params, attrs...), in, map[int]bool{1: true, 2: true})
						y, err := ref.Run(garbageEnv(), in)
						if err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						oh, ow := y[0].Shape[2], y[0].Shape[3]
						z = toBlockedRand(randTensor(r, tensor.Float32, tc.n, tc.m, oh, ow))
						in = append(in, z)
					} else if !hasBias {
						in = in[:2]
					}
					n := fusedNode("BlockedConv", len(in), a.act, a.params, attrs...)
					fast, ref := registryAndRef(t, "cpu.BlockedConv", n, in, map[int]bool{1: true, 2: true})
					want, err := ref.Run(garbageEnv(), in)
					if err != nil {
						t.Fatalf("%s: reference: %v", name, err)
					}
					tactics := []string{""}
					if tk, ok := fast.(ops.Tactical); ok {
						tactics = append(tactics, tk.Tactics(n.Inputs)...)
					}
					for _, tac := range tactics {
						if tac != "" {
							if err := fast.(ops.Tactical).SetTactic(tac); err != nil {
								t.Fatal(err)
							}
						}
						for run := range 2 {
							got, err := fast.Run(garbageEnv(), in)
							if err != nil {
								t.Fatalf("%s %s run %d: %v", name, tac, run, err)
							}
							closeTo(t, name+" "+tac, got[0], want[0], winoTol(tac, tc.c))
							checkBlockedPad(t, name+" "+tac, got[0], tc.m)
						}
						if z == nil {
							continue
						}
						// Y over Z: the output allocated in the residual's memory
						zIn := z.Clone()
						inPlace := slices.Clone(in)
						inPlace[3] = zIn
						env := &ops.Env{Alloc: func(dt tensor.DType, shape []int) (*tensor.Tensor, error) {
							if dt != tensor.Float32 || !slices.Equal(shape, zIn.Shape) {
								return nil, fmt.Errorf("alloc %v %v, want the residual's %v", dt, shape, zIn.Shape)
							}
							return zIn, nil
						}}
						got, err := fast.Run(env, inPlace)
						if err != nil {
							t.Fatalf("%s %s in place: %v", name, tac, err)
						}
						closeTo(t, name+" "+tac+" in place", got[0], want[0], winoTol(tac, tc.c))
					}
				}
			}
		}
	}
}

// winoTol is the tolerance of a BlockedConv tactic against the reference:
// the Winograd transforms round with the sum of the products' magnitudes
// (convwino_test's bound for c input channels of values in [-1, 1)).
func winoTol(tactic string, c int) float64 {
	if tactic == blockedWinoTactic {
		return 1e-5 * float64(9*c)
	}
	return 1e-4
}

// checkBlockedPad checks that the pad lanes of blocked y (m channels) are
// zero.
func checkBlockedPad(t *testing.T, name string, y *tensor.Tensor, m int) {
	t.Helper()
	pad := m % cpu.Block
	if pad == 0 {
		return
	}
	cb, hw := y.Shape[1], y.Shape[2]*y.Shape[3]
	v := y.Float32s()
	for b := range y.Shape[0] {
		for p := range hw {
			for l := pad; l < cpu.Block; l++ {
				if x := v[((b*cb+cb-1)*hw+p)*cpu.Block+l]; x != 0 {
					t.Fatalf("%s: pad lane %d of pixel %d = %g", name, l, p, x)
				}
			}
		}
	}
}
