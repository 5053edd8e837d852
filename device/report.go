package device

import (
	"encoding/json"
	"fmt"
	"time"
)

// LayersBlob is the name of the section (BlobProgram.Blobs) in which a
// program of a device that runs graphs itself says how it runs each layer
// and how much device memory it takes: a LayerReport, as MarshalLayerReport
// writes it. The builder copies it into the plan's layer table for kiln
// inspect. Under partitioning each device segment's report carries its
// segment's prefix, like its other sections.
const LayersBlob = "layers"

// layerReportFormat and layerReportVersion identify the JSON of a
// LayerReport.
const (
	layerReportFormat  = "kiln-device-layers"
	layerReportVersion = 1
)

// LayerReport is how a device program runs its layers.
type LayerReport struct {
	// Layers are the graph's nodes the program runs, in order, by name.
	Layers []LayerRun `json:"layers"`
	// Memory is the device memory the program takes at its largest shapes.
	Memory Memory `json:"memory"`
	// Shapes says at which input shapes the layers were planned and timed
	// ("opt", the profile's opt shapes, when tactics were timed; else "max").
	Shapes string `json:"shapes,omitempty"`
}

// LayerRun is how one layer (node) runs on the device.
type LayerRun struct {
	Name string `json:"name"`
	// Tactic names the implementation, e.g. "cudnn IMPLICIT_PRECOMP_GEMM
	// (algo 1, FMA math) + bias_act_f32", "cublaslt algo 6 (heuristic #0
	// of 8), bias epilogue" or the kernels launched, "pool2d_f32".
	Tactic string `json:"tactic"`
	// Precision is what the layer computes in ("fp32", "fp16"), empty for
	// layers without float data.
	Precision string `json:"precision,omitempty"`
	// Time is the layer's device time measured when the program was tuned
	// (0: not measured); Cached says it came from the timing cache.
	Time   time.Duration `json:"time_ns,omitempty"`
	Cached bool          `json:"cached,omitempty"`
	// Workspace is the scratch memory its library call needs, in bytes.
	Workspace int64 `json:"workspace_bytes,omitempty"`
	// Choice is the layer's chosen implementation by the name the device
	// parses back (Tactic.Tactic), and Sig the layer signature it was
	// chosen for (Tactic.Sig): set for the layers whose implementation the
	// program chose among several (timed, or applied from a plan), so that
	// the builder keeps the choice in the plan's header.
	Choice string `json:"choice,omitempty"`
	Sig    string `json:"sig,omitempty"`
}

// Memory is the device memory of a program: constants held once per
// engine, and per execution context the activation arena and the
// libraries' workspace.
type Memory struct {
	WeightBytes    int64 `json:"weight_bytes"`
	ArenaBytes     int64 `json:"arena_bytes"`
	WorkspaceBytes int64 `json:"workspace_bytes"`
}

// Add returns the sum of m and o (two segments of one plan).
func (m Memory) Add(o Memory) Memory {
	return Memory{m.WeightBytes + o.WeightBytes, m.ArenaBytes + o.ArenaBytes, m.WorkspaceBytes + o.WorkspaceBytes}
}

// Max returns the field-wise largest of m and o (two profiles of one plan).
func (m Memory) Max(o Memory) Memory {
	return Memory{max(m.WeightBytes, o.WeightBytes), max(m.ArenaBytes, o.ArenaBytes), max(m.WorkspaceBytes, o.WorkspaceBytes)}
}

type layerReportFile struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	LayerReport
}

// MarshalLayerReport encodes r for the LayersBlob section.
func MarshalLayerReport(r LayerReport) []byte {
	b, _ := json.Marshal(layerReportFile{Format: layerReportFormat, Version: layerReportVersion, LayerReport: r})
	return b
}

// ParseLayerReport decodes what MarshalLayerReport wrote, with an error
// that says what is wrong with a damaged section.
func ParseLayerReport(b []byte) (LayerReport, error) {
	var f layerReportFile
	if err := json.Unmarshal(b, &f); err != nil {
		return LayerReport{}, fmt.Errorf("device: %s section: %v", LayersBlob, err)
	}
	if f.Format != layerReportFormat || f.Version != layerReportVersion {
		return LayerReport{}, fmt.Errorf("device: %s section: format %q version %d, want %q version %d", LayersBlob, f.Format, f.Version, layerReportFormat, layerReportVersion)
	}
	for i, l := range f.Layers {
		if l.Name == "" || l.Time < 0 || l.Workspace < 0 || (l.Choice == "") != (l.Sig == "") {
			return LayerReport{}, fmt.Errorf("device: %s section: layer %d: name %q, time %v, workspace %d, choice %q for signature %q", LayersBlob, i, l.Name, l.Time, l.Workspace, l.Choice, l.Sig)
		}
	}
	m := f.Memory
	if m.WeightBytes < 0 || m.ArenaBytes < 0 || m.WorkspaceBytes < 0 {
		return LayerReport{}, fmt.Errorf("device: %s section: negative memory %+v", LayersBlob, m)
	}
	return f.LayerReport, nil
}
