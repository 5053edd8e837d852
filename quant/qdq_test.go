package quant

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func int8Tensor(r *rand.Rand, shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Int8, shape...)
	for i, x := 0, t.Int8s(); i < len(x); i++ {
		x[i] = int8(r.Intn(255) - 127)
	}
	return t
}

func scalar(dt tensor.DType, v float64) *tensor.Tensor { return tensor.Scalar(dt, v) }

// qdqNet builds an explicitly quantized network:
//
//	x[batch,4,6,6] -> Q/DQ -> conv (Conv, per-channel int8 weights, int32
//	bias through DQ) -> Relu -> Q/DQ -> conv2 (Conv, per-tensor weights,
//	float bias) -> GlobalAveragePool -> Flatten -> Q/DQ -> mm (MatMul,
//	per-column [8,5]) -> Q/DQ -> gemm (Gemm transB, [3,5] per-row = per
//	output) -> y; and beside it an asymmetric branch: x -> Q(uint8, zp 128)
//	-> DQ -> asym (Conv) -> z.
func qdqNet(t testing.TB) *ir.Graph {
	t.Helper()
	r := rand.New(rand.NewSource(5))
	b := ir.NewBuilder("qdq", 13)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(4), ir.D(6), ir.D(6))
	zp8 := func() *ir.Value { return b.Const("", scalar(tensor.Int8, 0)) }
	qdq := func(v *ir.Value, s float64) *ir.Value {
		sc := b.Const("", scalar(tensor.Float32, s))
		q := b.Op("QuantizeLinear", []*ir.Value{v, sc, zp8()})
		return b.Op("DequantizeLinear", []*ir.Value{q, sc, zp8()})
	}
	perCh := func(n int, axis int64, w *ir.Value) *ir.Value {
		s := tensor.New(tensor.Float32, n)
		for i := range s.Float32s() {
			s.Float32s()[i] = 0.002 + 0.001*float32(i)
		}
		zp := tensor.New(tensor.Int8, n)
		return b.Op("DequantizeLinear", []*ir.Value{w, b.Const("", s), b.Const("", zp)}, ir.IntAttr("axis", axis))
	}
	named := func(v *ir.Value, name string) *ir.Value { v.Producer.Name = name; return v }

	xd := qdq(x, 0.03)
	w1 := perCh(8, 0, b.Const("w1q", int8Tensor(r, 8, 4, 3, 3)))
	bq := tensor.New(tensor.Int32, 8)
	for i := range bq.Int32s() {
		bq.Int32s()[i] = int32(r.Intn(2001) - 1000)
	}
	bias := b.Op("DequantizeLinear", []*ir.Value{b.Const("b1q", bq), b.Const("", scalar(tensor.Float32, 0.0001))})
	c1 := named(b.Op("Conv", []*ir.Value{xd, w1, bias}, ir.IntsAttr("pads", 1, 1, 1, 1)), "conv")
	a1 := b.Op("Relu", []*ir.Value{c1})
	w2 := b.Op("DequantizeLinear", []*ir.Value{b.Const("w2q", int8Tensor(r, 8, 8, 1, 1)), b.Const("", scalar(tensor.Float32, 0.004))})
	c2 := named(b.Op("Conv", []*ir.Value{qdq(a1, 0.02), w2, b.Const("b2", randTensor(r, 0.1, 8))}), "conv2")
	f := b.Op("Flatten", []*ir.Value{b.Op("GlobalAveragePool", []*ir.Value{c2})})
	mm := named(b.Op("MatMul", []*ir.Value{qdq(f, 0.01), perCh(5, 1, b.Const("wmq", int8Tensor(r, 8, 5)))}), "mm")
	y := named(b.Op("Gemm", []*ir.Value{qdq(mm, 0.02), perCh(3, 0, b.Const("wgq", int8Tensor(r, 3, 5))), b.Const("bg", randTensor(r, 0.1, 3))},
		ir.IntAttr("transB", 1)), "gemm")
	b.Output(y, "y")

	us := b.Const("", scalar(tensor.Float32, 0.03))
	uq := b.Op("QuantizeLinear", []*ir.Value{x, us, b.Const("", scalar(tensor.Uint8, 128))})
	ud := b.Op("DequantizeLinear", []*ir.Value{uq, us, b.Const("", scalar(tensor.Uint8, 128))})
	z := named(b.Op("Conv", []*ir.Value{ud, perCh(2, 0, b.Const("waq", int8Tensor(r, 2, 4, 1, 1)))}), "asym")
	b.Output(z, "z")
	return b.Graph()
}

func TestImportQDQStructure(t *testing.T) {
	g := qdqNet(t)
	rep, err := ImportQDQ(g)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		prec   Precision
		op     string
		reason string
		scale  float32
	}{
		"conv":  {PrecisionINT8, "QConv", "QDQ", 0.03},
		"conv2": {PrecisionINT8, "QConv", "QDQ", 0.02},
		"mm":    {PrecisionINT8, "QMatMul", "QDQ", 0.01},
		"gemm":  {PrecisionINT8, "QMatMul", "QDQ", 0.02},
		"asym":  {PrecisionFP32, "Conv", "uint8 (asymmetric)", 0},
	}
	if len(rep.Layers) != len(want) {
		t.Fatalf("%d decisions, want %d:\n%v", len(rep.Layers), len(want), rep)
	}
	for _, d := range rep.Layers {
		w := want[d.Name]
		n := nodeNamed(g, d.Name)
		if d.Precision != w.prec || !strings.Contains(d.Reason, w.reason) || n.OpType != w.op {
			t.Errorf("%s: %s %q as %s, want %s %q as %s", d.Name, d.Precision, d.Reason, n.OpType, w.prec, w.reason, w.op)
			continue
		}
		if w.prec != PrecisionINT8 {
			continue
		}
		attr := "x_scale"
		if w.op == "QMatMul" {
			attr = "a_scale"
		}
		if a := n.Attrs[attr]; a == nil || a.F != w.scale {
			t.Errorf("%s: %s %v, want %v", d.Name, attr, a, w.scale)
		}
		if n.Inputs[0].Producer != nil && n.Inputs[0].Producer.OpType == "DequantizeLinear" {
			t.Errorf("%s still reads a DequantizeLinear", d.Name)
		}
	}
	// weights: exact int8 values, scales per output channel.
	conv := nodeNamed(g, "conv")
	seven := float32(7)
	if q, s := conv.Inputs[1].Const, conv.Inputs[2].Const; q.DType != tensor.Int8 || s.Len() != 8 || s.Float32s()[7] != 0.002+0.001*seven {
		t.Errorf("conv weights %v scales %v", q, s)
	}
	if b := conv.Inputs[3].Const; b == nil || b.DType != tensor.Float32 || b.Len() != 8 {
		t.Errorf("conv bias %v, want the int32 bias dequantized", conv.Inputs[3])
	}
	if s := nodeNamed(g, "conv2").Inputs[2].Const; s.Len() != 8 || s.Float32s()[3] != 0.004 {
		t.Errorf("conv2 per-tensor scale broadcast: %v", s)
	}
	gemm := nodeNamed(g, "gemm")
	if q := gemm.Inputs[1].Const; q.Shape[0] != 5 || q.Shape[1] != 3 {
		t.Errorf("gemm B %v, want transposed to [5 3]", q.Shape)
	}
	// the Q/DQ of quantized layers are gone; the asymmetric branch keeps its own.
	qdqLeft := 0
	for _, n := range g.Nodes {
		if n.OpType == "QuantizeLinear" || n.OpType == "DequantizeLinear" {
			qdqLeft++
		}
	}
	if qdqLeft != 3 { // asym: Q, DQ of x, DQ of the weights
		t.Errorf("%d Q/DQ nodes left, want 3", qdqLeft)
	}
	if err := g.Validate(); err != nil {
		t.Errorf("rewritten graph: %v", err)
	}
}

func TestImportQDQLeavesFloatGraphs(t *testing.T) {
	g := convNet(t)
	before := GraphHash(g)
	rep, err := ImportQDQ(g)
	if err != nil || len(rep.Layers) != 0 || GraphHash(g) != before {
		t.Errorf("float graph: %v %v, changed %v", rep, err, GraphHash(g) != before)
	}
}

func TestImportQDQReasons(t *testing.T) {
	tests := []struct {
		name string
		// actZP: activation zero point (nil: none); dqScale: DQ's scale
		actZP    *tensor.Tensor
		dqScale  float64
		floatW   bool // weights are float, not DQ(int8)
		noActQDQ bool
		matmul   bool
		wAxis    int64
		// opset (0: 13); wAttrs: more attributes of the weights' DQ;
		// attrs: the layer's
		opset  int64
		wAttrs []*ir.Attr
		attrs  []*ir.Attr
		want   string
	}{
		{name: "symmetric", actZP: scalar(tensor.Int8, 0), dqScale: 0.1, want: ""},
		{name: "int8 zero point", actZP: scalar(tensor.Int8, 3), dqScale: 0.1, want: "zero point 3 (asymmetric)"},
		{name: "no zero point", dqScale: 0.1, want: "uint8 (asymmetric)"},
		{name: "scales differ", actZP: scalar(tensor.Int8, 0), dqScale: 0.2, want: "differs"},
		// float weights (as constant folding leaves them): quantized again
		{name: "float weights", actZP: scalar(tensor.Int8, 0), dqScale: 0.1, floatW: true, want: ""},
		{name: "weight only", noActQDQ: true, want: "weight-only"},
		{name: "matmul per row", actZP: scalar(tensor.Int8, 0), dqScale: 0.1, matmul: true, wAxis: 0, want: "want one or one per output channel (axis 1)"},
		{name: "matmul per column", actZP: scalar(tensor.Int8, 0), dqScale: 0.1, matmul: true, wAxis: 1, want: ""},
		// block_size is DequantizeLinear's from opset 21 (ignored before, as
		// its kernel does)
		{name: "opset 21 blocked", actZP: scalar(tensor.Int8, 0), dqScale: 0.1, opset: 21, wAttrs: []*ir.Attr{ir.IntAttr("block_size", 2)}, want: "blocked weight scales"},
		{name: "opset 21 block_size 0", actZP: scalar(tensor.Int8, 0), dqScale: 0.1, opset: 21, wAttrs: []*ir.Attr{ir.IntAttr("block_size", 0)}, want: ""},
		{name: "opset 19 block_size not read", actZP: scalar(tensor.Int8, 0), dqScale: 0.1, opset: 19, wAttrs: []*ir.Attr{ir.IntAttr("block_size", 2)}, want: ""},
		// attributes that do not parse: the layer stays as it was
		{name: "weights' DQ axis a float", actZP: scalar(tensor.Int8, 0), dqScale: 0.1, wAttrs: []*ir.Attr{ir.FloatAttr("axis", 0)}, want: `"axis"`},
		{name: "conv group 0", actZP: scalar(tensor.Int8, 0), dqScale: 0.1, attrs: []*ir.Attr{ir.IntAttr("group", 0)}, want: `"group"`},
		{name: "conv strides a string", actZP: scalar(tensor.Int8, 0), dqScale: 0.1, attrs: []*ir.Attr{ir.StringAttr("strides", "1")}, want: `"strides"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewSource(1))
			opset := tc.opset
			if opset == 0 {
				opset = 13
			}
			b := ir.NewBuilder("q", opset)
			x := b.Input("x", tensor.Float32, ir.D(1), ir.D(4), ir.D(4), ir.D(4))
			in := x
			if !tc.noActQDQ {
				qin := []*ir.Value{x, b.Const("", scalar(tensor.Float32, 0.1))}
				din := []*ir.Value{nil, b.Const("", scalar(tensor.Float32, tc.dqScale))}
				if tc.actZP != nil {
					qin = append(qin, b.Const("", tc.actZP))
					din = append(din, b.Const("", tc.actZP))
				}
				din[0] = b.Op("QuantizeLinear", qin)
				in = b.Op("DequantizeLinear", din)
			}
			wshape, n := []int{3, 4, 1, 1}, 3
			if tc.matmul {
				wshape, n = []int{4, 3}, 4
				if tc.wAxis == 1 {
					n = 3
				}
			}
			var w *ir.Value
			if tc.floatW {
				w = b.Const("w", randTensor(r, 1, wshape...))
			} else {
				s := tensor.New(tensor.Float32, n)
				for i := range s.Float32s() {
					s.Float32s()[i] = 0.01
				}
				w = b.Op("DequantizeLinear", []*ir.Value{b.Const("wq", int8Tensor(r, wshape...)), b.Const("", s)}, append([]*ir.Attr{ir.IntAttr("axis", tc.wAxis)}, tc.wAttrs...)...)
			}
			op := "Conv"
			if tc.matmul {
				op = "MatMul"
			}
			y := b.Op(op, []*ir.Value{in, w}, tc.attrs...)
			y.Producer.Name = "layer"
			b.Output(y, "y")
			g := b.Graph()
			rep, err := ImportQDQ(g)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Layers) != 1 {
				t.Fatalf("decisions %v", rep)
			}
			d := rep.Layers[0]
			if tc.want == "" {
				if d.Precision != PrecisionINT8 || g.Nodes[len(g.Nodes)-1].Domain != Domain {
					t.Errorf("%s %q, want int8", d.Precision, d.Reason)
				}
				return
			}
			if d.Precision != PrecisionFP32 || !strings.Contains(d.Reason, tc.want) {
				t.Errorf("%s %q, want fp32 with %q", d.Precision, d.Reason, tc.want)
			}
			if GraphHash(g) == "" || nodeNamed(g, "layer").OpType != op {
				t.Error("a layer left in float was changed")
			}
		})
	}
}
