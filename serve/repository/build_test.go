package repository

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestBuildOptions(t *testing.T) {
	dir := filepath.Join("repo", "m")
	o, err := BuildOptions(dir, nil)
	if err != nil || o.MaxBatch != DefaultMaxBatchSize || o.Device != "" {
		t.Fatalf("no config: %+v, %v", o, err)
	}
	cfg := &Config{
		MaxBatchSize:   16,
		InstanceGroups: []InstanceGroup{{Kind: "KIND_CPU", Count: 1}, {Kind: "KIND_GPU", Count: 2, GPUs: []int{1}}},
		Parameters:     map[string]string{"precision": "INT8", "calibration_data": "calib", "dims": "seq=1,128,512; h=32,320,640", "opt_level": "3"},
	}
	o, err = BuildOptions(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxBatch != 16 || o.Device != "cuda:1" || o.Precision != "int8" || o.CalibData != filepath.Join(dir, "calib") ||
		o.Dims["seq"] != [3]int{1, 128, 512} || o.Dims["h"] != [3]int{32, 320, 640} || o.OptLevel != 3 {
		t.Errorf("options %+v", o)
	}
	bad := []map[string]string{
		{"precision": "fp8"},
		{"precision": "int8"},
		{"precision": "int8", "calibration_data": "../other"},
		{"dims": "seq=1,2"},
		{"dims": "seq=a,b,c"},
		{"opt_level": "9"},
	}
	for _, p := range bad {
		if _, err := BuildOptions(dir, &Config{Parameters: p}); !errors.Is(err, ErrConfig) {
			t.Errorf("parameters %v: error %v, want ErrConfig", p, err)
		}
	}
	if o, err := BuildOptions(dir, &Config{Parameters: map[string]string{"opt_level": "0"}}); err != nil || !o.NoOptimization || !o.AnyShape {
		t.Errorf("opt_level 0, max_batch_size 0: %+v, %v", o, err)
	}
}
