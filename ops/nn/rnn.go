package nn

import (
	"math"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// rnnKind is the cell of a recurrent op.
type rnnKind int

const (
	cellRNN rnnKind = iota
	cellGRU
	cellLSTM
)

// actFn is one activation function of a recurrent cell.
type actFn func(x float64) float64

// makeAct returns the named activation with its alpha and beta (NaN for
// the ONNX default).
func makeAct(name string, alpha, beta float64) (actFn, bool) {
	def := func(v, d float64) float64 {
		if math.IsNaN(v) {
			return d
		}
		return v
	}
	switch strings.ToLower(name) {
	case "relu":
		return func(x float64) float64 { return math.Max(x, 0) }, true
	case "tanh":
		return math.Tanh, true
	case "sigmoid":
		return sigmoid, true
	case "affine":
		a, b := def(alpha, 1), def(beta, 0)
		return func(x float64) float64 { return a*x + b }, true
	case "leakyrelu":
		a := def(alpha, 0.01)
		return func(x float64) float64 {
			if x < 0 {
				return a * x
			}
			return x
		}, true
	case "thresholdedrelu":
		a := def(alpha, 1)
		return func(x float64) float64 {
			if x > a {
				return x
			}
			return 0
		}, true
	case "scaledtanh":
		a, b := def(alpha, 1), def(beta, 1)
		return func(x float64) float64 { return a * math.Tanh(b*x) }, true
	case "hardsigmoid":
		a, b := def(alpha, 0.2), def(beta, 0.5)
		return func(x float64) float64 { return math.Max(0, math.Min(1, a*x+b)) }, true
	case "elu":
		a := def(alpha, 1)
		return func(x float64) float64 {
			if x < 0 {
				return a * (math.Exp(x) - 1)
			}
			return x
		}, true
	case "softsign":
		return func(x float64) float64 { return x / (1 + math.Abs(x)) }, true
	case "softplus":
		return func(x float64) float64 { return math.Log1p(math.Exp(x)) }, true
	}
	return nil, false
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// actTakes reports which of alpha and beta an activation consumes.
func actTakes(name string) (alpha, beta bool) {
	switch strings.ToLower(name) {
	case "affine", "scaledtanh", "hardsigmoid":
		return true, true
	case "leakyrelu", "thresholdedrelu", "elu":
		return true, false
	}
	return false, false
}

// rnnOp is ONNX RNN, GRU and LSTM.
type rnnOp struct {
	name              string
	kind              rnnKind
	gates             int
	hidden            int
	dirs              int
	reverse           bool // direction "reverse"
	layout            int
	clip              float64
	acts              []actFn // per direction, nActs each
	nActs             int
	linearBeforeReset bool
	inputForget       bool
}

func rnnAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseRNNAttrs(n, opset) }

func prepareRNN(kind rnnKind, name string) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseRNNAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		k := &rnnOp{name: name, kind: kind, dirs: a.Directions, hidden: int(a.HiddenSize), reverse: a.Reverse,
			layout: int(a.Layout), clip: float64(a.Clip), linearBeforeReset: a.LinearBeforeReset, inputForget: a.InputForget}
		switch kind {
		case cellRNN:
			k.gates = 1
		case cellGRU:
			k.gates = 3
		case cellLSTM:
			k.gates = 4
		}
		k.nActs = len(ops.RNNActivations(n.OpType))
		names, alphas, betas := a.Activations, a.ActivationAlpha, a.ActivationBeta
		for _, nm := range names {
			al, be := math.NaN(), math.NaN()
			ta, tb := actTakes(nm)
			if ta && len(alphas) > 0 {
				al, alphas = float64(alphas[0]), alphas[1:]
			}
			if tb && len(betas) > 0 {
				be, betas = float64(betas[0]), betas[1:]
			}
			f, ok := makeAct(nm, al, be)
			if !ok {
				f := ops.AttrsOf(n)
				f.Fail("activations", "unsupported activation %q", nm)
				return nil, f.Err()
			}
			k.acts = append(k.acts, f)
		}
		return k, nil
	}
}

// nOut is the number of outputs of the op.
func (k *rnnOp) nOut() int {
	if k.kind == cellLSTM {
		return 3
	}
	return 2
}

func (k *rnnOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues(k.name, in, 3); err != nil {
		return nil, err
	}
	dt := in[0].Type.DType
	seq, batch := ir.U(), ir.U()
	if xs := in[0].Type.Shape; xs != nil {
		if len(xs) != 3 {
			return nil, badInput("%s input X has shape %v, want rank 3", k.name, xs)
		}
		seq, batch = xs[0], xs[1]
		if k.layout == 1 {
			seq, batch = batch, seq
		}
	}
	hid := ir.U()
	if k.hidden > 0 {
		hid = ir.D(int64(k.hidden))
	} else if rs := in[2].Type.Shape; len(rs) == 3 {
		hid = rs[2]
	}
	dirs := ir.D(int64(k.dirs))
	var y, yh ir.Shape
	if k.layout == 0 {
		y, yh = ir.Shape{seq, dirs, batch, hid}, ir.Shape{dirs, batch, hid}
	} else {
		y, yh = ir.Shape{batch, seq, dirs, hid}, ir.Shape{batch, dirs, hid}
	}
	types := []ir.Type{{DType: dt, Shape: y}, {DType: dt, Shape: yh}}
	if k.kind == cellLSTM {
		types = append(types, ir.Type{DType: dt, Shape: yh.Clone()})
	}
	return types, nil
}

// rnnArgs are a recurrent op's inputs checked and converted to T, in
// layout 0.
type rnnArgs[T ops.Float] struct {
	seq, batch, inSize, hid int
	x, w, r, b, h0, c0, p   []T
	lens                    []int
}

func (k *rnnOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs(k.name, in, 3); err != nil {
		return nil, err
	}
	dt := in[0].DType
	for i, t := range in {
		if t != nil && i != 4 && t.DType != dt {
			return nil, badInput("%s input %d is %v, X is %v", k.name, i, t.DType, dt)
		}
	}
	switch dt {
	case tensor.Float32:
		return rnnRun[float32](k, in, dt)
	case tensor.Float64:
		return rnnRun[float64](k, in, dt)
	case tensor.Float16, tensor.BFloat16:
		c := make([]*tensor.Tensor, len(in))
		for i, t := range in {
			if t != nil && i != 4 {
				c[i] = tensor.FromFloat32(toFloat32(t), t.Shape...)
			} else {
				c[i] = t
			}
		}
		outs, err := rnnRun[float32](k, c, tensor.Float32)
		if err != nil {
			return nil, err
		}
		for i, o := range outs {
			if outs[i], err = fromFloat32(dt, o.Shape, o.Float32s()); err != nil {
				return nil, err
			}
		}
		return outs, nil
	}
	return nil, badInput("%s of %v, want a float type", k.name, dt)
}

// check validates the inputs and converts them to layout 0.
func rnnCheck[T ops.Float](k *rnnOp, in []*tensor.Tensor) (*rnnArgs[T], error) {
	x, w, r := in[0], in[1], in[2]
	if x.Rank() != 3 {
		return nil, badInput("%s X has shape %v, want rank 3", k.name, x.Shape)
	}
	a := &rnnArgs[T]{seq: x.Shape[0], batch: x.Shape[1], inSize: x.Shape[2]}
	if k.layout == 1 {
		a.seq, a.batch = a.batch, a.seq
	}
	if r.Rank() != 3 {
		return nil, badInput("%s R has shape %v, want rank 3", k.name, r.Shape)
	}
	a.hid = r.Shape[2]
	if k.hidden > 0 && k.hidden != a.hid {
		return nil, badInput("%s R has shape %v for hidden_size %d", k.name, r.Shape, k.hidden)
	}
	gh := k.gates * a.hid
	if !sameShape(r.Shape, []int{k.dirs, gh, a.hid}) {
		return nil, badInput("%s R has shape %v, want [%d,%d,%d]", k.name, r.Shape, k.dirs, gh, a.hid)
	}
	if !sameShape(w.Shape, []int{k.dirs, gh, a.inSize}) {
		return nil, badInput("%s W has shape %v, want [%d,%d,%d]", k.name, w.Shape, k.dirs, gh, a.inSize)
	}
	a.x = elems[T](x)[:x.Len()]
	if k.layout == 1 {
		a.x = swap01(a.x, a.batch, a.seq, a.inSize)
	}
	a.w, a.r = elems[T](w)[:w.Len()], elems[T](r)[:r.Len()]
	if b := input(in, 3); b != nil {
		if !sameShape(b.Shape, []int{k.dirs, 2 * gh}) {
			return nil, badInput("%s B has shape %v, want [%d,%d]", k.name, b.Shape, k.dirs, 2*gh)
		}
		a.b = elems[T](b)[:b.Len()]
	}
	if sl := input(in, 4); sl != nil {
		if sl.Rank() != 1 || sl.Shape[0] != a.batch || !sl.DType.IsInt() {
			return nil, badInput("%s sequence_lens is %v%v, want int32[%d]", k.name, sl.DType, sl.Shape, a.batch)
		}
		a.lens = make([]int, a.batch)
		for i, v := range sl.Ints() {
			if v < 0 || v > int64(a.seq) {
				return nil, badInput("%s sequence length %d out of range [0,%d]", k.name, v, a.seq)
			}
			a.lens[i] = int(v)
		}
	}
	state := func(t *tensor.Tensor, what string) ([]T, error) {
		if t == nil {
			return nil, nil
		}
		want := []int{k.dirs, a.batch, a.hid}
		if k.layout == 1 {
			want = []int{a.batch, k.dirs, a.hid}
		}
		if !sameShape(t.Shape, want) {
			return nil, badInput("%s %s has shape %v, want %v", k.name, what, t.Shape, want)
		}
		v := elems[T](t)[:t.Len()]
		if k.layout == 1 {
			v = swap01(v, a.batch, k.dirs, a.hid)
		}
		return v, nil
	}
	var err error
	if a.h0, err = state(input(in, 5), "initial_h"); err != nil {
		return nil, err
	}
	if k.kind == cellLSTM {
		if a.c0, err = state(input(in, 6), "initial_c"); err != nil {
			return nil, err
		}
		if p := input(in, 7); p != nil {
			if !sameShape(p.Shape, []int{k.dirs, 3 * a.hid}) {
				return nil, badInput("%s P has shape %v, want [%d,%d]", k.name, p.Shape, k.dirs, 3*a.hid)
			}
			a.p = elems[T](p)[:p.Len()]
		}
	}
	return a, nil
}

// swap01 transposes the first two dims of a [d0, d1, inner] array.
func swap01[T any](v []T, d0, d1, inner int) []T {
	out := make([]T, len(v))
	for i := 0; i < d0; i++ {
		for j := 0; j < d1; j++ {
			copy(out[(j*d0+i)*inner:(j*d0+i+1)*inner], v[(i*d1+j)*inner:(i*d1+j+1)*inner])
		}
	}
	return out
}

func rnnRun[T ops.Float](k *rnnOp, in []*tensor.Tensor, dt tensor.DType) ([]*tensor.Tensor, error) {
	a, err := rnnCheck[T](k, in)
	if err != nil {
		return nil, err
	}
	S, B, H := a.seq, a.batch, a.hid
	y := make([]T, S*k.dirs*B*H)
	yh := make([]T, k.dirs*B*H)
	yc := make([]T, k.dirs*B*H)
	for d := 0; d < k.dirs; d++ {
		rev := k.reverse || d == 1
		rnnDirection(k, a, d, rev, y, yh[d*B*H:(d+1)*B*H], yc[d*B*H:(d+1)*B*H])
	}
	yShape := []int{S, k.dirs, B, H}
	hShape := []int{k.dirs, B, H}
	if k.layout == 1 {
		// [S, dirs, B, H] -> [B, S, dirs, H]
		t := make([]T, len(y))
		for s := 0; s < S; s++ {
			for dd := 0; dd < k.dirs; dd++ {
				for b := 0; b < B; b++ {
					copy(t[((b*S+s)*k.dirs+dd)*H:][:H], y[((s*k.dirs+dd)*B+b)*H:][:H])
				}
			}
		}
		y = t
		yh = swap01(yh, k.dirs, B, H)
		yc = swap01(yc, k.dirs, B, H)
		yShape = []int{B, S, k.dirs, H}
		hShape = []int{B, k.dirs, H}
	}
	mk := func(v []T, shape []int) (*tensor.Tensor, error) {
		t, err := makeOut(dt, shape)
		if err != nil {
			return nil, err
		}
		copy(elems[T](t), v)
		return t, nil
	}
	outs := make([]*tensor.Tensor, 0, 3)
	for i, v := range [][]T{y, yh, yc}[:k.nOut()] {
		s := hShape
		if i == 0 {
			s = yShape
		}
		t, err := mk(v, s)
		if err != nil {
			return nil, err
		}
		outs = append(outs, t)
	}
	return outs, nil
}

// rnnDirection runs direction d of the recurrence (backwards in time when
// rev), writing its slice of Y ([S, dirs, B, H]) and its final hidden and
// cell states.
func rnnDirection[T ops.Float](k *rnnOp, a *rnnArgs[T], d int, rev bool, y, hOut, cOut []T) {
	S, B, H, I := a.seq, a.batch, a.hid, a.inSize
	G := k.gates
	GH := G * H
	w := a.w[d*GH*I : (d+1)*GH*I]
	r := a.r[d*GH*H : (d+1)*GH*H]
	var wb, rb []T
	if a.b != nil {
		wb = a.b[d*2*GH : d*2*GH+GH]
		rb = a.b[d*2*GH+GH : (d+1)*2*GH]
	}
	// input projections of every step, with the biases that add outside
	xw := make([]T, S*B*GH)
	gemm(false, true, S*B, GH, I, 1, a.x, max(I, 1), w, max(I, 1), 0, xw, GH)
	if wb != nil {
		lbr := k.kind == cellGRU && k.linearBeforeReset
		bias := make([]T, GH)
		for j := range bias {
			bias[j] = wb[j]
			if !lbr || j < 2*H {
				bias[j] += rb[j]
			}
		}
		for row := 0; row < S*B; row++ {
			xr := xw[row*GH : (row+1)*GH]
			for j, v := range bias {
				xr[j] += v
			}
		}
	}
	h := make([]T, B*H)
	c := make([]T, B*H)
	if a.h0 != nil {
		copy(h, a.h0[d*B*H:(d+1)*B*H])
	}
	if a.c0 != nil {
		copy(c, a.c0[d*B*H:(d+1)*B*H])
	}
	acts := k.acts[d*k.nActs : (d+1)*k.nActs]
	clip := func(v float64) float64 {
		if k.clip > 0 {
			return math.Max(-k.clip, math.Min(k.clip, v))
		}
		return v
	}
	act := func(f actFn, v T) T { return T(f(clip(float64(v)))) }
	hr := make([]T, B*GH)
	var tmp, hh []T
	if k.kind == cellGRU {
		tmp = make([]T, B*H)
		hh = make([]T, B*H)
	}
	var pi, po, pf []T
	if a.p != nil {
		p := a.p[d*3*H : (d+1)*3*H]
		pi, po, pf = p[:H], p[H:2*H], p[2*H:]
	}
	active := func(b, t int) bool { return a.lens == nil || t < a.lens[b] }
	for step := 0; step < S; step++ {
		t := step
		if rev {
			t = S - 1 - step
		}
		xt := xw[t*B*GH : (t+1)*B*GH]
		switch k.kind {
		case cellRNN:
			gemm(false, true, B, H, H, 1, h, H, r, H, 0, hr, H)
			for b := 0; b < B; b++ {
				if !active(b, t) {
					continue
				}
				for j := 0; j < H; j++ {
					h[b*H+j] = act(acts[0], xt[b*H+j]+hr[b*H+j])
				}
			}
		case cellGRU:
			gemm(false, true, B, 2*H, H, 1, h, H, r[:2*H*H], H, 0, hr[:B*2*H], 2*H)
			rh := r[2*H*H:]
			z := make([]T, B*H)
			for b := 0; b < B; b++ {
				for j := 0; j < H; j++ {
					z[b*H+j] = act(acts[0], xt[b*GH+j]+hr[b*2*H+j])
					rg := act(acts[0], xt[b*GH+H+j]+hr[b*2*H+H+j])
					if k.linearBeforeReset {
						tmp[b*H+j] = rg
					} else {
						tmp[b*H+j] = rg * h[b*H+j]
					}
				}
			}
			if k.linearBeforeReset {
				gemm(false, true, B, H, H, 1, h, H, rh, H, 0, hh, H)
			} else {
				gemm(false, true, B, H, H, 1, tmp, H, rh, H, 0, hh, H)
			}
			for b := 0; b < B; b++ {
				if !active(b, t) {
					continue
				}
				for j := 0; j < H; j++ {
					var v T
					if k.linearBeforeReset {
						rbh := T(0)
						if rb != nil {
							rbh = rb[2*H+j]
						}
						v = xt[b*GH+2*H+j] + tmp[b*H+j]*(hh[b*H+j]+rbh)
					} else {
						v = xt[b*GH+2*H+j] + hh[b*H+j]
					}
					ht := act(acts[1], v)
					zz := z[b*H+j]
					h[b*H+j] = (1-zz)*ht + zz*h[b*H+j]
				}
			}
		case cellLSTM:
			gemm(false, true, B, GH, H, 1, h, H, r, H, 0, hr, GH)
			for b := 0; b < B; b++ {
				if !active(b, t) {
					continue
				}
				g := hr[b*GH : (b+1)*GH]
				x := xt[b*GH : (b+1)*GH]
				for j := 0; j < H; j++ {
					cp := c[b*H+j]
					gi := x[j] + g[j]
					gf := x[2*H+j] + g[2*H+j]
					if pi != nil {
						gi += pi[j] * cp
						gf += pf[j] * cp
					}
					it := act(acts[0], gi)
					var ft T
					if k.inputForget {
						ft = 1 - it
					} else {
						ft = act(acts[0], gf)
					}
					ct := act(acts[1], x[3*H+j]+g[3*H+j])
					cn := ft*cp + it*ct
					gout := x[H+j] + g[H+j]
					if po != nil {
						gout += po[j] * cn
					}
					ot := act(acts[0], gout)
					c[b*H+j] = cn
					h[b*H+j] = ot * T(acts[2](float64(cn)))
				}
			}
		}
		for b := 0; b < B; b++ {
			if active(b, t) {
				copy(y[((t*k.dirs+d)*B+b)*H:][:H], h[b*H:(b+1)*H])
			}
		}
	}
	copy(hOut, h)
	copy(cOut, c)
}

func init() {
	ops.Register(ops.Def{Type: "RNN", Attrs: rnnAttrs, Prepare: prepareRNN(cellRNN, "RNN")})
	ops.Register(ops.Def{Type: "GRU", Attrs: rnnAttrs, Prepare: prepareRNN(cellGRU, "GRU")})
	ops.Register(ops.Def{Type: "LSTM", Attrs: rnnAttrs, Prepare: prepareRNN(cellLSTM, "LSTM")})
}
