package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine/plan"
)

// TestBuildLayerPrecisionCUDAFake is kiln build --device cuda --fp16
// --layer-precision NAME:fp32 against the fake CUDA libraries, tactics
// timed, as a user runs it: the override is taken (no longer refused
// outside --int8), the build log lists the layer kept in fp32, kiln
// inspect shows that layer fp32 and the others fp16, and the CPU build of
// the same model with the same flags keeps the same layers in fp32 (one
// precision stage for every device).
func TestBuildLayerPrecisionCUDAFake(t *testing.T) {
	fakeCUDA(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "pointwise.onnx")
	if err := os.WriteFile(model, pointwiseNet(t), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(name string, args ...string) (string, string) {
		t.Helper()
		out := filepath.Join(dir, name)
		var code int
		said := captureStdout(t, func() {
			code = buildCmd(append([]string{model, "-o", out, "--fp16", "--timing-cache", filepath.Join(dir, "timing.json")}, args...))
		})
		if code != exitOK {
			t.Fatalf("kiln build %v exited %d:\n%s", args, code, said)
		}
		return out, said
	}
	header := func(p string) plan.Header {
		t.Helper()
		var code int
		out := captureStdout(t, func() { code = inspectCmd([]string{"--json", p}) })
		if code != exitOK {
			t.Fatalf("kiln inspect --json exited %d:\n%s", code, out)
		}
		var h plan.Header
		if err := json.Unmarshal([]byte(out), &h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	fp32Layers := func(h plan.Header) map[string]bool {
		out := map[string]bool{}
		for _, l := range h.Layers {
			if l.Precision == "fp32" {
				out[l.Name] = true
			}
		}
		return out
	}

	plain, _ := build("plain.plan", "--device", "cuda")
	var convs []string
	for _, l := range header(plain).Layers {
		if l.Precision == "fp32" {
			t.Errorf("without --layer-precision, layer %s (%s) is fp32", l.Name, l.Op)
		}
		if l.Op == "kiln::FusedConv" {
			convs = append(convs, l.Name)
		}
	}
	if len(convs) != 3 {
		t.Fatalf("%d convolutions in the plan, want 3", len(convs))
	}
	forced := convs[1] // the expand 1x1: between two fp16 convolutions
	flag := []string{"--layer-precision", forced + ":fp32"}
	cudaPlan, _ := build("forced.plan", append([]string{"--device", "cuda"}, flag...)...)
	h := header(cudaPlan)
	notes := strings.Join(h.Notes, "\n")
	for _, want := range []string{"FP16 on cuda: ", "1 in fp32", "fp32  " + forced + " (kiln::FusedConv): kept in fp32 (layer precision)"} {
		if !strings.Contains(notes, want) {
			t.Errorf("the build log does not say %q:\n%s", want, notes)
		}
	}
	fp16 := 0
	for _, l := range h.Layers {
		switch {
		case l.Name == forced && l.Precision != "fp32":
			t.Errorf("forced layer %s shows %q", l.Name, l.Precision)
		case l.Name != forced && l.Precision == "fp32":
			t.Errorf("layer %s (%s) shows fp32", l.Name, l.Op)
		case l.Precision == "fp16":
			fp16++
		}
	}
	if fp16 == 0 {
		t.Errorf("no fp16 layer in the forced plan: %+v", h.Layers)
	}
	var code int
	text := captureStdout(t, func() { code = inspectCmd([]string{cudaPlan}) })
	if code != exitOK {
		t.Fatalf("kiln inspect exited %d:\n%s", code, text)
	}
	shown := false
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, forced) && strings.Contains(line, " fp32 ") {
			shown = true
		}
	}
	if !shown {
		t.Errorf("kiln inspect does not show %s in fp32:\n%s", forced, text)
	}

	cpuPlan, _ := build("cpu.plan", flag...)
	cpu, gpu := fp32Layers(header(cpuPlan)), fp32Layers(h)
	names := map[string]bool{}
	for _, l := range h.Layers {
		names[l.Name] = true
	}
	for name := range cpu {
		if names[name] && !gpu[name] {
			t.Errorf("layer %s: fp32 on the CPU, not on cuda", name)
		}
	}
	for name := range gpu {
		if !cpu[name] {
			t.Errorf("layer %s: fp32 on cuda, not on the CPU", name)
		}
	}
	if !cpu[forced] {
		t.Errorf("the CPU build does not keep %s in fp32: %v", forced, cpu)
	}
}
