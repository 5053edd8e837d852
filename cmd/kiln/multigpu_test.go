package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/examples"
)

// statsInstances are the instances of a model's HTTP statistics.
type statsInstances struct {
	ModelStats []struct {
		Name           string `json:"name"`
		ExecutionCount int    `json:"execution_count"`
		MemoryUsage    []struct {
			Type     string `json:"type"`
			ID       int    `json:"id"`
			ByteSize int64  `json:"byte_size"`
		} `json:"memory_usage"`
		Instances []struct {
			Name           string `json:"name"`
			Kind           string `json:"kind"`
			GPU            int    `json:"gpu"`
			GPUUUID        string `json:"gpu_uuid"`
			Device         string `json:"device"`
			ExecutionCount int    `json:"execution_count"`
		} `json:"instances"`
	} `json:"model_stats"`
}

// TestServeMultiGPUFake (issue 16) serves a model on several GPUs through
// kiln serve against the fake CUDA libraries, which report
// $KILN_FAKE_GPUS GPUs named by $KILN_FAKE_GPU_NAMES and honour
// CUDA_VISIBLE_DEVICES: instance_group's count is per GPU, each GPU gets
// its engine from the plan cache (GPUs of one fingerprint share one plan
// file, a GPU that differs has its own), KIND_GPU without gpus means every
// visible GPU, the statistics show each instance's GPU and concurrent
// requests reach every instance; a GPU out of range fails the load naming
// the field.
func TestServeMultiGPUFake(t *testing.T) {
	tests := []struct {
		name            string
		env             map[string]string
		group           string
		wantInstances   []string // device/uuid per instance
		wantPlans       int
		wantConfigGPUs  string
		wantUnavailable string
	}{
		{name: "gpus [0,1] count 2", env: map[string]string{"KILN_FAKE_GPUS": "2"},
			group:          "count: 2 kind: KIND_GPU gpus: [0, 1]",
			wantInstances:  []string{"cuda:0/GPU-fa4e0000-0000-0000-0000-000000000000", "cuda:0/GPU-fa4e0000-0000-0000-0000-000000000000", "cuda:1/GPU-fa4e0000-0000-0000-0000-000000000001", "cuda:1/GPU-fa4e0000-0000-0000-0000-000000000001"},
			wantPlans:      1,
			wantConfigGPUs: "[0,1]"},
		{name: "gpus [0] count 2 on one GPU", env: map[string]string{"KILN_FAKE_GPUS": "1"},
			group:          "count: 2 kind: KIND_GPU gpus: [0]",
			wantInstances:  []string{"cuda:0/GPU-fa4e0000-0000-0000-0000-000000000000", "cuda:0/GPU-fa4e0000-0000-0000-0000-000000000000"},
			wantPlans:      1,
			wantConfigGPUs: "[0]"},
		{name: "every visible GPU, one differs", env: map[string]string{"KILN_FAKE_GPUS": "2", "KILN_FAKE_GPU_NAMES": "Fake GPU,Other GPU"},
			group:          "count: 1 kind: KIND_GPU",
			wantInstances:  []string{"cuda:0/GPU-fa4e0000-0000-0000-0000-000000000000", "cuda:1/GPU-fa4e0000-0000-0000-0000-000000000001"},
			wantPlans:      2,
			wantConfigGPUs: "[0,1]"},
		{name: "CUDA_VISIBLE_DEVICES=2,1 of 3", env: map[string]string{"KILN_FAKE_GPUS": "3", "CUDA_VISIBLE_DEVICES": "2,1"},
			group:          "count: 1 kind: KIND_GPU",
			wantInstances:  []string{"cuda:0/GPU-fa4e0000-0000-0000-0000-000000000002", "cuda:1/GPU-fa4e0000-0000-0000-0000-000000000001"},
			wantPlans:      1,
			wantConfigGPUs: "[0,1]"},
		{name: "gpus entry out of range", env: map[string]string{"KILN_FAKE_GPUS": "2"},
			group:           "count: 1 kind: KIND_GPU gpus: [0, 2]",
			wantUnavailable: "instance_group[0] (tiny_0).gpus: GPU 2 is out of range: 2 GPU(s) visible (0..1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fakeCUDA(t) // a new copy of the libraries: their device list is read once per copy
			if _, ok := tt.env["CUDA_VISIBLE_DEVICES"]; !ok {
				t.Setenv("CUDA_VISIBLE_DEVICES", "")
				os.Unsetenv("CUDA_VISIBLE_DEVICES")
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			repo := t.TempDir()
			os.MkdirAll(filepath.Join(repo, "tiny", "1"), 0o755)
			os.WriteFile(filepath.Join(repo, "tiny", "1", "model.onnx"), examples.TinyCNNModel, 0o644)
			cfg := "max_batch_size: 4\ninstance_group [ { " + tt.group + " } ]\n"
			os.WriteFile(filepath.Join(repo, "tiny", "config.pbtxt"), []byte(cfg), 0o644)
			cache := t.TempDir()
			s := startServed(t, "--model-repository", repo, "--plan-cache", cache)
			base := "http://" + s.http
			// the first build compiles kiln's kernels with NVRTC: minutes on
			// a busy machine
			var st map[string]string
			deadline := time.Now().Add(5 * time.Minute)
			for {
				st = indexStates(t, base, "")
				if st["tiny"] != "LOADING" && st["tiny"] != "" || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if tt.wantUnavailable != "" {
				if st["tiny"] != "UNAVAILABLE" {
					t.Fatalf("state %q, want UNAVAILABLE", st["tiny"])
				}
				_, body := call(t, nil, "POST", base+"/v2/repository/index", "", nil)
				if !strings.Contains(body, tt.wantUnavailable) {
					t.Fatalf("index %s lacks %q", body, tt.wantUnavailable)
				}
				return
			}
			if st["tiny"] != "READY" {
				_, body := call(t, nil, "POST", base+"/v2/repository/index", "", nil)
				t.Fatalf("not ready: %s", body)
			}
			plans, _ := filepath.Glob(filepath.Join(cache, "*.plan"))
			if len(plans) != tt.wantPlans {
				t.Errorf("plan files %v, want %d", plans, tt.wantPlans)
			}
			_, body := call(t, nil, "GET", base+"/v2/models/tiny/config", "", nil)
			if !strings.Contains(strings.ReplaceAll(body, " ", ""), `"gpus":`+tt.wantConfigGPUs) {
				t.Errorf("config %s lacks gpus %s", body, tt.wantConfigGPUs)
			}

			// Concurrent requests, each run taking 20 ms on the fake GPU,
			// keep every instance busy.
			t.Setenv("KILN_FAKE_SYNC_US", "20000")
			in := examples.TinyCNNInput(1)
			req, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}}})
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 6 {
						resp, err := http.Post(base+"/v2/models/tiny/infer", "application/json", bytes.NewReader(req))
						if err != nil {
							errs <- err
							return
						}
						resp.Body.Close()
						if resp.StatusCode != 200 {
							errs <- fmt.Errorf("infer: %s", resp.Status)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			_, body = call(t, nil, "GET", base+"/v2/models/tiny/stats", "", nil)
			var stats statsInstances
			if err := json.Unmarshal([]byte(body), &stats); err != nil || len(stats.ModelStats) != 1 {
				t.Fatalf("stats %s: %v", body, err)
			}
			var got []string
			runs := 0
			for _, in := range stats.ModelStats[0].Instances {
				got = append(got, in.Device+"/"+in.GPUUUID)
				if in.ExecutionCount == 0 {
					t.Errorf("instance %s on %s ran no batch: %s", in.Name, in.Device, body)
				}
				if in.Kind != "KIND_GPU" {
					t.Errorf("instance %s kind %s", in.Name, in.Kind)
				}
				runs += in.ExecutionCount
			}
			if strings.Join(got, " ") != strings.Join(tt.wantInstances, " ") {
				t.Errorf("instances %v, want %v", got, tt.wantInstances)
			}
			// memory_usage: one entry per GPU, its weights and its instances'
			// arenas and workspaces
			perGPU := map[int]int{}
			for _, in := range stats.ModelStats[0].Instances {
				perGPU[in.GPU]++
			}
			if mu := stats.ModelStats[0].MemoryUsage; len(mu) != len(perGPU) {
				t.Errorf("memory_usage %+v, want one GPU entry for each of %v", mu, perGPU)
			} else {
				for _, m := range mu {
					if m.Type != "GPU" || perGPU[m.ID] == 0 || m.ByteSize <= 0 {
						t.Errorf("memory_usage entry %+v", m)
					}
				}
			}
			if runs != stats.ModelStats[0].ExecutionCount {
				t.Errorf("the instances ran %d batches, the model %d", runs, stats.ModelStats[0].ExecutionCount)
			}
		})
	}
}
