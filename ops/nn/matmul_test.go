package nn

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// refMatMul is the numpy matmul oracle on float64 values.
func refMatMul(a []float64, as []int, b []float64, bs []int) ([]float64, []int) {
	a2, b2 := as, bs
	if len(as) == 1 {
		a2 = []int{1, as[0]}
	}
	if len(bs) == 1 {
		b2 = []int{bs[0], 1}
	}
	m, k, n := a2[len(a2)-2], a2[len(a2)-1], b2[len(b2)-1]
	ab, bb := a2[:len(a2)-2], b2[:len(b2)-2]
	batch, err := ops.BroadcastShape(ab, bb)
	if err != nil {
		panic(err)
	}
	nb := tensor.NumElements(batch)
	out := make([]float64, nb*m*n)
	coord := make([]int, len(batch))
	flat := func(c, shape []int) int {
		off := len(c) - len(shape)
		idx := 0
		for d, s := range shape {
			v := c[off+d]
			if s == 1 {
				v = 0
			}
			idx = idx*s + v
		}
		return idx
	}
	for bi := 0; bi < nb; bi++ {
		rem := bi
		for d := len(batch) - 1; d >= 0; d-- {
			coord[d] = rem % batch[d]
			rem /= batch[d]
		}
		ao, bo := flat(coord, ab)*m*k, flat(coord, bb)*k*n
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				s := 0.0
				for p := 0; p < k; p++ {
					s += a[ao+i*k+p] * b[bo+p*n+j]
				}
				out[(bi*m+i)*n+j] = s
			}
		}
	}
	shape := append([]int{}, batch...)
	if len(as) > 1 {
		shape = append(shape, m)
	}
	if len(bs) > 1 {
		shape = append(shape, n)
	}
	return out, shape
}

func TestMatMulAgainstReference(t *testing.T) {
	cases := [][2][]int{
		{{3, 4}, {4, 5}},
		{{4}, {4, 5}},
		{{3, 4}, {4}},
		{{4}, {4}},
		{{2, 3, 4}, {4, 5}},
		{{2, 3, 4}, {2, 4, 5}},
		{{2, 1, 3, 4}, {1, 3, 4, 5}},
		{{3, 4}, {6, 4, 2}},
		{{5}, {2, 5, 3}},
		{{2, 2, 3, 5}, {5}},
		{{1, 2, 3, 4}, {1, 2, 4, 3}},
		{{17, 65, 33}, {33, 70}},
		{{64, 8, 16}, {64, 16, 8}},
		{{2, 0, 4}, {4, 3}},
		{{2, 3, 0}, {0, 3}},
	}
	r := rand.New(rand.NewPCG(21, 22))
	for _, c := range cases {
		for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Int32, tensor.Int64, tensor.Uint32, tensor.Uint64, tensor.Float16, tensor.BFloat16} {
			t.Run(fmt.Sprintf("%v_%v/%v", c[0], c[1], dt), func(t *testing.T) {
				a := randTensor(r, dt, c[0]...)
				b := randTensor(r, dt, c[1]...)
				out := opstest.Run(t, opstest.Node("MatMul", 2, 1), 13, a, b)
				want, shape := refMatMul(floats(a), c[0], floats(b), c[1])
				tol := 1e-5
				switch dt {
				case tensor.Float16:
					tol = 1e-2
				case tensor.BFloat16:
					tol = 5e-2
				}
				closeTo(t, "MatMul", out[0], shape, want, tol)
			})
		}
	}
}

func TestMatMulInferAndErrors(t *testing.T) {
	n := opstest.Node("MatMul", 2, 1)
	got := inferTypes(t, n, 13, ty(tensor.Float32, ir.S("batch"), ir.S("seq"), ir.D(768)), ty(tensor.Float32, ir.D(768), ir.D(3072)))
	if s := got[0].Shape.String(); s != "[batch,seq,3072]" {
		t.Errorf("MatMul shape %s", s)
	}
	got = inferTypes(t, n, 13, ty(tensor.Float32, ir.S("b"), ir.D(12), ir.S("s"), ir.D(64)), ty(tensor.Float32, ir.S("b"), ir.D(12), ir.D(64), ir.S("s")))
	if s := got[0].Shape.String(); s != "[b,12,s,s]" {
		t.Errorf("MatMul shape %s", s)
	}
	got = inferTypes(t, n, 13, ty(tensor.Float32, ir.D(5)), ty(tensor.Float32, ir.D(3), ir.D(5), ir.D(2)))
	if s := got[0].Shape.String(); s != "[3,2]" {
		t.Errorf("MatMul shape %s", s)
	}
	got = inferTypes(t, n, 13, ir.Type{DType: tensor.Float32}, ty(tensor.Float32, ir.D(5), ir.D(2)))
	if got[0].Shape != nil {
		t.Errorf("MatMul shape %v, want unknown rank", got[0].Shape)
	}
	wantBadInput(t, "inner", n, 13, tensor.New(tensor.Float32, 2, 3), tensor.New(tensor.Float32, 4, 2))
	wantBadInput(t, "batch", n, 13, tensor.New(tensor.Float32, 2, 2, 3), tensor.New(tensor.Float32, 3, 3, 2))
	wantBadInput(t, "scalar", n, 13, tensor.New(tensor.Float32), tensor.New(tensor.Float32, 3))
	wantBadInput(t, "dtype", n, 13, tensor.New(tensor.Float32, 2, 3), tensor.New(tensor.Float64, 3, 2))
	wantBadInput(t, "bool", n, 13, tensor.New(tensor.Bool, 2, 3), tensor.New(tensor.Bool, 3, 2))
}

func TestGemm(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	cases := []struct {
		name           string
		a, b, c        []int
		transA, transB bool
		alpha, beta    float32
	}{
		{"default", []int{3, 5}, []int{5, 4}, []int{3, 4}, false, false, 1, 1},
		{"no_c", []int{3, 5}, []int{5, 4}, nil, false, false, 1, 1},
		{"all", []int{4, 3}, []int{5, 4}, []int{1, 5}, true, true, 0.25, 0.35},
		{"transA", []int{6, 3}, []int{6, 4}, []int{4}, true, false, 1, 1},
		{"transB", []int{3, 6}, []int{4, 6}, []int{1}, false, true, 1, 1},
		{"scalar_c", []int{2, 3}, []int{3, 4}, []int{}, false, false, 0.5, 2},
		{"column_c", []int{7, 3}, []int{3, 4}, []int{7, 1}, false, false, 1, 1},
		{"beta_zero", []int{2, 3}, []int{3, 4}, []int{2, 4}, false, false, 1, 0},
		{"big", []int{33, 130}, []int{70, 130}, []int{70}, false, true, 1, 1},
	}
	for _, c := range cases {
		for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Int64, tensor.Float16} {
			t.Run(c.name+"/"+dt.String(), func(t *testing.T) {
				alpha, beta := c.alpha, c.beta
				if dt.IsInt() {
					alpha, beta = 1, 1
				}
				a := randTensor(r, dt, c.a...)
				b := randTensor(r, dt, c.b...)
				in := []*tensor.Tensor{a, b}
				var cv *tensor.Tensor
				if c.c != nil {
					cv = randTensor(r, dt, c.c...)
					in = append(in, cv)
				}
				attrs := []*ir.Attr{opstest.Float("alpha", alpha), opstest.Float("beta", beta)}
				if c.transA {
					attrs = append(attrs, opstest.Int("transA", 1))
				}
				if c.transB {
					attrs = append(attrs, opstest.Int("transB", 1))
				}
				out := opstest.Run(t, opstest.Node("Gemm", len(in), 1, attrs...), 13, in...)
				af, bf := floats(a), floats(b)
				m, k := c.a[0], c.a[1]
				if c.transA {
					m, k = k, m
				}
				n := c.b[1]
				if c.transB {
					n = c.b[0]
				}
				want := make([]float64, m*n)
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						s := 0.0
						for p := 0; p < k; p++ {
							av, bv := af[i*k+p], bf[p*n+j]
							if c.transA {
								av = af[p*m+i]
							}
							if c.transB {
								bv = bf[j*k+p]
							}
							s += av * bv
						}
						v := float64(alpha) * s
						if cv != nil {
							idx := 0
							switch len(c.c) {
							case 1:
								idx = j % c.c[0]
							case 2:
								idx = (i%c.c[0])*c.c[1] + j%c.c[1]
							}
							v += float64(beta) * cv.Float(idx)
						}
						want[i*n+j] = v
					}
				}
				tol := 1e-5
				if dt == tensor.Float16 {
					tol = 2e-2
				}
				closeTo(t, "Gemm", out[0], []int{m, n}, want, tol)
			})
		}
	}
}

func TestGemmInferAndErrors(t *testing.T) {
	n := opstest.Node("Gemm", 3, 1, opstest.Int("transB", 1))
	got := inferTypes(t, n, 13, ty(tensor.Float32, ir.S("batch"), ir.D(2048)), ty(tensor.Float32, ir.D(1000), ir.D(2048)), ty(tensor.Float32, ir.D(1000)))
	if s := got[0].Shape.String(); s != "[batch,1000]" {
		t.Errorf("Gemm shape %s", s)
	}
	wantBadInput(t, "inner", n, 13, tensor.New(tensor.Float32, 2, 3), tensor.New(tensor.Float32, 4, 2))
	wantBadInput(t, "rank", n, 13, tensor.New(tensor.Float32, 2, 2, 3), tensor.New(tensor.Float32, 4, 3))
	wantBadInput(t, "c shape", n, 13, tensor.New(tensor.Float32, 2, 3), tensor.New(tensor.Float32, 4, 3), tensor.New(tensor.Float32, 3))
	wantBadInput(t, "c rank", n, 13, tensor.New(tensor.Float32, 2, 3), tensor.New(tensor.Float32, 4, 3), tensor.New(tensor.Float32, 1, 2, 4))
	wantBadInput(t, "dtype", n, 13, tensor.New(tensor.Int8, 2, 3), tensor.New(tensor.Int8, 4, 3))
}

func TestMatMulInteger(t *testing.T) {
	// hand-computed: (A - 12) x B
	a := u8([]uint8{11, 7, 3, 10, 6, 1, 8, 5, 9, 4, 2, 12}, 4, 3)
	b := u8([]uint8{1, 4, 2, 5, 3, 6}, 3, 2)
	out := opstest.Run(t, opstest.Node("MatMulInteger", 4, 1), 10, a, b, u8([]uint8{12}, 1), u8([]uint8{0}, 1))
	closeTo(t, "MatMulInteger", out[0], []int{4, 2}, []float64{-38, -83, -47, -104, -27, -69, -28, -82}, 0)
	if out[0].DType != tensor.Int32 {
		t.Errorf("dtype %v", out[0].DType)
	}
	// int8, per-row and per-column zero points, batched
	r := rand.New(rand.NewPCG(41, 42))
	ai := randTensor(r, tensor.Int8, 2, 3, 4)
	bi := randTensor(r, tensor.Int8, 4, 5)
	az := tensor.New(tensor.Int8, 3)
	copy(az.Int8s(), []int8{1, -1, 2})
	bz := tensor.New(tensor.Int8, 5)
	copy(bz.Int8s(), []int8{0, 1, 2, 3, -4})
	out = opstest.Run(t, opstest.Node("MatMulInteger", 4, 1), 10, ai, bi, az, bz)
	af, bf := floats(ai), floats(bi)
	for i := range af {
		af[i] -= float64(az.Int8s()[(i/4)%3])
	}
	for i := range bf {
		bf[i] -= float64(bz.Int8s()[i%5])
	}
	want, shape := refMatMul(af, ai.Shape, bf, bi.Shape)
	closeTo(t, "MatMulInteger int8", out[0], shape, want, 0)
	wantBadInput(t, "float", opstest.Node("MatMulInteger", 2, 1), 10, tensor.New(tensor.Float32, 2, 2), tensor.New(tensor.Float32, 2, 2))
	wantBadInput(t, "zp", opstest.Node("MatMulInteger", 3, 1), 10, a, b, u8([]uint8{1, 2}, 2))
}

func TestQLinearMatMul(t *testing.T) {
	// ONNX's test_qlinearmatmul_2D
	a := u8([]uint8{208, 236, 0, 238, 3, 214, 255, 29}, 2, 4)
	b := u8([]uint8{152, 51, 244, 60, 26, 255, 0, 127, 246, 127, 254, 247}, 4, 3)
	in := []*tensor.Tensor{a, f32([]float32{0.0066}, 1), u8([]uint8{113}, 1), b, f32([]float32{0.00705}, 1), u8([]uint8{114}, 1),
		f32([]float32{0.0107}, 1), u8([]uint8{118}, 1)}
	out := opstest.Run(t, opstest.Node("QLinearMatMul", 8, 1), 10, in...)
	closeTo(t, "QLinearMatMul", out[0], []int{2, 3}, []float64{168, 115, 255, 1, 66, 151}, 0)
	wantBadInput(t, "missing", opstest.Node("QLinearMatMul", 8, 1), 10, in[:5]...)
	bad := append([]*tensor.Tensor{}, in...)
	bad[1] = f32([]float32{1, 2, 3}, 3)
	wantBadInput(t, "scale", opstest.Node("QLinearMatMul", 8, 1), 10, bad...)
}
