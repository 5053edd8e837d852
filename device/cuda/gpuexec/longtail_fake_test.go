package gpuexec_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda/gpuexec"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// longTailNet is image[batch,4,8,8] -> GroupNormalization -> LpPool ->
// MeanVarianceNormalization -> Einsum (a scale per channel) ->
// LpNormalization -> GlobalLpPool -> "y": ops of the long tail that have
// CUDA kernels (op_groupnorm.go, op_lppool.go, op_einsum.go).
func longTailNet(t *testing.T) []byte {
	t.Helper()
	w := func(shape ...int) *tensor.Tensor { return ramp(5, 5, 0.25, shape...) }
	b := ir.NewBuilder("longtail", 18)
	x := b.Input("image", tensor.Float32, ir.S("batch"), ir.D(4), ir.D(8), ir.D(8))
	h := b.Op("GroupNormalization", []*ir.Value{x, b.Const("gs", w(4)), b.Const("gb", w(4))}, ir.IntAttr("num_groups", 2))
	h = b.Op("LpPool", []*ir.Value{h}, ir.IntsAttr("kernel_shape", 2, 2), ir.IntsAttr("strides", 2, 2))
	h = b.Op("MeanVarianceNormalization", []*ir.Value{h})
	h = b.Op("Einsum", []*ir.Value{h, b.Const("sc", w(4))}, ir.StringAttr("equation", "nchw,c->nchw"))
	h = b.Op("LpNormalization", []*ir.Value{h}, ir.IntAttr("axis", 1))
	h = b.Op("GlobalLpPool", []*ir.Value{h})
	b.Output(h, "y")
	return marshal(t, b)
}

// TestLongTailFake builds longTailNet for cuda as kiln build does, against
// the fake libraries: with the kernels not yet checked on a GPU allowed
// (KILN_CUDA_UNVERIFIED=1, as this package's tests run), every layer runs
// on the GPU (StrictDevice builds it) and the plan loads and runs (the
// fakes compute nothing: the output's shape is checked; TestNewOpsOnGPU
// checks the values on a GPU). By default (the variable unset) the layers
// whose kernels are still marked unchecked fall back to the CPU, the build
// notes saying why, and StrictDevice refuses the build.
func TestLongTailFake(t *testing.T) {
	fakeCUDA(t)
	model := longTailNet(t)

	t.Setenv(gpuexec.EnvUnverified, "1")
	res, _ := buildCUDA(t, "longtail", model, build.Options{StrictDevice: true})
	runShapes(t, loadPlan(t, res), map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 2, 4, 8, 8)}, map[string]string{"y": "2x4x1x1"})

	t.Setenv(gpuexec.EnvUnverified, "")
	_, notes := buildCUDA(t, "longtail", model, build.Options{})
	anyUnchecked := false
	for _, op := range []string{"GroupNormalization", "LpPool", "MeanVarianceNormalization", "Einsum", "LpNormalization", "GlobalLpPool"} {
		un := gpuexec.Unchecked(op)
		anyUnchecked = anyUnchecked || un
		if said := strings.Contains(notes, "the CUDA kernel of "+op+" (float32"); said != un {
			t.Errorf("%s's kernel unchecked %v, but the build notes say it falls back: %v\n%s", op, un, said, notes)
		}
	}
	_, err := build.BuildBytes(context.Background(), "longtail", model, build.Options{Device: "cuda", StrictDevice: true})
	if anyUnchecked && (err == nil || !strings.Contains(err.Error(), "not been checked on a GPU")) {
		t.Errorf("StrictDevice with unchecked kernels: %v, want a refusal saying they have not been checked", err)
	}
	if !anyUnchecked && err != nil {
		t.Errorf("StrictDevice with every kernel checked: %v", err)
	}
}
