package cpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// forEachInt8Kernel runs f once with each int8 kernel this CPU has active,
// the pure-Go one included.
func forEachInt8Kernel(t *testing.T, f func(t *testing.T)) {
	saved := int8Active
	defer func() { int8Active = saved }()
	for _, k := range int8Kernels() {
		int8Active = k
		t.Run(k.name, f)
	}
}

func TestInt8KernelsListed(t *testing.T) {
	ks := int8Kernels()
	if ks[len(ks)-1] != int8GenericKernel {
		t.Fatalf("the pure-Go int8 kernel is not last in %v", ks)
	}
	for _, k := range ks {
		if k.mr*k.nr > int8MaxTile {
			t.Errorf("%s: tile %dx%d exceeds int8MaxTile", k.name, k.mr, k.nr)
		}
	}
	if f := extraFeatures()["int8"]; f != Int8ISA() || f == "" {
		t.Errorf("fingerprint int8 = %q, kernel in use %q", f, Int8ISA())
	}
}

// int8Case is a random m x k weight matrix and k x n activation matrix,
// with the activations in quad layout (quad stride ps).
type int8Case struct {
	m, n, k, ps int
	w           []int8 // m x k
	x           []int8 // k x n, row-major
	xq          []int8 // quad layout
}

func newInt8Case(r *rand.Rand, m, n, k, extra int) *int8Case {
	c := &int8Case{m: m, n: n, k: k, ps: 4*n + extra}
	c.w = make([]int8, m*k)
	for i := range c.w {
		c.w[i] = int8(r.IntN(256) - 128)
	}
	c.x = make([]int8, k*n)
	for i := range c.x {
		c.x[i] = int8(r.IntN(256) - 128)
	}
	nq := (k + 3) / 4
	c.xq = make([]int8, max(nq, 1)*c.ps)
	for i := range c.xq {
		c.xq[i] = int8(r.IntN(256) - 128) // garbage in the padding
	}
	for p := 0; p < nq*4; p++ {
		for j := 0; j < n; j++ {
			var v int8
			if p < k {
				v = c.x[p*n+j]
			} else {
				v = int8(r.IntN(256) - 128) // ignored: zero weights
			}
			c.xq[(p/4)*c.ps+4*j+p%4] = v
		}
	}
	return c
}

// want returns the exact int32 product W*X.
func (c *int8Case) want() []int32 {
	out := make([]int32, c.m*c.n)
	for i := 0; i < c.m; i++ {
		for j := 0; j < c.n; j++ {
			var s int32
			for p := 0; p < c.k; p++ {
				s += int32(c.w[i*c.k+p]) * int32(c.x[p*c.n+j])
			}
			out[i*c.n+j] = s
		}
	}
	return out
}

var int8Sizes = []struct{ m, n, k int }{
	{1, 1, 1}, {1, 17, 3}, {5, 7, 9}, {6, 64, 4}, {7, 65, 13}, {13, 33, 37},
	{4, 8, 8}, {6, 16, 64}, {11, 129, 31}, {19, 50, 300}, {3, 200, 1},
}

// TestInt8Tiles checks every tile of every kernel against the exact
// product, on odd sizes, with garbage past the columns asked for.
func TestInt8Tiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	forEachInt8Kernel(t, func(t *testing.T) {
		for _, s := range int8Sizes {
			c := newInt8Case(r, s.m, s.n, s.k, 12)
			want := c.want()
			w := PackInt8Weights(c.w, c.m, c.k, c.k)
			kern := w.kern
			got := make([]int32, c.m*c.n)
			tile := make([]int32, kern.mr*kern.nr)
			for i0 := 0; i0 < c.m; i0 += kern.mr {
				for j0 := 0; j0 < c.n; j0 += kern.nr {
					rows, cols := min(kern.mr, c.m-i0), min(kern.nr, c.n-j0)
					for i := range tile {
						tile[i] = -7
					}
					kern.tile(w.nq, w.panel(i0), &w.corr[i0], &c.xq[4*j0], c.ps, &tile[0], kern.nr, rows, cols)
					for i := 0; i < kern.mr; i++ {
						for j := 0; j < kern.nr; j++ {
							v := tile[i*kern.nr+j]
							if i >= rows || j >= cols {
								if v != -7 {
									t.Fatalf("%dx%dx%d: tile (%d,%d) wrote outside its %dx%d corner at (%d,%d)", s.m, s.n, s.k, i0, j0, rows, cols, i, j)
								}
								continue
							}
							got[(i0+i)*c.n+j0+j] = v
						}
					}
				}
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%dx%dx%d: element %d = %d, want %d", s.m, s.n, s.k, i, got[i], want[i])
				}
			}
		}
	})
}

// TestInt8Gemm checks the whole GEMM (tiles, threads, epilogue) against
// the exact product: with scale 1 and sums below 2^24, float32 is exact.
func TestInt8Gemm(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	forEachInt8Kernel(t, func(t *testing.T) {
		for _, s := range int8Sizes {
			for _, nt := range []int{1, 3} {
				for _, trans := range []bool{false, true} {
					c := newInt8Case(r, s.m, s.n, s.k, 0)
					want := c.want()
					w := PackInt8Weights(c.w, c.m, c.k, c.k)
					scale := make([]float32, c.m)
					for i := range scale {
						scale[i] = 1
					}
					lo, hi := NoClamp()
					out := &Int8Output{Scale: scale, Dst: make([]float32, c.m*c.n), Ld: c.n, Trans: trans, Lo: lo, Hi: hi}
					if trans {
						out.Ld = c.m
					}
					Int8Gemm(w, c.xq, c.n, c.ps, out, nt)
					for i := 0; i < c.m; i++ {
						for j := 0; j < c.n; j++ {
							at := i*c.n + j
							if trans {
								at = j*c.m + i
							}
							if got := out.Dst[at]; got != float32(want[i*c.n+j]) {
								t.Fatalf("%dx%dx%d nt=%d trans=%v: (%d,%d) = %g, want %d", s.m, s.n, s.k, nt, trans, i, j, got, want[i*c.n+j])
							}
						}
					}
				}
			}
		}
	})
}

// TestInt8Epilogue checks scale, bias, residual and clamp against the
// pure-Go row, bit for bit.
func TestInt8Epilogue(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	forEachInt8Kernel(t, func(t *testing.T) {
		c := newInt8Case(r, 13, 37, 21, 4)
		w := PackInt8Weights(c.w, c.m, c.k, c.k)
		acc := c.want()
		scale, bias := make([]float32, c.m), make([]float32, c.m)
		for i := range scale {
			scale[i] = float32(r.Float64()*0.01 + 1e-4)
			bias[i] = float32(r.Float64()*2 - 1)
		}
		z := make([]float32, c.m*c.n)
		for i := range z {
			z[i] = float32(r.Float64()*2 - 1)
		}
		for _, tc := range []struct {
			name   string
			z      []float32
			lo, hi float32
		}{
			{"plain", nil, float32(math.Inf(-1)), float32(math.Inf(1))},
			{"relu", nil, 0, float32(math.Inf(1))},
			{"residual clip", z, -0.5, 0.25},
		} {
			out := &Int8Output{Scale: scale, Bias: bias, Z: tc.z, Dst: make([]float32, c.m*c.n), Ld: c.n, Lo: tc.lo, Hi: tc.hi}
			Int8Gemm(w, c.xq, c.n, c.ps, out, 2)
			want := make([]float32, c.n)
			for i := 0; i < c.m; i++ {
				var zr []float32
				if tc.z != nil {
					zr = tc.z[i*c.n : (i+1)*c.n]
				}
				int8RowGo(acc[i*c.n:(i+1)*c.n], scale[i], bias[i], zr, want, tc.lo, tc.hi)
				for j, v := range want {
					if got := out.Dst[i*c.n+j]; got != v {
						t.Fatalf("%s: (%d,%d) = %g, want %g", tc.name, i, j, got, v)
					}
				}
			}
		}
	})
}

func TestQuantizeInt8(t *testing.T) {
	nan := float32(math.NaN())
	cases := []struct {
		v, scale float32
		want     int8
	}{
		{0, 1, 0}, {0.5, 1, 0}, {1.5, 1, 2}, {2.5, 1, 2}, {-2.5, 1, -2}, {-0.5, 1, 0},
		{1000, 1, 127}, {-1000, 1, -127}, {127.5, 1, 127}, {-128, 1, -127},
		{0.3, 0.1, 3}, {nan, 1, 0}, {float32(math.Inf(1)), 1, 127}, {float32(math.Inf(-1)), 1, -127},
	}
	for _, c := range cases {
		dst := []int8{99}
		QuantizeInt8(dst, []float32{c.v}, c.scale)
		if dst[0] != c.want {
			t.Errorf("quantize(%g / %g) = %d, want %d", c.v, c.scale, dst[0], c.want)
		}
	}
}

func TestQuantizeInt8Layouts(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const rows, k, scale = 5, 11, 0.05
	src := make([]float32, rows*k)
	for i := range src {
		src[i] = float32(r.Float64()*10 - 5)
	}
	plain := make([]int8, len(src))
	QuantizeInt8(plain, src, scale)
	nq := (k + 3) / 4
	// rows x k as channels x pixels (QuantizeInt8Quads) ...
	ps := 4*k + 8
	quads := make([]int8, nq*ps)
	for i := range quads {
		quads[i] = 9
	}
	QuantizeInt8Quads(quads, ps, src, k, rows, k, scale)
	// ... and as the transpose (QuantizeInt8Rows).
	ps2 := 4 * rows
	tq := make([]int8, nq*ps2)
	for i := range tq {
		tq[i] = 9
	}
	QuantizeInt8Rows(tq, ps2, src, k, rows, k, scale)
	for c := 0; c < 4*((rows+3)/4); c++ {
		for j := 0; j < k; j++ {
			got := quads[(c/4)*ps+4*j+c%4]
			want := int8(0)
			if c < rows {
				want = plain[c*k+j]
			}
			if got != want {
				t.Fatalf("quads: channel %d pixel %d = %d, want %d", c, j, got, want)
			}
		}
	}
	for j := 0; j < rows; j++ {
		for p := 0; p < 4*nq; p++ {
			got := tq[(p/4)*ps2+4*j+p%4]
			want := int8(0)
			if p < k {
				want = plain[j*k+p]
			}
			if got != want {
				t.Fatalf("rows: row %d k %d = %d, want %d", j, p, got, want)
			}
		}
	}
}

func TestInt8GemmPanics(t *testing.T) {
	w := PackInt8Weights(make([]int8, 6), 2, 3, 3)
	lo, hi := NoClamp()
	for name, f := range map[string]func(){
		"short x": func() {
			Int8Gemm(w, make([]int8, 3), 4, 16, &Int8Output{Scale: []float32{1, 1}, Dst: make([]float32, 8), Ld: 4, Lo: lo, Hi: hi}, 1)
		},
		"short dst": func() {
			Int8Gemm(w, make([]int8, 16), 4, 16, &Int8Output{Scale: []float32{1, 1}, Dst: make([]float32, 7), Ld: 4, Lo: lo, Hi: hi}, 1)
		},
		"short scale": func() {
			Int8Gemm(w, make([]int8, 16), 4, 16, &Int8Output{Scale: []float32{1}, Dst: make([]float32, 8), Ld: 4, Lo: lo, Hi: hi}, 1)
		},
		"bad pack": func() { PackInt8Weights(make([]int8, 5), 2, 3, 3) },
		"overlap": func() {
			Int8Gemm(w, make([]int8, 16), 4, 16, &Int8Output{Scale: []float32{1, 1}, Dst: make([]float32, 8), Ld: 3, Lo: lo, Hi: hi}, 1)
		},
		"mm short a": func() {
			Int8MatMul(PackInt8MatMul(make([]int8, 6), 3, 2, 2), make([]int8, 5), 2, 4, &Int8Output{Scale: []float32{1, 1}, Dst: make([]float32, 4), Ld: 2, Lo: lo, Hi: hi}, 1)
		},
		"mm trans": func() {
			Int8MatMul(PackInt8MatMul(make([]int8, 6), 3, 2, 2), make([]int8, 8), 2, 4, &Int8Output{Scale: []float32{1, 1}, Dst: make([]float32, 4), Ld: 2, Trans: true, Lo: lo, Hi: hi}, 1)
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// BenchmarkInt8Gemm reports the int8 GEMM's throughput (GOPS: two
// operations per multiply-add) for each kernel on a 256 x 3136 x 576
// product (a 3x3 convolution of 64 to 256 channels on 56x56), on one
// goroutine and on Threads(), and the float32 Sgemm's on the same product
// with each float32 kernel.
func BenchmarkInt8Gemm(b *testing.B) {
	const m, n, k = 256, 3136, 576
	r := rand.New(rand.NewPCG(9, 10))
	c := newInt8Case(r, m, n, k, 0)
	gops := func(b *testing.B) {
		b.ReportMetric(2*float64(m)*n*k*float64(b.N)/b.Elapsed().Seconds()/1e9, "GOPS")
	}
	saved := int8Active
	defer func() { int8Active = saved }()
	threads := []int{1, Threads()}
	for _, kern := range int8Kernels() {
		int8Active = kern
		w := PackInt8Weights(c.w, m, k, k)
		for _, nt := range threads {
			b.Run(fmt.Sprintf("%s/threads=%d", kern.name, nt), func(b *testing.B) {
				if kern == int8GenericKernel && testing.Short() {
					b.Skip("pure Go is slow")
				}
				scale := make([]float32, m)
				lo, hi := NoClamp()
				out := &Int8Output{Scale: scale, Dst: make([]float32, m*n), Ld: n, Lo: lo, Hi: hi}
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					Int8Gemm(w, c.xq, n, c.ps, out, nt)
				}
				gops(b)
			})
		}
	}
	a, x, y := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	for i := range a {
		a[i] = float32(c.w[i])
	}
	for i := range x {
		x[i] = float32(c.x[i])
	}
	savedF := active
	defer func() { active = savedF }()
	for _, fk := range kernels() {
		active = fk
		for _, nt := range threads {
			b.Run(fmt.Sprintf("float32-sgemm-%s/threads=%d", fk.name, nt), func(b *testing.B) {
				if fk == genericKernel && testing.Short() {
					b.Skip("pure Go is slow")
				}
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					sgemm(false, false, m, n, k, 1, a, k, x, n, 0, y, n, nt)
				}
				gops(b)
			})
		}
	}
}

func TestSetInt8Kernel(t *testing.T) {
	saved := int8Active
	defer func() { int8Active = saved }()
	names := Int8KernelNames()
	if names[len(names)-1] != "generic" {
		t.Fatalf("names %v do not end with generic", names)
	}
	for _, n := range names {
		if err := SetInt8Kernel(n); err != nil || Int8ISA() != n {
			t.Fatalf("SetInt8Kernel(%q) = %v, in use %q", n, err, Int8ISA())
		}
	}
	if err := SetInt8Kernel("nope"); !errors.Is(err, ErrUnknownInt8Kernel) {
		t.Fatalf("SetInt8Kernel(nope) = %v", err)
	}
}

// TestQuantizeVectorized checks each implementation of the quantizing and
// scaling loops this CPU has against pure Go, bit for bit, on special
// values and odd lengths, with guards past the end.
func TestQuantizeVectorized(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	special := []float32{0, float32(math.Copysign(0, -1)), 0.5, 1.5, 2.5, -0.5, -2.5, 126.5, 127, 127.5, 128, -126.5, -127.5, -1e30, 1e30,
		float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-40, -3.4e38}
	const scale = 0.5
	saved := quantActive
	defer func() { quantActive = saved }()
	for _, impl := range quantImpls() {
		quantActive = impl
		for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 33, 64, 100} {
			name := fmt.Sprintf("%s n=%d", impl.name, n)
			src := make([]float32, 4*n+5)
			for i := range src {
				if r.IntN(3) == 0 {
					src[i] = special[r.IntN(len(special))] * scale
				} else {
					src[i] = float32(r.Float64()*300 - 150)
				}
			}
			gotG, want := make([]int8, len(src)+32), make([]int8, len(src))
			for i := range gotG {
				gotG[i] = 77
			}
			got := gotG[:len(src)]
			quantRows(got, src, scale)
			quantRowsGo(want, src, scale)
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s: rows[%d] of %g = %d, want %d", name, i, src[i], got[i], want[i])
				}
			}
			gfG, wf := make([]float32, len(src)+32), make([]float32, len(src))
			for i := range gfG {
				gfG[i] = 77
			}
			gf := gfG[:len(src)]
			quantF32(gf, src, scale)
			quantF32Go(wf, src, scale)
			for i := len(src); i < len(gfG); i++ {
				if gotG[i] != 77 || gfG[i] != 77 {
					t.Fatalf("%s: quantizers wrote past the end", name)
				}
			}
			for i := range gf {
				if gf[i] != wf[i] || gf[i] != float32(want[i]) {
					t.Fatalf("%s: float[%d] of %g = %g, want %g", name, i, src[i], gf[i], wf[i])
				}
			}
			lo, hi := float32(-20), float32(30)
			bias := float32(0.25)
			acc := make([]int32, len(want)-1)
			for i := range acc {
				acc[i] = int32(want[i]) * int32(r.IntN(20000)-10000)
			}
			for _, z := range [][]float32{nil, src[1:]} {
				gs, ws := make([]float32, len(wf)-1), make([]float32, len(wf)-1)
				scaleRow(gs, wf[:len(wf)-1], 0.3, bias, z, lo, hi)
				scaleRowGo(ws, wf[:len(wf)-1], 0.3, bias, z, lo, hi)
				gr, wr := make([]float32, len(acc)), make([]float32, len(acc))
				impl.row(acc, 1e-3, bias, z, gr, lo, hi)
				int8RowGo(acc, 1e-3, bias, z, wr, lo, hi)
				for i := range gs {
					if gs[i] != ws[i] && !(gs[i] != gs[i] && ws[i] != ws[i]) {
						t.Fatalf("%s z=%v: scaled[%d] = %g, want %g", name, z != nil, i, gs[i], ws[i])
					}
					if gr[i] != wr[i] && !(gr[i] != gr[i] && wr[i] != wr[i]) {
						t.Fatalf("%s z=%v: row[%d] = %g, want %g", name, z != nil, i, gr[i], wr[i])
					}
				}
			}
			lds := n + 1
			gq, wq := make([]int8, 4*n), make([]int8, 4*n)
			quantQuads4(gq, src, lds, n, scale)
			quantQuads4Go(wq, src, lds, n, scale)
			for i := range gq {
				if gq[i] != wq[i] {
					t.Fatalf("%s: quads[%d] = %d, want %d", name, i, gq[i], wq[i])
				}
			}
		}
	}
}

// TestInt8MatMul checks Int8MatMul (A row-major times packed B, epilogue
// per column) on every kernel against the exact product and the pure-Go
// epilogue, bit for bit, on odd sizes and thread counts.
func TestInt8MatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	sizes := []struct{ rows, k, n int }{
		{1, 1, 1}, {1, 5, 3}, {7, 13, 65}, {6, 64, 64}, {13, 37, 130}, {25, 300, 19}, {3, 8, 200},
	}
	forEachInt8Kernel(t, func(t *testing.T) {
		for _, s := range sizes {
			for _, nt := range []int{1, 3} {
				for _, withZ := range []bool{false, true} {
					// A is stored with stride lda and garbage past k.
					lda := (s.k+3)/4*4 + 4
					a := make([]int8, s.rows*lda)
					for i := range a {
						a[i] = int8(r.IntN(256) - 128)
					}
					b := make([]int8, s.k*s.n)
					for i := range b {
						b[i] = int8(r.IntN(256) - 128)
					}
					scale, bias := make([]float32, s.n), make([]float32, s.n)
					for j := range scale {
						scale[j] = float32(r.Float64() * 3e-4 / math.Sqrt(float64(s.k)))
						bias[j] = float32(r.Float64()*2 - 1)
					}
					ld := s.n + 3
					var z []float32
					if withZ {
						z = make([]float32, s.rows*ld)
						for i := range z {
							z[i] = float32(r.Float64()*2 - 1)
						}
					}
					w := PackInt8MatMul(b, s.k, s.n, s.n)
					dst := make([]float32, s.rows*ld)
					for i := range dst {
						dst[i] = -99
					}
					out := &Int8Output{Scale: scale, Bias: bias, Z: z, Dst: dst, Ld: ld, Lo: -1.5, Hi: 1.25}
					Int8MatMul(w, a, s.rows, lda, out, nt)
					for i := 0; i < s.rows; i++ {
						acc := make([]int32, s.n)
						for j := range acc {
							for p := 0; p < s.k; p++ {
								acc[j] += int32(a[i*lda+p]) * int32(b[p*s.n+j])
							}
						}
						for j := 0; j < ld; j++ {
							got := dst[i*ld+j]
							if j >= s.n {
								if got != -99 {
									t.Fatalf("%v: wrote column %d of row %d", s, j, i)
								}
								continue
							}
							var zr []float32
							if z != nil {
								zr = z[i*ld+j : i*ld+j+1]
							}
							want := []float32{0}
							int8RowGo(acc[j:j+1], scale[j], bias[j], zr, want, -1.5, 1.25)
							if got != want[0] {
								t.Fatalf("%v nt=%d z=%v: (%d,%d) = %g, want %g (acc %d)", s, nt, withZ, i, j, got, want[0], acc[j])
							}
						}
					}
				}
			}
		}
	})
}
