package cuda

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
)

func TestGPUInSet(t *testing.T) {
	d, ord, err := device.Set{GPU{}}.Lookup("cuda:1")
	if err != nil || d.Name() != "cuda" || ord != 1 {
		t.Fatalf("Lookup(cuda:1) = %v, %d, %v", d, ord, err)
	}
	if _, ok := d.(device.Executor); ok {
		t.Error("cuda.GPU runs graphs: the executor is package gpuexec's Device")
	}
}

// TestFingerprintNoLibrary points the library search at an empty directory:
// the device is unavailable and the error names libcuda.
func TestFingerprintNoLibrary(t *testing.T) {
	t.Setenv(EnvLibPath, t.TempDir())
	_, err := GPU{}.Fingerprint()
	if !errors.Is(err, device.ErrUnavailable) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v, want device.ErrUnavailable and cuda.ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "libcuda") {
		t.Errorf("error %q does not name libcuda", err)
	}
}

// TestFingerprintFake probes the fake libcuda of testdata: the GPU is found,
// but cuDNN, cuBLASLt and NVRTC are not in the override directory, so the
// device is unavailable and the error names each of them.
func TestFingerprintFake(t *testing.T) {
	t.Setenv(EnvLibPath, fakeDriver(t))
	_, err := FingerprintOf(0)
	if !errors.Is(err, device.ErrUnavailable) {
		t.Fatalf("error %v, want device.ErrUnavailable", err)
	}
	for _, lib := range []string{"Fake GPU", "libcudnn", "libcublasLt", "libnvrtc"} {
		if !strings.Contains(err.Error(), lib) {
			t.Errorf("error %q does not name %s", err, lib)
		}
	}
	if strings.Contains(err.Error(), "libnvidia-ml") {
		t.Errorf("error %q names NVML, which is optional", err)
	}
	if _, err := FingerprintOf(3); !errors.Is(err, device.ErrUnavailable) || !strings.Contains(err.Error(), "no CUDA device 3") {
		t.Errorf("FingerprintOf(3) error %v, want one naming device 3", err)
	}
}

func TestDeviceFingerprint(t *testing.T) {
	fp := Fingerprint{GPUName: "NVIDIA H100 80GB HBM3", ComputeMajor: 9, DriverVersion: 13000,
		CUDNNVersion: 91400, CUBLASLtVer: 130100, NVRTCMajor: 13}
	nvml := &LibError{Lib: "libnvidia-ml", Tried: []string{"libnvidia-ml.so.1"}}
	tests := []struct {
		name    string
		fp      Fingerprint
		err     error
		want    string // the fingerprint's String, or the error's substring
		wantErr bool
	}{
		{"complete", withRelease(fp, "580.159.04"), nil,
			"compute=9.0, cublaslt=13.1.0, cudnn=9.14.0, device=cuda, driver=13.0, driver_release=580.159.04, gpu=NVIDIA H100 80GB HBM3, nvrtc=13.0", false},
		{"no NVML", fp, errors.Join(nvml), "compute=9.0, cublaslt=13.1.0, cudnn=9.14.0, device=cuda, driver=13.0, gpu=NVIDIA H100 80GB HBM3, nvrtc=13.0", false},
		{"no cuDNN", fp, errors.Join(&LibError{Lib: "libcudnn", Tried: []string{"libcudnn.so.9"}}, nvml), "cannot open libcudnn", true},
		{"no GPU", Fingerprint{}, fmt.Errorf("%w: no CUDA device 0 (0 found)", ErrUnavailable), "no CUDA device 0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := deviceFingerprint(tt.fp, tt.err)
			if tt.wantErr {
				if !errors.Is(err, device.ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want device.ErrUnavailable naming %q", err, tt.want)
				}
				return
			}
			if err != nil || f.String() != tt.want {
				t.Fatalf("got %v, %v; want %s", f, err, tt.want)
			}
		})
	}
}

func withRelease(f Fingerprint, r string) Fingerprint { f.DriverRelease = r; return f }
