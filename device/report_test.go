package device_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
)

// TestLayerReport round-trips a device's layer report and refuses damaged
// sections with an error that says what is wrong.
func TestLayerReport(t *testing.T) {
	want := device.LayerReport{
		Layers: []device.LayerRun{
			{Name: "conv", Tactic: "cudnn IMPLICIT_PRECOMP_GEMM (algo 1, FMA math)", Precision: "fp32", Time: 1500 * time.Microsecond, Workspace: 4096},
			{Name: "fc", Tactic: "cublaslt algo 6 (heuristic #0 of 3)", Precision: "fp16", Time: 900, Cached: true,
				Choice: "cublaslt-epilogue:0", Sig: "cuda gemm m=1 n=16 k=256"},
			{Name: "flat", Tactic: "none: an alias of its input"},
		},
		Memory: device.Memory{WeightBytes: 100, ArenaBytes: 200, WorkspaceBytes: 4096},
		Shapes: "opt",
	}
	got, err := device.ParseLayerReport(device.MarshalLayerReport(want))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip: %+v, want %+v", got, want)
	}
	for _, tt := range []struct{ name, blob, want string }{
		{"not JSON", "{", "unexpected end"},
		{"other format", `{"format":"x","version":1,"layers":[]}`, `format "x"`},
		{"other version", `{"format":"kiln-device-layers","version":9,"layers":[]}`, "version 9"},
		{"unnamed layer", `{"format":"kiln-device-layers","version":1,"layers":[{"tactic":"k"}]}`, "layer 0"},
		{"negative time", `{"format":"kiln-device-layers","version":1,"layers":[{"name":"a","time_ns":-1}]}`, "layer 0"},
		{"choice without a signature", `{"format":"kiln-device-layers","version":1,"layers":[{"name":"a","choice":"kernel"}]}`, "layer 0"},
		{"signature without a choice", `{"format":"kiln-device-layers","version":1,"layers":[{"name":"a","sig":"cuda conv"}]}`, "layer 0"},
		{"negative memory", `{"format":"kiln-device-layers","version":1,"layers":[],"memory":{"arena_bytes":-5}}`, "negative memory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := device.ParseLayerReport([]byte(tt.blob))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), device.LayersBlob) {
				t.Fatalf("error %v, want one naming the section and %q", err, tt.want)
			}
		})
	}
	mem := func(w, a, ws int64) device.Memory {
		return device.Memory{WeightBytes: w, ArenaBytes: a, WorkspaceBytes: ws}
	}
	a, b := mem(1, 20, 300), mem(10, 2, 30)
	if a.Add(b) != mem(11, 22, 330) || a.Max(b) != mem(10, 20, 300) {
		t.Errorf("Add %+v, Max %+v", a.Add(b), a.Max(b))
	}
}
