package gpuexec

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// qkvGraph is BERT's self-attention as exported: a merged QKV projection's
// output x [b, s, 3*h*d] split three ways, each part laid out as heads
// (K transposed), attention, and the heads merged back.
func qkvGraph(t *testing.T, b, s, h, d int) *ir.Graph {
	t.Helper()
	dims := func(v ...int) []ir.Dim {
		var o []ir.Dim
		for _, x := range v {
			o = append(o, ir.D(int64(x)))
		}
		return o
	}
	bl := ir.NewBuilder("qkv", 17)
	x := bl.Input("x", tensor.Float32, dims(b, s, 3*h*d)...)
	m := bl.Input("m", tensor.Float32, dims(b, 1, 1, s)...)
	hd := int64(h * d)
	qkv := bl.OpN("Split", 3, []*ir.Value{x, bl.Const("sp", tensor.FromInt64([]int64{hd, hd, hd}, 3))}, ir.IntAttr("axis", -1))
	heads := bl.Const("hs", tensor.FromInt64([]int64{int64(b), int64(s), int64(h), int64(d)}, 4))
	q := bl.Op("Transpose", []*ir.Value{bl.Op("Reshape", []*ir.Value{qkv[0], heads})}, ir.IntsAttr("perm", 0, 2, 1, 3))
	k := bl.Op("Transpose", []*ir.Value{bl.Op("Reshape", []*ir.Value{qkv[1], heads})}, ir.IntsAttr("perm", 0, 2, 3, 1))
	v := bl.Op("Transpose", []*ir.Value{bl.Op("Reshape", []*ir.Value{qkv[2], heads})}, ir.IntsAttr("perm", 0, 2, 1, 3))
	y := bl.Op("Attention", []*ir.Value{q, k, v, m}, ir.FloatAttr("scale", float32(1/math.Sqrt(float64(d)))))
	y = bl.Op("Transpose", []*ir.Value{y}, ir.IntsAttr("perm", 0, 2, 1, 3))
	bl.Output(bl.Op("Reshape", []*ir.Value{y, bl.Const("os", tensor.FromInt64([]int64{int64(b), int64(s), hd}, 3))}), "out")
	g := bl.Graph()
	for _, n := range g.Nodes {
		if n.OpType == "Attention" {
			n.Domain = "kiln"
		}
	}
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestAttentionInPlace checks which kernels the attention block launches:
// in half precision with the tensor-core kernel, only the attention (Split,
// Reshape and Transpose read in place); with KeepValues the copies stay
// (every value readable) but attention still runs on tensor cores; in
// float32 or without mma.sync, the copies and the scalar kernel.
func TestAttentionInPlace(t *testing.T) {
	tests := []struct {
		name           string
		keep, half     bool
		mma            bool
		d              int
		wantAttention  string
		wantCopies     int // Split (one per output) and Transpose launches
		wantSkippedOps int
	}{
		{"half, mma", false, true, true, 64, "attention_mma_fa_d64_f16", 0, 8},
		{"half, mma, head 32", false, true, true, 32, "attention_mma_fa_d32_f16", 0, 8},
		{"half, mma, head 24 (no tensor-core kernel)", false, true, true, 24, "attention_rows_f16", 7, 0},
		{"half, mma, keep values", true, true, true, 64, "attention_mma_fa_d64_f16", 7, 0},
		{"half, no mma", false, true, false, 64, "attention_rows_f16", 7, 0},
		{"float32", false, false, true, 64, "attention_rows_f32", 7, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := compileWith(qkvGraph(t, 2, 70, 2, tt.d), tt.keep, tt.half, tt.mma)
			if err != nil {
				t.Fatal(err)
			}
			checkProgram(t, p)
			copies, skipped, att := 0, 0, ""
			for _, s := range p.steps {
				switch s.node.OpType {
				case "Split", "Transpose":
					copies += len(s.launches)
				case "Attention":
					if len(s.launches) != 1 {
						t.Fatalf("attention has %d launches", len(s.launches))
					}
					att = s.launches[0].kernel
				}
				if len(s.launches) == 0 && s.node.OpType != "Reshape" {
					skipped++
				}
			}
			if att != tt.wantAttention || copies != tt.wantCopies {
				t.Errorf("attention kernel %s, %d copy launches; want %s, %d", att, copies, tt.wantAttention, tt.wantCopies)
			}
			if tt.wantSkippedOps > 0 && skipped < 4 {
				t.Errorf("%d Split/Transpose steps launch nothing, want 4", skipped)
			}
			if p.mma != strings.HasPrefix(att, "attention_mma") {
				t.Errorf("program.mma = %v with %s", p.mma, att)
			}
		})
	}
}

// TestAttentionInPlaceEmulated runs the half program of qkvGraph with the
// tensor-core kernel on the CPU: the conversions as copies, attention_mma
// emulated in float64 from its launch arguments (the strides the compiler
// derived for the in-place views), and compares with kiln's CPU engine.
// It checks the views, not the CUDA code (the GPU tests do that).
func TestAttentionInPlaceEmulated(t *testing.T) {
	defer func(fa bool) { attentionFA = fa }(attentionFA)
	for _, shape := range [][5]int{{2, 70, 2, 32, 1}, {1, 37, 3, 64, 1}, {1, 37, 3, 64, 0}} {
		attentionFA = shape[4] == 1 // attention_mma_fa, or nn.cu's attention_mma
		b, s, h, d := shape[0], shape[1], shape[2], shape[3]
		r := rand.New(rand.NewPCG(5, uint64(d)))
		rnd := func(shape ...int) *tensor.Tensor {
			x := tensor.New(tensor.Float32, shape...)
			for i := range x.Float32s() {
				x.Float32s()[i] = float32(r.NormFloat64())
			}
			return x
		}
		in := map[string]*tensor.Tensor{"x": rnd(b, s, 3*h*d), "m": rnd(b, 1, 1, s)}
		ce, err := engine.New(qkvGraph(t, b, s, h, d))
		if err != nil {
			t.Fatal(err)
		}
		want, err := ce.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		p, err := compileWith(qkvGraph(t, b, s, h, d), false, true, true)
		if err != nil {
			t.Fatal(err)
		}
		got := emulate(t, p, in)
		if cos, rel := cosine(got, want["out"]); rel > 1e-5 {
			t.Errorf("shape %v: emulated in-place attention: cosine %.6f, relative L2 error %.3g", shape, cos, rel)
		}
	}
}

// emulate runs a program of float conversions and attention_mma launches
// on host memory: every arena store as float64 elements (float32 staging
// buffers at 4 bytes an element, half values at 2).
func emulate(t *testing.T, p *program, in map[string]*tensor.Tensor) *tensor.Tensor {
	t.Helper()
	mem := map[int][]float64{}
	at := func(r ref, esize int64) ([]float64, int64) {
		if r.buf != bufArena {
			t.Fatalf("emulate: pointer into buffer %d", r.buf)
		}
		if mem[r.id] == nil {
			mem[r.id] = make([]float64, p.stores[r.id].size)
		}
		return mem[r.id], r.off / esize
	}
	i64 := func(r ref, i int) int64 {
		return int64(binary.LittleEndian.Uint64(p.weights[r.off+int64(8*i):]))
	}
	for _, io := range p.inputs {
		buf, off := at(io.ref, 4)
		for i, v := range in[io.name].Float32s() {
			buf[off+int64(i)] = float64(v)
		}
	}
	for _, s := range p.steps {
		for _, l := range s.launches {
			a := l.args
			switch {
			case l.kernel == "cast_f32_f16" || l.kernel == "cast_f16_f32":
				ys, xs := int64(2), int64(4)
				if l.kernel == "cast_f16_f32" {
					ys, xs = 4, 2
				}
				y, yo := at(a[0].ref, ys)
				x, xo := at(a[1].ref, xs)
				copy(y[yo:yo+a[2].i], x[xo:xo+a[2].i])
			case strings.HasPrefix(l.kernel, "attention_mma_d") || strings.HasPrefix(l.kernel, "attention_mma_fa_d"):
				y, yo := at(a[0].ref, 2)
				q, qo := at(a[1].ref, 2)
				k, ko := at(a[2].ref, 2)
				v, vo := at(a[3].ref, 2)
				mask, mo := at(a[4].ref, 2)
				meta, st := a[5].ref, a[6].ref
				S, T, H, scale := int(a[7].i), int(a[8].i), int(a[9].i), float64(a[10].f)
				var D int
				if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(l.kernel, "attention_mma_fa_d"), "attention_mma_d"), "_f16"), &D); err != nil {
					t.Fatal(err)
				}
				S64 := func(i int) int64 { return i64(st, i) }
				for bi := 0; bi < int(l.grid.Y); bi++ {
					bo, hh := int64(bi/H), int64(bi%H)
					// mask offset: meta = {r, ms_i, ms_j, dims[r], strides[r]}
					rk := int(i64(meta, 0))
					moff, rem := int64(0), int64(bi)
					for x := rk - 1; x >= 0; x-- {
						dim := i64(meta, 3+x)
						moff += (rem % dim) * i64(meta, 3+rk+x)
						rem /= dim
					}
					for row := 0; row < S; row++ {
						sc := make([]float64, T)
						mx := math.Inf(-1)
						for j := range T {
							var dot float64
							for c := range D {
								dot += q[qo+bo*S64(0)+hh*S64(1)+int64(row)*S64(2)+int64(c)*S64(3)] *
									k[ko+bo*S64(4)+hh*S64(5)+int64(j)*S64(6)+int64(c)*S64(7)]
							}
							sc[j] = dot*scale + mask[mo+moff+int64(row)*i64(meta, 1)+int64(j)*i64(meta, 2)]
							mx = max(mx, sc[j])
						}
						var sum float64
						for j := range sc {
							sc[j] = math.Exp(sc[j] - mx)
							sum += sc[j]
						}
						for c := range D {
							var acc float64
							for j := range T {
								acc += sc[j] * v[vo+bo*S64(8)+hh*S64(9)+int64(j)*S64(10)+int64(c)*S64(11)]
							}
							y[yo+bo*S64(12)+hh*S64(13)+int64(row)*S64(14)+int64(c)*S64(15)] = acc / sum
						}
					}
				}
			case l.kernel == "layernorm_vec_f16":
				y, yo := at(a[0].ref, 2)
				x, xo := at(a[1].ref, 2)
				var z []float64
				var zo int64
				if a[2].ref.buf != bufNil {
					z, zo = at(a[2].ref, 2)
				}
				half := func(r ref, i int) float64 {
					if r.buf == bufNil {
						return 0
					}
					if r.buf != bufWeights {
						t.Fatalf("emulate: LayerNorm parameter in buffer %d", r.buf)
					}
					return float64(tensor.HalfToFloat32(binary.LittleEndian.Uint16(p.weights[r.off+int64(2*i):])))
				}
				rows, cols, eps := a[5].i, int(a[6].i), float64(a[7].f)
				if l.grid.X*4 < uint32(rows) {
					t.Fatalf("layernorm_vec grid %v for %d rows", l.grid, rows)
				}
				row := make([]float64, cols)
				for r := range rows {
					var mean, q float64
					for c := range cols {
						row[c] = x[xo+r*int64(cols)+int64(c)]
						if z != nil {
							row[c] += z[zo+r*int64(cols)+int64(c)]
						}
						mean += row[c]
					}
					mean /= float64(cols)
					for c := range cols {
						q += (row[c] - mean) * (row[c] - mean)
					}
					inv := 1 / math.Sqrt(q/float64(cols)+eps)
					for c := range cols {
						y[yo+r*int64(cols)+int64(c)] = (row[c]-mean)*inv*half(a[3].ref, c) + half(a[4].ref, c)
					}
				}
			default:
				t.Fatalf("emulate: kernel %s", l.kernel)
			}
		}
	}
	o := p.outputs[0]
	buf, off := at(o.ref, 4)
	out := tensor.New(tensor.Float32, o.shape...)
	for i := range out.Float32s() {
		out.Float32s()[i] = float32(buf[off+int64(i)])
	}
	return out
}

// TestAddLayerNorm checks the residual Add folded into layernorm_vec (half
// precision): which kernels launch, and, emulated on the CPU, that the
// normalization reads both of the Add's inputs.
func TestAddLayerNorm(t *testing.T) {
	tests := []struct {
		name      string
		cols      int
		addUsed   bool // the Add's output is also a graph output
		keep      bool
		wantAdds  int
		wantLNKey string
	}{
		{"fused", 64, false, false, 0, "layernorm_vec_f16"},
		{"Add also an output", 64, true, false, 1, "layernorm_vec_f16"},
		{"keep values", 64, false, true, 1, "layernorm_vec_f16"},
		{"row of 36 (not a multiple of 8)", 36, false, false, 1, "layernorm_f16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 8))
			rnd := func(shape ...int) *tensor.Tensor {
				x := tensor.New(tensor.Float32, shape...)
				for i := range x.Float32s() {
					x.Float32s()[i] = float32(r.NormFloat64())
				}
				return x
			}
			gamma, beta := rnd(tt.cols), rnd(tt.cols)
			mk := func() *ir.Graph {
				b := ir.NewBuilder("ln", 17)
				x := b.Input("x", tensor.Float32, ir.D(3), ir.D(5), ir.D(int64(tt.cols)))
				z := b.Input("z", tensor.Float32, ir.D(3), ir.D(5), ir.D(int64(tt.cols)))
				s := b.Op("Add", []*ir.Value{x, z})
				b.Output(b.Op("LayerNormalization", []*ir.Value{s, b.Const("g", gamma), b.Const("b", beta)}, ir.IntAttr("axis", -1), ir.FloatAttr("epsilon", 1e-5)), "out")
				if tt.addUsed {
					b.Output(s, "sum")
				}
				g := b.Graph()
				if _, err := ops.InferGraph(g); err != nil {
					t.Fatal(err)
				}
				return g
			}
			p, err := compileWith(mk(), tt.keep, true, true)
			if err != nil {
				t.Fatal(err)
			}
			checkProgram(t, p)
			adds, ln := 0, ""
			for _, s := range p.steps {
				switch s.node.OpType {
				case "Add":
					adds += len(s.launches)
				case "LayerNormalization":
					ln = s.launches[0].kernel
				}
			}
			if adds != tt.wantAdds || ln != tt.wantLNKey {
				t.Errorf("%d Add launches, LayerNorm %s; want %d, %s", adds, ln, tt.wantAdds, tt.wantLNKey)
			}
			if adds > 0 || ln != "layernorm_vec_f16" {
				return
			}
			in := map[string]*tensor.Tensor{"x": rnd(3, 5, tt.cols), "z": rnd(3, 5, tt.cols)}
			ce, err := engine.New(mk())
			if err != nil {
				t.Fatal(err)
			}
			want, err := ce.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			// gamma and beta are rounded to half on the device: 1e-3.
			if cos, rel := cosine(emulate(t, p, in), want["out"]); rel > 1e-3 {
				t.Errorf("emulated Add + LayerNorm: cosine %.6f, relative L2 error %.3g", cos, rel)
			}
		})
	}
}
