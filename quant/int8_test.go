package quant

import (
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

func randTensor(r *rand.Rand, scale float64, shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Float32, shape...)
	for i, x := 0, t.Float32s(); i < len(x); i++ {
		x[i] = float32(r.NormFloat64() * scale)
	}
	return t
}

// kilnOp adds a node of the kiln domain.
func kilnOp(b *ir.Builder, op string, in []*ir.Value, attrs ...*ir.Attr) *ir.Value {
	v := b.Op(op, in, attrs...)
	v.Producer.Domain = Domain
	v.Producer.Name = op + "_" + v.Name
	return v
}

// convNet builds a small CNN of the optimizer's fused ops:
//
//	x[1,3,8,8] -> first (FusedConv 3->8, Relu) -> mid (FusedConv 8->8, Relu)
//	-> res (FusedConv 8->8, + residual first, Clip 0..6) -> dw (FusedConv
//	depthwise) -> GlobalAveragePool -> Flatten -> fc (FusedMatMul [8,6],
//	Relu) -> head (Gemm transB [4,6], graph output)
func convNet(t testing.TB) *ir.Graph {
	t.Helper()
	g, err := buildConvNet()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func buildConvNet() (*ir.Graph, error) {
	r := rand.New(rand.NewSource(3))
	b := ir.NewBuilder("convnet", 13)
	b.Graph().Opsets[Domain] = 1
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(3), ir.D(8), ir.D(8))
	pads := ir.IntsAttr("pads", 1, 1, 1, 1)
	relu := ir.StringAttr("activation", "Relu")
	c1 := kilnOp(b, "FusedConv", []*ir.Value{x, b.Const("w1", randTensor(r, 0.3, 8, 3, 3, 3)), b.Const("b1", randTensor(r, 0.1, 8))}, pads, relu)
	c1.Producer.Name = "first"
	c2 := kilnOp(b, "FusedConv", []*ir.Value{c1, b.Const("w2", randTensor(r, 0.2, 8, 8, 3, 3)), b.Const("b2", randTensor(r, 0.1, 8))}, pads, relu)
	c2.Producer.Name = "mid"
	c3 := kilnOp(b, "FusedConv", []*ir.Value{c2, b.Const("w3", randTensor(r, 0.2, 8, 8, 1, 1)), nil, c1},
		ir.StringAttr("activation", "Clip"), &ir.Attr{Name: "activation_params", Type: ir.AttrFloats, Floats: []float32{0, 6}})
	c3.Producer.Name = "res"
	c4 := kilnOp(b, "FusedConv", []*ir.Value{c3, b.Const("w4", randTensor(r, 0.5, 8, 1, 3, 3)), b.Const("b4", randTensor(r, 0.1, 8))},
		pads, ir.IntAttr("group", 8), ir.IntsAttr("strides", 2, 2))
	c4.Producer.Name = "dw"
	p := b.Op("GlobalAveragePool", []*ir.Value{c4})
	f := b.Op("Flatten", []*ir.Value{p})
	fc := kilnOp(b, "FusedMatMul", []*ir.Value{f, b.Const("wfc", randTensor(r, 0.4, 8, 6)), b.Const("bfc", randTensor(r, 0.1, 6))}, relu)
	fc.Producer.Name = "fc"
	y := b.Op("Gemm", []*ir.Value{fc, b.Const("whead", randTensor(r, 0.4, 4, 6)), b.Const("bhead", randTensor(r, 0.1, 4))}, ir.IntAttr("transB", 1))
	y.Producer.Name = "head"
	b.Output(y, "y")
	g := b.Graph()
	_, err := ops.InferGraph(g)
	return g, err
}

// fullTable gives every float value of g the range 4.
func fullTable(g *ir.Graph) *Table {
	t := &Table{Method: MinMax, Graph: GraphHash(g), Entries: map[string]float32{}}
	for _, v := range g.Inputs {
		t.Entries[v.Name] = 4
	}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			t.Entries[o.Name] = 4
		}
	}
	return t
}

func nodeNamed(g *ir.Graph, name string) *ir.Node {
	for _, n := range g.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func TestQuantizeINT8Rule(t *testing.T) {
	type want struct {
		prec   Precision
		reason string
	}
	tests := []struct {
		name string
		opt  INT8Options
		drop string // a value whose calibration entry is removed
		// set gives nodes (by name) an attribute, before calibration
		set    map[string]*ir.Attr
		layers map[string]want
	}{
		{name: "default rule", layers: map[string]want{
			"first": {PrecisionFP32, `first layer: reads graph input "x" with 3 channels`},
			"mid":   {PrecisionINT8, "input scale"},
			"res":   {PrecisionINT8, "input scale"},
			"dw":    {PrecisionINT8, "input scale"},
			"fc":    {PrecisionINT8, "input scale"},
			"head":  {PrecisionFP32, `produces graph output "y"`},
		}},
		{name: "overrides", opt: INT8Options{Layers: map[string]Precision{"first": PrecisionINT8, "head": PrecisionINT8, "mid": PrecisionFP32, "dw": PrecisionFP16}}, layers: map[string]want{
			"first": {PrecisionINT8, "override: int8"},
			"mid":   {PrecisionFP32, "override: fp32"},
			"dw":    {PrecisionFP32, "override: fp16"},
			"head":  {PrecisionINT8, "override: int8"},
		}},
		{name: "first-layer rule off", opt: INT8Options{FirstLayerMaxChannels: -1}, layers: map[string]want{
			"first": {PrecisionINT8, "input scale"},
		}},
		{name: "no range", drop: "mid", layers: map[string]want{
			"res": {PrecisionFP32, "has no calibration range"},
		}},
		// attributes that do not parse: the layer is left in float
		{name: "malformed attributes", set: map[string]*ir.Attr{
			"mid":  ir.IntAttr("group", 0),
			"fc":   ir.StringAttr("activation", "Bogus"),
			"head": ir.IntAttr("alpha", 1),
		}, layers: map[string]want{
			"mid":  {PrecisionFP32, `"group"`},
			"fc":   {PrecisionFP32, `"activation"`},
			"head": {PrecisionFP32, `"alpha"`},
			"res":  {PrecisionINT8, "input scale"},
		}},
		{name: "gemm attributes", set: map[string]*ir.Attr{"head": ir.FloatAttr("alpha", 2)}, layers: map[string]want{
			"head": {PrecisionFP32, "Gemm with alpha != 1"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := convNet(t)
			for name, a := range tc.set {
				nodeNamed(g, name).Attrs[a.Name] = a
			}
			tab := fullTable(g)
			if tc.drop != "" {
				delete(tab.Entries, nodeNamed(g, tc.drop).Outputs[0].Name)
			}
			rep, err := QuantizeINT8(g, tab, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Layers) != 6 {
				t.Fatalf("%d decisions, want 6:\n%v", len(rep.Layers), rep)
			}
			for _, d := range rep.Layers {
				w, ok := tc.layers[d.Name]
				if !ok {
					continue
				}
				if d.Precision != w.prec || !strings.Contains(d.Reason, w.reason) {
					t.Errorf("%s: %s (%s), want %s (%s)", d.Name, d.Precision, d.Reason, w.prec, w.reason)
				}
				n := nodeNamed(g, d.Name)
				isQ := n.Domain == Domain && (n.OpType == "QConv" || n.OpType == "QMatMul")
				if isQ != (d.Precision == PrecisionINT8) {
					t.Errorf("%s: precision %s but node is %s::%s", d.Name, d.Precision, n.Domain, n.OpType)
				}
			}
			if !strings.Contains(rep.String(), "layers in int8") {
				t.Errorf("String():\n%s", rep)
			}
		})
	}
}

func TestQuantizeINT8Errors(t *testing.T) {
	tests := []struct {
		name string
		opt  INT8Options
		drop bool
		want string
	}{
		{"unknown layer", INT8Options{Layers: map[string]Precision{"nope": PrecisionFP32, "mid": PrecisionFP32}}, false, `names "nope", which the graph does not have`},
		{"int8 on a pool", INT8Options{Layers: map[string]Precision{"GlobalAveragePool_1": PrecisionINT8}}, false, "only convolutions and matrix products"},
		{"forced without range", INT8Options{Layers: map[string]Precision{"res": PrecisionINT8}}, true, `"res" is forced to int8 but its input`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := convNet(t)
			tab := fullTable(g)
			if tc.drop {
				delete(tab.Entries, nodeNamed(g, "mid").Outputs[0].Name)
			}
			if _, err := QuantizeINT8(g, tab, tc.opt); !errors.Is(err, ErrQuantize) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want ErrQuantize with %q", err, tc.want)
			}
		})
	}
	g := convNet(t)
	if _, err := QuantizeINT8(g, fullTable(g), INT8Options{Layers: map[string]Precision{"GlobalAveragePool_1": PrecisionFP32}}); err != nil {
		t.Errorf("fp32 for a layer that is float anyway: %v", err)
	}
	if _, err := QuantizeINT8(convNet(t), nil, INT8Options{}); !errors.Is(err, ErrQuantize) {
		t.Errorf("nil table: %v", err)
	}
}

func TestParseLayerPrecisions(t *testing.T) {
	got, err := ParseLayerPrecisions("a:fp32, /x/Conv:0:INT8,b:fp16")
	if err != nil || len(got) != 3 || got["a"] != PrecisionFP32 || got["/x/Conv:0"] != PrecisionINT8 || got["b"] != PrecisionFP16 {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"a", ":fp32", "a:bf16"} {
		if _, err := ParseLayerPrecisions(bad); !errors.Is(err, ErrQuantize) {
			t.Errorf("%q: %v, want ErrQuantize", bad, err)
		}
	}
}

// TestQuantizeINT8Structure checks the rewritten nodes: inputs, attributes,
// per-channel weight scales and int8 weights that dequantize to within half
// a step of the float weights.
func TestQuantizeINT8Structure(t *testing.T) {
	g := convNet(t)
	orig := map[string]*tensor.Tensor{}
	for _, v := range g.Initializers {
		orig[v.Name] = v.Const
	}
	tab := fullTable(g)
	if _, err := QuantizeINT8(g, tab, INT8Options{Layers: map[string]Precision{"head": PrecisionINT8}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		layer, op, weights string
		inputs             int
		transposed         bool
		attrs              []string
	}{
		{"mid", "QConv", "w2", 4, false, []string{"x_scale", "activation", "pads"}},
		{"res", "QConv", "w3", 5, false, []string{"x_scale", "activation", "activation_params"}},
		{"dw", "QConv", "w4", 4, false, []string{"x_scale", "group", "strides", "pads"}},
		{"fc", "QMatMul", "wfc", 4, false, []string{"a_scale", "activation"}},
		{"head", "QMatMul", "whead", 4, true, []string{"a_scale"}},
	} {
		t.Run(tc.layer, func(t *testing.T) {
			n := nodeNamed(g, tc.layer)
			if n.OpType != tc.op || n.Domain != Domain || len(n.Inputs) != tc.inputs {
				t.Fatalf("%s::%s with %d inputs, want kiln::%s with %d", n.Domain, n.OpType, len(n.Inputs), tc.op, tc.inputs)
			}
			for _, a := range tc.attrs {
				if n.Attrs[a] == nil {
					t.Errorf("attribute %s missing", a)
				}
			}
			sa := "x_scale"
			if tc.op == "QMatMul" {
				sa = "a_scale"
			}
			if got := n.Attrs[sa].F; got != 4.0/127 {
				t.Errorf("%s %v, want %v", sa, got, 4.0/127)
			}
			wq, ws := n.Inputs[1].Const, n.Inputs[2].Const
			w := orig[tc.weights]
			if wq.DType != tensor.Int8 || ws.DType != tensor.Float32 {
				t.Fatalf("weights %v scales %v", wq.DType, ws.DType)
			}
			wv := w.Float32s()
			rows, cols := w.Shape[0], w.Len()/w.Shape[0]
			at := func(ch, i int) float32 { return wv[ch*cols+i] } // conv: channel-major
			qat := func(ch, i int) int8 { return wq.Int8s()[ch*cols+i] }
			channels := rows
			if tc.op == "QMatMul" {
				k, m := w.Shape[0], w.Shape[1]
				if tc.transposed { // w is [N, K]; wq is [K, N]
					k, m = m, k
					at = func(ch, i int) float32 { return wv[ch*k+i] }
				} else {
					at = func(ch, i int) float32 { return wv[i*m+ch] }
				}
				qat = func(ch, i int) int8 { return wq.Int8s()[i*m+ch] }
				channels, cols = m, k
				if wq.Shape[0] != k || wq.Shape[1] != m {
					t.Fatalf("int8 B shape %v, want [%d %d]", wq.Shape, k, m)
				}
			}
			if ws.Len() != channels {
				t.Fatalf("%d scales for %d channels", ws.Len(), channels)
			}
			for ch := range channels {
				var mx float32
				for i := range cols {
					mx = max(mx, float32(math.Abs(float64(at(ch, i)))))
				}
				s := ws.Float32s()[ch]
				if math.Abs(float64(s-mx/127)) > 1e-9 {
					t.Errorf("channel %d scale %v, want max|w|/127 = %v", ch, s, mx/127)
				}
				peak := false
				for i := range cols {
					q := qat(ch, i)
					peak = peak || q == 127 || q == -127
					if d := math.Abs(float64(float32(q)*s - at(ch, i))); d > float64(s)/2+1e-7 {
						t.Errorf("channel %d weight %d: %v*%v is %v off %v", ch, i, q, s, d, at(ch, i))
					}
				}
				if !peak {
					t.Errorf("channel %d: no weight reaches +-127", ch)
				}
			}
		})
	}
	for _, v := range g.Initializers {
		if v.Name == "w2" || v.Name == "whead" {
			t.Errorf("replaced float weights %s are still in the graph", v.Name)
		}
	}
	if nodeNamed(g, "first").OpType != "FusedConv" || g.Opsets[Domain] != 1 {
		t.Error("the first layer changed or the kiln opset is missing")
	}
}

func TestQuantizeINT8OutputThroughShapeOps(t *testing.T) {
	r := rand.New(rand.NewSource(9))
	b := ir.NewBuilder("mlp", 13)
	b.Graph().Opsets[Domain] = 1
	x := b.Input("x", tensor.Float32, ir.D(2), ir.D(8))
	h := kilnOp(b, "FusedMatMul", []*ir.Value{x, b.Const("w1", randTensor(r, 1, 8, 8))}, ir.StringAttr("activation", "Relu"))
	h.Producer.Name = "hidden"
	o := kilnOp(b, "FusedMatMul", []*ir.Value{h, b.Const("w2", randTensor(r, 1, 8, 4))})
	o.Producer.Name = "logits"
	y := b.Op("Flatten", []*ir.Value{b.Op("Identity", []*ir.Value{o})})
	b.Output(y, "y")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	rep, err := QuantizeINT8(g, fullTable(g), INT8Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Precision{"hidden": PrecisionINT8, "logits": PrecisionFP32}
	for _, d := range rep.Layers {
		if d.Precision != want[d.Name] {
			t.Errorf("%s: %s (%s), want %s", d.Name, d.Precision, d.Reason, want[d.Name])
		}
		if d.Name == "logits" && !strings.Contains(d.Reason, `graph output "y"`) {
			t.Errorf("logits: reason %q", d.Reason)
		}
	}
}
