package ops_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/tensor"
)

// arg is one input of a test node: a tensor, and whether the node sees it
// as a constant (an initializer).
type arg struct {
	t       *tensor.Tensor
	isConst bool
}

func x(t *tensor.Tensor) arg { return arg{t: t} }
func c(t *tensor.Tensor) arg { return arg{t: t, isConst: true} }

func randTensor(rng *rand.Rand, scale float64, shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Float32, shape...)
	v := t.Float32s()
	for i := range v {
		v[i] = float32((rng.Float64()*2 - 1) * scale)
	}
	return t
}

func ints(v ...int64) *tensor.Tensor { return tensor.FromInt64(v, len(v)) }

// toHalf rounds a float32 tensor to float16; other tensors pass.
func toHalf(t *tensor.Tensor) *tensor.Tensor {
	if t == nil || t.DType != tensor.Float32 {
		return t
	}
	h := tensor.New(tensor.Float16, t.Shape...)
	for i, f := range t.Float32s() {
		h.Halfs()[i] = tensor.Float32ToHalf(f)
	}
	return h
}

// toFloat widens a float16 tensor to float32; other tensors pass.
func toFloat(t *tensor.Tensor) *tensor.Tensor {
	if t == nil || t.DType != tensor.Float16 {
		return t
	}
	return tensor.FromFloat32(t.ToFloat32(), t.Shape...)
}

// prepare builds a node of the given op whose inputs have the types (and,
// for constant ones, the values) of args, prepares its kernel and infers
// its outputs.
func prepare(t *testing.T, domain, op string, attrs []*ir.Attr, nOut int, args []arg) (ops.Kernel, []ir.Type, []*tensor.Tensor) {
	t.Helper()
	n := &ir.Node{Name: "n", OpType: op, Domain: domain, Attrs: map[string]*ir.Attr{}}
	for _, a := range attrs {
		n.Attrs[a.Name] = a
	}
	var in []*tensor.Tensor
	for i, a := range args {
		if a.t == nil {
			n.Inputs = append(n.Inputs, nil)
			in = append(in, nil)
			continue
		}
		v := &ir.Value{Name: fmt.Sprintf("in%d", i), Type: ops.TypeOf(a.t)}
		if a.isConst {
			v.Const = a.t
		}
		n.Inputs = append(n.Inputs, v)
		in = append(in, a.t)
	}
	for i := 0; i < nOut; i++ {
		n.Outputs = append(n.Outputs, &ir.Value{Name: fmt.Sprintf("out%d", i)})
	}
	k, err := ops.Prepare(n, 17)
	if err != nil {
		t.Fatal(err)
	}
	types, err := k.Infer(n.Inputs)
	if err != nil {
		t.Fatalf("infer: %v", err)
	}
	return k, types, in
}

func run(t *testing.T, k ops.Kernel, types []ir.Type, in []*tensor.Tensor) []*tensor.Tensor {
	t.Helper()
	outs, err := k.Run(&ops.Env{Ctx: context.Background()}, in)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for i, o := range outs {
		if o != nil && i < len(types) && types[i].DType != o.DType {
			t.Fatalf("output %d: inferred %v, computed %v", i, types[i].DType, o.DType)
		}
	}
	return outs
}

func adapted(k ops.Kernel) bool { return strings.Contains(reflect.TypeOf(k).String(), "fp16") }

func sameBits(t *testing.T, what string, got, want *tensor.Tensor) {
	t.Helper()
	if got.DType != want.DType || fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) {
		t.Fatalf("%s: got %v%v, want %v%v", what, got.DType, got.Shape, want.DType, want.Shape)
	}
	for i := range want.Data {
		if got.Data[i] != want.Data[i] {
			e := i / want.DType.Size()
			t.Fatalf("%s: element %d is %g, want %g", what, e, got.Float(e), want.Float(e))
		}
	}
}

func attrInt(name string, v int64) *ir.Attr { return &ir.Attr{Name: name, Type: ir.AttrInt, I: v} }
func attrInts(name string, v ...int64) *ir.Attr {
	return &ir.Attr{Name: name, Type: ir.AttrInts, Ints: v}
}
func attrString(name, v string) *ir.Attr { return &ir.Attr{Name: name, Type: ir.AttrString, S: v} }

type opCase struct {
	name   string
	domain string
	op     string
	attrs  []*ir.Attr
	nOut   int
	args   []arg
}

// TestFloat16NativeOps checks that the data movement kernels Prepare leaves
// unwrapped compute on float16 tensors exactly what they compute on float32
// ones.
func TestFloat16NativeOps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	r := func(shape ...int) *tensor.Tensor { return randTensor(rng, 3, shape...) }
	cond := tensor.New(tensor.Bool, 2, 3)
	for i := range cond.Bools() {
		cond.Bools()[i] = i%2 == 0
	}
	tests := []opCase{
		{name: "Identity", op: "Identity", nOut: 1, args: []arg{x(r(2, 3))}},
		{name: "Reshape", op: "Reshape", nOut: 1, args: []arg{x(r(2, 3, 4)), c(ints(6, -1))}},
		{name: "Flatten", op: "Flatten", nOut: 1, args: []arg{x(r(2, 3, 4))}},
		{name: "Squeeze", op: "Squeeze", nOut: 1, args: []arg{x(r(2, 1, 4)), c(ints(1))}},
		{name: "Unsqueeze", op: "Unsqueeze", nOut: 1, args: []arg{x(r(2, 4)), c(ints(0))}},
		{name: "Transpose", op: "Transpose", attrs: []*ir.Attr{attrInts("perm", 2, 0, 1)}, nOut: 1, args: []arg{x(r(2, 3, 4))}},
		{name: "Concat", op: "Concat", attrs: []*ir.Attr{attrInt("axis", 1)}, nOut: 1, args: []arg{x(r(2, 3)), x(r(2, 5))}},
		{name: "Split", op: "Split", attrs: []*ir.Attr{attrInt("axis", 1)}, nOut: 2, args: []arg{x(r(2, 6)), c(ints(2, 4))}},
		{name: "Slice", op: "Slice", nOut: 1, args: []arg{x(r(4, 6)), c(ints(1)), c(ints(5)), c(ints(1)), c(ints(2))}},
		{name: "Gather", op: "Gather", nOut: 1, args: []arg{x(r(5, 3)), x(ints(4, 0, 2))}},
		{name: "GatherElements", op: "GatherElements", nOut: 1, args: []arg{x(r(3)), x(ints(2, 0))}},
		{name: "Expand", op: "Expand", nOut: 1, args: []arg{x(r(1, 3)), c(ints(4, 3))}},
		{name: "Tile", op: "Tile", nOut: 1, args: []arg{x(r(2, 3)), c(ints(2, 2))}},
		{name: "Pad", op: "Pad", nOut: 1, args: []arg{x(r(2, 3)), c(ints(1, 0, 0, 2))}},
		{name: "Where", op: "Where", nOut: 1, args: []arg{x(cond), x(r(2, 3)), x(r(2, 3))}},
		{name: "DepthToSpace", op: "DepthToSpace", attrs: []*ir.Attr{attrInt("blocksize", 2)}, nOut: 1, args: []arg{x(r(1, 8, 2, 3))}},
		{name: "Shape", op: "Shape", nOut: 1, args: []arg{x(r(2, 3))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k32, ty32, in32 := prepare(t, tt.domain, tt.op, tt.attrs, tt.nOut, tt.args)
			want := run(t, k32, ty32, in32)
			half := make([]arg, len(tt.args))
			for i, a := range tt.args {
				half[i] = arg{t: toHalf(a.t), isConst: a.isConst}
			}
			k16, ty16, in16 := prepare(t, tt.domain, tt.op, tt.attrs, tt.nOut, half)
			if adapted(k16) {
				t.Fatalf("%s is listed as float16-native but was wrapped (%T)", tt.op, k16)
			}
			got := run(t, k16, ty16, in16)
			for i := range want {
				sameBits(t, fmt.Sprintf("output %d", i), got[i], toHalf(want[i]))
			}
		})
	}
}

// TestFloat16Adapter checks that kernels without float16 support are
// wrapped when they read float16 tensors, and then compute exactly the
// float32 kernel's result on the widened inputs, rounded to float16.
func TestFloat16Adapter(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	r := func(shape ...int) *tensor.Tensor { return randTensor(rng, 2, shape...) }
	scales := tensor.FromFloat32([]float32{1, 1, 2, 2}, 4)
	tests := []opCase{
		{name: "Conv", op: "Conv", attrs: []*ir.Attr{attrInts("pads", 1, 1, 1, 1)}, nOut: 1,
			args: []arg{x(r(1, 3, 6, 6)), c(r(4, 3, 3, 3)), c(r(4))}},
		{name: "MatMul", op: "MatMul", nOut: 1, args: []arg{x(r(2, 3, 8)), c(r(8, 5))}},
		{name: "Gemm", op: "Gemm", attrs: []*ir.Attr{attrInt("transB", 1)}, nOut: 1, args: []arg{x(r(3, 8)), c(r(5, 8)), c(r(5))}},
		{name: "Add", op: "Add", nOut: 1, args: []arg{x(r(2, 3)), x(r(3))}},
		{name: "Mul", op: "Mul", nOut: 1, args: []arg{x(r(2, 3)), c(r(1))}},
		{name: "Div", op: "Div", nOut: 1, args: []arg{x(r(2, 3)), c(tensor.FromFloat32([]float32{3}, 1))}},
		{name: "Erf", op: "Erf", nOut: 1, args: []arg{x(r(2, 3))}},
		{name: "Tanh", op: "Tanh", nOut: 1, args: []arg{x(r(2, 3))}},
		{name: "Sigmoid", op: "Sigmoid", nOut: 1, args: []arg{x(r(2, 3))}},
		{name: "Relu", op: "Relu", nOut: 1, args: []arg{x(r(2, 3))}},
		{name: "Clip", op: "Clip", nOut: 1, args: []arg{x(r(2, 3)), c(tensor.Scalar(tensor.Float32, 0)), c(tensor.Scalar(tensor.Float32, 0.5))}},
		{name: "Softmax", op: "Softmax", nOut: 1, args: []arg{x(r(2, 3, 7))}},
		{name: "LayerNormalization", op: "LayerNormalization", nOut: 3, args: []arg{x(r(2, 3, 8)), c(r(8)), c(r(8))}},
		{name: "BatchNormalization", op: "BatchNormalization", nOut: 1,
			args: []arg{x(r(1, 3, 2, 2)), c(r(3)), c(r(3)), c(r(3)), c(tensor.FromFloat32([]float32{1, 2, 3}, 3))}},
		{name: "MaxPool", op: "MaxPool", attrs: []*ir.Attr{attrInts("kernel_shape", 2, 2)}, nOut: 1, args: []arg{x(r(1, 2, 4, 4))}},
		{name: "GlobalAveragePool", op: "GlobalAveragePool", nOut: 1, args: []arg{x(r(1, 2, 4, 4))}},
		{name: "Resize", op: "Resize", attrs: []*ir.Attr{attrString("mode", "linear")}, nOut: 1,
			args: []arg{x(r(1, 2, 3, 3)), {}, c(scales)}},
		{name: "kiln::FusedConv", domain: "kiln", op: "FusedConv", attrs: []*ir.Attr{attrString("activation", "Relu")}, nOut: 1,
			args: []arg{x(r(1, 3, 5, 5)), c(r(4, 3, 3, 3)), c(r(4))}},
		{name: "kiln::FusedConv/residual", domain: "kiln", op: "FusedConv", nOut: 1,
			args: []arg{x(r(1, 3, 5, 5)), c(r(4, 3, 1, 1)), c(r(4)), x(r(1, 4, 5, 5))}},
		{name: "kiln::FusedMatMul", domain: "kiln", op: "FusedMatMul", attrs: []*ir.Attr{attrString("activation", "Gelu")}, nOut: 1,
			args: []arg{x(r(2, 4, 8)), c(r(8, 6)), c(r(6))}},
		{name: "kiln::Attention", domain: "kiln", op: "Attention", attrs: []*ir.Attr{{Name: "scale", Type: ir.AttrFloat, F: 0.25}}, nOut: 1,
			args: []arg{x(r(1, 2, 5, 4)), x(r(1, 2, 4, 5)), x(r(1, 2, 5, 4)), x(r(1, 1, 1, 5))}},
		{name: "kiln::Gelu", domain: "kiln", op: "Gelu", nOut: 1, args: []arg{x(r(2, 5))}},
		{name: "kiln::LayerNormalization", domain: "kiln", op: "LayerNormalization", nOut: 1, args: []arg{x(r(2, 8)), c(r(8)), c(r(8))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			half := make([]arg, len(tt.args))
			wide := make([]arg, len(tt.args))
			for i, a := range tt.args {
				// Resize's scales stay float32, as FP16Convert leaves them
				h := toHalf(a.t)
				if tt.op == "Resize" && i > 0 {
					h = a.t
				}
				half[i] = arg{t: h, isConst: a.isConst}
				wide[i] = arg{t: toFloat(h), isConst: a.isConst}
			}
			k32, ty32, in32 := prepare(t, tt.domain, tt.op, tt.attrs, tt.nOut, wide)
			if adapted(k32) {
				t.Fatalf("a float32 node was wrapped (%T)", k32)
			}
			want := run(t, k32, ty32, in32)
			k16, ty16, in16 := prepare(t, tt.domain, tt.op, tt.attrs, tt.nOut, half)
			if !adapted(k16) {
				t.Fatalf("%s on float16 was not wrapped (%T)", tt.op, k16)
			}
			for round := 0; round < 2; round++ { // the second run uses the cached weights
				got := run(t, k16, ty16, in16)
				for i := range want {
					w := toHalf(want[i])
					if tt.op == "LayerNormalization" && i > 0 {
						w = want[i] // Mean and InvStdDev: stash_type float32
					}
					sameBits(t, fmt.Sprintf("output %d", i), got[i], w)
				}
			}
		})
	}
}

// TestFloat16AdapterConcurrent runs one adapted kernel with constant
// weights from several goroutines at once (run with -race).
func TestFloat16AdapterConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	args := []arg{x(toHalf(randTensor(rng, 1, 1, 4, 8, 8))), c(toHalf(randTensor(rng, 1, 8, 4, 3, 3))), c(toHalf(randTensor(rng, 1, 8)))}
	k, types, in := prepare(t, "", "Conv", nil, 1, args)
	want := run(t, k, types, in)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs, err := k.Run(&ops.Env{Ctx: context.Background()}, in)
			if err == nil && string(outs[0].Data) != string(want[0].Data) {
				err = fmt.Errorf("concurrent run differs")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// tacticalOp is a test kernel with tactics: Y = X + 1.
type tacticalOp struct{ tactic string }

func (k *tacticalOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if in[0].Type.DType != tensor.Float32 {
		return nil, ops.BadInput("tacticalOp of %v", in[0].Type.DType)
	}
	return []ir.Type{in[0].Type}, nil
}

func (k *tacticalOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	y := in[0].Clone()
	for i := range y.Float32s() {
		y.Float32s()[i]++
	}
	return []*tensor.Tensor{y}, nil
}

func (k *tacticalOp) Tactics(in []*ir.Value) []string {
	if in[0].Type.DType != tensor.Float32 {
		return nil
	}
	return []string{"a", "b"}
}

func (k *tacticalOp) SetTactic(name string) error { k.tactic = name; return nil }

var lastTactical *tacticalOp

func init() {
	ops.Register(ops.Def{Domain: "kiln.fp16test", Type: "Tactical", Prepare: func(*ir.Node, int64) (ops.Kernel, error) {
		lastTactical = &tacticalOp{}
		return lastTactical, nil
	}})
}

// TestFloat16AdapterTactics checks that the adapter keeps the inner
// kernel's tactics.
func TestFloat16AdapterTactics(t *testing.T) {
	k, types, in := prepare(t, "kiln.fp16test", "Tactical", nil, 1, []arg{x(toHalf(tensor.FromFloat32([]float32{1, 2}, 2)))})
	tk, ok := k.(ops.Tactical)
	if !ok || !adapted(k) {
		t.Fatalf("adapted kernel %T lost ops.Tactical", k)
	}
	v := &ir.Value{Type: ops.TypeOf(in[0])}
	if got := tk.Tactics([]*ir.Value{v}); fmt.Sprint(got) != "[a b]" {
		t.Fatalf("Tactics = %v, want [a b]", got)
	}
	if err := tk.SetTactic("b"); err != nil || lastTactical.tactic != "b" {
		t.Fatalf("SetTactic did not reach the inner kernel: %v %q", err, lastTactical.tactic)
	}
	out := run(t, k, types, in)
	if out[0].DType != tensor.Float16 || out[0].Float(1) != 3 {
		t.Fatalf("got %v, want float16 [2 3]", out[0])
	}
}

// sweepOp is a test kernel whose output holds float32 bit patterns spread
// over all 2^32 (every stride-th one, plus the edge cases): wrapped in the
// adapter, it checks the adapter's float16 rounding against
// tensor.Float32ToHalf.
type sweepOp struct{ stride uint64 }

var sweepEdges = []uint32{
	0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff,
	0x477fe000, 0x477fefff, 0x477ff000, 0x477fffff, 0x47800000, 0x7f7fffff, 0xff7fffff, // around 65504..65536, and beyond
	0x38800000, 0x387fffff, 0x33800000, 0x33000000, 0x33000001, 0x32ffffff, 0x00000001, // subnormal edges
	0x3f801000, 0x3f803000, 0x3f801001, 0x3f802fff, // ties to even
}

func (k *sweepOp) values() []float32 {
	var v []float32
	for _, u := range sweepEdges {
		v = append(v, math.Float32frombits(u))
	}
	for u := uint64(0); u < 1<<32; u += k.stride {
		v = append(v, math.Float32frombits(uint32(u)))
	}
	return v
}

func (k *sweepOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	return []ir.Type{{DType: in[0].Type.DType, Shape: ir.Shape{ir.U()}}}, nil
}

func (k *sweepOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	v := k.values()
	return []*tensor.Tensor{tensor.FromFloat32(v, len(v))}, nil
}

func init() {
	ops.Register(ops.Def{Domain: "kiln.fp16test", Type: "Sweep", Prepare: func(*ir.Node, int64) (ops.Kernel, error) {
		return &sweepOp{stride: 4093}, nil
	}})
}

// saturatedHalf is tensor.Float32ToHalf, but a finite value that would
// round to infinity gives +-65504, as the adapter's conversion does.
func saturatedHalf(f float32) uint16 {
	h := tensor.Float32ToHalf(f)
	if !math.IsInf(float64(f), 0) && !math.IsNaN(float64(f)) && h&0x7fff == 0x7c00 {
		return h&0x8000 | 0x7bff
	}
	return h
}

// TestFloat16AdapterRounding checks the adapter's float32 to float16
// conversion bit for bit against saturatedHalf (NaNs: only that they stay
// NaNs).
func TestFloat16AdapterRounding(t *testing.T) {
	k, types, in := prepare(t, "kiln.fp16test", "Sweep", nil, 1, []arg{x(toHalf(tensor.FromFloat32([]float32{1}, 1)))})
	out := run(t, k, types, in)[0]
	vals := (&sweepOp{stride: 4093}).values()
	if out.DType != tensor.Float16 || out.Len() != len(vals) {
		t.Fatalf("got %v%v, want float16[%d]", out.DType, out.Shape, len(vals))
	}
	for i, f := range vals {
		got, want := out.Halfs()[i], saturatedHalf(f)
		if f != f && got&0x7c00 == 0x7c00 && got&0x3ff != 0 {
			continue // NaN stays NaN (the payload may differ)
		}
		if got != want {
			t.Fatalf("%#08x (%g) -> %#04x, want %#04x", math.Float32bits(f), f, got, want)
		}
	}
}

// passOp is a test kernel computing Y = X on float32.
type passOp struct{}

func (passOp) Infer(in []*ir.Value) ([]ir.Type, error) { return []ir.Type{in[0].Type}, nil }

func (passOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if in[0].DType != tensor.Float32 {
		return nil, ops.BadInput("pass of %v", in[0].DType)
	}
	return []*tensor.Tensor{in[0].Clone()}, nil
}

func init() {
	ops.Register(ops.Def{Domain: "kiln.fp16test", Type: "Pass", Prepare: func(*ir.Node, int64) (ops.Kernel, error) {
		return passOp{}, nil
	}})
}

// TestFloat16AdapterRoundTrip passes every float16 value (and a tail that
// is not a multiple of the vector width) through a float32 kernel: widening
// and narrowing again must give every value back.
func TestFloat16AdapterRoundTrip(t *testing.T) {
	for _, n := range []int{1 << 16, 1<<16 + 13, 7} {
		h := tensor.New(tensor.Float16, n)
		for i := range h.Halfs() {
			h.Halfs()[i] = uint16(i * 40503) // a permutation of all values
		}
		for _, isConst := range []bool{false, true} {
			k, types, in := prepare(t, "kiln.fp16test", "Pass", nil, 1, []arg{{t: h, isConst: isConst}})
			out := run(t, k, types, in)[0]
			for i, w := range h.Halfs() {
				g := out.Halfs()[i]
				nan := w&0x7c00 == 0x7c00 && w&0x3ff != 0
				if g != w && !(nan && g&0x7c00 == 0x7c00 && g&0x3ff != 0) {
					t.Fatalf("n=%d: %#04x came back as %#04x", n, w, g)
				}
			}
		}
	}
}

// TestFloat16AdapterSaturates: a float16 result that overflows becomes
// +-65504, while infinities and NaNs computed in float32 stay what they
// are.
func TestFloat16AdapterSaturates(t *testing.T) {
	inf := float32(math.Inf(1))
	a := toHalf(tensor.FromFloat32([]float32{1000, -1000, inf, 2, float32(math.NaN())}, 5))
	b := toHalf(tensor.FromFloat32([]float32{100}, 1))
	k, types, in := prepare(t, "", "Mul", nil, 1, []arg{x(a), c(b)})
	got := run(t, k, types, in)[0]
	want := []float32{65504, -65504, inf, 200}
	for i, w := range want {
		if g := float32(got.Float(i)); g != w {
			t.Errorf("element %d: %g, want %g", i, g, w)
		}
	}
	if g := got.Float(4); !math.IsNaN(g) {
		t.Errorf("NaN*100 = %g", g)
	}
}
