package build_test

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/quant"
	"github.com/kilnai/kiln/tensor"
)

// bottleneckNet is two ResNet bottleneck blocks over 8 channels at 4x4
// (1x1 reduce, 3x3, 1x1 expand to 16 channels plus the residual, ReLU), the
// first block's residual from a 1x1 downsample convolution, then
// GlobalAveragePool, Flatten and a Gemm. It returns the model, the
// downsample's output and the last block's output (the values no quantized
// convolution reads as its input), and the two expanding convolutions.
func bottleneckNet(t *testing.T) (model []byte, down, last string, expand [2]string) {
	t.Helper()
	b := ir.NewBuilder("bottlenecks", 17)
	x := b.Input("x", tensor.Float32, ir.D(1), ir.D(8), ir.D(4), ir.D(4))
	k := 0
	conv := func(name string, in *ir.Value, cin, cout, ks int) *ir.Value {
		w := tensor.New(tensor.Float32, cout, cin, ks, ks)
		for i := range w.Float32s() {
			k++
			w.Float32s()[i] = float32((k*7)%11-5) * 0.08
		}
		bias := tensor.New(tensor.Float32, cout)
		for i := range bias.Float32s() {
			bias.Float32s()[i] = 0.01 * float32(i%3)
		}
		p := int64(ks / 2)
		v := b.Op("Conv", []*ir.Value{in, b.Const(name+".w", w), b.Const(name+".b", bias)},
			ir.IntsAttr("kernel_shape", int64(ks), int64(ks)), ir.IntsAttr("pads", p, p, p, p))
		v.Producer.Name = name
		return v
	}
	in := 8
	for blk := range 2 {
		pre := []string{"b0", "b1"}[blk]
		t1 := b.Op("Relu", []*ir.Value{conv(pre+".reduce", x, in, 4, 1)})
		t2 := b.Op("Relu", []*ir.Value{conv(pre+".3x3", t1, 4, 4, 3)})
		t3 := conv(pre+".expand", t2, 4, 16, 1)
		expand[blk] = pre + ".expand"
		z := x
		if blk == 0 {
			z = conv(pre+".down", x, in, 16, 1)
			down = z.Name
		}
		x = b.Op("Relu", []*ir.Value{b.Op("Add", []*ir.Value{t3, z})})
		in = 16
	}
	last = x.Name
	pooled := b.Op("Flatten", []*ir.Value{b.Op("GlobalAveragePool", []*ir.Value{x})}, ir.IntAttr("axis", 1))
	fc := tensor.New(tensor.Float32, 3, 16)
	for i := range fc.Float32s() {
		fc.Float32s()[i] = float32(i%5-2) * 0.1
	}
	b.Output(b.Op("Gemm", []*ir.Value{pooled, b.Const("fc.w", fc), b.Const("fc.b", tensor.New(tensor.Float32, 3))}, ir.IntAttr("transB", 1)), "y")
	mp, err := onnx.FromGraph(b.Graph(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return mp.Marshal(), down, last, expand
}

// TestInt8ValueScalesExecutorDevice is `kiln build --device cuda --int8`
// (the fake GPU of compile_test.go) of two bottleneck blocks, the first
// with a downsample: besides each quantized convolution's input scale,
// the device gets the scales of the values the CUDA executor keeps in 8
// bits that no quantized convolution reads as its input ("value:NAME", the
// calibration cache's amax/127): the downsample's output (the first
// block's residual) and the last block's output (read by the pooling), and
// no other value. A block kept in float (--layer-precision) hands none of
// its values.
func TestInt8ValueScalesExecutorDevice(t *testing.T) {
	model, down, last, expand := bottleneckNet(t)
	for _, tt := range []struct {
		name   string
		layers map[string]string
		values []string
		logHas string
	}{
		{"every convolution int8", nil, []string{down, last},
			"INT8 on fakegpu: 7 convolutions get input scales, 2 values their own"},
		{"the last expand in fp16", map[string]string{expand[1]: build.FP16}, []string{down},
			"INT8 on fakegpu: 6 convolutions get input scales, 1 values their own"},
		{"the first expand in fp16", map[string]string{expand[0]: build.FP16}, []string{last},
			"INT8 on fakegpu: 6 convolutions get input scales, 1 values their own"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cache := filepath.Join(t.TempDir(), "calib.cache")
			var log []string
			res, err := build.BuildBytes(context.Background(), "bottlenecks", model, build.Options{Device: "fakegpu", Devices: fakeDevices,
				Precision: build.INT8, CalibBatches: 2, CalibCache: cache, LayerPrecision: tt.layers, Log: func(m string) { log = append(log, m) }})
			if err != nil {
				t.Fatal(err)
			}
			res.Close()
			if all := strings.Join(log, "\n"); !strings.Contains(all, tt.logHas) {
				t.Errorf("the build log lacks %q:\n%s", tt.logHas, all)
			}
			table, err := quant.ReadTable(cache)
			if err != nil {
				t.Fatal(err)
			}
			got := lastCompiled().Int8Scales
			var values []string
			for _, k := range slices.Sorted(maps.Keys(got)) {
				name, ok := strings.CutPrefix(k, "value:")
				if !ok {
					continue
				}
				values = append(values, name)
				if want, ok := table.Scale(name); !ok || got[k] != want {
					t.Errorf("%s: scale %g, the calibration's %g (%v)", k, got[k], want, ok)
				}
			}
			if want := slices.Sorted(slices.Values(tt.values)); !slices.Equal(values, want) {
				t.Errorf("value scales for %v, want %v", values, want)
			}
			for _, l := range []string{expand[0], expand[1]} {
				if _, ok := got[l]; ok == (tt.layers[l] == build.FP16) {
					t.Errorf("%s: input scale given %v with --layer-precision %v", l, ok, tt.layers)
				}
			}
		})
	}
}
