package metrics

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
)

// fakeGPUs is a GPUSource with fixed answers.
type fakeGPUs struct {
	mu    sync.Mutex
	stats []GPUStat
	err   error
	reads int
}

func (f *fakeGPUs) GPUs() ([]GPUStat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.stats, f.err
}

func TestGPUMetrics(t *testing.T) {
	tests := []struct {
		name    string
		src     *fakeGPUs
		want    []string
		absent  []string
		logged  int // warnings after two scrapes
		scrapes int
	}{
		{"two GPUs", &fakeGPUs{stats: []GPUStat{{UUID: "GPU-a", Utilization: 0.25, MemoryTotal: 1 << 30, MemoryUsed: 1 << 20}, {UUID: "GPU-b", Utilization: 1}}},
			[]string{`nv_gpu_utilization{gpu_uuid="GPU-a"} 0.25`, `nv_gpu_memory_total_bytes{gpu_uuid="GPU-a"} 1.073741824e+09`,
				`nv_gpu_memory_used_bytes{gpu_uuid="GPU-a"} 1.048576e+06`, `nv_gpu_utilization{gpu_uuid="GPU-b"} 1`}, nil, 0, 2},
		{"a failing read is logged once", &fakeGPUs{stats: []GPUStat{{UUID: "GPU-a", Utilization: 0.5}}, err: errors.New("GPU 1: gone")},
			[]string{`nv_gpu_utilization{gpu_uuid="GPU-a"} 0.5`}, nil, 1, 3},
		{"no GPU", &fakeGPUs{err: errors.New("gone")}, nil, []string{"nv_gpu_"}, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logBuf bytes.Buffer
			m := New(nil)
			m.AddGPU(tt.src, slog.New(slog.NewTextHandler(&logBuf, nil)))
			var out string
			for range tt.scrapes {
				out = scrape(t, m.Handler())
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("metrics lack %s", w)
				}
			}
			for _, a := range tt.absent {
				for _, line := range strings.Split(out, "\n") {
					if strings.HasPrefix(line, a) {
						t.Errorf("unexpected %s", line)
					}
				}
			}
			if n := strings.Count(logBuf.String(), "GPU metrics"); n != tt.logged {
				t.Errorf("%d log lines, want %d:\n%s", n, tt.logged, logBuf.String())
			}
			if tt.src.reads != tt.scrapes {
				t.Errorf("%d reads for %d scrapes", tt.src.reads, tt.scrapes)
			}
		})
	}
}

// TestEnableGPUUnavailable: without libnvidia-ml the GPU metrics are absent,
// the reason is logged once, and the other metrics still work.
func TestEnableGPUUnavailable(t *testing.T) {
	var logBuf bytes.Buffer
	m := New(nil)
	err := m.EnableGPU(slog.New(slog.NewTextHandler(&logBuf, nil)), cuda.Options{LibDir: t.TempDir()})
	if !errors.Is(err, cuda.ErrUnavailable) {
		t.Fatalf("err = %v, want cuda.ErrUnavailable", err)
	}
	m.Executed("m", "1", 1, 1, 0)
	out := scrape(t, m.Handler())
	if strings.Contains(out, "nv_gpu_") || !strings.Contains(out, `nv_inference_exec_count{model="m",version="1"} 1`) {
		t.Errorf("metrics:\n%s", out)
	}
	if n := strings.Count(logBuf.String(), "GPU metrics off"); n != 1 || !strings.Contains(logBuf.String(), "libnvidia-ml") {
		t.Errorf("log %q: want the reason once", logBuf.String())
	}
}

// TestNVMLSource reads a fake libnvidia-ml with two GPUs.
func TestNVMLSource(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("needs a C compiler (cc) to build the fake libnvidia-ml: %v", err)
	}
	dir := t.TempDir()
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(dir, "libnvidia-ml.so.1"), "testdata/fakenvml.c").CombinedOutput(); err != nil {
		t.Fatalf("building the fake libnvidia-ml: %v\n%s", err, out)
	}
	src, err := NewNVMLSource(cuda.Options{LibDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if src.Count() != 2 {
		t.Errorf("Count() = %d, want 2", src.Count())
	}
	gpus, err := src.GPUs()
	if err != nil {
		t.Fatal(err)
	}
	want := []GPUStat{{UUID: "GPU-fa4e0000-0000-0000-0000-000000000000", Utilization: 0.37, MemoryTotal: 16 << 30, MemoryUsed: 3 << 30},
		{UUID: "GPU-fa4e0000-0000-0000-0000-000000000001", Utilization: 1, MemoryTotal: 80 << 30, MemoryUsed: 80 << 30}}
	if len(gpus) != 2 || gpus[0] != want[0] || gpus[1] != want[1] {
		t.Errorf("GPUs() = %+v, want %+v", gpus, want)
	}

	m := New(nil)
	if err := m.EnableGPU(nil, cuda.Options{LibDir: dir}); err != nil {
		t.Fatal(err)
	}
	out := scrape(t, m.Handler())
	for _, w := range []string{`nv_gpu_utilization{gpu_uuid="GPU-fa4e0000-0000-0000-0000-000000000000"} 0.37`, `nv_gpu_memory_used_bytes{gpu_uuid="GPU-fa4e0000-0000-0000-0000-000000000001"} 8.589934592e+10`} {
		if !strings.Contains(out, w) {
			t.Errorf("metrics lack %s", w)
		}
	}
	if err := src.Close(); err != nil {
		t.Error(err)
	}
}

// TestNVMLSourceVisible: with CUDA_VISIBLE_DEVICES set, the GPU metrics
// are those of the GPUs it leaves visible (matched by UUID through the
// fake libcuda of device/cuda/testdata, two GPUs as the fake NVML has);
// unset, every GPU NVML finds.
func TestNVMLSourceVisible(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("needs a C compiler (cc) to build the fake libnvidia-ml and libcuda: %v", err)
	}
	for _, tt := range []struct {
		visible string // "-": unset
		want    []string
	}{
		{"-", []string{"GPU-fa4e0000-0000-0000-0000-000000000000", "GPU-fa4e0000-0000-0000-0000-000000000001"}},
		{"1", []string{"GPU-fa4e0000-0000-0000-0000-000000000001"}},
		{"1,0", []string{"GPU-fa4e0000-0000-0000-0000-000000000000", "GPU-fa4e0000-0000-0000-0000-000000000001"}},
	} {
		t.Run("CUDA_VISIBLE_DEVICES="+tt.visible, func(t *testing.T) {
			dir := t.TempDir() // a new libcuda: it reads CUDA_VISIBLE_DEVICES once
			for src, lib := range map[string]string{"testdata/fakenvml.c": "libnvidia-ml.so.1", "../../device/cuda/testdata/fakecuda.c": "libcuda.so.1"} {
				if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(dir, lib), src).CombinedOutput(); err != nil {
					t.Fatalf("building %s: %v\n%s", lib, err, out)
				}
			}
			t.Setenv("KILN_FAKE_GPUS", "2")
			t.Setenv("CUDA_VISIBLE_DEVICES", tt.visible)
			if tt.visible == "-" {
				os.Unsetenv("CUDA_VISIBLE_DEVICES")
			}
			src, err := NewNVMLSource(cuda.Options{LibDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			gpus, err := src.GPUs()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, g := range gpus {
				got = append(got, g.UUID)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("GPUs %v, want %v", got, tt.want)
			}
		})
	}
}
