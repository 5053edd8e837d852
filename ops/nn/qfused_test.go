package nn

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// refQuant is the activation quantizer, written out independently.
func refQuant(x, scale float32) float64 {
	v := math.RoundToEven(float64(x / scale))
	return math.Max(-127, math.Min(127, v))
}

// randInt8 returns an int8 tensor with values uniform in [-128, 127].
func randInt8(r *rand.Rand, shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Int8, shape...)
	for i := range t.Int8s() {
		t.Int8s()[i] = int8(r.IntN(256) - 128)
	}
	return t
}

// randScaled returns a float32 tensor uniform in [-s, s).
func randScaled(r *rand.Rand, s float64, shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Float32, shape...)
	for i := range t.Float32s() {
		t.Float32s()[i] = float32((r.Float64()*2 - 1) * s)
	}
	return t
}

// qNode returns a kiln::QConv or kiln::QMatMul node.
func qNode(op string, nIn int, scaleAttr string, scale float32, act string, params []float32, attrs ...*ir.Attr) *ir.Node {
	n := fusedNode(op, nIn, act, params, attrs...)
	n.Attrs[scaleAttr] = opstest.Float(scaleAttr, scale)
	return n
}

// refQConv is QConv computed by quantizing X into float64 integers, ONNX
// Conv in float64 (exact on integers) and the epilogue in float64 from the
// float32 combined scales.
func refQConv(t *testing.T, x, w, ws, b, z *tensor.Tensor, xs float32, act string, params []float32, attrs []*ir.Attr) ([]float64, []int) {
	t.Helper()
	xq := tensor.New(tensor.Float64, x.Shape...)
	for i, v := range x.Float32s() {
		xq.Float64s()[i] = refQuant(v, xs)
	}
	wf := tensor.New(tensor.Float64, w.Shape...)
	for i, v := range w.Int8s() {
		wf.Float64s()[i] = float64(v)
	}
	out, err := execSafe(opstest.Node("Conv", 2, 1, attrs...), 13, xq, wf)
	if err != nil {
		t.Fatal(err)
	}
	acc := out[0]
	m := acc.Shape[1]
	inner := acc.Len() / (acc.Shape[0] * m)
	want := make([]float64, acc.Len())
	for i, a := range acc.Float64s() {
		ch := (i / inner) % m
		v := a * float64(xs*ws.Float32s()[ch])
		if b != nil {
			v += float64(b.Float32s()[ch])
		}
		if z != nil {
			v += float64(z.Float32s()[i])
		}
		want[i] = refAct(act, params, v)
	}
	return want, acc.Shape
}

// closeRel checks got against want to float32 rounding: a relative error
// of 1e-5 of the magnitudes involved.
func closeRel(t *testing.T, name string, got *tensor.Tensor, shape []int, want []float64, mag []float64) {
	t.Helper()
	if tensor.ShapeString(got.Shape) != tensor.ShapeString(shape) {
		t.Fatalf("%s: shape %v, want %v", name, got.Shape, shape)
	}
	for i, w := range want {
		g := float64(got.Float32s()[i])
		if d := math.Abs(g - w); d > 1e-5*(mag[i]+1e-3) {
			t.Fatalf("%s: element %d = %g, want %g (diff %g)", name, i, g, w, d)
		}
	}
}

// absAll returns |v| + |extra| element-wise (the magnitude of a sum).
func magnitudes(want []float64, z *tensor.Tensor) []float64 {
	m := make([]float64, len(want))
	for i, w := range want {
		m[i] = math.Abs(w) + 1
		if z != nil {
			m[i] += math.Abs(float64(z.Float32s()[i]))
		}
	}
	return m
}

var qconvGeoms = []struct {
	name  string
	x, w  []int
	attrs []*ir.Attr
}{
	{"3x3 pad1", []int{2, 5, 7, 6}, []int{7, 5, 3, 3}, []*ir.Attr{opstest.Ints("pads", 1, 1, 1, 1)}},
	{"1x1", []int{1, 8, 5, 5}, []int{13, 8, 1, 1}, nil},
	{"1x1 stride2", []int{1, 6, 7, 7}, []int{9, 6, 1, 1}, []*ir.Attr{opstest.Ints("strides", 2, 2)}},
	{"depthwise stride2", []int{1, 6, 9, 9}, []int{6, 1, 3, 3}, []*ir.Attr{opstest.Int("group", 6), opstest.Ints("strides", 2, 2), opstest.Ints("pads", 1, 1, 1, 1)}},
	{"grouped dilated", []int{1, 12, 8, 8}, []int{8, 6, 3, 3}, []*ir.Attr{opstest.Int("group", 2), opstest.Ints("dilations", 2, 2), opstest.String("auto_pad", "SAME_UPPER")}},
	{"5x5 odd", []int{1, 3, 11, 10}, []int{5, 3, 5, 5}, []*ir.Attr{opstest.Ints("pads", 2, 1, 2, 0), opstest.Ints("strides", 1, 2)}},
	{"1-D", []int{2, 7, 20}, []int{4, 7, 3}, nil},
	{"3-D", []int{1, 5, 4, 5, 6}, []int{3, 5, 3, 3, 3}, []*ir.Attr{opstest.Ints("pads", 1, 1, 1, 1, 1, 1)}},
	{"3-D depthwise", []int{1, 3, 4, 5, 6}, []int{3, 1, 3, 3, 3}, []*ir.Attr{opstest.Int("group", 3), opstest.Ints("pads", 1, 0, 1, 1, 0, 1)}},
	{"wide", []int{1, 16, 10, 10}, []int{70, 16, 3, 3}, []*ir.Attr{opstest.Ints("pads", 1, 1, 1, 1)}},
}

var qActs = []struct {
	act    string
	params []float32
}{{ActNone, nil}, {ActRelu, nil}, {ActClip, []float32{-0.5, 0.5}}, {ActSiLU, nil}}

// TestQConv compares kiln::QConv's reference kernel with the quantized
// float64 reference, with and without bias and residual, for several
// activations (the CPU registry's cpu.QConv is compared on every int8
// kernel in device/cpu/kernels).
func TestQConv(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, g := range qconvGeoms {
		for ai, a := range qActs {
			extras := ai % 2 // alternate bias+residual with none
			x := randScaled(r, 2, g.x...)
			w := randInt8(r, g.w...)
			ws := randScaled(r, 1e-3, g.w[0])
			const xs = float32(2.0 / 127)
			var b, z *tensor.Tensor
			in := []*tensor.Tensor{x, w, ws}
			if extras == 1 {
				b = randScaled(r, 1, g.w[0])
				_, shape := refQConv(t, x, w, ws, nil, nil, xs, ActNone, nil, g.attrs)
				z = randScaled(r, 1, shape...)
				in = append(in, b, z)
			}
			want, shape := refQConv(t, x, w, ws, b, z, xs, a.act, a.params, g.attrs)
			n := qNode("QConv", len(in), "x_scale", xs, a.act, a.params, g.attrs...)
			got, err := execSafe(n, 13, in...)
			name := fmt.Sprintf("%s %s extras=%d", g.name, a.act, extras)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			closeRel(t, name, got[0], shape, want, magnitudes(want, z))
		}
	}
}

// TestQConvBiasOnly runs QConv with a bias and no residual ("" input 4
// absent), and with a residual and no bias (input 3 nil).
func TestQConvBiasOnly(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	x := randScaled(r, 1, 1, 4, 5, 5)
	w := randInt8(r, 3, 4, 3, 3)
	ws := randScaled(r, 1e-2, 3)
	b := randScaled(r, 1, 3)
	const xs = float32(1.0 / 127)
	want, shape := refQConv(t, x, w, ws, b, nil, xs, ActRelu, nil, nil)
	got, err := execSafe(qNode("QConv", 4, "x_scale", xs, ActRelu, nil), 13, x, w, ws, b)
	if err != nil {
		t.Fatal(err)
	}
	closeRel(t, "bias only", got[0], shape, want, magnitudes(want, nil))
	z := randScaled(r, 1, shape...)
	want, _ = refQConv(t, x, w, ws, nil, z, xs, ActNone, nil, nil)
	got, err = execSafe(qNode("QConv", 5, "x_scale", xs, ActNone, nil), 13, x, w, ws, nil, z)
	if err != nil {
		t.Fatal(err)
	}
	closeRel(t, "residual only", got[0], shape, want, magnitudes(want, z))
}

// quantizeWeights quantizes float32 weights [M, ...] per output channel
// (symmetric, scale max|w|/127).
func quantizeWeights(w *tensor.Tensor) (*tensor.Tensor, *tensor.Tensor) {
	m := w.Shape[0]
	per := w.Len() / m
	q := tensor.New(tensor.Int8, w.Shape...)
	s := tensor.New(tensor.Float32, m)
	for i := 0; i < m; i++ {
		row := w.Float32s()[i*per : (i+1)*per]
		mx := float32(0)
		for _, v := range row {
			mx = max(mx, float32(math.Abs(float64(v))))
		}
		sc := mx / 127
		if sc == 0 {
			sc = 1
		}
		s.Float32s()[i] = sc
		for j, v := range row {
			q.Int8s()[i*per+j] = int8(math.RoundToEven(float64(v / sc)))
		}
	}
	return q, s
}

// TestQConvVsFloat compares QConv on ResNet- and MobileNet-like layers
// with the float32 kiln::FusedConv of the unquantized weights: every
// output must be within the bound of the quantization error,
// sum |x|*ws/2 + |w|*xs/2 + xs*ws/4 over its window, and the errors must
// be small overall.
func TestQConvVsFloat(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	cases := []struct {
		name  string
		x, w  []int
		act   string
		p     []float32
		attrs []*ir.Attr
	}{
		{"resnet 3x3", []int{1, 32, 14, 14}, []int{32, 32, 3, 3}, ActRelu, nil, []*ir.Attr{opstest.Ints("pads", 1, 1, 1, 1)}},
		{"mobilenet 1x1", []int{1, 24, 14, 14}, []int{48, 24, 1, 1}, ActClip, []float32{0, 6}, nil},
		{"mobilenet depthwise", []int{1, 16, 14, 14}, []int{16, 1, 3, 3}, ActClip, []float32{0, 6}, []*ir.Attr{opstest.Int("group", 16), opstest.Ints("pads", 1, 1, 1, 1), opstest.Ints("strides", 2, 2)}},
	}
	for _, c := range cases {
		x := randScaled(r, 3, c.x...)
		w := randScaled(r, 0.2, c.w...)
		b := randScaled(r, 0.5, c.w[0])
		mx := float32(0)
		for _, v := range x.Float32s() {
			mx = max(mx, float32(math.Abs(float64(v))))
		}
		xs := mx / 127
		wq, ws := quantizeWeights(w)
		fl, err := execSafe(fusedNode("FusedConv", 3, c.act, c.p, c.attrs...), 13, x, w, b)
		if err != nil {
			t.Fatal(err)
		}
		q, err := execSafe(qNode("QConv", 4, "x_scale", xs, c.act, c.p, c.attrs...), 13, x, wq, ws, b)
		if err != nil {
			t.Fatal(err)
		}
		// The bound, from Conv in float64 of |x|, |w| and ones.
		abs := func(t0 *tensor.Tensor) *tensor.Tensor {
			o := tensor.New(tensor.Float64, t0.Shape...)
			for i := range o.Float64s() {
				o.Float64s()[i] = math.Abs(t0.Float(i))
			}
			return o
		}
		ones := func(shape []int) *tensor.Tensor {
			o := tensor.New(tensor.Float64, shape...)
			for i := range o.Float64s() {
				o.Float64s()[i] = 1
			}
			return o
		}
		conv := func(a, b *tensor.Tensor) []float64 {
			o, err := execSafe(opstest.Node("Conv", 2, 1, c.attrs...), 13, a, b)
			if err != nil {
				t.Fatal(err)
			}
			return o[0].Float64s()
		}
		sumX := conv(abs(x), ones(c.w))
		sumW := conv(ones(c.x), abs(w))
		cnt := conv(ones(c.x), ones(c.w))
		m := c.w[0]
		inner := len(sumX) / (c.x[0] * m)
		var se, sy float64
		for i := range sumX {
			wsc := float64(ws.Float32s()[(i/inner)%m])
			bound := sumX[i]*wsc/2 + sumW[i]*float64(xs)/2 + cnt[i]*float64(xs)*wsc/4 + 1e-4
			f, g := float64(fl[0].Float32s()[i]), float64(q[0].Float32s()[i])
			if math.Abs(f-g) > bound {
				t.Fatalf("%s: element %d = %g, float %g, beyond the quantization bound %g", c.name, i, g, f, bound)
			}
			se += (f - g) * (f - g)
			sy += f * f
		}
		if rel := math.Sqrt(se / sy); rel > 0.02 {
			t.Errorf("%s: relative RMS error %.4f vs float32, want < 0.02", c.name, rel)
		}
	}
}

// refQMatMul is QMatMul computed in float64 from the quantized A.
func refQMatMul(a, b, bs, bias, z *tensor.Tensor, as float32, act string, params []float32) []float64 {
	k, n := b.Shape[0], b.Shape[1]
	rows := a.Len() / k
	want := make([]float64, rows*n)
	for i := 0; i < rows; i++ {
		for j := 0; j < n; j++ {
			var acc float64
			for p := 0; p < k; p++ {
				acc += refQuant(a.Float32s()[i*k+p], as) * float64(b.Int8s()[p*n+j])
			}
			v := acc * float64(as*bs.Float32s()[j])
			if bias != nil {
				v += float64(bias.Float32s()[j])
			}
			if z != nil {
				v += float64(z.Float32s()[i*n+j])
			}
			want[i*n+j] = refAct(act, params, v)
		}
	}
	return want
}

// TestQMatMul compares kiln::QMatMul's reference kernel with the
// quantized float64 reference (the CPU registry's int8 kernel is compared
// on every int8 kernel in device/cpu/kernels).
func TestQMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	shapes := []struct{ a, b []int }{
		{[]int{3, 5}, []int{5, 4}}, {[]int{2, 3, 17}, []int{17, 70}}, {[]int{9}, []int{9, 3}},
		{[]int{2, 2, 33, 64}, []int{64, 19}}, {[]int{1, 1}, []int{1, 1}},
	}
	for _, s := range shapes {
		for ai, a := range qActs {
			x := randScaled(r, 1, s.a...)
			w := randInt8(r, s.b...)
			bs := randScaled(r, 1e-2, s.b[1])
			const as = float32(1.0 / 127)
			outShape := append(append([]int{}, s.a[:len(s.a)-1]...), s.b[1])
			in := []*tensor.Tensor{x, w, bs}
			var bias, z *tensor.Tensor
			if ai%2 == 1 {
				bias = randScaled(r, 1, s.b[1])
				z = randScaled(r, 1, outShape...)
				in = append(in, bias, z)
			}
			want := refQMatMul(x, w, bs, bias, z, as, a.act, a.params)
			got, err := execSafe(qNode("QMatMul", len(in), "a_scale", as, a.act, a.params), 13, in...)
			name := fmt.Sprintf("%v x %v %s", s.a, s.b, a.act)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			closeRel(t, name, got[0], outShape, want, magnitudes(want, z))
		}
	}
}

// TestQMatMulVsFloat compares QMatMul with FusedMatMul on a BERT-like
// projection: within the quantization bound everywhere.
func TestQMatMulVsFloat(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const rows, k, n = 16, 64, 48
	x := randScaled(r, 2, rows, k)
	w := randScaled(r, 0.1, k, n)
	b := randScaled(r, 0.5, n)
	// per-column scales of B: quantize the transpose per row.
	wt := tensor.New(tensor.Float32, n, k)
	for p := 0; p < k; p++ {
		for j := 0; j < n; j++ {
			wt.Float32s()[j*k+p] = w.Float32s()[p*n+j]
		}
	}
	wqt, ws := quantizeWeights(wt)
	wq := tensor.New(tensor.Int8, k, n)
	for p := 0; p < k; p++ {
		for j := 0; j < n; j++ {
			wq.Int8s()[p*n+j] = wqt.Int8s()[j*k+p]
		}
	}
	const xs = float32(2.0 / 127)
	fl, err := execSafe(fusedNode("FusedMatMul", 3, ActGelu, nil), 13, x, w, b)
	if err != nil {
		t.Fatal(err)
	}
	q, err := execSafe(qNode("QMatMul", 4, "a_scale", xs, ActGelu, nil), 13, x, wq, ws, b)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < rows; i++ {
		for j := 0; j < n; j++ {
			var bound float64
			wsc := float64(ws.Float32s()[j])
			for p := 0; p < k; p++ {
				bound += math.Abs(float64(x.Float32s()[i*k+p]))*wsc/2 + math.Abs(float64(w.Float32s()[p*n+j]))*float64(xs)/2 + float64(xs)*wsc/4
			}
			// Gelu's slope is below 1.13.
			bound = 1.13*bound + 1e-4
			f, g := float64(fl[0].Float32s()[i*n+j]), float64(q[0].Float32s()[i*n+j])
			if math.Abs(f-g) > bound {
				t.Fatalf("(%d,%d) = %g, float %g, beyond the quantization bound %g", i, j, g, f, bound)
			}
		}
	}
}

// TestQConcurrent runs one prepared kernel from several goroutines (the
// weights are packed once, under a lock).
func TestQConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	x := randScaled(r, 1, 1, 8, 6, 6)
	w := randInt8(r, 16, 8, 3, 3)
	ws := randScaled(r, 1e-2, 16)
	const xs = float32(1.0 / 127)
	k, err := ops.Prepare(qNode("QConv", 3, "x_scale", xs, ActNone, nil), 13)
	if err != nil {
		t.Fatal(err)
	}
	want, shape := refQConv(t, x, w, ws, nil, nil, xs, ActNone, nil, nil)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	outs := make([]*tensor.Tensor, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := k.Run(&ops.Env{}, []*tensor.Tensor{x, w, ws})
			errs[i] = err
			if err == nil {
				outs[i] = o[0]
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		closeRel(t, fmt.Sprint("goroutine ", i), outs[i], shape, want, magnitudes(want, nil))
	}
}

func TestQBadAttrs(t *testing.T) {
	for _, op := range []struct{ typ, scale string }{{"QConv", "x_scale"}, {"QMatMul", "a_scale"}} {
		cases := []struct {
			name  string
			attrs []*ir.Attr
		}{
			{"missing scale", nil},
			{"zero scale", []*ir.Attr{opstest.Float(op.scale, 0)}},
			{"negative scale", []*ir.Attr{opstest.Float(op.scale, -1)}},
			{"NaN scale", []*ir.Attr{opstest.Float(op.scale, float32(math.NaN()))}},
			{"Inf scale", []*ir.Attr{opstest.Float(op.scale, float32(math.Inf(1)))}},
			{"int scale", []*ir.Attr{opstest.Int(op.scale, 1)}},
			{"bad activation", []*ir.Attr{opstest.Float(op.scale, 1), opstest.String("activation", "Tanhh")}},
			{"empty clip", []*ir.Attr{opstest.Float(op.scale, 1), opstest.String("activation", ActClip), opstest.Floats("activation_params", 1, 0)}},
		}
		if op.typ == "QConv" {
			cases = append(cases, struct {
				name  string
				attrs []*ir.Attr
			}{"group 0", []*ir.Attr{opstest.Float(op.scale, 1), opstest.Int("group", 0)}})
		}
		for _, c := range cases {
			n := opstest.Node(op.typ, 3, 1, c.attrs...)
			n.Domain = FusedDomain
			if _, err := ops.Prepare(n, 13); !errors.Is(err, ops.ErrBadAttr) {
				t.Errorf("%s %s: err = %v, want ErrBadAttr", op.typ, c.name, err)
			}
		}
	}
}

func TestQBadInputs(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	x := randScaled(r, 1, 1, 4, 5, 5)
	w := randInt8(r, 3, 4, 3, 3)
	ws := randScaled(r, 1e-2, 3)
	conv := func(nIn int, attrs ...*ir.Attr) *ir.Node {
		return qNode("QConv", nIn, "x_scale", 0.01, ActNone, nil, attrs...)
	}
	wantBadInput(t, "float weights", conv(3), 13, x, randScaled(r, 1, 3, 4, 3, 3), ws)
	wantBadInput(t, "int8 input", conv(3), 13, randInt8(r, 1, 4, 5, 5), w, ws)
	wantBadInput(t, "short scales", conv(3), 13, x, w, randScaled(r, 1, 2))
	wantBadInput(t, "matrix scales", conv(3), 13, x, w, randScaled(r, 1, 3, 1))
	wantBadInput(t, "long bias", conv(4), 13, x, w, ws, randScaled(r, 1, 4))
	wantBadInput(t, "residual shape", conv(5), 13, x, w, ws, nil, randScaled(r, 1, 1, 3, 3, 4))
	wantBadInput(t, "channels", conv(3), 13, x, randInt8(r, 3, 5, 3, 3), ws)
	wantBadInput(t, "missing scales", conv(2), 13, x, w)
	nanScale := randScaled(r, 1, 3)
	nanScale.Float32s()[1] = float32(math.NaN())
	wantBadInput(t, "NaN weight scale", conv(3), 13, x, w, nanScale)

	mm := func(nIn int) *ir.Node { return qNode("QMatMul", nIn, "a_scale", 0.01, ActNone, nil) }
	a := randScaled(r, 1, 2, 6)
	b := randInt8(r, 6, 4)
	bs := randScaled(r, 1e-2, 4)
	wantBadInput(t, "mm inner dims", mm(3), 13, a, randInt8(r, 5, 4), bs)
	wantBadInput(t, "mm batched weights", mm(3), 13, a, randInt8(r, 2, 6, 4), bs)
	wantBadInput(t, "mm float weights", mm(3), 13, a, randScaled(r, 1, 6, 4), bs)
	wantBadInput(t, "mm scales", mm(3), 13, a, b, randScaled(r, 1, 5))
	wantBadInput(t, "mm bias", mm(4), 13, a, b, bs, randScaled(r, 1, 3))
	wantBadInput(t, "mm residual", mm(5), 13, a, b, bs, nil, randScaled(r, 1, 2, 5))
	wantBadInput(t, "mm scalar", mm(3), 13, tensor.Scalar(tensor.Float32, 1), b, bs)
}

// TestQEmpty runs QConv without input channels and QMatMul with K = 0:
// every output is the bias (then the activation).
func TestQEmpty(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	b := randScaled(r, 1, 3)
	check := func(name string, got []*tensor.Tensor, err error, n int) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v := got[0].Float32s()
		if len(v) != n {
			t.Fatalf("%s: %d outputs, want %d", name, len(v), n)
		}
		for i, y := range v {
			if want := max(b.Float32s()[i%3], 0); y != want {
				t.Fatalf("%s: element %d = %g, want %g", name, i, y, want)
			}
		}
	}
	for _, k := range []int{1, 3} {
		x := tensor.New(tensor.Float32, 1, 0, 4, 4)
		w := tensor.New(tensor.Int8, 3, 0, k, k)
		got, err := execSafe(qNode("QConv", 4, "x_scale", 0.1, ActRelu, nil), 13, x, w, randScaled(r, 1, 3), b)
		if err != nil {
			t.Fatal(err)
		}
		// NCHW: the bias is per channel, so compare plane by plane.
		v := got[0].Float32s()
		plane := len(v) / 3
		for i, y := range v {
			if want := max(b.Float32s()[i/plane], 0); y != want {
				t.Fatalf("QConv %dx%d without channels: element %d = %g, want %g", k, k, i, y, want)
			}
		}
	}
	a := tensor.New(tensor.Float32, 2, 0)
	got, err := execSafe(qNode("QMatMul", 4, "a_scale", 0.1, ActRelu, nil), 13, a, tensor.New(tensor.Int8, 0, 3), randScaled(r, 1, 3), b)
	check("QMatMul K=0", got, err, 6)
}

// TestQInfer checks shape inference with symbolic dims.
func TestQInfer(t *testing.T) {
	n := qNode("QConv", 3, "x_scale", 0.1, ActRelu, nil, opstest.Ints("strides", 2, 2), opstest.Ints("pads", 1, 1, 1, 1))
	got := inferTypes(t, n, 13, ty(tensor.Float32, ir.S("batch"), ir.D(8), ir.D(16), ir.D(16)),
		ty(tensor.Int8, ir.D(4), ir.D(8), ir.D(3), ir.D(3)), ty(tensor.Float32, ir.D(4)))
	if want := "[batch,4,8,8]"; got[0].DType != tensor.Float32 || fmt.Sprint(got[0].Shape) != want {
		t.Errorf("QConv infer: %v %v, want float32 %s", got[0].DType, got[0].Shape, want)
	}
	m := qNode("QMatMul", 3, "a_scale", 0.1, ActNone, nil)
	got = inferTypes(t, m, 13, ty(tensor.Float32, ir.S("batch"), ir.S("seq"), ir.D(32)),
		ty(tensor.Int8, ir.D(32), ir.D(64)), ty(tensor.Float32, ir.D(64)))
	if want := "[batch,seq,64]"; fmt.Sprint(got[0].Shape) != want {
		t.Errorf("QMatMul infer: %v, want %s", got[0].Shape, want)
	}
	k, err := ops.Prepare(m, 13)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Infer([]*ir.Value{
		{Type: ty(tensor.Float32, ir.D(2), ir.D(32))}, {Type: ty(tensor.Float32, ir.D(32), ir.D(64))}, {Type: ty(tensor.Float32, ir.D(64))},
	}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("QMatMul infer with float weights: %v", err)
	}
}

// TestQConvRandomGeometries compares QConv's reference kernel with the
// quantized float64 reference on random 2-D geometries (channels, groups,
// kernel, strides, dilations, pads, auto_pad, batch).
func TestQConvRandomGeometries(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	n := 60
	if testing.Short() {
		n = 20
	}
	for it := 0; it < n; it++ {
		group := 1 + r.IntN(3)
		if r.IntN(4) == 0 {
			group = 2 + r.IntN(6) // depthwise
		}
		cg := 1 + r.IntN(9)
		mg := 1 + r.IntN(9)
		if group > 3 {
			cg = 1
		}
		kh, kw := 1+r.IntN(4), 1+r.IntN(4)
		sh, sw := 1+r.IntN(3), 1+r.IntN(3)
		dh, dw := 1+r.IntN(2), 1+r.IntN(2)
		h, w := (kh-1)*dh+1+r.IntN(9), (kw-1)*dw+1+r.IntN(9)
		attrs := []*ir.Attr{opstest.Int("group", int64(group)), opstest.Ints("strides", int64(sh), int64(sw)), opstest.Ints("dilations", int64(dh), int64(dw))}
		switch r.IntN(3) {
		case 0:
			attrs = append(attrs, opstest.Ints("pads", int64(r.IntN(kh)), int64(r.IntN(kw)), int64(r.IntN(kh)), int64(r.IntN(kw))))
		case 1:
			attrs = append(attrs, opstest.String("auto_pad", []string{"SAME_UPPER", "SAME_LOWER", "VALID"}[r.IntN(3)]))
		}
		xs := []int{1 + r.IntN(2), cg * group, h, w}
		ws := []int{mg * group, cg, kh, kw}
		x := randScaled(r, 2, xs...)
		wt := randInt8(r, ws...)
		wsc := randScaled(r, 1e-3, ws[0])
		b := randScaled(r, 1, ws[0])
		const xscale = float32(2.0 / 127)
		want, shape := refQConv(t, x, wt, wsc, b, nil, xscale, ActRelu, nil, attrs)
		got, err := execSafe(qNode("QConv", 4, "x_scale", xscale, ActRelu, nil, attrs...), 13, x, wt, wsc, b)
		name := fmt.Sprintf("x %v w %v", xs, ws)
		for _, a := range attrs {
			name += fmt.Sprintf(" %s=%v%v%s", a.Name, a.I, a.Ints, a.S)
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		closeRel(t, name, got[0], shape, want, magnitudes(want, nil))
	}
}
