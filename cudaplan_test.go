package kiln_test

// This file imports no device package (package device, the interface
// every device implements, is not one): a program that imports package
// kiln alone gets the GPU executor (issue 10, item 1).

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
)

// envCUDALibPath is the variable that points the CUDA device at a folder
// of libraries (device/cuda's EnvLibPath, spelt out here so that this file
// imports no device package).
const envCUDALibPath = "KILN_CUDA_LIB_PATH"

// fakeCUDA builds device/cuda's fake libcuda, libcudnn and libcublasLt
// into a folder beside this machine's NVRTC and returns it. The fakes
// answer every call (a "Fake GPU" of compute capability 9.0) and compute
// nothing. It skips without a C compiler or NVRTC.
func fakeCUDA(t *testing.T) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("needs a C compiler (cc) to build the fake CUDA libraries: %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join("device", "cuda", "testdata")
	for c, lib := range map[string]string{"fakecuda.c": "libcuda.so.1", "fakecudnn.c": "libcudnn.so.9", "fakecublaslt.c": "libcublasLt.so.13"} {
		if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(dir, lib), filepath.Join(src, c)).CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", lib, err, out)
		}
	}
	for _, d := range []string{"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/cuda/lib64"} {
		found, _ := filepath.Glob(filepath.Join(d, "libnvrtc.so.*"))
		for _, f := range found {
			if err := os.Symlink(f, filepath.Join(dir, filepath.Base(f))); err != nil {
				t.Fatal(err)
			}
		}
		if len(found) > 0 {
			return dir
		}
	}
	t.Skip("needs NVRTC (Debian: apt-get install libnvrtc11.2, from the non-free component)")
	return ""
}

// TestLoadCUDAPlanNoImport builds the example network for cuda against the
// fake libraries, writes the plan, and loads and runs it with kiln.Load:
// the plan's device is found, its program compiled by the GPU executor
// (the fakes compute nothing: only the output's shape is checked). With
// no CUDA library the same plan is refused as unusable here, not as a
// device kiln lacks.
func TestLoadCUDAPlanNoImport(t *testing.T) {
	t.Setenv(envCUDALibPath, fakeCUDA(t))
	res, err := build.BuildBytes(context.Background(), "tinycnn", examples.TinyCNNModel, build.Options{Device: "cuda", NoTiming: true})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tinycnn.plan")
	err = res.WriteFile(path)
	res.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := kiln.Load(path)
	if err != nil {
		t.Fatalf("kiln.Load of a CUDA plan: %v", err)
	}
	defer m.Close()
	if h := m.Plan(); h.Device != "cuda" || h.Fingerprint["gpu"] == "" {
		t.Errorf("plan device %q, fingerprint %v", h.Device, h.Fingerprint)
	}
	in, want, err := examples.TinyCNNTestData()
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Run(context.Background(), map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	if got := out["probabilities"]; got == nil || tensor.ShapeString(got.Shape) != tensor.ShapeString(want.Shape) {
		t.Fatalf("outputs %v, want probabilities of shape %v", out, want.Shape)
	}

	t.Setenv(envCUDALibPath, t.TempDir()) // no library at all
	_, err = kiln.Load(path)
	if !errors.Is(err, kiln.ErrPlan) || !errors.Is(err, plan.ErrDevice) || !strings.Contains(err.Error(), "libcuda") {
		t.Errorf("kiln.Load without CUDA: %v, want kiln.ErrPlan and plan.ErrDevice naming libcuda", err)
	}
	if err != nil && (strings.Contains(err.Error(), "unknown device") || strings.Contains(err.Error(), "not linked")) {
		t.Errorf("kiln.Load without CUDA: %v; the device is kiln's, only the libraries are missing", err)
	}
}

// TestLoadCUDAPlanOnGPU is TestLoadCUDAPlanNoImport on a real GPU: the
// example network built for cuda, written, loaded with kiln.Load and run
// matches the CPU. It skips without a usable GPU (or with the fake
// libraries selected).
func TestLoadCUDAPlanOnGPU(t *testing.T) {
	if os.Getenv(envCUDALibPath) != "" {
		t.Skipf("%s is set (the fake CUDA libraries): this test needs a real GPU", envCUDALibPath)
	}
	res, err := build.BuildBytes(context.Background(), "tinycnn", examples.TinyCNNModel, build.Options{Device: "cuda"})
	if errors.Is(err, device.ErrUnavailable) {
		t.Skipf("needs a CUDA GPU: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tinycnn.plan")
	err = res.WriteFile(path)
	res.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := kiln.Load(path)
	if err != nil {
		t.Fatalf("kiln.Load of a CUDA plan: %v", err)
	}
	defer m.Close()
	in, want, err := examples.TinyCNNTestData()
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Run(context.Background(), map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	got := out["probabilities"]
	if got == nil || tensor.ShapeString(got.Shape) != tensor.ShapeString(want.Shape) {
		t.Fatalf("outputs %v, want probabilities of shape %v", out, want.Shape)
	}
	for i, w := range want.Float32s() {
		if d := math.Abs(float64(got.Float32s()[i] - w)); d > 1e-4+1e-3*math.Abs(float64(w)) {
			t.Fatalf("probabilities[%d] = %v on the GPU, want %v", i, got.Float32s()[i], w)
		}
	}
	t.Logf("plan for %s (%s) ran through kiln.Load with no device import", m.Plan().Fingerprint["gpu"], m.Plan().Fingerprint["compute"])
}
