package cuda

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/kilnai/kiln/device"
)

// DeviceName is the name of the CUDA device ("cuda", or "cuda:N" for GPU
// N).
const DeviceName = "cuda"

// GPU is the "cuda" device as far as this package knows it: its name, the
// fingerprint of each GPU and the GPUs this process can use. It runs no
// graph (it is not a device.Executor): package gpuexec's Device adds the
// executor, and package devices lists that one.
type GPU struct{}

var (
	_ device.Device   = GPU{}
	_ device.Ordinals = GPU{}
)

// Name returns "cuda".
func (GPU) Name() string { return DeviceName }

// Fingerprint describes GPU 0; see FingerprintOf.
func (GPU) Fingerprint() (device.Fingerprint, error) { return FingerprintOf(0) }

// FingerprintOf probes GPU ordinal (libraries found as Options{} finds them)
// and returns its fingerprint as a device.Fingerprint: "device" = "cuda",
// "gpu", "compute", "driver" (the CUDA version the driver supports),
// "driver_release" (when NVML is there), "cudnn", "cublaslt" and "nvrtc".
//
// Without a driver, a GPU of that ordinal, cuDNN, cuBLASLt or NVRTC, the
// error wraps device.ErrUnavailable (and ErrUnavailable of this package) and
// names what is missing. NVML is optional: without it driver_release is
// left out.
func FingerprintOf(ordinal int) (device.Fingerprint, error) {
	fp, err := Probe(Options{Device: ordinal})
	return deviceFingerprint(fp, err)
}

// deviceFingerprint turns Probe's result into a device.Fingerprint, or into
// an error wrapping device.ErrUnavailable when a required part is missing.
func deviceFingerprint(fp Fingerprint, err error) (device.Fingerprint, error) {
	if fp.GPUName == "" {
		if err == nil {
			err = ErrUnavailable
		}
		// the package's errors name it already ("cuda: cannot open ...")
		return nil, fmt.Errorf("%w: %w", device.ErrUnavailable, err)
	}
	var missing []error
	if err != nil {
		// Probe joins the errors of the optional libraries: keep those of
		// the required ones.
		var errs []error
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		} else {
			errs = []error{err}
		}
		for _, e := range errs {
			var le *LibError
			if errors.As(e, &le) && le.Lib == "libnvidia-ml" {
				continue
			}
			if errors.Is(e, ErrCUDA) && !errors.Is(e, ErrUnavailable) {
				continue // an NVML call failed: the release stays unknown
			}
			missing = append(missing, e)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: cuda: GPU %q found, but %w", device.ErrUnavailable, fp.GPUName, errors.Join(missing...))
	}
	f := device.Fingerprint{
		"device":   DeviceName,
		"gpu":      fp.GPUName,
		"compute":  fmt.Sprintf("%d.%d", fp.ComputeMajor, fp.ComputeMinor),
		"driver":   cudaVersion(fp.DriverVersion),
		"cudnn":    cudnnVersion(fp.CUDNNVersion),
		"cublaslt": cublasVersion(fp.CUBLASLtVer),
		"nvrtc":    strconv.Itoa(fp.NVRTCMajor) + "." + strconv.Itoa(fp.NVRTCMinor),
	}
	if fp.DriverRelease != "" {
		f["driver_release"] = fp.DriverRelease
	}
	return f, nil
}

// FingerprintOf describes GPU ordinal (device.Ordinals).
func (GPU) FingerprintOf(ordinal int) (device.Fingerprint, error) {
	return FingerprintOf(ordinal)
}

var _ device.Units = GPU{}

// Units lists the GPUs this process can use (device.Units), by ordinal:
// those CUDA_VISIBLE_DEVICES leaves visible, as the driver numbers them,
// each by its UUID ("GPU-...", as NVML and the nv_gpu_* metrics name it;
// "cuda:N" when the driver cannot say).
func (GPU) Units() ([]string, error) { return VisibleGPUs(Options{}) }

// VisibleGPUs opens the driver as o says and lists the UUIDs of the GPUs
// it makes visible, in ordinal order (see GPU.Units). Without a
// driver the error wraps ErrUnavailable and device.ErrUnavailable.
func VisibleGPUs(o Options) ([]string, error) {
	d, err := OpenDriver(o)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", device.ErrUnavailable, err)
	}
	n, err := d.DeviceCount()
	if err != nil {
		return nil, err
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s:%d", DeviceName, i)
		dev, err := d.Device(i)
		if err != nil {
			return nil, err
		}
		if id, err := d.DeviceUUID(dev); err == nil {
			ids[i] = id
		}
	}
	return ids, nil
}
