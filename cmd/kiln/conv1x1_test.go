package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// pointwiseNet is x [2,16,8,8] -> s = Relu(Conv 3x3 16->16 + bias) ->
// a = Relu(Conv 1x1 16->64 + bias) -> Relu(Conv 1x1 64->16 + bias + s):
// two 1x1 convolutions that cuBLASLt can run as products (bias+ReLU,
// bias+residual+ReLU) beside one it cannot.
func pointwiseNet(t *testing.T) []byte {
	t.Helper()
	w := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(i%11)/22 - 0.25
		}
		return x
	}
	b := ir.NewBuilder("pointwise", 17)
	x := b.Input("x", tensor.Float32, ir.D(2), ir.D(16), ir.D(8), ir.D(8))
	conv := func(in *ir.Value, name string, cin, cout, k int) *ir.Value {
		p := int64(k / 2)
		return b.Op("Conv", []*ir.Value{in, b.Const(name+".w", w(cout, cin, k, k)), b.Const(name+".b", w(cout))},
			ir.IntsAttr("kernel_shape", int64(k), int64(k)), ir.IntsAttr("pads", p, p, p, p))
	}
	relu := func(v *ir.Value) *ir.Value { return b.Op("Relu", []*ir.Value{v}) }
	s := relu(conv(x, "stem", 16, 16, 3))
	a := relu(conv(s, "expand", 16, 64, 1))
	b.Output(relu(b.Op("Add", []*ir.Value{conv(a, "project", 64, 16, 1), s})), "y")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

// TestBuildConv1x1CUDAFake is kiln build --device cuda --fp16 of
// pointwiseNet against the fake CUDA libraries with a timing cache file:
// the build times cuBLASLt's products of the two 1x1 convolutions (each
// heuristic result of the product with the bias, ReLU and residual in its
// epilogue) beside cuDNN's candidates, and none for the 3x3 one; the fakes
// time every candidate alike, so cuDNN keeps the layers. With the
// products' entries made faster in the cache file, as a GPU's measurements
// would be, the next build runs both layers as products, kiln inspect shows
// them with their epilogues, and kiln run runs the plan.
func TestBuildConv1x1CUDAFake(t *testing.T) {
	fakeCUDA(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "pointwise.onnx")
	if err := os.WriteFile(model, pointwiseNet(t), 0o644); err != nil {
		t.Fatal(err)
	}
	cachePath := filepath.Join(dir, "timing.json")
	build := func(name string) string {
		t.Helper()
		out := filepath.Join(dir, name)
		var code int
		said := captureStdout(t, func() {
			code = buildCmd([]string{model, "-o", out, "--device", "cuda", "--fp16", "--timing-cache", cachePath})
		})
		if code != exitOK {
			t.Fatalf("kiln build exited %d:\n%s", code, said)
		}
		return out
	}
	inspect := func(p string) string {
		t.Helper()
		var code int
		out := captureStdout(t, func() { code = inspectCmd([]string{p}) })
		if code != exitOK {
			t.Fatalf("kiln inspect exited %d:\n%s", code, out)
		}
		return out
	}
	type entry struct {
		Device string `json:"device"`
		Layer  string `json:"layer"`
		Tactic string `json:"tactic"`
		NS     int64  `json:"ns"`
	}
	var cache struct {
		Format  string  `json:"format"`
		Version int     `json:"version"`
		Entries []entry `json:"entries"`
	}
	readCache := func() {
		t.Helper()
		b, err := os.ReadFile(cachePath)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &cache); err != nil {
			t.Fatal(err)
		}
	}

	first := inspect(build("first.plan"))
	if strings.Contains(first, "cublaslt nhwc 1x1") {
		t.Errorf("on ties a layer runs as a product:\n%s", first)
	}
	readCache()
	products := map[string]int{} // layer signature -> product entries
	for _, e := range cache.Entries {
		if strings.HasPrefix(e.Layer, "cuda conv") && strings.HasPrefix(e.Tactic, "cublaslt") {
			if !strings.HasPrefix(e.Tactic, "cublaslt-epilogue:") || strings.Contains(e.Layer, "w=16x3x3") {
				t.Errorf("timed %q for %q", e.Tactic, e.Layer)
			}
			products[e.Layer]++
		}
	}
	if len(products) != 2 {
		t.Fatalf("products timed for %d layer signatures, want 2: %v", len(products), products)
	}
	for i, e := range cache.Entries {
		if strings.HasPrefix(e.Layer, "cuda conv") && e.Tactic == "cublaslt-epilogue:1" {
			cache.Entries[i].NS = 1000
		}
	}
	b, err := json.Marshal(cache)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cachePath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	second := build("second.plan")
	shown := inspect(second)
	for _, want := range []string{
		"cublaslt nhwc 1x1 gemm 128x64x16 algo 43 (heuristic #1 of 3), bias+ReLU epilogue",
		"cublaslt nhwc 1x1 gemm 128x16x64 algo 43 (heuristic #1 of 3), bias+residual+ReLU epilogue",
	} {
		if !strings.Contains(shown, want) {
			t.Errorf("kiln inspect does not show %q:\n%s", want, shown)
		}
	}
	var code int
	ran := captureStdout(t, func() { code = runCmd([]string{second, "--iterations", "2"}) })
	if code != exitOK {
		t.Errorf("kiln run of the plan exited %d:\n%s", code, ran)
	}
}
