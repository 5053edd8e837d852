package plan

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine"
)

func report(mem device.Memory, runs ...device.LayerRun) []byte {
	return device.MarshalLayerReport(device.LayerReport{Layers: runs, Memory: mem})
}

// TestApplyLayerReports copies device layer reports into a header as the
// builder stores them: two device segments around a CPU layer, profile 1
// with its own report for segment 0 and profile 0's for segment 2. Each
// profile gets its tactic set in layer order (the CPU layer none), profile
// 0's precisions go to the layers, and the device memory is the segments'
// sum, the largest over the profiles; a header without reports is left
// alone, and a damaged report is an error naming its section.
func TestApplyLayerReports(t *testing.T) {
	header := func() Header {
		return Header{
			Device:   "cuda",
			Profiles: []engine.Profile{{Name: "small"}, {Name: "big"}},
			Layers: []Layer{
				{Name: "conv", Op: "Conv", Device: "cuda", Precision: "fp32"},
				{Name: "lp", Op: "LpNormalization", Device: "cpu", Precision: "fp32", Fallback: "no kernel"},
				{Name: "fc", Op: "Gemm", Device: "cuda", Precision: "fp32"},
			},
		}
	}
	conv := device.LayerRun{Name: "conv", Tactic: "cudnn A", Precision: "fp16", Time: 3 * time.Microsecond, Workspace: 64}
	fc := device.LayerRun{Name: "fc", Tactic: "cublaslt #0", Precision: "fp16", Time: 2 * time.Microsecond, Cached: true,
		Choice: "cublaslt-epilogue:0", Sig: "cuda gemm m=1"}
	blobs := []Blob{
		{Name: "segment0/cuda.kernels.sm_90", Data: []byte("cubin")},
		{Name: "segment0/" + device.LayersBlob, Data: report(device.Memory{WeightBytes: 10, ArenaBytes: 100, WorkspaceBytes: 64}, conv,
			device.LayerRun{Name: "lp", Tactic: "ignored: the layer runs on the CPU"})},
		{Name: "segment2/" + device.LayersBlob, Data: report(device.Memory{WeightBytes: 5, ArenaBytes: 50}, fc)},
		{Name: ProfileBlobPrefix(1) + "segment0/" + device.LayersBlob, Data: report(device.Memory{WeightBytes: 10, ArenaBytes: 400, WorkspaceBytes: 32},
			device.LayerRun{Name: "conv", Tactic: "cudnn B", Precision: "fp16", Time: 9 * time.Microsecond})},
	}
	h := header()
	if err := h.ApplyLayerReports(blobs); err != nil {
		t.Fatal(err)
	}
	want := [][]Tactic{
		{{Layer: "conv", Tactic: "cudnn A", Time: 3 * time.Microsecond, Workspace: 64}, {Layer: "fc", Tactic: "cublaslt #0", Time: 2 * time.Microsecond, Cached: true, Name: "cublaslt-epilogue:0", Sig: "cuda gemm m=1"}},
		{{Layer: "conv", Tactic: "cudnn B", Time: 9 * time.Microsecond}, {Layer: "fc", Tactic: "cublaslt #0", Time: 2 * time.Microsecond, Cached: true, Name: "cublaslt-epilogue:0", Sig: "cuda gemm m=1"}},
	}
	if !reflect.DeepEqual(h.Tactics, want) {
		t.Errorf("tactics %+v\nwant %+v", h.Tactics, want)
	}
	if m := h.Stats.DeviceMemory; m == nil || *m != (device.Memory{WeightBytes: 15, ArenaBytes: 450, WorkspaceBytes: 64}) {
		t.Errorf("device memory %+v", m)
	}
	if p := []string{h.Layers[0].Precision, h.Layers[1].Precision, h.Layers[2].Precision}; !reflect.DeepEqual(p, []string{"fp16", "fp32", "fp16"}) {
		t.Errorf("precisions %v", p)
	}

	// The plan written with them decodes (one tactic set per profile).
	h.Device, h.Fingerprint = "cpu", cpuHeader(t).Fingerprint
	var buf bytes.Buffer
	if err := Write(&buf, h, testGraph(), blobs); err != nil {
		t.Fatal(err)
	}
	p, err := Decode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Header.Tactics, want) || *p.Header.Stats.DeviceMemory != *h.Stats.DeviceMemory {
		t.Errorf("decoded tactics %+v, memory %+v", p.Header.Tactics, p.Header.Stats.DeviceMemory)
	}

	none := header()
	if err := none.ApplyLayerReports(blobs[:1]); err != nil || none.Tactics != nil || none.Stats.DeviceMemory != nil || none.Layers[0].Precision != "fp32" {
		t.Errorf("without reports: %v, tactics %v, memory %v, precision %s", err, none.Tactics, none.Stats.DeviceMemory, none.Layers[0].Precision)
	}
	bad := header()
	err = bad.ApplyLayerReports([]Blob{{Name: "segment2/" + device.LayersBlob, Data: []byte("{")}})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "segment2/"+device.LayersBlob) {
		t.Errorf("damaged report: %v, want ErrCorrupt naming the section", err)
	}
}

// TestHeaderCompat: plans written before kiln recorded device layer
// reports (no device_memory, no workspace_bytes) still load, and a plan
// without them is written without those keys.
func TestHeaderCompat(t *testing.T) {
	h := cpuHeader(t)
	data := writePlan(t, h)
	for _, key := range []string{`"device_memory"`, `"workspace_bytes"`} {
		if bytes.Contains(data, []byte(key)) {
			t.Errorf("a plan without device reports has %s in its header", key)
		}
	}
	p, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if p.Header.Stats.DeviceMemory != nil || p.Header.Tactics[0][0].Workspace != 0 {
		t.Errorf("header %+v", p.Header)
	}
}

// TestDeviceTactics: what a load hands a device from a plan's tactic
// table (device.ExecOptions.Tactics): in a device plan the device's
// choices by name with their signatures, and the Tactic of the layers that
// fall back to the CPU, not the descriptions of layers without a choice;
// in a CPU plan every layer's Tactic; per profile; nil past the table.
func TestDeviceTactics(t *testing.T) {
	gpu := Header{
		Device:   "cuda:1",
		Profiles: []engine.Profile{{Name: "small"}, {Name: "big"}},
		Layers: []Layer{
			{Name: "conv", Device: "cuda"}, {Name: "lp", Device: "cpu"}, {Name: "relu", Device: "cuda"}, {Name: "fc", Device: "cuda"},
		},
		Tactics: [][]Tactic{
			{
				{Layer: "conv", Tactic: "cudnn nhwc fused bias IMPLICIT_GEMM (algo 0, default math)", Name: "cudnn-fused:algo=0,math=0", Sig: "cuda conv a"},
				{Layer: "lp", Tactic: "direct"},
				{Layer: "relu", Tactic: "relu_f32"},
				{Layer: "fc", Tactic: "cublaslt heuristic #1 of 3", Name: "cublaslt:1", Sig: "cuda gemm b"},
			},
			{{Layer: "fc", Tactic: "cublaslt heuristic #0 of 3", Name: "cublaslt:0", Sig: "cuda gemm c"}},
		},
	}
	cpu := Header{Device: "cpu", Tactics: [][]Tactic{{{Layer: "conv", Tactic: "winograd"}, {Layer: "mm", Tactic: "gemm-8x8"}}}}
	for _, tc := range []struct {
		name string
		h    Header
		i    int
		want []device.Tactic
	}{
		{"device plan", gpu, 0, []device.Tactic{
			{Layer: "conv", Tactic: "cudnn-fused:algo=0,math=0", Sig: "cuda conv a"},
			{Layer: "lp", Tactic: "direct"},
			{Layer: "fc", Tactic: "cublaslt:1", Sig: "cuda gemm b"},
		}},
		{"device plan, profile 1", gpu, 1, []device.Tactic{{Layer: "fc", Tactic: "cublaslt:0", Sig: "cuda gemm c"}}},
		{"past the table", gpu, 2, nil},
		{"cpu plan", cpu, 0, []device.Tactic{{Layer: "conv", Tactic: "winograd"}, {Layer: "mm", Tactic: "gemm-8x8"}}},
		{"no table", Header{Device: "cuda"}, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.DeviceTactics(tc.i); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("DeviceTactics(%d) = %+v\nwant %+v", tc.i, got, tc.want)
			}
		})
	}
}
