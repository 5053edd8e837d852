package cuda

import (
	"errors"
	"fmt"
)

// Fingerprint identifies a GPU and the CUDA software that a GPU plan was
// built with. A plan built under one fingerprint is loaded only under an
// equal one.
type Fingerprint struct {
	GPUName       string // e.g. "NVIDIA H100 80GB HBM3"
	ComputeMajor  int    // compute capability, e.g. 9
	ComputeMinor  int    // e.g. 0
	DriverVersion int    // CUDA version the driver supports, e.g. 13000
	DriverRelease string // the driver's release from NVML, e.g. "580.159.04"; empty without NVML
	CUDNNVersion  int    // e.g. 91400
	CUBLASLtVer   int    // e.g. 130100
	NVRTCMajor    int    // e.g. 13
	NVRTCMinor    int    // e.g. 0
}

// Arch returns the real architecture for NVRTC, e.g. "sm_90".
func (f Fingerprint) Arch() string { return fmt.Sprintf("sm_%d%d", f.ComputeMajor, f.ComputeMinor) }

// String describes f on one line.
func (f Fingerprint) String() string {
	s := fmt.Sprintf("%s (compute %d.%d), driver %s", f.GPUName, f.ComputeMajor, f.ComputeMinor, cudaVersion(f.DriverVersion))
	if f.DriverRelease != "" {
		s += " (" + f.DriverRelease + ")"
	}
	return s + fmt.Sprintf(", cuDNN %s, cuBLASLt %s, NVRTC %d.%d",
		cudnnVersion(f.CUDNNVersion), cublasVersion(f.CUBLASLtVer), f.NVRTCMajor, f.NVRTCMinor)
}

// cudaVersion formats 13000 as "13.0".
func cudaVersion(v int) string { return fmt.Sprintf("%d.%d", v/1000, v%1000/10) }

// cudnnVersion formats cuDNN 9 versions (91400) as "9.14.0".
func cudnnVersion(v int) string {
	if v == 0 {
		return "none"
	}
	return fmt.Sprintf("%d.%d.%d", v/10000, v%10000/100, v%100)
}

// cublasVersion formats 130100 as "13.1.0".
func cublasVersion(v int) string {
	if v == 0 {
		return "none"
	}
	return fmt.Sprintf("%d.%d.%d", v/10000, v%10000/100, v%100)
}

// Equal reports whether f and g are the same in every field.
func (f Fingerprint) Equal(g Fingerprint) bool { return f == g }

// Diff lists, one entry per field, how g differs from f, e.g.
// `compute capability: 9.0 != 8.9`. It is empty when they are equal.
func (f Fingerprint) Diff(g Fingerprint) []string {
	var d []string
	add := func(what, a, b string) {
		if a != b {
			d = append(d, fmt.Sprintf("%s: %s != %s", what, a, b))
		}
	}
	add("GPU", f.GPUName, g.GPUName)
	add("compute capability", fmt.Sprintf("%d.%d", f.ComputeMajor, f.ComputeMinor), fmt.Sprintf("%d.%d", g.ComputeMajor, g.ComputeMinor))
	add("driver CUDA version", cudaVersion(f.DriverVersion), cudaVersion(g.DriverVersion))
	add("driver release", f.DriverRelease, g.DriverRelease)
	add("cuDNN", cudnnVersion(f.CUDNNVersion), cudnnVersion(g.CUDNNVersion))
	add("cuBLASLt", cublasVersion(f.CUBLASLtVer), cublasVersion(g.CUBLASLtVer))
	add("NVRTC", fmt.Sprintf("%d.%d", f.NVRTCMajor, f.NVRTCMinor), fmt.Sprintf("%d.%d", g.NVRTCMajor, g.NVRTCMinor))
	return d
}

// Probe describes the GPU o.Device and the CUDA libraries found. Without a
// driver or device it returns an error wrapping ErrUnavailable. A missing
// cuDNN, cuBLASLt, NVRTC or NVML leaves its fields zero and is reported in
// the error too (joined), with the rest of the fingerprint filled.
func Probe(o Options) (Fingerprint, error) {
	var f Fingerprint
	var errs []error
	d, err := OpenDriver(o)
	if err != nil {
		return f, err
	}
	f.DriverVersion = d.Version()
	n, err := d.DeviceCount()
	if err != nil {
		return f, err
	}
	if o.Device < 0 || o.Device >= n {
		return f, fmt.Errorf("%w: no CUDA device %d (%d found)", ErrUnavailable, o.Device, n)
	}
	dev, err := d.Device(o.Device)
	if err != nil {
		return f, err
	}
	if f.GPUName, err = d.DeviceName(dev); err != nil {
		return f, err
	}
	if f.ComputeMajor, f.ComputeMinor, err = d.ComputeCapability(dev); err != nil {
		return f, err
	}
	if l, err := OpenCUDNN(o); err != nil {
		errs = append(errs, err)
	} else {
		f.CUDNNVersion = l.Version()
	}
	if l, err := OpenCUBLASLt(o); err != nil {
		errs = append(errs, err)
	} else {
		f.CUBLASLtVer = l.Version()
	}
	if l, err := OpenNVRTC(o); err != nil {
		errs = append(errs, err)
	} else {
		f.NVRTCMajor, f.NVRTCMinor = l.Version()
	}
	if m, err := OpenNVML(o); err != nil {
		errs = append(errs, err)
	} else {
		if f.DriverRelease, err = m.DriverVersion(); err != nil {
			errs = append(errs, err)
		}
		m.Shutdown()
	}
	return f, errors.Join(errs...)
}
