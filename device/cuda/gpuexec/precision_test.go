package gpuexec

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/quant"
	"github.com/kilnai/kiln/tensor"
)

// programDigest describes everything a program runs and where: each
// step's node, launches (kernels, shapes, arguments), library call and
// precision, the constants' bytes, the arena's buffers and offsets, and
// the inputs and outputs. Two programs with the same digest launch the
// same work on the same memory.
func programDigest(p *program) string {
	var b strings.Builder
	for _, s := range p.steps {
		fmt.Fprintf(&b, "step %q %s half=%v inPlace=%q\n", s.node.Name, s.node.OpType, s.half, s.inPlace)
		for _, l := range s.launches {
			fmt.Fprintf(&b, "  %+v\n", l)
		}
		if cc := s.conv; cc != nil {
			c := *cc
			c.z = nil
			fmt.Fprintf(&b, "  conv %+v z=%v\n", c, derefRef(cc.z))
		}
		if gc := s.gemm; gc != nil {
			g := *gc
			g.bias, g.resid = nil, nil
			fmt.Fprintf(&b, "  gemm %+v bias=%v resid=%v\n", g, derefRef(gc.bias), derefRef(gc.resid))
		}
	}
	fmt.Fprintf(&b, "weights %x\n", sha256.Sum256(p.weights))
	fmt.Fprintf(&b, "stores %v\noffsets %v arena %d mma %v half %v\n", p.stores, p.offsets, p.arena, p.mma, p.half)
	for _, io := range append(append([]ioSpec{}, p.inputs...), p.outputs...) {
		fmt.Fprintf(&b, "io %s %v %v %d %+v const=%v rows=%v\n", io.name, io.dtype, io.shape, io.bytes, io.ref, io.konst != nil, derefRef(io.rows))
	}
	return b.String()
}

func derefRef(r *ref) string {
	if r == nil {
		return "nil"
	}
	return fmt.Sprintf("%+v", *r)
}

// TestPrecisionWholeFP16Unchanged: a whole-FP16 decision (every layer
// "fp16", or the precision stage's decision when it keeps none in FP32)
// compiles to the very program FP16 compiled to before per-layer
// precision, step for step, for each reference model (the speed of FP16
// plans without a forced layer cannot change). The models' own decisions
// are logged: a layer the rule keeps in FP32 (none in these models) would
// make the program differ.
func TestPrecisionWholeFP16Unchanged(t *testing.T) {
	for _, name := range []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "bert_mini", "yolo_tiny"} {
		t.Run(name, func(t *testing.T) {
			path := modelPath(t, name)
			g := optimizedGraph(t, path, testInputs(t, name))
			base, err := compileLayout(g, false, true, true, false)
			if err != nil {
				t.Fatal(err)
			}
			want := programDigest(base)
			rep, err := quant.FP16Decide(g, quant.FP16Options{})
			if err != nil {
				t.Fatal(err)
			}
			if n := rep.Count(quant.FP16PrecisionSingle); n > 0 {
				t.Errorf("the precision stage keeps %d layers of %s in fp32:\n%s", n, name, rep)
			}
			whole := map[string]string{}
			for _, n := range g.Nodes {
				whole[n.Name] = "fp16"
			}
			for _, tc := range []struct {
				name   string
				layers map[string]string
			}{
				{"no decision", nil},
				{"every layer fp16", whole},
				{"the precision stage's decision", rep.LayerPrecision()},
				{"fp32 for a layer the graph lacks", map[string]string{"no such layer": "fp32"}},
			} {
				p, err := compilePrecision(g, false, true, true, false, tc.layers)
				if err != nil {
					t.Fatal(err)
				}
				if got := programDigest(p); got != want {
					t.Errorf("%s: the program differs from FP16's (%d steps, want %d)", tc.name, len(p.steps), len(base.steps))
				}
			}
			t.Logf("%d steps, digest %x", len(base.steps), sha256.Sum256([]byte(want)))
		})
	}
}

// mixedGraph is x [2,8] -> a = Relu(x) -> b = Sigmoid(a) -> c = Add(b, w)
// (output c), and d = Mul(x, w) (output d), w a constant [8]: with b and
// d kept in FP32, b reads a half value and feeds a half one, d reads the
// graph input and the constant both layers share, and writes an output.
func mixedGraph(t *testing.T) *ir.Graph {
	t.Helper()
	b := ir.NewBuilder("mixed", 17)
	x := b.Input("x", tensor.Float32, ir.D(2), ir.D(8))
	w := tensor.New(tensor.Float32, 8)
	for i := range w.Float32s() {
		w.Float32s()[i] = float32(i)/8 - 0.5
	}
	wv := b.Const("w", w)
	op := func(name, typ string, in ...*ir.Value) *ir.Value {
		v := b.Op(typ, in)
		v.Producer.Name = name
		v.Name = name
		return v
	}
	a := op("a", "Relu", x)
	bb := op("b", "Sigmoid", a)
	b.Output(op("c", "Add", bb, wv), "c")
	b.Output(op("d", "Mul", x, wv), "d")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestPrecisionFP32Layers compiles a half program with layers kept in
// FP32: each such layer runs its _f32 kernels on float32 copies made by a
// conversion step just before it (once per value), its float32 outputs
// are converted for the half layers after it, a graph input is read from
// its float32 staging buffer (no conversion), a shared constant is
// uploaded in both precisions, and a graph output computed in FP32 needs
// no conversion at the end.
func TestPrecisionFP32Layers(t *testing.T) {
	g := mixedGraph(t)
	half, err := compile(g, false, true)
	if err != nil {
		t.Fatal(err)
	}
	p, err := compilePrecision(g, false, true, true, false, map[string]string{"b": "fp32", "d": "fp32"})
	if err != nil {
		t.Fatal(err)
	}
	checkProgram(t, p)
	var got []string
	for _, s := range p.steps {
		k := ""
		for _, l := range s.launches {
			k += " " + l.kernel
		}
		got = append(got, fmt.Sprintf("%s half=%v:%s", s.node.Name, s.half, k))
	}
	want := []string{
		"input x half=false: cast_f32_f16",
		"a half=true: unary_vec_f16",
		"a to fp32 half=false: cast_f16_f32",
		"b half=false: unary_vec_f32",
		"b to fp16 half=true: cast_f32_f16",
		"c half=true: binary_flat_vec_f16",
		"d half=false: binary_flat_vec_f32",
		"output c half=false: cast_f16_f32",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// d reads x from the staging buffer the host writes (the input's ref)
	byName := map[string]step{}
	for _, s := range p.steps {
		byName[s.node.Name] = s
	}
	if d, ok := byName["d"]; ok && len(d.launches) == 1 {
		x := p.inputs[0].ref
		found := false
		for _, a := range d.launches[0].args {
			found = found || (a.kind == argPtr && a.ref == x)
		}
		if !found {
			t.Errorf("d does not read x's float32 staging buffer %+v: %+v", x, d.launches[0].args)
		}
	}
	// w in both precisions: 8 halves and 8 floats more than the half program's
	if len(p.weights) < len(half.weights)+32 {
		t.Errorf("weights %d bytes, the half program's %d: w is not uploaded in float32 too", len(p.weights), len(half.weights))
	}
	for _, o := range p.outputs {
		if id := o.ref.id; o.name == "d" && p.stores[id].size != 2*8*4 {
			t.Errorf("output d is read from a store of %d bytes, want its float32 value (64)", p.stores[id].size)
		}
	}
	if v := p.values["b"]; v.dtype != tensor.Float32 || v.bytes != 64 {
		t.Errorf("value b lies on the device as %v, %d bytes; want float32, 64", v.dtype, v.bytes)
	}
	if v := p.values["a"]; v.dtype != tensor.Float16 || v.bytes != 32 {
		t.Errorf("value a lies on the device as %v, %d bytes; want float16, 32", v.dtype, v.bytes)
	}
}

// TestPrecisionFP32LayerModels keeps one layer of each reference model in
// FP32 in a half program (a convolution, an attention, a layer
// normalization, a matrix product): the program is valid (checkProgram),
// the layer's step computes in float32 with the float32 library call or
// kernels, a conversion step to fp32 precedes it for each float input a
// half layer computed, the values it writes reach half readers through a
// conversion to fp16, and every other layer stays half.
func TestPrecisionFP32LayerModels(t *testing.T) {
	cases := []struct {
		model string
		op    string // the op type of the layer kept in fp32
		nth   int    // which one of them, in graph order
	}{
		{"resnet_mini", "FusedConv", 2},
		{"mobilenet_v2", "FusedConv", 5},
		{"yolo_tiny", "FusedConv", 3},
		{"bert_mini", "Attention", 0},
		{"bert_mini", "LayerNormalization", 1},
		{"bert_mini", "FusedMatMul", 2},
		{"squeezenet1_1", "Concat", 1},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%s%d", tc.model, tc.op, tc.nth), func(t *testing.T) {
			g := optimizedGraph(t, modelPath(t, tc.model), testInputs(t, tc.model))
			var target *ir.Node
			seen := 0
			for _, n := range g.Nodes {
				if n.OpType == tc.op {
					if seen == tc.nth {
						target = n
						break
					}
					seen++
				}
			}
			if target == nil {
				t.Fatalf("no %s number %d in %s", tc.op, tc.nth, tc.model)
			}
			whole, err := compile(g, false, true)
			if err != nil {
				t.Fatal(err)
			}
			p, err := compilePrecision(g, false, true, true, false, map[string]string{target.Name: "fp32"})
			if err != nil {
				t.Fatal(err)
			}
			checkProgram(t, p)
			conversions := 0
			idx := -1
			for i, s := range p.steps {
				switch {
				case s.node == target:
					idx = i
					if s.half {
						t.Errorf("%s computes in half", s.name())
					}
					for _, l := range s.launches {
						if strings.HasSuffix(l.kernel, "_f16") {
							t.Errorf("%s launches %s", s.name(), l.kernel)
						}
					}
					if s.conv != nil && s.conv.nhwc {
						t.Errorf("%s runs NHWC", s.name())
					}
					// its timing-cache signature names float32, not the
					// program's half (a tactic timed in half is not reused)
					if s.conv != nil && !strings.HasSuffix(convSig(s, s.half), " fp32") {
						t.Errorf("%s: signature %q", s.name(), convSig(s, s.half))
					}
					if s.gemm != nil && !strings.HasSuffix(gemmSig(s, s.half), " fp32") {
						t.Errorf("%s: signature %q", s.name(), gemmSig(s, s.half))
					}
				case strings.HasSuffix(s.node.Name, " to fp32") || strings.HasSuffix(s.node.Name, " to fp16"):
					conversions++
				case len(s.launches) == 1 && s.launches[0].kernel == "cast_f32_f16_nhwc" && !strings.HasPrefix(s.node.Name, "input "):
					conversions++ // converted and laid out NHWC in one pass
				default:
					if isGraphNode(g, s.node) && !s.half {
						t.Errorf("%s computes in float32", s.name())
					}
				}
			}
			if idx < 0 {
				t.Fatalf("no step for %s", target.Name)
			}
			// each float input a node computed is converted before it
			for _, v := range target.Inputs {
				if v == nil || v.Const != nil || v.Producer == nil || v.Type.DType != tensor.Float32 {
					continue
				}
				if !hasStepBefore(p, idx, v.Name+" to fp32") {
					t.Errorf("no conversion of %s to fp32 before %s", v.Name, target.Name)
				}
			}
			// each float output read by a half layer is converted after it
			for _, o := range target.Outputs {
				if o == nil || o.Type.DType != tensor.Float32 || !readByNode(g, o) {
					continue
				}
				// (or the transpose to NHWC that converts it, cast_f32_f16_nhwc)
				if !hasStepAfter(p, idx, o.Name+" to fp16") && !hasStepAfter(p, idx, o.Name+" to NHWC") {
					t.Errorf("no conversion of %s to fp16 after %s", o.Name, target.Name)
				}
			}
			if conversions == 0 {
				t.Errorf("no conversion steps")
			}
			t.Logf("%d steps (half program %d), %d conversions, arena %d bytes (half %d)", len(p.steps), len(whole.steps), conversions, p.arena, whole.arena)
		})
	}
}

func isGraphNode(g *ir.Graph, n *ir.Node) bool {
	for _, m := range g.Nodes {
		if m == n {
			return true
		}
	}
	return false
}

func hasStepBefore(p *program, idx int, name string) bool {
	for i := 0; i < idx; i++ {
		if p.steps[i].node.Name == name {
			return true
		}
	}
	return false
}

func hasStepAfter(p *program, idx int, name string) bool {
	for i := idx + 1; i < len(p.steps); i++ {
		if p.steps[i].node.Name == name {
			return true
		}
	}
	return false
}

// TestLayerPrecisionOptions: the per-layer decision comes from the
// builder (ExecOptions.LayerPrecision) or a plan's cuda.precision section,
// the section keeps the fp32 layers (sorted) and reads back the same, a
// plan without it (built before the stage was shared) runs every layer in
// fp16, and only fp16 programs take a decision.
func TestLayerPrecisionOptions(t *testing.T) {
	section := []byte(`{"format":"kiln-cuda-precision-v1","fp32":["a","b"]}`)
	tests := []struct {
		name    string
		o       device.ExecOptions
		want    string // the fp32 layers, sorted
		section bool   // a section to store
		err     string
	}{
		{"builder", device.ExecOptions{Precision: "fp16", LayerPrecision: map[string]string{"b": "fp32", "c": "fp16", "a": "fp32"}}, "a,b", true, ""},
		{"builder, whole fp16", device.ExecOptions{Precision: "fp16", LayerPrecision: map[string]string{"c": "fp16"}}, "", false, ""},
		{"plan section", device.ExecOptions{Precision: "fp16", Blobs: map[string][]byte{precisionBlob: section}}, "a,b", true, ""},
		{"old plan", device.ExecOptions{Precision: "fp16", Blobs: map[string][]byte{}}, "", false, ""},
		{"builder wins", device.ExecOptions{Precision: "fp16", LayerPrecision: map[string]string{}, Blobs: map[string][]byte{precisionBlob: section}}, "", false, ""},
		{"fp32 program", device.ExecOptions{Precision: "fp32", LayerPrecision: map[string]string{"a": "fp32"}}, "", false, ""},
		{"int8 program", device.ExecOptions{Precision: "int8", LayerPrecision: map[string]string{"a": "fp32"}}, "", false, ""},
		{"bad precision", device.ExecOptions{Precision: "fp16", LayerPrecision: map[string]string{"a": "int8"}}, "", false, `precision "int8"`},
		{"bad section", device.ExecOptions{Precision: "fp16", Blobs: map[string][]byte{precisionBlob: []byte(`{"format":"x"}`)}}, "", false, "kiln-cuda-precision-v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			layers, sec, err := layerPrecisionOptions(tt.o)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for name, p := range layers {
				if p != "fp32" {
					t.Errorf("layer %s: %q", name, p)
				}
				got = append(got, name)
			}
			slices.Sort(got)
			if strings.Join(got, ",") != tt.want {
				t.Errorf("fp32 layers %v, want %s", got, tt.want)
			}
			if (sec != nil) != tt.section {
				t.Fatalf("section %s, want one: %v", sec, tt.section)
			}
			if sec != nil {
				back, _, err := layerPrecisionOptions(device.ExecOptions{Precision: "fp16", Blobs: map[string][]byte{precisionBlob: sec}})
				if err != nil || len(back) != len(layers) {
					t.Errorf("the section %s reads back as %v (%v)", sec, back, err)
				}
			}
		})
	}
}
