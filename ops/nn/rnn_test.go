package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// refCell describes the recurrent cell the oracle computes.
type refCell struct {
	op          string
	gates       int
	lbr         bool
	inputForget bool
	clip        float64
	f, g, h     func(float64) float64
}

// refRecurrent is the oracle of one direction: every batch entry on its
// own, every gate as an explicit sum. x is [S*B*I]; w, r, wb, rb, p hold
// one direction's parameters; it returns Y [S*B*H], h_T and c_T [B*H].
func refRecurrent(c refCell, S, B, I, H int, x, w, r, wb, rb, p, h0, c0 []float64, lens []int, reverse bool) (y, hT, cT []float64) {
	y = make([]float64, S*B*H)
	hT = make([]float64, B*H)
	cT = make([]float64, B*H)
	clip := func(v float64) float64 {
		if c.clip > 0 {
			return math.Max(-c.clip, math.Min(c.clip, v))
		}
		return v
	}
	for b := 0; b < B; b++ {
		L := S
		if lens != nil {
			L = lens[b]
		}
		h := make([]float64, H)
		cs := make([]float64, H)
		if h0 != nil {
			copy(h, h0[b*H:])
		}
		if c0 != nil {
			copy(cs, c0[b*H:])
		}
		for step := 0; step < L; step++ {
			t := step
			if reverse {
				t = L - 1 - step
			}
			xt := x[(t*B+b)*I : (t*B+b+1)*I]
			wx := func(row int) float64 {
				s := 0.0
				for k := 0; k < I; k++ {
					s += w[row*I+k] * xt[k]
				}
				if wb != nil {
					s += wb[row]
				}
				return s
			}
			rh := func(row int, hv []float64) float64 {
				s := 0.0
				for k := 0; k < H; k++ {
					s += r[row*H+k] * hv[k]
				}
				if rb != nil {
					s += rb[row]
				}
				return s
			}
			nh := make([]float64, H)
			nc := make([]float64, H)
			switch c.op {
			case "RNN":
				for j := 0; j < H; j++ {
					nh[j] = c.f(clip(wx(j) + rh(j, h)))
				}
			case "GRU":
				z := make([]float64, H)
				rg := make([]float64, H)
				for j := 0; j < H; j++ {
					z[j] = c.f(clip(wx(j) + rh(j, h)))
					rg[j] = c.f(clip(wx(H+j) + rh(H+j, h)))
				}
				rhv := make([]float64, H)
				for j := range rhv {
					rhv[j] = rg[j] * h[j]
				}
				for j := 0; j < H; j++ {
					var hh float64
					if c.lbr {
						hh = c.g(clip(wx(2*H+j) + rg[j]*rh(2*H+j, h)))
					} else {
						hh = c.g(clip(wx(2*H+j) + rh(2*H+j, rhv)))
					}
					nh[j] = (1-z[j])*hh + z[j]*h[j]
				}
			case "LSTM":
				for j := 0; j < H; j++ {
					var pi, po, pf float64
					if p != nil {
						pi, po, pf = p[j], p[H+j], p[2*H+j]
					}
					ig := c.f(clip(wx(j) + rh(j, h) + pi*cs[j]))
					fg := c.f(clip(wx(2*H+j) + rh(2*H+j, h) + pf*cs[j]))
					if c.inputForget {
						fg = 1 - ig
					}
					cg := c.g(clip(wx(3*H+j) + rh(3*H+j, h)))
					nc[j] = fg*cs[j] + ig*cg
					og := c.f(clip(wx(H+j) + rh(H+j, h) + po*nc[j]))
					nh[j] = og * c.h(nc[j])
				}
				cs = nc
			}
			h = nh
			copy(y[(t*B+b)*H:], h)
		}
		copy(hT[b*H:], h)
		copy(cT[b*H:], cs)
	}
	return y, hT, cT
}

func sig(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

func TestRecurrentAgainstReference(t *testing.T) {
	const S, B, I, H = 4, 3, 5, 6
	type tc struct {
		name   string
		cell   refCell
		attrs  []*ir.Attr
		dir    string
		layout int
		bias   bool
		lens   []int
		init   bool
		peep   bool
	}
	tanh := math.Tanh
	rnn := refCell{op: "RNN", gates: 1, f: tanh}
	gru := refCell{op: "GRU", gates: 3, f: sig, g: tanh}
	lstm := refCell{op: "LSTM", gates: 4, f: sig, g: tanh, h: tanh}
	gruLBR := gru
	gruLBR.lbr = true
	lstmIF := lstm
	lstmIF.inputForget = true
	rnnClip := refCell{op: "RNN", gates: 1, clip: 0.3, f: func(x float64) float64 {
		if x < 0 {
			return 0.2 * x
		}
		return x
	}}
	lstmAct := refCell{op: "LSTM", gates: 4, f: func(x float64) float64 { return math.Max(0, math.Min(1, 0.3*x+0.4)) },
		g: func(x float64) float64 { return 1.5 * math.Tanh(0.5*x) }, h: math.Tanh, clip: 2}
	cases := []tc{
		{name: "rnn", cell: rnn, dir: "forward"},
		{name: "rnn_all", cell: rnn, dir: "forward", bias: true, lens: []int{4, 2, 0}, init: true},
		{name: "rnn_reverse", cell: rnn, dir: "reverse", bias: true, lens: []int{1, 4, 3}},
		{name: "rnn_bidi_layout1", cell: rnn, dir: "bidirectional", layout: 1, bias: true, init: true},
		{name: "rnn_leaky_clip", cell: rnnClip, dir: "forward", bias: true,
			attrs: []*ir.Attr{{Name: "activations", Type: ir.AttrStrings, Strings: []string{"LeakyRelu"}}, opstest.Floats("activation_alpha", 0.2), opstest.Float("clip", 0.3)}},
		{name: "gru", cell: gru, dir: "forward", bias: true},
		{name: "gru_lbr", cell: gruLBR, dir: "forward", bias: true, init: true, attrs: []*ir.Attr{opstest.Int("linear_before_reset", 1)}},
		{name: "gru_bidi", cell: gru, dir: "bidirectional", bias: true, lens: []int{3, 4, 1}, init: true},
		{name: "gru_lbr_reverse_layout1", cell: gruLBR, dir: "reverse", layout: 1, bias: true, lens: []int{2, 4, 3},
			attrs: []*ir.Attr{opstest.Int("linear_before_reset", 1)}},
		{name: "lstm", cell: lstm, dir: "forward"},
		{name: "lstm_peep", cell: lstm, dir: "forward", bias: true, init: true, peep: true, lens: []int{4, 1, 3}},
		{name: "lstm_bidi_layout1", cell: lstm, dir: "bidirectional", layout: 1, bias: true, init: true, peep: true},
		{name: "lstm_input_forget", cell: lstmIF, dir: "reverse", bias: true, attrs: []*ir.Attr{opstest.Int("input_forget", 1)}},
		{name: "lstm_acts", cell: lstmAct, dir: "forward", bias: true, init: true,
			attrs: []*ir.Attr{{Name: "activations", Type: ir.AttrStrings, Strings: []string{"HardSigmoid", "ScaledTanh", "Tanh"}},
				opstest.Floats("activation_alpha", 0.3, 1.5), opstest.Floats("activation_beta", 0.4, 0.5), opstest.Float("clip", 2)}},
	}
	r := rand.New(rand.NewPCG(91, 92))
	for _, c := range cases {
		for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64} {
			t.Run(fmt.Sprintf("%s/%v", c.name, dt), func(t *testing.T) {
				dirs := 1
				if c.dir == "bidirectional" {
					dirs = 2
				}
				G := c.cell.gates
				x := randTensor(r, dt, S, B, I)
				w := randTensor(r, dt, dirs, G*H, I)
				rr := randTensor(r, dt, dirs, G*H, H)
				in := []*tensor.Tensor{x, w, rr, nil, nil, nil, nil, nil}
				if c.bias {
					in[3] = randTensor(r, dt, dirs, 2*G*H)
				}
				if c.lens != nil {
					sl := tensor.New(tensor.Int32, B)
					for i, l := range c.lens {
						sl.Int32s()[i] = int32(l)
					}
					in[4] = sl
				}
				if c.init {
					in[5] = randTensor(r, dt, dirs, B, H)
					if c.cell.op == "LSTM" {
						in[6] = randTensor(r, dt, dirs, B, H)
					}
				}
				if c.peep {
					in[7] = randTensor(r, dt, dirs, 3*H)
				}
				// oracle, per direction, in layout 0
				xf := floats(x)
				wantY := make([]float64, S*dirs*B*H)
				wantH := make([]float64, dirs*B*H)
				wantC := make([]float64, dirs*B*H)
				for d := 0; d < dirs; d++ {
					part := func(t *tensor.Tensor, n int) []float64 {
						if t == nil {
							return nil
						}
						return floats(t)[d*n : (d+1)*n]
					}
					var wb, rb []float64
					if b := part(in[3], 2*G*H); b != nil {
						wb, rb = b[:G*H], b[G*H:]
					}
					y, hT, cT := refRecurrent(c.cell, S, B, I, H, xf, part(w, G*H*I), part(rr, G*H*H), wb, rb,
						part(in[7], 3*H), part(in[5], B*H), part(in[6], B*H), c.lens, c.dir == "reverse" || d == 1)
					for s := 0; s < S; s++ {
						copy(wantY[(s*dirs+d)*B*H:], y[s*B*H:(s+1)*B*H])
					}
					copy(wantH[d*B*H:], hT)
					copy(wantC[d*B*H:], cT)
				}
				yShape, hShape := []int{S, dirs, B, H}, []int{dirs, B, H}
				if c.layout == 1 {
					// feed the op batch-major tensors, and permute the oracle's outputs
					in[0] = fromFloats(dt, floats32swap(xf, S, B, I), B, S, I)
					for _, i := range []int{5, 6} {
						if in[i] != nil {
							in[i] = fromFloats(dt, floats32swap(floats(in[i]), dirs, B, H), B, dirs, H)
						}
					}
					ty := make([]float64, len(wantY))
					for s := 0; s < S; s++ {
						for d := 0; d < dirs; d++ {
							for b := 0; b < B; b++ {
								copy(ty[((b*S+s)*dirs+d)*H:][:H], wantY[((s*dirs+d)*B+b)*H:][:H])
							}
						}
					}
					wantY = ty
					wantH = floats32swap(wantH, dirs, B, H)
					wantC = floats32swap(wantC, dirs, B, H)
					yShape, hShape = []int{B, S, dirs, H}, []int{B, dirs, H}
				}
				attrs := append([]*ir.Attr{opstest.Int("hidden_size", H), opstest.String("direction", c.dir), opstest.Int("layout", int64(c.layout))}, c.attrs...)
				nOut := 2
				if c.cell.op == "LSTM" {
					nOut = 3
				}
				outs := opstest.Run(t, opstest.Node(c.cell.op, 8, nOut, attrs...), 14, in...)
				tol := 1e-5
				closeTo(t, "Y", outs[0], yShape, wantY, tol)
				closeTo(t, "Y_h", outs[1], hShape, wantH, tol)
				if nOut == 3 {
					closeTo(t, "Y_c", outs[2], hShape, wantC, tol)
				}
			})
		}
	}
}

// floats32swap swaps the first two dims of a [d0, d1, inner] array.
func floats32swap(v []float64, d0, d1, inner int) []float64 { return swap01(v, d0, d1, inner) }

func TestRecurrentInferAndErrors(t *testing.T) {
	n := opstest.Node("LSTM", 3, 3, opstest.Int("hidden_size", 16), opstest.String("direction", "bidirectional"))
	got := inferTypes(t, n, 14, ty(tensor.Float32, ir.S("seq"), ir.S("batch"), ir.D(8)),
		ty(tensor.Float32, ir.D(2), ir.D(64), ir.D(8)), ty(tensor.Float32, ir.D(2), ir.D(64), ir.D(16)))
	if len(got) != 3 || got[0].Shape.String() != "[seq,2,batch,16]" || got[1].Shape.String() != "[2,batch,16]" || got[2].Shape.String() != "[2,batch,16]" {
		t.Errorf("LSTM infer %v", got)
	}
	n1 := opstest.Node("GRU", 3, 2, opstest.Int("layout", 1))
	got = inferTypes(t, n1, 14, ty(tensor.Float32, ir.S("batch"), ir.S("seq"), ir.D(8)),
		ty(tensor.Float32, ir.D(1), ir.D(15), ir.D(8)), ty(tensor.Float32, ir.D(1), ir.D(15), ir.D(5)))
	if got[0].Shape.String() != "[batch,seq,1,5]" || got[1].Shape.String() != "[batch,1,5]" {
		t.Errorf("GRU infer %v", got)
	}
	x := tensor.New(tensor.Float32, 2, 1, 3)
	w := tensor.New(tensor.Float32, 1, 4, 3)
	r := tensor.New(tensor.Float32, 1, 4, 4)
	rnn := func(attrs ...*ir.Attr) *ir.Node { return opstest.Node("RNN", 6, 2, attrs...) }
	wantBadInput(t, "W shape", rnn(), 14, x, tensor.New(tensor.Float32, 1, 4, 2), r)
	wantBadInput(t, "R shape", rnn(), 14, x, w, tensor.New(tensor.Float32, 1, 4, 3))
	wantBadInput(t, "hidden_size", rnn(opstest.Int("hidden_size", 3)), 14, x, w, r)
	wantBadInput(t, "B shape", rnn(), 14, x, w, r, tensor.New(tensor.Float32, 1, 4))
	sl := tensor.New(tensor.Int32, 1)
	sl.Int32s()[0] = 3
	wantBadInput(t, "seq len", rnn(), 14, x, w, r, nil, sl)
	wantBadInput(t, "initial_h", rnn(), 14, x, w, r, nil, nil, tensor.New(tensor.Float32, 1, 2, 4))
	wantBadInput(t, "rank", rnn(), 14, tensor.New(tensor.Float32, 2, 3), w, r)
	wantBadInput(t, "dtype", rnn(), 14, tensor.New(tensor.Int32, 2, 1, 3), tensor.New(tensor.Int32, 1, 4, 3), tensor.New(tensor.Int32, 1, 4, 4))
	wantBadInput(t, "activation", rnn(&ir.Attr{Name: "activations", Type: ir.AttrStrings, Strings: []string{"Foo"}}), 14, x, w, r)
	wantBadInput(t, "direction", rnn(opstest.String("direction", "sideways")), 14, x, w, r)
}
