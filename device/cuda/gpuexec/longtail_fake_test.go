package gpuexec_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/device/cuda/gpuexec"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// longTailNet is image[batch,4,8,8] -> GroupNormalization -> LpPool ->
// MeanVarianceNormalization -> Einsum (a scale per channel) ->
// LpNormalization -> GlobalLpPool -> "y": ops of the long tail that have
// CUDA kernels (op_groupnorm.go, op_lppool.go, op_einsum.go).
func longTailNet(t *testing.T) []byte {
	t.Helper()
	w := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(i%5)/5 + 0.25
		}
		return x
	}
	b := ir.NewBuilder("longtail", 18)
	x := b.Input("image", tensor.Float32, ir.S("batch"), ir.D(4), ir.D(8), ir.D(8))
	h := b.Op("GroupNormalization", []*ir.Value{x, b.Const("gs", w(4)), b.Const("gb", w(4))}, ir.IntAttr("num_groups", 2))
	h = b.Op("LpPool", []*ir.Value{h}, ir.IntsAttr("kernel_shape", 2, 2), ir.IntsAttr("strides", 2, 2))
	h = b.Op("MeanVarianceNormalization", []*ir.Value{h})
	h = b.Op("Einsum", []*ir.Value{h, b.Const("sc", w(4))}, ir.StringAttr("equation", "nchw,c->nchw"))
	h = b.Op("LpNormalization", []*ir.Value{h}, ir.IntAttr("axis", 1))
	h = b.Op("GlobalLpPool", []*ir.Value{h})
	b.Output(h, "y")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
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
	dir := gpuexec.FakeLibs(t)
	t.Setenv(cuda.EnvLibPath, dir)
	model := longTailNet(t)

	t.Setenv(gpuexec.EnvUnverified, "1")
	res, err := build.BuildBytes(context.Background(), "longtail", model, build.Options{Device: "cuda", StrictDevice: true})
	if err != nil {
		t.Fatalf("StrictDevice with %s=1: %v", gpuexec.EnvUnverified, err)
	}
	path := filepath.Join(t.TempDir(), "longtail.plan")
	err = res.WriteFile(path)
	res.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := kiln.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out, err := m.Run(context.Background(), map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 2, 4, 8, 8)})
	if err != nil {
		t.Fatal(err)
	}
	if y := out["y"]; y == nil || y.DType != tensor.Float32 || tensor.ShapeString(y.Shape) != "2x4x1x1" {
		t.Fatalf("outputs %v", out)
	}

	t.Setenv(gpuexec.EnvUnverified, "")
	res, err = build.BuildBytes(context.Background(), "longtail", model, build.Options{Device: "cuda"})
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(res.Header.Notes, "\n")
	res.Close()
	anyUnchecked := false
	for _, op := range []string{"GroupNormalization", "LpPool", "MeanVarianceNormalization", "Einsum", "LpNormalization", "GlobalLpPool"} {
		un := gpuexec.Unchecked(op)
		anyUnchecked = anyUnchecked || un
		if said := strings.Contains(notes, "the CUDA kernel of "+op+" (float32"); said != un {
			t.Errorf("%s's kernel unchecked %v, but the build notes say it falls back: %v\n%s", op, un, said, notes)
		}
	}
	_, err = build.BuildBytes(context.Background(), "longtail", model, build.Options{Device: "cuda", StrictDevice: true})
	if anyUnchecked && (err == nil || !strings.Contains(err.Error(), "not been checked on a GPU")) {
		t.Errorf("StrictDevice with unchecked kernels: %v, want a refusal saying they have not been checked", err)
	}
	if !anyUnchecked && err != nil {
		t.Errorf("StrictDevice with every kernel checked: %v", err)
	}
}
