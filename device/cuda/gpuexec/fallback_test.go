package gpuexec_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda/gpuexec"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// fallbackNet is image[batch,3,8,8] -> Conv -> Relu -> Einsum
// ("nchw,w,w,w->nchw", three scales along the width) -> Conv(1x1) -> "y":
// the GPU's Einsum takes at most three operands, so this one runs on the
// CPU (an op the GPU lacks altogether would do, but the GPU gains ops
// often).
func fallbackNet(t *testing.T) []byte {
	t.Helper()
	w := func(shape ...int) *tensor.Tensor { return ramp(7, 7, -0.5, shape...) }
	b := ir.NewBuilder("cumsum", 17)
	x := b.Input("image", tensor.Float32, ir.S("batch"), ir.D(3), ir.D(8), ir.D(8))
	h := b.Op("Conv", []*ir.Value{x, b.Const("w1", w(4, 3, 3, 3)), b.Const("b1", w(4))},
		ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("pads", 1, 1, 1, 1))
	h = b.Op("Relu", []*ir.Value{h})
	h = b.Op("Einsum", []*ir.Value{h, b.Const("s1", w(8)), b.Const("s2", w(8)), b.Const("s3", w(8))}, ir.StringAttr("equation", "nchw,w,w,w->nchw"))
	h = b.Op("Conv", []*ir.Value{h, b.Const("w2", w(2, 4, 1, 1))}, ir.IntsAttr("kernel_shape", 1, 1))
	b.Output(h, "y")
	return marshal(t, b)
}

// TestFallbackFake builds a network with Einsum for cuda through
// the builder with its defaults (tactic timing on, timed with the fakes'
// events), against the fake libraries: Einsum falls back to the
// CPU (the log says so), the plan keeps each GPU segment's kernels under
// its prefix, and the plan loads and runs (the fakes compute nothing, so
// only the output's shape is checked; the GPU script checks the values).
// StrictDevice refuses the build. It skips without NVRTC, as every fake
// library test does. It is in package gpuexec_test: the builder and package
// kiln import this package.
func TestFallbackFake(t *testing.T) {
	gpuexec.WithoutKernel(t, "Einsum") // an op the GPU lacks
	fakeCUDA(t)
	model := fallbackNet(t)
	res, _ := buildCUDA(t, "cumsum", model, build.Options{}, "(Einsum) runs on the CPU: gpuexec: unsupported: ",
		"2 of 3 layers on cuda, 1 on the CPU (Einsum x1) in 3 segments")
	var seg0, seg2 bool
	for _, b := range res.Blobs {
		seg0 = seg0 || strings.HasPrefix(b.Name, partition.SegmentPrefix(0)+"cuda.kernels.")
		seg2 = seg2 || strings.HasPrefix(b.Name, partition.SegmentPrefix(2)+"cuda.kernels.")
	}
	if !seg0 || !seg2 {
		t.Errorf("plan sections %v: want the kernels of segments 0 and 2", res.Header.Blobs)
	}
	m := loadPlan(t, res)
	runShapes(t, m, map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 2, 3, 8, 8)}, map[string]string{"y": "2x2x8x8"})
	if _, err := build.BuildBytes(context.Background(), "cumsum", model, build.Options{Device: "cuda", StrictDevice: true}); err == nil || !strings.Contains(err.Error(), "Einsum") {
		t.Errorf("StrictDevice: %v, want an error naming Einsum", err)
	}
}
