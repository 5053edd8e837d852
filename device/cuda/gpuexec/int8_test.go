package gpuexec

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
)

// int8Scales gives every convolution of g an input scale (0.05), as the
// builder's INT8 rule would give the ones it quantizes.
func int8Scales(g *ir.Graph) map[string]float32 {
	s := map[string]float32{}
	for _, n := range g.Nodes {
		if n.OpType == "FusedConv" || n.OpType == "Conv" {
			s[n.Name] = 0.05
		}
	}
	return s
}

// TestInt8Fake runs INT8 engines of resnet_mini against the fake
// libraries (whose cuDNN checks every descriptor, the INT32 compute type of
// INT8 inputs and the variant pack of each graph; nothing is computed):
// untuned, every quantized convolution larger than 1x1 runs the INT8
// graph's first engine after quantize_nhwc_i8, reported as int8; tuned with a timing cache that
// makes one layer's INT8 engine fastest, that layer alone runs in INT8 and
// its tactic says so; the tactics applied to a new engine rebuild it from
// the engine's ID without timing.
func TestInt8Fake(t *testing.T) {
	dir := fakeLibs(t)
	t.Setenv(EnvInt8Chain, "0") // the engine without the chains (the fake GPU is compute 9.0: on by default)
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 2, 1)
	g := optimizedGraph(t, path, in)
	scales := int8Scales(g)
	if len(scales) < 3 {
		t.Fatalf("resnet_mini has %d convolutions", len(scales))
	}
	e, c := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
	n8, want8 := 0, 0
	for i, l := range e.Layers() {
		cc := e.prog.steps[i].conv
		if _, ok := scales[l.Node]; !ok || cc.kh*cc.kw == 1 { // untuned, 1x1 layers stay fp16
			if l.Precision == "int8" {
				t.Errorf("%s (not quantized, or 1x1) runs in int8", l.Node)
			}
			continue
		}
		want8++
		if l.Precision != "int8" || l.Impl != "cudnn nhwc int8 graph (eng0_k2=1_k14=3)" ||
			!strings.HasPrefix(l.Tactic, "quantize_nhwc_i8 + cudnn nhwc int8 graph ") || l.Workspace < 4096 {
			t.Errorf("%s: precision %q, impl %q, tactic %q, workspace %d", l.Node, l.Precision, l.Impl, l.Tactic, l.Workspace)
			continue
		}
		n8++
	}
	if n8 != want8 || n8 == 0 {
		t.Errorf("%d of %d quantized convolutions larger than 1x1 run in INT8", n8, want8)
	}
	for run := range 3 { // eager, then captured and replayed
		if _, err := c.Run(context.Background(), in); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	}

	// Tuned: the timing cache makes the first convolution's INT8 engine
	// and the second one's FP8 engine fastest; the others tie with FP16,
	// which a tie keeps.
	fp := device.Fingerprint{"gpu": "fake"}
	cachePath := filepath.Join(t.TempDir(), "timing.json")
	cache, err := tactic.Open(cachePath)
	if err != nil {
		t.Fatal(err)
	}
	bySig := map[string]string{} // signature -> Quant (layers of one signature share their times)
	for i, s := range e.prog.steps {
		q := e.int8.use[i]
		if q == nil {
			continue
		}
		if sig := convSig(s, true); len(bySig) < 2 && bySig[sig] == "" {
			kind := []string{"int8", "fp8"}[len(bySig)]
			bySig[sig] = kind
			cache.Store(fp, sig, Tactic{Impl: ImplCUDNN, Graph: q.g.Engine().ID, Quant: kind}.name(), time.Microsecond)
		}
	}
	want := map[string]string{} // node -> Quant
	n8 = 0
	for i, s := range e.prog.steps {
		if e.int8.use[i] != nil && bySig[convSig(s, true)] != "" {
			want[s.node.Name] = bySig[convSig(s, true)]
			n8++
		}
	}
	et, ct := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tune: true, TimingCache: cache, CacheDevice: fp})
	picked := et.Tactics()
	for name, tt := range picked {
		if tt.Quant != want[name] {
			t.Errorf("%s: tactic %+v, want quantized %q", name, tt, want[name])
		}
		if tt.Quant != "" && (tt.Graph != "eng0_k2=1_k14=3" || tt.NS != 1000) {
			t.Errorf("%s: tactic %+v, want the engine eng0_k2=1_k14=3 at 1 us", name, tt)
		}
	}
	if len(et.int8.use) != n8 || len(et.int8.spare) != 0 {
		t.Errorf("after tuning %d steps quantized, %d spare plans", len(et.int8.use), len(et.int8.spare))
	}
	for _, l := range et.Layers() {
		if k := want[l.Node]; k != "" && (l.Precision != k || !strings.HasPrefix(l.Tactic, quantKernels[k]+" + cudnn nhwc "+k+" graph scale+")) {
			t.Errorf("%s: precision %q, tactic %q", l.Node, l.Precision, l.Tactic)
		}
	}
	if _, err := ct.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	// the GPU test's table of what tuning measured: 1 us for the layers
	// made quantized, 1.5 ms (the fake's every timing) for the rest
	if err := cache.Save(); err != nil {
		t.Fatal(err)
	}
	table := tuningTable(t, cachePath, et)
	if !strings.Contains(table, "| 1500.0 | 1.0 | 1500.0 |") || !strings.Contains(table, "| 1500.0 | 1500.0 | 1.0 |") ||
		!strings.Contains(table, "sum over the convolutions as timed alone: fp16 ") {
		t.Errorf("tuning table:\n%s", table)
	}

	// The tactics applied without timing: the INT8 layer rebuilt from its ID.
	ea, ca := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tactics: picked})
	if ea.Measured() != 0 || !reflect.DeepEqual(ea.Tactics(), picked) || len(ea.int8.use) != n8 {
		t.Fatalf("applied: measured %d, %d steps in INT8, tactics equal %v", ea.Measured(), len(ea.int8.use), reflect.DeepEqual(ea.Tactics(), picked))
	}
	if _, err := ca.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}

	// KILN_CUDA_INT8_CHAIN=1: a quantized layer read only by another one
	// writes 8 bits, which that one reads without quantizing.
	t.Run("chain", func(t *testing.T) {
		t.Setenv(EnvInt8Chain, "1")
		ec, cc := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
		outs, ins := 0, 0
		for i, l := range ec.Layers() {
			q := ec.int8.use[i]
			if q == nil {
				continue
			}
			if q.out8 {
				outs++
				if !strings.HasSuffix(l.Tactic, ", output in 8 bits") {
					t.Errorf("%s: tactic %q", l.Node, l.Tactic)
				}
				j, ok := ec.soleReader(i, ec.prog.steps[i].conv.y)
				if !ok || ec.int8.use[j] == nil || !ec.int8.use[j].in8 {
					t.Errorf("%s writes 8 bits, its reader (step %d, %v) does not read them", l.Node, j, ok)
				}
			}
			if q.in8 {
				ins++
				if strings.HasPrefix(l.Tactic, "quantize_nhwc") || l.Workspace != int64(q.g.Engine().Workspace) {
					t.Errorf("%s reads 8 bits: tactic %q, workspace %d", l.Node, l.Tactic, l.Workspace)
				}
			}
		}
		if outs == 0 || outs != ins {
			t.Errorf("%d layers write 8 bits, %d read them", outs, ins)
		}
		t.Logf("%d of %d quantized layers chained", outs, len(ec.int8.use))
		for range 3 {
			if _, err := cc.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
		}
	})

	// Without scales, or in float32, nothing runs in INT8.
	for _, o := range []Options{{LibDir: dir, FP16: true}, {LibDir: dir, Int8: scales}} {
		e, _ := fakeEngine(t, dir, g, o)
		if len(e.int8.use) != 0 {
			t.Errorf("%+v: %d steps in INT8", o, len(e.int8.use))
		}
	}
}

// TestQuantizeWeights checks the per-output-channel weight quantization:
// scale max|w|/127 (1 for a zero channel), round to nearest even,
// saturation, the [M, KH, KW, CP] layout with zero padding.
func TestQuantizeWeights(t *testing.T) {
	// M 2, C 3, KH 1, KW 2: w[m][c][0][x]
	w := []float32{
		1.27, -0.635, 0.005, 0, 0.01, -1.27, // channel 0: max 1.27, scale 0.01
		0, 0, 0, 0, 0, 0, // channel 1: zeros, scale 1
	}
	q, s := quantizeWeights(w, 2, 3, 1, 2, 4)
	if !reflect.DeepEqual(s, []float32{0.01, 1}) {
		t.Errorf("scales %v", s)
	}
	// [m][y][x][c]: x 0 reads w[c][0][0], x 1 reads w[c][0][1]
	want := []int8{127, 0, 1, 0, -64, 0, -127, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	// channel 0: c0 (1.27, -0.635) c1 (0.005, 0) c2 (0.01, -1.27)
	// x0: 127, round(0.5)=0 (even), 1, pad; x1: round(-63.5)=-64, 0, -127, pad
	for i, v := range want {
		if int8(q[i]) != v {
			t.Fatalf("quantized %v, want %v", bytesInt8(q), want)
		}
	}
}

// TestQuantizeWeightsFP8 checks the FP8 weights: scale max|w|/448, the
// largest weight 448 (0x7e), the others the nearest E4M3 values.
func TestQuantizeWeightsFP8(t *testing.T) {
	w := []float32{4.48, -2.24, 0.01, 0} // M 1, C 4, 1x1: scale 0.01
	q, s := quantizeWeightsFP8(w, 1, 4, 1, 1, 4)
	if len(s) != 1 || math.Abs(float64(s[0])-0.01) > 1e-9 {
		t.Fatalf("scales %v", s)
	}
	want := []byte{0x7e, 0xf6, 0x38, 0} // 448, -224, 1, 0
	if !reflect.DeepEqual(q, want) {
		t.Errorf("quantized % x, want % x", q, want)
	}
}

// f2e4m3 is kernels/op_quant.cu's FP8 conversion, line for line: it must
// agree with cuda.EncodeFP8 (which searches the 127 values).
func f2e4m3(f float32) byte {
	sign := byte(math.Float32bits(f)>>24) & 0x80
	a := float32(math.Abs(float64(f)))
	if a != a {
		return 0x7f
	}
	if a >= 448 {
		return sign | 0x7e
	}
	if a < 0.015625 {
		return sign | byte(math.RoundToEven(float64(a*512)))
	}
	u := math.Float32bits(a)
	e := (u>>23)&0xff - 120
	m, rest := (u>>20)&7, u&0xfffff
	if rest > 0x80000 || rest == 0x80000 && m&1 == 1 {
		if m++; m == 8 {
			m = 0
			e++
		}
	}
	return sign | byte(min(e<<3|m, 0x7e))
}

func TestFP8KernelConversion(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vals := []float32{0, 1, -1, 448, 449, 480, 1e9, 0.015625, 0.0152, 0.001953125, 0.0009765625, 1.0625, 1.1875, 240, 232}
	for range 200000 {
		vals = append(vals, float32(r.NormFloat64()*math.Pow(2, r.Float64()*24-14)))
	}
	for _, v := range vals {
		if got, want := f2e4m3(v), cuda.EncodeFP8(v); got != want {
			t.Fatalf("f2e4m3(%g) = %#x, EncodeFP8 = %#x", v, got, want)
		}
	}
}

func bytesInt8(b []byte) []int8 {
	out := make([]int8, len(b))
	for i, v := range b {
		out[i] = int8(v)
	}
	return out
}

// TestInt8Options checks how a compilation finds its INT8 scales: from
// the builder, stored as the plan section; from a plan's section; errors
// for a missing or malformed section and for a bad scale.
func TestInt8Options(t *testing.T) {
	scales, blob, chain, err := int8Options(device.ExecOptions{Precision: "int8", Int8Scales: map[string]float32{"b": 0.5, "a": 0.25}})
	if err != nil || len(scales) != 2 || chain != nil || string(blob) != `{"format":"kiln-cuda-int8-v1","scales":{"a":0.25,"b":0.5}}` {
		t.Fatalf("from the builder: %v %s %v %v", scales, blob, chain, err)
	}
	// a plan's section: without the chains' record (an older plan) the
	// engine runs without them; with it, as recorded
	for _, tt := range []struct {
		section, want string
		chain         bool
	}{
		{string(blob), `{"format":"kiln-cuda-int8-v1","scales":{"a":0.25,"b":0.5},"chain":false}`, false},
		{string(int8Section(scales, new(bool))), `{"format":"kiln-cuda-int8-v1","scales":{"a":0.25,"b":0.5},"chain":false}`, false},
		{`{"format":"kiln-cuda-int8-v1","scales":{"a":0.25,"b":0.5},"chain":true}`, `{"format":"kiln-cuda-int8-v1","scales":{"a":0.25,"b":0.5},"chain":true}`, true},
	} {
		back, blob2, chain, err := int8Options(device.ExecOptions{Precision: "int8", Blobs: map[string][]byte{int8Blob: []byte(tt.section)}})
		if err != nil || !reflect.DeepEqual(back, scales) || string(blob2) != tt.want || chain == nil || *chain != tt.chain {
			t.Errorf("from the plan %s: %v %s %v %v", tt.section, back, blob2, chain, err)
		}
	}
	if s, b, c, err := int8Options(device.ExecOptions{Precision: "fp16"}); s != nil || b != nil || c != nil || err != nil {
		t.Errorf("fp16: %v %s %v %v", s, b, c, err)
	}
	for _, tt := range []struct {
		name string
		o    device.ExecOptions
		want string
	}{
		{"no scales", device.ExecOptions{Precision: "int8", Blobs: map[string][]byte{}}, "needs the input scales"},
		{"bad section", device.ExecOptions{Precision: "int8", Blobs: map[string][]byte{int8Blob: []byte(`{"format":"x"}`)}}, "is not kiln-cuda-int8-v1"},
		{"zero scale", device.ExecOptions{Precision: "int8", Int8Scales: map[string]float32{"c": 0}}, `scale 0 for layer "c"`},
		{"NaN scale", device.ExecOptions{Precision: "int8", Int8Scales: map[string]float32{"c": float32(math.NaN())}}, "scale NaN"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := int8Options(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrGraph) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
