package metrics

import (
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnai/kiln/device/cuda"
)

// GPUStat is the state of one GPU.
type GPUStat struct {
	// UUID identifies the GPU (label gpu_uuid), e.g. "GPU-5fa8...".
	UUID string
	// Utilization is the fraction of the last sample period during which a
	// kernel ran, 0 to 1.
	Utilization float64
	// MemoryTotal and MemoryUsed are in bytes.
	MemoryTotal, MemoryUsed uint64
}

// GPUSource reads the state of the machine's GPUs; it must be safe for
// concurrent calls. NVMLSource is the real one.
type GPUSource interface {
	GPUs() ([]GPUStat, error)
}

// gpuCollector exports a GPUSource as Triton's nv_gpu_* gauges, read at
// each scrape. A failing read is logged once and leaves the gauges out of
// that scrape.
type gpuCollector struct {
	src               GPUSource
	log               *slog.Logger
	util, total, used *prometheus.Desc
	once              sync.Once
}

var gpuLabels = []string{"gpu_uuid"}

func newGPUCollector(src GPUSource, log *slog.Logger) *gpuCollector {
	return &gpuCollector{src: src, log: log,
		util:  prometheus.NewDesc("nv_gpu_utilization", "GPU utilization rate [0.0 - 1.0)", gpuLabels, nil),
		total: prometheus.NewDesc("nv_gpu_memory_total_bytes", "GPU total memory, in bytes", gpuLabels, nil),
		used:  prometheus.NewDesc("nv_gpu_memory_used_bytes", "GPU used memory, in bytes", gpuLabels, nil),
	}
}

func (g *gpuCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.util
	ch <- g.total
	ch <- g.used
}

func (g *gpuCollector) Collect(ch chan<- prometheus.Metric) {
	gpus, err := g.src.GPUs()
	if err != nil {
		g.once.Do(func() { g.log.Warn("GPU metrics: reading the GPUs failed (logged once)", "err", err) })
	}
	for _, s := range gpus {
		ch <- prometheus.MustNewConstMetric(g.util, prometheus.GaugeValue, s.Utilization, s.UUID)
		ch <- prometheus.MustNewConstMetric(g.total, prometheus.GaugeValue, float64(s.MemoryTotal), s.UUID)
		ch <- prometheus.MustNewConstMetric(g.used, prometheus.GaugeValue, float64(s.MemoryUsed), s.UUID)
	}
}

// AddGPU exports src as nv_gpu_utilization, nv_gpu_memory_total_bytes and
// nv_gpu_memory_used_bytes, labelled gpu_uuid, read at each scrape; a
// failing read is logged once to log (nil discards it).
func (m *Metrics) AddGPU(src GPUSource, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m.reg.MustRegister(newGPUCollector(src, log))
}

// EnableGPU opens NVML (see NewNVMLSource) and exports its GPUs with
// AddGPU. On a machine without an NVIDIA driver it logs once why the GPU
// metrics are absent and returns the error (wrapping cuda.ErrUnavailable);
// the other metrics are unaffected.
func (m *Metrics) EnableGPU(log *slog.Logger, o cuda.Options) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	src, err := NewNVMLSource(o)
	if err != nil {
		log.Info("GPU metrics off", "reason", err)
		return err
	}
	m.AddGPU(src, log)
	return nil
}

// maxGPUs bounds the device indices NVMLSource tries.
const maxGPUs = 64

// nvmlUUID is the UUID lookup, used when the NVML bindings provide it.
type nvmlUUID interface {
	UUID(d cuda.NVMLDevice) (string, error)
}

// NVMLSource reads GPU utilization and memory through NVML (package
// device/cuda's dlopen bindings).
type NVMLSource struct {
	nvml *cuda.NVML
	mu   sync.Mutex
	// idx are the NVML indices of the GPUs read: every GPU NVML finds, or
	// those CUDA_VISIBLE_DEVICES leaves visible to kiln.
	idx []int
}

// NewNVMLSource opens NVML and lists the GPUs: every GPU NVML finds, as
// Triton exports them; but when CUDA_VISIBLE_DEVICES is set (several
// servers sharing a machine, one set of GPUs each), only the GPUs it leaves
// visible to CUDA (matched by UUID through the CUDA driver), so that each
// server exports the GPUs its instances run on. Without the NVIDIA
// driver's libnvidia-ml, or with no GPU, it returns an error wrapping
// cuda.ErrUnavailable.
func NewNVMLSource(o cuda.Options) (*NVMLSource, error) {
	nv, err := cuda.OpenNVML(o)
	if err != nil {
		return nil, err
	}
	s := &NVMLSource{nvml: nv}
	var visible map[string]bool
	if _, ok := os.LookupEnv("CUDA_VISIBLE_DEVICES"); ok {
		if ids, err := cuda.VisibleGPUs(o); err == nil {
			visible = map[string]bool{}
			for _, id := range ids {
				visible[id] = true
			}
		}
	}
	for i := 0; i < maxGPUs; i++ {
		d, err := nv.Device(i)
		if err != nil {
			break // NVML_ERROR_INVALID_ARGUMENT past the last device
		}
		if visible != nil {
			if id, err := nv.UUID(d); err == nil && !visible[id] {
				continue
			}
		}
		s.idx = append(s.idx, i)
	}
	if len(s.idx) == 0 {
		nv.Shutdown()
		return nil, fmt.Errorf("%w: NVML finds no GPU", cuda.ErrUnavailable)
	}
	return s, nil
}

// Count returns the number of GPUs read.
func (s *NVMLSource) Count() int { return len(s.idx) }

// GPUs reads every GPU's utilization and memory. The gpu_uuid label is the
// UUID NVML reports when the bindings provide nvmlDeviceGetUUID, else
// "GPU-index-N" for device index N. A GPU that cannot be read is left out
// and its error returned with the others.
func (s *NVMLSource) GPUs() ([]GPUStat, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []GPUStat
	var first error
	for _, i := range s.idx {
		st, err := s.read(i)
		if err != nil {
			if first == nil {
				first = fmt.Errorf("GPU %d: %w", i, err)
			}
			continue
		}
		out = append(out, st)
	}
	return out, first
}

func (s *NVMLSource) read(i int) (GPUStat, error) {
	d, err := s.nvml.Device(i)
	if err != nil {
		return GPUStat{}, err
	}
	st := GPUStat{UUID: fmt.Sprintf("GPU-index-%d", i)}
	if u, ok := any(s.nvml).(nvmlUUID); ok {
		if id, err := u.UUID(d); err == nil && id != "" {
			st.UUID = id
		}
	}
	gpu, _, err := s.nvml.Utilization(d)
	if err != nil {
		return GPUStat{}, err
	}
	st.Utilization = float64(gpu) / 100
	mem, err := s.nvml.Memory(d)
	if err != nil {
		return GPUStat{}, err
	}
	st.MemoryTotal, st.MemoryUsed = mem.Total, mem.Used
	return st, nil
}

// Close shuts NVML down.
func (s *NVMLSource) Close() error { return s.nvml.Shutdown() }
