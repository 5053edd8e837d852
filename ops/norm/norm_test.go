package norm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// refNormalize normalizes each group of x (elements differing only in the
// dims marked red) to zero mean and unit variance with epsilon, returning
// the result and each element's group index.
func refNormalize(x []float64, shape []int, red []bool, eps float64) ([]float64, []float64, []float64) {
	y := make([]float64, len(x))
	groups := groupAlong(shape, red)
	means, invs := make([]float64, len(groups)), make([]float64, len(groups))
	for gi, g := range groups {
		var m, v float64
		for _, i := range g {
			m += x[i]
		}
		m /= float64(len(g))
		for _, i := range g {
			v += (x[i] - m) * (x[i] - m)
		}
		v /= float64(len(g))
		inv := 1 / math.Sqrt(v+eps)
		for _, i := range g {
			y[i] = (x[i] - m) * inv
		}
		means[gi], invs[gi] = m, inv
	}
	return y, means, invs
}

func TestBatchNorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 7))
	for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16} {
		for _, shape := range [][]int{{2, 3}, {2, 3, 4, 5}, {1, 4, 7}, {3, 2, 2, 2, 2}} {
			c := shape[1]
			x := randTensor(rng, dt, shape...)
			scale, bias, mean := randTensor(rng, tensor.Float32, c), randTensor(rng, tensor.Float32, c), randTensor(rng, tensor.Float32, c)
			vr := randTensor(rng, tensor.Float32, c)
			for i := range c {
				vr.Float32s()[i] = float32(math.Abs(float64(vr.Float32s()[i]))) + 0.1
			}
			eps := 1e-2
			out := opstest.Run(t, opstest.Node("BatchNormalization", 5, 1, opstest.Float("epsilon", float32(eps))), 15, x, scale, bias, mean, vr)
			want := make([]float64, x.Len())
			s := product(shape[2:])
			for i := range want {
				ch := (i / s) % c
				want[i] = (x.Float(i)-mean.Float(ch))/math.Sqrt(vr.Float(ch)+float64(float32(eps)))*scale.Float(ch) + bias.Float(ch)
			}
			tol := 1e-5
			if dt == tensor.Float16 {
				tol = 5e-3
			}
			if out[0].DType != dt {
				t.Fatal(out[0].DType)
			}
			closeTo(t, fmt.Sprint(dt, shape), out[0], want, tol, tol)

			// training mode: batch statistics and running updates
			out = opstest.Run(t, opstest.Node("BatchNormalization", 5, 3, opstest.Int("training_mode", 1), opstest.Float("momentum", 0.8)), 15, x, scale, bias, mean, vr)
			red := make([]bool, len(shape))
			for i := range red {
				red[i] = i != 1
			}
			norm, bm, _ := refNormalize(values(x), shape, red, 1e-5)
			for i := range want {
				ch := (i / s) % c
				want[i] = norm[i]*scale.Float(ch) + bias.Float(ch)
			}
			closeTo(t, "training y", out[0], want, tol, tol)
			rm, rv := make([]float64, c), make([]float64, c)
			for ch, g := range groupAlong(shape, red) {
				var v float64
				for _, i := range g {
					v += (x.Float(i) - bm[ch]) * (x.Float(i) - bm[ch])
				}
				v /= float64(len(g))
				m := float64(float32(0.8))
				rm[ch] = mean.Float(ch)*m + bm[ch]*(1-m)
				rv[ch] = vr.Float(ch)*m + v*(1-m)
			}
			closeTo(t, "running mean", out[1], rm, 1e-5, 1e-5)
			closeTo(t, "running var", out[2], rv, 1e-5, 1e-5)
		}
	}
}

func TestBatchNormLegacy(t *testing.T) {
	// opset 7, spatial=0: parameters per activation [C, D]
	x := f32(sh(2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8)
	ones := f32(sh(2, 2), 1, 1, 1, 1)
	zeros := f32(sh(2, 2), 0, 0, 0, 0)
	mean := f32(sh(2, 2), 1, 2, 3, 4)
	out := opstest.Run(t, opstest.Node("BatchNormalization", 5, 1, opstest.Int("spatial", 0), opstest.Float("epsilon", 0)), 7, x, ones, zeros, mean, ones)
	closeTo(t, "spatial=0", out[0], []float64{0, 0, 0, 0, 4, 4, 4, 4}, 0, 1e-6)
	// opset 6 with is_test
	out = opstest.Run(t, opstest.Node("BatchNormalization", 5, 1, opstest.Int("is_test", 1)), 6, x, f32(sh(2), 1, 1), f32(sh(2), 0, 0), f32(sh(2), 0, 0), f32(sh(2), 1, 1))
	closeTo(t, "is_test", out[0], values(x), 1e-5, 0)
	// opset 9 training outputs: Y, mean, var, saved mean, saved var
	out = opstest.Run(t, opstest.Node("BatchNormalization", 5, 5, opstest.Float("momentum", 0)), 9, x, f32(sh(2), 1, 1), f32(sh(2), 0, 0), f32(sh(2), 0, 0), f32(sh(2), 1, 1))
	if len(out) != 5 {
		t.Fatal(len(out))
	}
	closeTo(t, "batch mean", out[1], []float64{3.5, 5.5}, 1e-6, 0)
	closeTo(t, "saved mean", out[3], []float64{3.5, 5.5}, 1e-6, 0)
	closeTo(t, "batch var", out[2], []float64{4.25, 4.25}, 1e-6, 0)
}

func TestBatchNormInferAndErrors(t *testing.T) {
	c := val(tensor.Float32, ir.Shape{ir.D(3)})
	types, err := infer(opstest.Node("BatchNormalization", 5, 1), 15, val(tensor.Float32, ir.Shape{ir.S("n"), ir.D(3), ir.S("h"), ir.S("w")}), c, c, c, c)
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[n,3,h,w]")
	types, err = infer(opstest.Node("BatchNormalization", 5, 3, opstest.Int("training_mode", 1)), 15, val(tensor.Float16, ir.Shape{ir.S("n"), ir.D(3)}), c, c, c, c)
	if err != nil || len(types) < 3 {
		t.Fatal(types, err)
	}
	checkShape(t, types[1].Shape, "[3]")
	_, err = infer(opstest.Node("BatchNormalization", 5, 1), 15, val(tensor.Float32, ir.Shape{ir.D(3)}), c, c, c, c)
	wantErr(t, err, ops.ErrBadInput)
	x := f32(sh(1, 2), 1, 2)
	p := f32(sh(2), 1, 1)
	_, err = opstest.Exec(opstest.Node("BatchNormalization", 5, 1), 15, x, p, p, p, f32(sh(3), 1, 1, 1))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("BatchNormalization", 5, 1), 15, x, f32(sh(3), 1, 1, 1), p, p, p)
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("BatchNormalization", 5, 1), 15, x, p, p, p)
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("BatchNormalization", 5, 1), 15, i64(sh(1, 2), 1, 2), p, p, p, p)
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("BatchNormalization", 5, 1, opstest.Int("training_mode", 2)), 15, x, p, p, p, p)
	wantErr(t, err, ops.ErrBadAttr)
}

func TestInstanceAndGroupNorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16} {
		for _, shape := range [][]int{{2, 4, 5}, {1, 6, 2, 3}, {3, 2}} {
			c := shape[1]
			x := randTensor(rng, dt, shape...)
			s := product(shape[2:])
			tol := 1e-5
			if dt == tensor.Float16 {
				tol = 1e-2
			}
			// InstanceNormalization: groups are single channels
			scale, bias := randTensor(rng, tensor.Float32, c), randTensor(rng, tensor.Float32, c)
			if dt == tensor.Float64 {
				scale, bias = randTensor(rng, dt, c), randTensor(rng, dt, c)
			}
			out := opstest.Run(t, opstest.Node("InstanceNormalization", 3, 1, opstest.Float("epsilon", 0.01)), 6, x, scale, bias)
			red := make([]bool, len(shape))
			for i := 2; i < len(shape); i++ {
				red[i] = true
			}
			norm, _, _ := refNormalize(values(x), shape, red, float64(float32(0.01)))
			want := make([]float64, len(norm))
			for i := range want {
				ch := (i / s) % c
				want[i] = norm[i]*scale.Float(ch) + bias.Float(ch)
			}
			closeTo(t, fmt.Sprint("instance ", dt, shape), out[0], want, tol, tol)

			// GroupNormalization with 2 groups, opset 21 (per channel)
			// and 18 (per group)
			g := 2
			view := []int{shape[0], g, c / g * s} // normalize over the last dim
			norm, _, _ = refNormalize(values(x), view, []bool{false, false, true}, 1e-5)
			out = opstest.Run(t, opstest.Node("GroupNormalization", 3, 1, opstest.Int("num_groups", int64(g))), 21, x, scale, bias)
			for i := range want {
				ch := (i / s) % c
				want[i] = norm[i]*scale.Float(ch) + bias.Float(ch)
			}
			closeTo(t, fmt.Sprint("group21 ", dt, shape), out[0], want, tol, tol)
			gs, gb := randTensor(rng, tensor.Float32, g), randTensor(rng, tensor.Float32, g)
			out = opstest.Run(t, opstest.Node("GroupNormalization", 3, 1, opstest.Int("num_groups", int64(g))), 18, x, gs, gb)
			for i := range want {
				grp := (i / s) % c / (c / g)
				want[i] = norm[i]*gs.Float(grp) + gb.Float(grp)
			}
			closeTo(t, fmt.Sprint("group18 ", dt, shape), out[0], want, tol, tol)
		}
	}
}

func TestGroupNormErrors(t *testing.T) {
	x := f32(sh(1, 3, 2), 1, 2, 3, 4, 5, 6)
	p := f32(sh(3), 1, 1, 1)
	_, err := opstest.Exec(opstest.Node("GroupNormalization", 3, 1, opstest.Int("num_groups", 2)), 21, x, p, p)
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("GroupNormalization", 3, 1), 21, x, p, p)
	wantErr(t, err, ops.ErrBadAttr)
	_, err = opstest.Exec(opstest.Node("GroupNormalization", 3, 1, opstest.Int("num_groups", 0)), 21, x, p, p)
	wantErr(t, err, ops.ErrBadAttr)
	_, err = opstest.Exec(opstest.Node("InstanceNormalization", 3, 1), 6, x, f32(sh(2), 1, 1), p)
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("InstanceNormalization", 3, 1), 6, f32(sh(3), 1, 2, 3), p, p)
	wantErr(t, err, ops.ErrBadInput)
	types, err := infer(opstest.Node("InstanceNormalization", 3, 1), 6, val(tensor.Float32, ir.Shape{ir.S("n"), ir.D(3), ir.S("l")}), val(tensor.Float32, ir.Shape{ir.D(3)}), val(tensor.Float32, ir.Shape{ir.D(3)}))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[n,3,l]")
}

func TestLayerNorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 1))
	for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16, tensor.BFloat16} {
		shape := []int{2, 3, 4, 5}
		x := randTensor(rng, dt, shape...)
		for axis := -4; axis < 4; axis++ {
			ax := (axis + 4) % 4
			norm := shape[ax:]
			scale, bias := randTensor(rng, dt, norm...), randTensor(rng, dt, norm...)
			for _, withBias := range []bool{true, false} {
				in := []*tensor.Tensor{x, scale, bias}
				if !withBias {
					in = in[:2]
				}
				out := opstest.Run(t, opstest.Node("LayerNormalization", len(in), 3, opstest.Int("axis", int64(axis)), opstest.Float("epsilon", 1e-3)), 17, in...)
				red := make([]bool, 4)
				for i := ax; i < 4; i++ {
					red[i] = true
				}
				y, means, invs := refNormalize(values(x), shape, red, float64(float32(1e-3)))
				d := product(norm)
				for i := range y {
					y[i] *= scale.Float(i % d)
					if withBias {
						y[i] += bias.Float(i % d)
					}
				}
				tol := 1e-5
				switch dt {
				case tensor.Float16:
					tol = 1e-2
				case tensor.BFloat16:
					tol = 5e-2
				}
				name := fmt.Sprint(dt, " axis ", axis)
				closeTo(t, name, out[0], y, tol, tol)
				closeTo(t, name+" mean", out[1], means, tol, tol)
				closeTo(t, name+" invstd", out[2], invs, tol, tol)
				if out[1].DType != tensor.Float32 {
					t.Fatal(out[1].DType)
				}
				ws := append([]int{}, shape...)
				for i := ax; i < 4; i++ {
					ws[i] = 1
				}
				if fmt.Sprint(out[1].Shape) != fmt.Sprint(ws) {
					t.Fatal(out[1].Shape)
				}
			}
		}
	}
}

func TestLayerNormBroadcastParams(t *testing.T) {
	x := f32(sh(2, 2, 2), 1, 3, 0, 4, 2, 2, -1, 1)
	// scale [2] broadcast over the normalized [2, 2]; bias a scalar-like [1]
	out := opstest.Run(t, opstest.Node("LayerNormalization", 3, 1, opstest.Int("axis", 1), opstest.Float("epsilon", 0)), 17,
		x, f32(sh(2), 1, 2), f32(sh(1), 10))
	y, _, _ := refNormalize(values(x), sh(2, 2, 2), []bool{false, true, true}, 0)
	for i := range y {
		y[i] = y[i]*float64(1+i%2) + 10
	}
	closeTo(t, "broadcast", out[0], y, 1e-5, 1e-5)
	// a scale covering the whole input (not only the normalized dims)
	out = opstest.Run(t, opstest.Node("LayerNormalization", 2, 1, opstest.Float("epsilon", 0)), 17,
		x, f32(sh(2, 1, 1), 1, 2))
	y, _, _ = refNormalize(values(x), sh(2, 2, 2), []bool{false, false, true}, 0)
	for i := range y {
		y[i] *= float64(1 + i/4)
	}
	closeTo(t, "full broadcast", out[0], y, 1e-5, 1e-5)
}

func TestLayerNormInferAndErrors(t *testing.T) {
	types, err := infer(opstest.Node("LayerNormalization", 3, 3), 17, val(tensor.Float16, ir.Shape{ir.S("b"), ir.S("s"), ir.D(768)}), val(tensor.Float16, ir.Shape{ir.D(768)}), val(tensor.Float16, ir.Shape{ir.D(768)}))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[b,s,768]")
	checkShape(t, types[1].Shape, "[b,s,1]")
	if types[0].DType != tensor.Float16 || types[2].DType != tensor.Float32 {
		t.Fatal(types)
	}
	_, err = infer(opstest.Node("LayerNormalization", 2, 1, opstest.Int("axis", 3)), 17, val(tensor.Float32, ir.Shape{ir.D(2), ir.D(3)}), val(tensor.Float32, nil))
	wantErr(t, err, ops.ErrBadInput)
	x := f32(sh(2, 3), 1, 2, 3, 4, 5, 6)
	_, err = opstest.Exec(opstest.Node("LayerNormalization", 2, 1), 17, x, f32(sh(2), 1, 1))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("LayerNormalization", 2, 1), 17, x)
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("LayerNormalization", 2, 1, opstest.Int("stash_type", 7)), 17, x, f32(sh(3), 1, 1, 1))
	wantErr(t, err, ops.ErrBadAttr)
	_, err = opstest.Exec(opstest.Node("LayerNormalization", 2, 1), 17, i64(sh(3), 1, 2, 3), f32(sh(3), 1, 1, 1))
	wantErr(t, err, ops.ErrBadInput)
}

func TestLpNormMVNLRN(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	x := randTensor(rng, tensor.Float32, 2, 3, 4)
	for _, p := range []int64{1, 2} {
		for axis := 0; axis < 3; axis++ {
			out := opstest.Run(t, opstest.Node("LpNormalization", 1, 1, opstest.Int("axis", int64(axis)), opstest.Int("p", p)), 1, x)
			red := []bool{axis == 0, axis == 1, axis == 2}
			xv := values(x)
			want := make([]float64, len(xv))
			for _, g := range groupAlong(x.Shape, red) {
				var nrm float64
				for _, i := range g {
					if p == 1 {
						nrm += math.Abs(xv[i])
					} else {
						nrm += xv[i] * xv[i]
					}
				}
				if p == 2 {
					nrm = math.Sqrt(nrm)
				}
				for _, i := range g {
					want[i] = xv[i] / nrm
				}
			}
			closeTo(t, fmt.Sprint("lp", p, axis), out[0], want, 1e-5, 1e-6)
		}
	}
	out := opstest.Run(t, opstest.Node("LpNormalization", 1, 1), 1, f32(sh(2, 2), 0, 0, 3, 4))
	closeTo(t, "zero norm", out[0], []float64{0, 0, 0.6, 0.8}, 1e-6, 0)
	_, err := opstest.Exec(opstest.Node("LpNormalization", 1, 1, opstest.Int("p", 3)), 1, x)
	wantErr(t, err, ops.ErrBadAttr)

	// MVN over the default axes [0, 2, 3] and given ones
	x4 := randTensor(rng, tensor.Float32, 2, 3, 2, 2)
	for _, axes := range [][]int64{nil, {2, 3}, {1}} {
		var attrs []*ir.Attr
		red := []bool{true, false, true, true}
		if axes != nil {
			attrs = append(attrs, opstest.Ints("axes", axes...))
			red = make([]bool, 4)
			for _, a := range axes {
				red[a] = true
			}
		}
		out := opstest.Run(t, opstest.Node("MeanVarianceNormalization", 1, 1, attrs...), 13, x4)
		xv := values(x4)
		want := make([]float64, len(xv))
		for _, g := range groupAlong(x4.Shape, red) {
			var m, v float64
			for _, i := range g {
				m += xv[i]
			}
			m /= float64(len(g))
			for _, i := range g {
				v += (xv[i] - m) * (xv[i] - m)
			}
			sd := math.Sqrt(v/float64(len(g))) + 1e-9
			for _, i := range g {
				want[i] = (xv[i] - m) / sd
			}
		}
		closeTo(t, fmt.Sprint("mvn", axes), out[0], want, 1e-5, 1e-5)
	}

	// LRN against the definition
	xl := randTensor(rng, tensor.Float32, 2, 5, 3)
	for _, size := range []int64{1, 2, 3, 4} {
		out := opstest.Run(t, opstest.Node("LRN", 1, 1, opstest.Int("size", size), opstest.Float("alpha", 0.01), opstest.Float("beta", 0.6), opstest.Float("bias", 2)), 13, xl)
		xv := values(xl)
		want := make([]float64, len(xv))
		coords(xl.Shape, func(f int, idx []int) {
			lo := int(math.Floor(float64(size-1) / 2))
			hi := int(math.Ceil(float64(size-1) / 2))
			var s float64
			for c := max(0, idx[1]-lo); c <= min(4, idx[1]+hi); c++ {
				v := xv[flatIndex(xl.Shape, []int{idx[0], c, idx[2]})]
				s += v * v
			}
			want[f] = xv[f] / math.Pow(2+float64(float32(0.01))/float64(size)*s, float64(float32(0.6)))
		})
		closeTo(t, fmt.Sprint("lrn", size), out[0], want, 1e-5, 1e-6)
	}
	_, err = opstest.Exec(opstest.Node("LRN", 1, 1), 13, xl)
	wantErr(t, err, ops.ErrBadAttr)
	_, err = opstest.Exec(opstest.Node("LRN", 1, 1, opstest.Int("size", 3)), 13, f32(sh(2), 1, 2))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("MeanVarianceNormalization", 1, 1), 13, f32(sh(2), 1, 2))
	wantErr(t, err, ops.ErrBadInput)
}

func TestLosses(t *testing.T) {
	// input [N=2, C=3, d=2] of log-probabilities, targets [2, 2]
	x := f32(sh(2, 3, 2),
		-1, -2, -3, -4, -5, -6,
		-7, -8, -9, -10, -11, -12)
	target := i64(sh(2, 2), 0, 2, 1, 1)
	w := f32(sh(3), 1, 2, 3)
	// picked: [n0,d0]=x[0,0,0]=-1, [n0,d1]=x[0,2,1]=-6, [n1,d0]=x[1,1,0]=-9, [n1,d1]=x[1,1,1]=-10
	for _, c := range []struct {
		reduction string
		weight    bool
		ignore    int64
		hasIgnore bool
		want      []float64
	}{
		{"none", false, 0, false, []float64{1, 6, 9, 10}},
		{"sum", false, 0, false, []float64{26}},
		{"mean", false, 0, false, []float64{6.5}},
		{"none", true, 0, false, []float64{1, 18, 18, 20}},
		{"mean", true, 0, false, []float64{57.0 / 8}},
		{"mean", true, 1, true, []float64{19.0 / 4}},
		{"mean", false, 1, true, []float64{7.0 / 2}},
		{"sum", true, 2, true, []float64{39}},
		{"none", false, -5, true, []float64{1, 6, 9, 10}},
	} {
		attrs := []*ir.Attr{opstest.String("reduction", c.reduction)}
		if c.hasIgnore {
			attrs = append(attrs, opstest.Int("ignore_index", c.ignore))
		}
		in := []*tensor.Tensor{x, target}
		if c.weight {
			in = append(in, w)
		}
		out := opstest.Run(t, opstest.Node("NegativeLogLikelihoodLoss", len(in), 1, attrs...), 13, in...)
		closeTo(t, fmt.Sprintf("nll %+v", c), out[0], c.want, 1e-6, 1e-6)
		if c.reduction != "none" && len(out[0].Shape) != 0 {
			t.Fatal(out[0].Shape)
		}
		if c.reduction == "none" && fmt.Sprint(out[0].Shape) != "[2 2]" {
			t.Fatal(out[0].Shape)
		}
	}
	// SoftmaxCrossEntropyLoss = NLL of LogSoftmax over axis 1
	rng := rand.New(rand.NewPCG(5, 5))
	for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16} {
		scores := randTensor(rng, dt, 3, 4, 2, 2)
		labels := tensor.New(tensor.Int32, 3, 2, 2)
		for i := range labels.Int32s() {
			labels.Int32s()[i] = int32(i % 4)
		}
		out := opstest.Run(t, opstest.Node("SoftmaxCrossEntropyLoss", 3, 2, opstest.String("reduction", "sum"), opstest.Int("ignore_index", 3)), 13,
			scores, labels, fromFloat64(dt, sh(4), []float64{1, 2, 3, 4}))
		lp := refSoftmax(kindLogSoftmax, values(scores), scores.Shape, []bool{false, true, false, false})
		tol := 1e-5
		if dt == tensor.Float16 {
			tol = 1e-2
		}
		closeTo(t, "log_prob", out[1], lp, tol, tol)
		var want float64
		for n := 0; n < 3; n++ {
			for d := 0; d < 4; d++ {
				l := int(labels.Int32s()[n*4+d])
				if l == 3 {
					continue
				}
				want -= lp[(n*4+l)*4+d] * float64(l+1)
			}
		}
		closeTo(t, "sce", out[0], []float64{want}, tol, tol)
		if out[0].DType != dt || out[1].DType != dt {
			t.Fatal(out[0].DType, out[1].DType)
		}
	}
}

func TestLossInferAndErrors(t *testing.T) {
	types, err := infer(opstest.Node("SoftmaxCrossEntropyLoss", 2, 2, opstest.String("reduction", "none")), 13,
		val(tensor.Float32, ir.Shape{ir.S("n"), ir.D(10), ir.S("d")}), val(tensor.Int64, ir.Shape{ir.S("n"), ir.S("d")}))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[n,d]")
	checkShape(t, types[1].Shape, "[n,10,d]")
	types, err = infer(opstest.Node("NegativeLogLikelihoodLoss", 2, 1), 13,
		val(tensor.Float32, ir.Shape{ir.S("n"), ir.D(10)}), val(tensor.Int64, ir.Shape{ir.S("n")}))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, types[0].Shape, "[]")
	x := f32(sh(2, 3), 1, 2, 3, 4, 5, 6)
	_, err = opstest.Exec(opstest.Node("NegativeLogLikelihoodLoss", 2, 1), 13, x, i64(sh(2), 0, 3))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("NegativeLogLikelihoodLoss", 2, 1), 13, x, i64(sh(2), 0, -1))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("NegativeLogLikelihoodLoss", 2, 1), 13, x, i64(sh(3), 0, 1, 1))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("NegativeLogLikelihoodLoss", 2, 1), 13, x, f32(sh(2), 0, 1))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("NegativeLogLikelihoodLoss", 3, 1), 13, x, i64(sh(2), 0, 1), f32(sh(2), 1, 1))
	wantErr(t, err, ops.ErrBadInput)
	_, err = opstest.Exec(opstest.Node("SoftmaxCrossEntropyLoss", 2, 1, opstest.String("reduction", "avg")), 13, x, i64(sh(2), 0, 1))
	wantErr(t, err, ops.ErrBadAttr)
	_, err = opstest.Exec(opstest.Node("SoftmaxCrossEntropyLoss", 2, 1), 13, f32(sh(2), 1, 2), i64(sh(1), 0))
	wantErr(t, err, ops.ErrBadInput)
}

func BenchmarkLayerNorm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	x := randTensor(rng, tensor.Float32, 8, 128, 768)
	sc, bi := randTensor(rng, tensor.Float32, 768), randTensor(rng, tensor.Float32, 768)
	k, _ := ops.Prepare(opstest.Node("LayerNormalization", 3, 1), 17)
	b.SetBytes(int64(len(x.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Run(nil, []*tensor.Tensor{x, sc, bi}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBatchNorm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	x := randTensor(rng, tensor.Float32, 8, 64, 56, 56)
	p := randTensor(rng, tensor.Float32, 64)
	v := tensor.New(tensor.Float32, 64)
	for i := range v.Float32s() {
		v.Float32s()[i] = 1
	}
	k, _ := ops.Prepare(opstest.Node("BatchNormalization", 5, 1), 15)
	b.SetBytes(int64(len(x.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Run(nil, []*tensor.Tensor{x, p, p, p, v}); err != nil {
			b.Fatal(err)
		}
	}
}
