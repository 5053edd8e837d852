package gpuexec

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
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
// untuned, every quantized convolution runs the INT8 graph's first engine
// after quantize_nhwc_i8, reported as int8; tuned with a timing cache that
// makes one layer's INT8 engine fastest, that layer alone runs in INT8 and
// its tactic says so; the tactics applied to a new engine rebuild it from
// the engine's ID without timing.
func TestInt8Fake(t *testing.T) {
	dir := fakeLibs(t)
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 2, 1)
	g := optimizedGraph(t, path, in)
	scales := int8Scales(g)
	if len(scales) < 3 {
		t.Fatalf("resnet_mini has %d convolutions", len(scales))
	}
	e, c := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
	n8 := 0
	for _, l := range e.Layers() {
		if _, ok := scales[l.Node]; !ok {
			if l.Precision == "int8" {
				t.Errorf("%s (not quantized) runs in int8", l.Node)
			}
			continue
		}
		if l.Precision != "int8" || l.Impl != "cudnn nhwc int8 graph (eng0_k2=1_k14=3)" ||
			!strings.HasPrefix(l.Tactic, "quantize_nhwc_i8 + cudnn nhwc int8 graph ") || l.Workspace < 4096 {
			t.Errorf("%s: precision %q, impl %q, tactic %q, workspace %d", l.Node, l.Precision, l.Impl, l.Tactic, l.Workspace)
			continue
		}
		n8++
	}
	if n8 != len(scales) {
		t.Errorf("%d of %d quantized convolutions run in INT8", n8, len(scales))
	}
	for run := range 3 { // eager, then captured and replayed
		if _, err := c.Run(context.Background(), in); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	}

	// Tuned: the timing cache makes the first convolution's INT8 engine
	// fastest; the others tie with FP16, which a tie keeps.
	fp := device.Fingerprint{"gpu": "fake"}
	cache := tactic.New()
	var first string
	for i, s := range e.prog.steps {
		if q := e.int8.use[i]; q != nil {
			first = s.node.Name
			cache.Store(fp, convSig(s, true), Tactic{Impl: ImplCUDNN, Graph: q.g.Engine().ID, Quant: "int8"}.name(), time.Microsecond)
			break
		}
	}
	et, ct := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tune: true, TimingCache: cache, CacheDevice: fp})
	picked := et.Tactics()
	for name, tt := range picked {
		if (name == first) != (tt.Quant == "int8") {
			t.Errorf("%s: tactic %+v", name, tt)
		}
	}
	if tt := picked[first]; tt.Graph != "eng0_k2=1_k14=3" || tt.NS != 1000 {
		t.Errorf("%s: tactic %+v, want the INT8 engine eng0_k2=1_k14=3 at 1 us", first, tt)
	}
	if len(et.int8.use) != 1 || len(et.int8.spare) != 0 {
		t.Errorf("after tuning %d steps in INT8, %d spare plans", len(et.int8.use), len(et.int8.spare))
	}
	if _, err := ct.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}

	// The tactics applied without timing: the INT8 layer rebuilt from its ID.
	ea, ca := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tactics: picked})
	if ea.Measured() != 0 || !reflect.DeepEqual(ea.Tactics(), picked) || len(ea.int8.use) != 1 {
		t.Fatalf("applied: measured %d, %d steps in INT8, tactics equal %v", ea.Measured(), len(ea.int8.use), reflect.DeepEqual(ea.Tactics(), picked))
	}
	if _, err := ca.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}

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
	scales, blob, err := int8Options(device.ExecOptions{Precision: "int8", Int8Scales: map[string]float32{"b": 0.5, "a": 0.25}})
	if err != nil || len(scales) != 2 || string(blob) != `{"format":"kiln-cuda-int8-v1","scales":{"a":0.25,"b":0.5}}` {
		t.Fatalf("from the builder: %v %s %v", scales, blob, err)
	}
	back, blob2, err := int8Options(device.ExecOptions{Precision: "int8", Blobs: map[string][]byte{int8Blob: blob}})
	if err != nil || !reflect.DeepEqual(back, scales) || string(blob2) != string(blob) {
		t.Fatalf("from the plan: %v %s %v", back, blob2, err)
	}
	if s, b, err := int8Options(device.ExecOptions{Precision: "fp16"}); s != nil || b != nil || err != nil {
		t.Errorf("fp16: %v %s %v", s, b, err)
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
			_, _, err := int8Options(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrGraph) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
