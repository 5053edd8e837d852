package nn

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// refAct is the float64 reference of each fused activation.
func refAct(act string, p []float32, x float64) float64 {
	switch act {
	case ActRelu:
		return math.Max(x, 0)
	case ActClip:
		return math.Min(math.Max(x, float64(p[0])), float64(p[1]))
	case ActSigmoid:
		return 1 / (1 + math.Exp(-x))
	case ActSiLU:
		return x / (1 + math.Exp(-x))
	case ActHardSwish:
		return x * math.Max(0, math.Min(1, x/6+0.5))
	case ActLeakyRelu:
		if x < 0 {
			return float64(p[0]) * x
		}
		return x
	case ActHardSigmoid:
		return math.Max(0, math.Min(1, float64(p[0])*x+float64(p[1])))
	case ActGelu:
		return x * 0.5 * (1 + math.Erf(x/math.Sqrt2))
	case ActGeluTanh:
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*math.Pow(x, 3))))
	}
	return x
}

func fusedNode(op string, nIn int, act string, params []float32, attrs ...*ir.Attr) *ir.Node {
	n := opstest.Node(op, nIn, 1, attrs...)
	n.Domain = FusedDomain
	n.Attrs["activation"] = ir.StringAttr("activation", act)
	if params != nil {
		n.Attrs["activation_params"] = &ir.Attr{Name: "activation_params", Type: ir.AttrFloats, Floats: params}
	}
	return n
}

var fusedActs = []struct {
	act    string
	params []float32
}{
	{ActNone, nil}, {ActRelu, nil}, {ActClip, []float32{0, 6}}, {ActSigmoid, nil}, {ActSiLU, nil},
	{ActHardSwish, nil}, {ActLeakyRelu, []float32{0.1}}, {ActHardSigmoid, []float32{0.2, 0.5}},
	{ActGelu, nil}, {ActGeluTanh, nil},
}

func TestFusedConv(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	geoms := []struct {
		name  string
		x, w  []int
		attrs []*ir.Attr
	}{
		{"3x3 pad1", []int{2, 4, 6, 5}, []int{6, 4, 3, 3}, []*ir.Attr{ir.IntsAttr("pads", 1, 1, 1, 1)}},
		{"1x1", []int{1, 8, 4, 4}, []int{4, 8, 1, 1}, nil},
		{"depthwise stride2", []int{1, 4, 7, 7}, []int{4, 1, 3, 3}, []*ir.Attr{ir.IntAttr("group", 4), ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1)}},
		{"1-D", []int{2, 3, 9}, []int{5, 3, 3}, nil},
	}
	for _, g := range geoms {
		for _, a := range fusedActs {
			for _, residual := range []bool{false, true} {
				x := randTensor(r, tensor.Float32, g.x...)
				w := randTensor(r, tensor.Float32, g.w...)
				b := randTensor(r, tensor.Float32, g.w[0])
				conv := opstest.Node("Conv", 3, 1, g.attrs...)
				ref, err := execSafe(conv, 13, x, w, b)
				if err != nil {
					t.Fatal(err)
				}
				want := floats(ref[0])
				in := []*tensor.Tensor{x, w, b}
				if residual {
					z := randTensor(r, tensor.Float32, ref[0].Shape...)
					for i := range want {
						want[i] += z.Float(i)
					}
					in = append(in, z)
				}
				for i := range want {
					want[i] = refAct(a.act, a.params, want[i])
				}
				n := fusedNode("FusedConv", len(in), a.act, a.params, g.attrs...)
				got, err := execSafe(n, 13, in...)
				if err != nil {
					t.Fatalf("%s %s residual=%v: %v", g.name, a.act, residual, err)
				}
				closeTo(t, g.name+" "+a.act, got[0], ref[0].Shape, want, 1e-5)
			}
		}
	}
}

func TestFusedMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	shapes := []struct{ a, b []int }{{[]int{3, 5}, []int{5, 4}}, {[]int{2, 3, 5}, []int{5, 7}}}
	for _, s := range shapes {
		for _, a := range fusedActs {
			x := randTensor(r, tensor.Float32, s.a...)
			w := randTensor(r, tensor.Float32, s.b...)
			b := randTensor(r, tensor.Float32, s.b[1])
			ref, err := execSafe(opstest.Node("MatMul", 2, 1), 13, x, w)
			if err != nil {
				t.Fatal(err)
			}
			want := floats(ref[0])
			for i := range want {
				want[i] = refAct(a.act, a.params, want[i]+b.Float(i%s.b[1]))
			}
			got, err := execSafe(fusedNode("FusedMatMul", 3, a.act, a.params), 13, x, w, b)
			if err != nil {
				t.Fatalf("%v %s: %v", s.a, a.act, err)
			}
			closeTo(t, a.act, got[0], ref[0].Shape, want, 1e-5)
		}
	}
}

func TestFusedBadInput(t *testing.T) {
	x := tensor.New(tensor.Float32, 1, 2, 4, 4)
	w := tensor.New(tensor.Float32, 3, 2, 3, 3)
	tests := []struct {
		name string
		n    *ir.Node
		in   []*tensor.Tensor
	}{
		{"conv residual shape", fusedNode("FusedConv", 4, ActRelu, nil), []*tensor.Tensor{x, w, nil, tensor.New(tensor.Float32, 1, 3, 3, 3)}},
		{"conv float64", fusedNode("FusedConv", 2, ActRelu, nil), []*tensor.Tensor{tensor.New(tensor.Float64, 1, 2, 4, 4), tensor.New(tensor.Float64, 3, 2, 3, 3)}},
		{"conv unknown activation", fusedNode("FusedConv", 2, "Tanhh", nil), []*tensor.Tensor{x, w}},
		{"conv empty clip", fusedNode("FusedConv", 2, ActClip, []float32{6, 0}), []*tensor.Tensor{x, w}},
		{"matmul bias shape", fusedNode("FusedMatMul", 3, ActNone, nil), []*tensor.Tensor{tensor.New(tensor.Float32, 2, 3), tensor.New(tensor.Float32, 3, 4), tensor.New(tensor.Float32, 3)}},
		{"matmul inner dims", fusedNode("FusedMatMul", 2, ActNone, nil), []*tensor.Tensor{tensor.New(tensor.Float32, 2, 3), tensor.New(tensor.Float32, 2, 4)}},
	}
	for _, tt := range tests {
		wantBadInput(t, tt.name, tt.n, 13, tt.in...)
	}
}

func TestGelu(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tt := range []struct{ approx, act string }{{"none", ActGelu}, {"tanh", ActGeluTanh}} {
		x := randTensor(r, tensor.Float32, 3, 7)
		n := opstest.Node("Gelu", 1, 1, ir.StringAttr("approximate", tt.approx))
		n.Domain = FusedDomain
		got, err := execSafe(n, 13, x)
		if err != nil {
			t.Fatal(err)
		}
		want := floats(x)
		for i := range want {
			want[i] = refAct(tt.act, nil, want[i])
		}
		closeTo(t, "Gelu "+tt.approx, got[0], x.Shape, want, 1e-6)
	}
	n := opstest.Node("Gelu", 1, 1)
	n.Domain = FusedDomain
	wantBadInput(t, "Gelu of float64", n, 13, tensor.New(tensor.Float64, 2))
}

// TestLayerNormAlias checks that kiln::LayerNormalization, without the
// ops/norm package registered here, fails with ErrUnsupportedOp.
func TestLayerNormAlias(t *testing.T) {
	n := opstest.Node("LayerNormalization", 2, 1)
	n.Domain = FusedDomain
	if _, ok := ops.Lookup("", "LayerNormalization"); ok {
		t.Skip("ops/norm is linked into this test binary")
	}
	_, err := execSafe(n, 13, tensor.New(tensor.Float32, 2, 3), tensor.New(tensor.Float32, 3))
	if !errors.Is(err, ops.ErrUnsupportedOp) {
		t.Errorf("error %v, want ErrUnsupportedOp", err)
	}
}

// refAttention computes Softmax(Q K * scale + mask) V naively in float64
// for Q [b,h,s,d], K [b,h,d,t], V [b,h,t,e] and a mask [b,1,1,t] or nil.
func refAttention(q, k, v, mask *tensor.Tensor, scale float64) []float64 {
	b, h, s, d := q.Shape[0], q.Shape[1], q.Shape[2], q.Shape[3]
	tt, e := k.Shape[3], v.Shape[3]
	out := make([]float64, b*h*s*e)
	for bi := 0; bi < b; bi++ {
		for hi := 0; hi < h; hi++ {
			bh := bi*h + hi
			for i := 0; i < s; i++ {
				p := make([]float64, tt)
				mx := math.Inf(-1)
				for j := 0; j < tt; j++ {
					acc := 0.0
					for c := 0; c < d; c++ {
						acc += q.Float((bh*s+i)*d+c) * k.Float((bh*d+c)*tt+j)
					}
					acc *= scale
					if mask != nil {
						acc += mask.Float(bi*tt + j)
					}
					p[j] = acc
					mx = math.Max(mx, acc)
				}
				sum := 0.0
				for j := range p {
					p[j] = math.Exp(p[j] - mx)
					sum += p[j]
				}
				for c := 0; c < e; c++ {
					acc := 0.0
					for j := range p {
						acc += p[j] / sum * v.Float((bh*tt+j)*e+c)
					}
					out[(bh*s+i)*e+c] = acc
				}
			}
		}
	}
	return out
}

func TestAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, withMask := range []bool{false, true} {
		q := randTensor(r, tensor.Float32, 2, 3, 4, 5)
		k := randTensor(r, tensor.Float32, 2, 3, 5, 6)
		v := randTensor(r, tensor.Float32, 2, 3, 6, 7)
		in := []*tensor.Tensor{q, k, v}
		var mask *tensor.Tensor
		if withMask {
			mask = randTensor(r, tensor.Float32, 2, 1, 1, 6)
			mask.Float32s()[1] = -10000
			in = append(in, mask)
		}
		n := opstest.Node("Attention", len(in), 1, ir.FloatAttr("scale", 0.5))
		n.Domain = FusedDomain
		got, err := execSafe(n, 13, in...)
		if err != nil {
			t.Fatal(err)
		}
		closeTo(t, "Attention", got[0], []int{2, 3, 4, 7}, refAttention(q, k, v, mask, 0.5), 1e-5)
	}
	n := opstest.Node("Attention", 4, 1)
	n.Domain = FusedDomain
	x := tensor.New(tensor.Float32, 1, 2, 3, 3)
	wantBadInput(t, "mask that does not broadcast", n, 13, x, x, x, tensor.New(tensor.Float32, 2, 1, 1, 2))
	// a mask that enlarges the scores broadcasts them first
	mask := randTensor(r, tensor.Float32, 2, 1, 1, 3)
	got, err := execSafe(n, 13, x, x, x, mask)
	if err != nil {
		t.Fatal(err)
	}
	want := refAttention(tensor.New(tensor.Float32, 2, 2, 3, 3), tensor.New(tensor.Float32, 2, 2, 3, 3), tensor.New(tensor.Float32, 2, 2, 3, 3), mask, 1)
	closeTo(t, "enlarging mask", got[0], []int{2, 2, 3, 3}, want, 1e-6)
	wantBadInput(t, "float64", n, 13, tensor.New(tensor.Float64, 1, 3, 3), x, x)
}
