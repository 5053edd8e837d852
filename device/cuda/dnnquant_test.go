package cuda

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// quantTestConv is a small NHWC convolution for quantized graphs, 3x3
// with padding 1 and stride 2.
var quantTestConv = ConvParams{N: 2, C: 16, H: 8, W: 8, M: 32, KH: 3, KW: 3, PadH: 1, PadW: 1, StrideH: 2, StrideW: 2,
	DilH: 1, DilW: 1, Group: 1, NHWC: true}

// TestQuantGraphConvFake builds quantized graph convolutions (INT8 and
// FP8 inputs, every epilogue) on the fake cuDNN, which checks each
// attribute's owner and type, the convolution's compute type against the
// inputs' (INT32 for INT8, FLOAT otherwise), pointwise broadcasting and
// that the variant pack holds exactly the graph's non-virtual tensors: each
// candidate executes through ExecuteQuant, is rebuilt from its ID, a
// missing pointer is named, and Destroy frees every descriptor.
func TestQuantGraphConvFake(t *testing.T) {
	d, h, live := openFakeCUDNN(t)
	const x, w, scale, bias, z, post, y, ws = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000, 0x8000
	for _, tt := range []struct {
		name    string
		o       GraphConvOptions
		missing string // the error of ExecuteQuant without the post-scale and scale pointers
	}{
		{"int8 scale", GraphConvOptions{Quant: GraphQuant{In: DataInt8, Scale: true}}, "scale"},
		{"int8 scale bias relu", GraphConvOptions{Bias: true, ReLU: true, Quant: GraphQuant{In: DataInt8, Scale: true}}, "scale"},
		{"int8 every epilogue", GraphConvOptions{Bias: true, Residual: true, ReLU: true, Quant: GraphQuant{In: DataInt8, Scale: true, PostScale: true}}, "scale, post-scale"},
		{"int8 -> half", GraphConvOptions{Bias: true, ReLU: true, Quant: GraphQuant{In: DataInt8, Out: DataHalf, Scale: true}}, "scale"},
		{"fp8 every epilogue", GraphConvOptions{Bias: true, Residual: true, ReLU: true, Quant: GraphQuant{In: DataFP8, Scale: true, PostScale: true}}, "scale, post-scale"},
		{"fp8 post-scale only", GraphConvOptions{Quant: GraphQuant{In: DataFP8, Out: DataFloat, PostScale: true}}, "post-scale"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := live()
			o := tt.o
			o.MaxWorkspace = 1 << 20
			c, err := d.NewGraphConv(h, quantTestConv, 4, 4, o)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Candidates) == 0 {
				t.Fatal("no candidates")
			}
			for _, e := range c.Candidates {
				if err := c.Use(e.ID); err != nil {
					t.Fatal(err)
				}
				for range 2 {
					if err := c.ExecuteQuant(h, x, w, scale, bias, z, post, y, ws); err != nil {
						t.Fatalf("%s: %v", e.ID, err)
					}
				}
				r, err := d.NewGraphConvFromID(h, quantTestConv, 4, 4, o, e.ID)
				if err != nil {
					t.Fatalf("rebuilding %s: %v", e.ID, err)
				}
				if err := r.ExecuteQuant(h, x, w, scale, bias, z, post, y, ws); err != nil {
					t.Errorf("rebuilt %s: %v", e.ID, err)
				}
				r.Destroy()
			}
			err = c.ExecuteQuant(h, x, w, 0, bias, z, 0, y, ws)
			if err == nil || !strings.Contains(err.Error(), "no device pointer for "+tt.missing) {
				t.Errorf("ExecuteQuant without scales: %v, want one naming %q", err, tt.missing)
			}
			if !strings.Contains(c.describeGraph(), tt.o.Quant.In.String()+" -> "+tt.o.Quant.out().String()) {
				t.Errorf("description %q does not name the data types", c.describeGraph())
			}
			c.Destroy()
			if n := live(); n != before {
				t.Errorf("%d backend descriptors alive after Destroy, %d before", n, before)
			}
		})
	}
}

// TestQuantGraphConvTraceFake records every backend call of an INT8
// convolution with every epilogue (heuristics mode A), one ExecuteQuant
// and Destroy, and compares them with testdata/graphconv_int8.trace (-update
// rewrites it): data types INT8 (3) for x, w, y and z, FLOAT for the
// scales, the bias and the virtual tensors, the INT32 (4) compute type,
// the MUL (1) and ADD (0) and RELU (100) pointwise modes, in order, and the
// variant pack's seven uids.
func TestQuantGraphConvTraceFake(t *testing.T) {
	d, h, _ := openFakeCUDNN(t)
	trace := filepath.Join(t.TempDir(), "trace")
	t.Setenv("KILN_FAKE_CUDNN_TRACE", trace)
	c, err := d.NewGraphConv(h, quantTestConv, 4, 4, GraphConvOptions{Bias: true, Residual: true, ReLU: true, MaxWorkspace: 1 << 20,
		Heuristics: []HeurMode{HeurA}, Quant: GraphQuant{In: DataInt8, Scale: true, PostScale: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ExecuteQuant(h, 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000, 0x8000); err != nil {
		t.Fatal(err)
	}
	c.Destroy()
	got, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	compareGolden(t, got, filepath.Join("testdata", "graphconv_int8.trace"))
}

// compareGolden compares got with the golden file (rewritten with
// -update) and reports the first line that differs.
func compareGolden(t *testing.T, got []byte, golden string) {
	t.Helper()
	if *updateGolden {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gl), len(wl)) {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("trace differs from %s at line %d:\n got: %s\nwant: %s", golden, i+1, g, w)
		}
	}
}

// TestQuantGraphConvErrorsFake checks that quantized graphs that cuDNN
// cannot run are refused before any descriptor is made, with a message
// that says why.
func TestQuantGraphConvErrorsFake(t *testing.T) {
	d, h, live := openFakeCUDNN(t)
	before := live()
	with := func(f func(*ConvParams)) ConvParams { p := quantTestConv; f(&p); return p }
	for _, tt := range []struct {
		name string
		p    ConvParams
		q    GraphQuant
		want string
	}{
		{"nchw", with(func(p *ConvParams) { p.NHWC = false }), GraphQuant{In: DataInt8}, "NHWC only"},
		{"channels", with(func(p *ConvParams) { p.C = 3 }), GraphQuant{In: DataInt8}, "C 3 and M 32 must be multiples of 4"},
		{"groups", with(func(p *ConvParams) { p.Group = 2 }), GraphQuant{In: DataInt8}, "2 groups, one only"},
		{"half input", quantTestConv, GraphQuant{In: DataHalf}, "input type half, want int8 or fp8"},
		{"bad output", quantTestConv, GraphQuant{In: DataInt8, Out: 9}, "output type data type 9"},
		{"scale without quantization", quantTestConv, GraphQuant{Scale: true}, "need a quantized input type"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.NewGraphConv(h, tt.p, 4, 4, GraphConvOptions{Quant: tt.q, MaxWorkspace: 1 << 20})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if n := live(); n != before {
		t.Errorf("%d backend descriptors alive, %d before", n, before)
	}
}

// TestFP8 checks the FP8 E4M3 conversions: every finite byte decodes and
// encodes back to itself, values between two neighbours round to the
// nearer (ties to the even mantissa), and out-of-range values saturate.
func TestFP8(t *testing.T) {
	for b := range 256 {
		v := DecodeFP8(byte(b))
		if b&0x7f == 0x7f {
			if v == v {
				t.Errorf("byte %#x decodes to %g, want NaN", b, v)
			}
			continue
		}
		if got := EncodeFP8(v); got != byte(b) && !(v == 0 && got&0x7f == 0) {
			t.Errorf("byte %#x -> %g -> %#x", b, v, got)
		}
	}
	for _, tt := range []struct {
		v    float32
		want byte
	}{
		{1, 0x38}, {448, 0x7e}, {1000, 0x7e}, {-1000, 0xfe}, {float32(math.Inf(1)), 0x7e},
		{1.0625, 0x38},    // halfway between 1 and 1.125: the even mantissa (1)
		{1.1875, 0x3a},    // halfway between 1.125 and 1.25: 1.25
		{1.07, 0x39},      // nearer 1.125
		{0.001953125, 1},  // the smallest subnormal, 2^-9
		{0.0009765625, 0}, // half of it: ties to even (0)
		{float32(math.NaN()), 0x7f},
	} {
		if got := EncodeFP8(tt.v); got != tt.want {
			t.Errorf("EncodeFP8(%g) = %#x, want %#x", tt.v, got, tt.want)
		}
	}
	for _, tt := range []struct {
		v, scale float32
		want     int8
	}{{1, 0.1, 10}, {-1, 0.1, -10}, {0.26, 0.1, 3}, {100, 0.1, 127}, {-100, 0.1, -127}, {0.05, 0.1, 1}} {
		if got := QuantizeInt8(tt.v, tt.scale); got != tt.want {
			t.Errorf("QuantizeInt8(%g, %g) = %d, want %d", tt.v, tt.scale, got, tt.want)
		}
	}
	if got := QuantChannels(3); got != 16 {
		t.Errorf("QuantChannels(3) = %d", got)
	}
}
