package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A ResNet-50 bottleneck block with every tensor in 8 bits (issue 11's
// INT8 criterion, stage 1): x [N,H,W,C] -> t1 = relu(conv1x1(x) + b1)
// [N,H,W,Cm] -> t2 = relu(conv3x3(t1) + b2) -> y = relu(conv1x1(t2) + b3 +
// x) [N,H,W,C], stride 1, the residual the block's input. This file holds
// what TestInt8BlockBenchOnGPU (int8block_gpu_test.go) and the fake-library
// tests share: the shapes, the FP32 weights, the scales and how they fold
// into each implementation's per-channel parameters, the cuDNN graphs of
// the three layers, and the float64 references.

// blockShape is one bottleneck block: batch n, h x h pixels, c channels in
// and out, cm in the middle.
type blockShape struct{ n, h, c, cm int }

func (s blockShape) String() string {
	return fmt.Sprintf("%dx%dx%d -> %d -> %d -> %d", s.c, s.h, s.h, s.cm, s.cm, s.c)
}

// blockLayer is one convolution of the block: m outputs from k = c*kh*kw
// inputs, weights [m][kh][kw][c] (NHWC) in float32.
type blockLayer struct {
	c, m, kh int
	w        []float32 // m * kh * kh * c
	b        []float32 // m
	residual bool
}

// params returns the layer's convolution (pad 1 for the 3x3).
func (l blockLayer) params(s blockShape) ConvParams {
	pad := l.kh / 2
	return ConvParams{N: s.n, C: l.c, H: s.h, W: s.h, M: l.m, KH: l.kh, KW: l.kh, PadH: pad, PadW: pad,
		StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1, NHWC: true}
}

// newBlockLayers makes the block's three layers with He-initialized
// weights times a per-channel gain in [0.5, 1.5] (a folded batch norm),
// and biases near 0; the last layer's weights are halved, so that the
// residual and the branch are of similar size.
func newBlockLayers(r *rand.Rand, s blockShape) [3]blockLayer {
	mk := func(c, m, kh int, gain float64, residual bool) blockLayer {
		l := blockLayer{c: c, m: m, kh: kh, residual: residual}
		k := c * kh * kh
		sd := math.Sqrt(2/float64(k)) * gain
		l.w = make([]float32, m*k)
		for o := range m {
			g := 0.5 + r.Float64()
			for i := range k {
				l.w[o*k+i] = float32(r.NormFloat64() * sd * g)
			}
			l.b = append(l.b, float32(r.NormFloat64()*0.1))
		}
		return l
	}
	return [3]blockLayer{mk(s.c, s.cm, 1, 1, false), mk(s.cm, s.cm, 3, 1, false), mk(s.cm, s.c, 1, 0.5, true)}
}

// qmax is the largest magnitude of an 8-bit type's codes (INT8 127, FP8
// E4M3 448).
func qmax(t GraphDataType) float64 {
	if t == DataFP8 {
		return 448
	}
	return 127
}

// encode8 returns the code of v/scale in t (INT8 rounded and saturated,
// FP8 E4M3 nearest).
func encode8(t GraphDataType, v, scale float64) byte {
	if t == DataFP8 {
		return EncodeFP8(float32(v / scale))
	}
	return byte(QuantizeInt8(float32(v), float32(scale)))
}

// decode8 returns the value of code b in t (its scale not applied).
func decode8(t GraphDataType, b byte) float64 {
	if t == DataFP8 {
		return float64(DecodeFP8(b))
	}
	return float64(int8(b))
}

// layerQuant is one layer quantized for one implementation: the weights'
// codes and scales, and the float32 parameters each implementation takes.
// With sIn, sOut and sZ the input's, output's and residual's scales and
// sw[m] the weights':
//
//   - cuDNN graph (GraphQuant Scale, PostScale):
//     y = post * relu(acc*scale + bias + z), scale = sIn*sw/sZ, bias = b/sZ,
//     post = sZ/sOut with a residual; scale = sIn*sw/sOut, bias = b/sOut and
//     no post-scale without;
//   - cuBLASLt INT8 (alpha vector, beta host): y = relu(alpha*acc + beta*z +
//     bias), alpha = sIn*sw/sOut, beta = sZ/sOut, bias = b/sOut;
//   - cuBLASLt FP8 (per-tensor scales, FP8 D): y = relu(sIn*sw*acc + b) / sOut
//     (the bias in half, the D scale 1/sOut).
type layerQuant struct {
	t                  GraphDataType
	w                  []byte    // codes, [m][kh][kw][c]
	sw                 []float32 // per output channel (all equal when per tensor)
	scale, bias, post  []float32 // cuDNN graph
	alpha, ltBias      []float32 // cuBLASLt INT8
	beta               float32   // cuBLASLt INT8 with the residual
	sIn, sOut, sZ, swT float32   // swT: the per-tensor weight scale (cuBLASLt FP8)
}

// quantizeLayer quantizes l's weights for t (per output channel, or per
// tensor when perTensor) and folds the scales as layerQuant says; sZ is 0
// without a residual.
func quantizeLayer(l blockLayer, t GraphDataType, sIn, sOut, sZ float64, perTensor bool) layerQuant {
	k := len(l.w) / l.m
	q := layerQuant{t: t, w: make([]byte, len(l.w)), sIn: float32(sIn), sOut: float32(sOut), sZ: float32(sZ)}
	amaxAll := 0.0
	amax := make([]float64, l.m)
	for o := range l.m {
		for _, v := range l.w[o*k : (o+1)*k] {
			amax[o] = max(amax[o], math.Abs(float64(v)))
		}
		amaxAll = max(amaxAll, amax[o])
	}
	for o := range l.m {
		a := amax[o]
		if perTensor {
			a = amaxAll
		}
		sw := max(a, 1e-12) / qmax(t)
		q.sw = append(q.sw, float32(sw))
		for i, v := range l.w[o*k : (o+1)*k] {
			q.w[o*k+i] = encode8(t, float64(v), sw)
		}
		b := float64(l.b[o])
		if sZ != 0 {
			q.scale = append(q.scale, float32(sIn*sw/sZ))
			q.bias = append(q.bias, float32(b/sZ))
			q.post = append(q.post, float32(sZ/sOut))
		} else {
			q.scale = append(q.scale, float32(sIn*sw/sOut))
			q.bias = append(q.bias, float32(b/sOut))
			q.post = append(q.post, 1)
		}
		q.alpha = append(q.alpha, float32(sIn*sw/sOut))
		q.ltBias = append(q.ltBias, float32(b/sOut))
	}
	q.swT = float32(max(amaxAll, 1e-12) / qmax(t))
	if sZ != 0 {
		q.beta = float32(sZ / sOut)
	}
	return q
}

// Implementations of a quantized layer, for the references.
const (
	implGraph  = "cudnn graph"
	implLtInt8 = "cublaslt int8"
	// implLtInt8Host: per-tensor weight scales, one host alpha (where
	// cuBLASLt refuses the alpha vector)
	implLtInt8Host = "cublaslt int8 host alpha"
	implLtFP8      = "cublaslt fp8"
	implFused16    = "cudnn fused"
	implLt16       = "cublaslt fp16"
)

// refOut returns the float64 value (in y's units: its code before
// rounding) that implementation impl computes from the accumulator acc
// (the sum of input codes times weight codes) of output channel m and the
// residual's code z, as layerQuant says.
func (q layerQuant) refOut(impl string, m int, acc, z float64, residual bool) float64 {
	switch impl {
	case implLtInt8, implLtInt8Host:
		v := float64(q.alpha[m])*acc + float64(q.ltBias[m])
		if residual {
			v += float64(q.beta) * z
		}
		return max(v, 0)
	case implLtFP8:
		// the bias is half; the residual is not part of this form
		b := float64(halfRound(q.bias[m] * q.sOut))
		if q.sZ != 0 {
			b = float64(halfRound(q.bias[m] * q.sZ))
		}
		v := float64(q.sIn)*float64(q.swT)*acc + b
		return max(v, 0) / float64(q.sOut)
	}
	v := acc*float64(q.scale[m]) + float64(q.bias[m])
	if residual {
		v += z
	}
	return max(v, 0) * float64(q.post[m])
}

// ltFP8Bias returns the real bias of the cuBLASLt FP8 form, rounded to half.
func (q layerQuant) ltFP8Bias() []float32 {
	b := make([]float32, len(q.bias))
	for m := range b {
		s := q.sOut
		if q.sZ != 0 {
			s = q.sZ
		}
		b[m] = halfRound(q.bias[m] * s)
	}
	return b
}

// halfRound rounds v to the nearest half.
func halfRound(v float32) float32 {
	return decode(f16bytes([]float32{v}), true)[0]
}

// close8 says whether an output code got matches the reference want (in
// code units) within one step of t: INT8 within 1 of the rounded and
// saturated reference, FP8 within its relative half step, half within
// 0.5% (plus tol, a small absolute term in the output's units).
func close8(t GraphDataType, got, want, tol float64) bool {
	switch t {
	case DataInt8:
		want = max(-128, min(127, math.Round(want)))
		return math.Abs(got-want) <= 1
	case DataFP8:
		want = max(-448, min(448, want))
		return math.Abs(got-want) <= 0.07*math.Abs(want)+0.02
	}
	return math.Abs(got-want) <= 0.005*math.Abs(want)+tol
}

// blockGraphOptions returns the cuDNN graph options of layer i of the
// block in 8-bit type t: scale, bias, ReLU; the last layer with the
// residual z (of t) and the post-scale; every output of type t.
func blockGraphOptions(i int, t GraphDataType, maxWS, maxCand, maxCompiled int) GraphConvOptions {
	o := GraphConvOptions{Bias: true, ReLU: true, MaxWorkspace: maxWS, MaxCandidates: maxCand, MaxRuntimeCompiled: maxCompiled,
		Quant: GraphQuant{In: t, Scale: true}}
	if i == 2 {
		o.Residual, o.Quant.PostScale = true, true
	}
	return o
}

// TestInt8BlockScalesFold checks, for each implementation, that the
// folded per-channel parameters of layerQuant compute the block's real
// values: decoding an implementation's output code (times the output's
// scale) gives relu(sum x w + b (+ z)) of the dequantized inputs, weights
// and residual, for random accumulators.
func TestInt8BlockScalesFold(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s := blockShape{n: 1, h: 4, c: 32, cm: 16}
	layers := newBlockLayers(r, s)
	for _, tt := range []struct {
		impl      string
		t         GraphDataType
		perTensor bool
	}{{implGraph, DataInt8, false}, {implGraph, DataFP8, false}, {implLtInt8, DataInt8, false}, {implLtFP8, DataFP8, true}} {
		for li, l := range layers {
			sIn, sOut, sZ := 0.03, 0.05, 0.0
			if l.residual {
				sZ = 0.02
			}
			q := quantizeLayer(l, tt.t, sIn, sOut, sZ, tt.perTensor)
			if tt.impl == implLtFP8 && l.residual {
				continue // the FP8 product's residual would be half
			}
			k := len(l.w) / l.m
			for m := range l.m {
				// a dot product of random input codes with the weight codes
				acc, real := 0.0, 0.0
				for i := range k {
					code := float64(r.IntN(61) - 30)
					acc += code * decode8(tt.t, q.w[m*k+i])
					real += code * sIn * decode8(tt.t, q.w[m*k+i]) * float64(q.sw[m])
				}
				z := float64(r.IntN(41) - 20)
				want := real + float64(l.b[m])
				if l.residual {
					want += z * sZ
				}
				want = max(want, 0)
				if tt.impl == implLtFP8 {
					want = max(real+float64(halfRound(l.b[m])), 0) // the bias rounded to half
				}
				got := q.refOut(tt.impl, m, acc, z, l.residual) * sOut
				if math.Abs(got-want) > 1e-5*(1+math.Abs(want)) {
					t.Fatalf("%s %s layer %d channel %d: folded parameters give %g, the real math %g", tt.impl, tt.t, li+1, m, got, want)
				}
			}
		}
	}
}

// TestInt8BlockGraphsTraceFake builds the block's three quantized cuDNN
// graphs on the fake cuDNN (INT8: scale, bias, ReLU; the last with the
// INT8 residual z and the post-scale; every y INT8) as
// TestInt8BlockBenchOnGPU does, executes each once and compares every
// backend call with testdata/int8block_graphs.trace (-update rewrites it):
// the 1x1, 3x3 (padding 1) and 1x1 shapes, INT8 (3) x, w, y and z, the
// INT32 (4) compute type, MUL/ADD/ADD/RELU/MUL in the last graph and the
// variant packs' uids. Then an FP8 block and a block whose residual is
// read in another type (GraphQuant.Z) build and execute on the fake.
func TestInt8BlockGraphsTraceFake(t *testing.T) {
	d, h, live := openFakeCUDNN(t)
	s := blockShape{n: 2, h: 4, c: 32, cm: 16}
	layers := newBlockLayers(rand.New(rand.NewPCG(1, 2)), s)
	trace := filepath.Join(t.TempDir(), "trace")
	t.Setenv("KILN_FAKE_CUDNN_TRACE", trace)
	before := live()
	for i, l := range layers {
		o := blockGraphOptions(i, DataInt8, 1<<20, 1, 0)
		o.Heuristics = []HeurMode{HeurA}
		c, err := d.NewGraphConv(h, l.params(s), s.h, s.h, o)
		if err != nil {
			t.Fatalf("layer %d: %v", i+1, err)
		}
		z := DevicePtr(0)
		if l.residual {
			z = 0x5000
		}
		if err := c.ExecuteQuant(h, 0x1000, 0x2000, 0x3000, 0x4000, z, 0x6000, 0x7000, 0x8000); err != nil {
			t.Fatalf("layer %d: %v", i+1, err)
		}
		c.Destroy()
	}
	got, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	compareGolden(t, got, filepath.Join("testdata", "int8block_graphs.trace"))
	os.Unsetenv("KILN_FAKE_CUDNN_TRACE")
	for _, tt := range []struct {
		name string
		t    GraphDataType
		z    GraphDataType
		out  GraphDataType
	}{{"fp8", DataFP8, DataDefault, DataDefault}, {"int8, z fp8", DataInt8, DataFP8, DataDefault},
		{"int8 -> half, z int8", DataInt8, DataInt8, DataHalf}, {"int8, z half", DataInt8, DataHalf, DataDefault}} {
		o := blockGraphOptions(2, tt.t, 1<<20, 0, 0)
		o.Quant.Z, o.Quant.Out = tt.z, tt.out
		c, err := d.NewGraphConv(h, layers[2].params(s), s.h, s.h, o)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if err := c.ExecuteQuant(h, 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000, 0x8000); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		c.Destroy()
	}
	if n := live(); n != before {
		t.Errorf("%d backend descriptors alive after Destroy, %d before", n, before)
	}
}

// TestInt8BlockZTypeErrors checks that a residual type that is not a
// data type, or one given to an unquantized graph, is refused.
func TestInt8BlockZTypeErrors(t *testing.T) {
	p := blockLayer{c: 32, m: 16, kh: 1}.params(blockShape{n: 1, h: 4, c: 32, cm: 16})
	for _, tt := range []struct {
		q    GraphQuant
		want string
	}{
		{GraphQuant{In: DataInt8, Z: 9}, "residual type data type 9"},
		{GraphQuant{Z: DataInt8}, "need a quantized input type"},
	} {
		if err := tt.q.check(p); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("check(%+v) = %v, want an error naming %q", tt.q, err, tt.want)
		}
	}
}

// TestInt8BlockHostSimulation runs TestInt8BlockBenchOnGPU's host side on
// a small block without a GPU: each implementation's block computed on the
// host from its own references (rounded to its type, as the GPU would),
// then the bench's one-step check finds no mismatch and the output's cosine
// against the FP32 block is near 1 (which a wrong weight layout, scale or
// residual in the references would break); an output off by two steps is
// caught.
func TestInt8BlockHostSimulation(t *testing.T) {
	s := blockShape{n: 2, h: 6, c: 64, cm: 16}
	hb := newBlockHost(s, 5)
	for _, v := range []blockVariant{
		{"fp16", DataHalf, [3]string{}},
		{"int8 graphs", DataInt8, [3]string{implGraph, implGraph, implGraph}},
		{"int8 cublaslt", DataInt8, [3]string{implLtInt8, implGraph, implLtInt8}},
		{"int8 cublaslt host alpha", DataInt8, [3]string{implLtInt8Host, implGraph, implLtInt8Host}},
		{"fp8 graphs", DataFP8, [3]string{implGraph, implGraph, implGraph}},
		{"fp8 cublaslt", DataFP8, [3]string{implLtFP8, implGraph, implGraph}},
	} {
		t.Run(v.name, func(t *testing.T) {
			sc := hb.scales(v.t)
			host := [4][]byte{hb.encodeX(v.t, sc[0])}
			pixels := s.n * s.h * s.h
			for i, l := range hb.layers {
				q := hb.quant(i, v, sc)
				w := q.w
				if v.t == DataHalf {
					w = f16bytes(l.w)
				}
				out := make([]byte, pixels*l.m*v.t.Size())
				for pix := range pixels {
					for m := range l.m {
						r := hb.ref(i, v, q, v.impl[i], host, w, pix, m)
						switch v.t {
						case DataHalf:
							copy(out[2*(pix*l.m+m):], f16bytes([]float32{float32(r)}))
						case DataFP8:
							out[pix*l.m+m] = EncodeFP8(float32(r))
						default:
							out[pix*l.m+m] = byte(QuantizeInt8(float32(r), 1))
						}
					}
				}
				host[i+1] = out
				if bad, msgs := hb.check(i, v, q, v.impl[i], host, w); bad > 0 {
					t.Fatalf("layer %d: %d mismatches: %v", i+1, bad, msgs)
				}
				if v.t == DataInt8 && i == 0 {
					// an output two steps off is a mismatch
					at := hb.checkAt[0][0]
					wrong := slices.Clone(out)
					wrong[at[0]*l.m+at[1]] += 2
					host[1] = wrong
					if bad, _ := hb.check(0, v, q, v.impl[0], host, w); bad == 0 {
						t.Error("an output two steps off passed the check")
					}
					host[1] = out
				}
			}
			cos := hb.cosine(host[3], v.t, sc[3])
			t.Logf("cosine against the FP32 block %.6f", cos)
			if cos < 0.995 {
				t.Errorf("cosine %.6f against the FP32 block", cos)
			}
		})
	}
}
