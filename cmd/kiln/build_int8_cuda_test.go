package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// bottleneckPair is two ResNet bottlenecks (1x1, 3x3, expanding 1x1 plus
// the residual, ReLU) over 16 channels at 8x8, the first block's residual
// from a 1x1 downsample, then GlobalAveragePool and a Gemm. It returns
// the model, the downsample's output and the last block's output.
func bottleneckPair(t *testing.T) (model []byte, down, last string) {
	t.Helper()
	b := ir.NewBuilder("bottlenecks", 17)
	x := b.Input("x", tensor.Float32, ir.D(2), ir.D(16), ir.D(8), ir.D(8))
	k := 0
	w := func(shape ...int) *tensor.Tensor {
		v := tensor.New(tensor.Float32, shape...)
		for i := range v.Float32s() {
			k++
			v.Float32s()[i] = float32((k*7)%13-6) * 0.04
		}
		return v
	}
	conv := func(in *ir.Value, cin, cout, ks int) *ir.Value {
		p := int64(ks / 2)
		return b.Op("Conv", []*ir.Value{in, b.Const("", w(cout, cin, ks, ks)), b.Const("", w(cout))},
			ir.IntsAttr("kernel_shape", int64(ks), int64(ks)), ir.IntsAttr("pads", p, p, p, p))
	}
	relu := func(v *ir.Value) *ir.Value { return b.Op("Relu", []*ir.Value{v}) }
	in := 16
	for blk := range 2 {
		t3 := conv(relu(conv(relu(conv(x, in, 16, 1)), 16, 16, 3)), 16, 64, 1)
		z := x
		if blk == 0 {
			z = conv(x, in, 64, 1)
			down = z.Name
		}
		x, in = relu(b.Op("Add", []*ir.Value{t3, z})), 64
	}
	last = x.Name
	pooled := b.Op("Flatten", []*ir.Value{b.Op("GlobalAveragePool", []*ir.Value{x})}, ir.IntAttr("axis", 1))
	b.Output(b.Op("Gemm", []*ir.Value{pooled, b.Const("fc.w", w(10, 64)), b.Const("fc.b", w(10))}, ir.IntAttr("transB", 1)), "y")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal(), down, last
}

// TestBuildInt8ValueScalesCUDAFake is kiln build --device cuda --int8
// --calib-random 1 against the fake CUDA libraries, as a user runs it (tactics timed), of
// two bottlenecks whose first residual comes from a downsample: the build
// log says which values get scales of their own, and the plan's cuda.int8
// section, which the executor reads when the plan is loaded, holds the
// downsample's output and the last block's output under "value:NAME"
// beside the convolutions' input scales, and no other value.
func TestBuildInt8ValueScalesCUDAFake(t *testing.T) {
	fakeCUDA(t)
	dir := t.TempDir()
	src, down, last := bottleneckPair(t)
	model := filepath.Join(dir, "bottlenecks.onnx")
	if err := os.WriteFile(model, src, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "int8.plan")
	var code int
	said := captureStdout(t, func() {
		code = buildCmd([]string{model, "-o", out, "--device", "cuda", "--int8", "--calib-random", "1"})
	})
	if code != exitOK {
		t.Fatalf("kiln build exited %d:\n%s", code, said)
	}
	p, err := plan.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if notes := strings.Join(p.Header.Notes, "\n"); !strings.Contains(notes, "INT8 on cuda: 7 convolutions get input scales, 2 values their own") {
		t.Errorf("the build log does not say which values get scales:\n%s", notes)
	}
	var sec struct {
		Format string             `json:"format"`
		Scales map[string]float32 `json:"scales"`
	}
	for _, b := range p.Header.Blobs {
		if strings.HasSuffix(b.Name, "cuda.int8") {
			data, _ := p.Blob(b.Name)
			if err := json.Unmarshal(data, &sec); err != nil {
				t.Fatal(err)
			}
		}
	}
	var values []string
	convs := 0
	for k, s := range sec.Scales {
		if !(s > 0) {
			t.Errorf("%s: scale %g", k, s)
		}
		if name, ok := strings.CutPrefix(k, "value:"); ok {
			values = append(values, name)
		} else {
			convs++
		}
	}
	slices.Sort(values)
	if want := slices.Sorted(slices.Values([]string{down, last})); convs != 7 || !slices.Equal(values, want) {
		t.Errorf("the plan's cuda.int8 section (%s): %d input scales, values %v; want 7 and %v", sec.Format, convs, values, want)
	}
}
