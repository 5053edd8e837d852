package serve

import (
	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/serve/repository"
)

// MemoryUsage is memory a loaded model version holds, as Triton's
// statistics report it: a kind ("CPU", or "GPU" with the GPU's CUDA
// ordinal as the id), a device id and a size.
type MemoryUsage struct {
	Type     string
	ID       int64
	ByteSize uint64
}

// Duration is a count and a total time in nanoseconds.
type Duration struct{ Count, Ns uint64 }

// ResponseStats are the statistics of the responses at one index of a
// request's responses (Triton's response_stats). A kiln model answers each
// request with one response, at index "0".
type ResponseStats struct {
	ComputeInfer, ComputeOutput, Success, Fail, EmptyResponse, Cancel Duration
}

// Responses returns the response statistics of st, by response index:
// "0", a model's one response per request, once it has answered any.
// Failures include canceled requests; responses from the response cache
// count as successes without compute time.
func (st Stats) Responses() map[string]ResponseStats {
	if st.SuccessCount+st.FailCount == 0 {
		return nil
	}
	run := st.SuccessCount - st.CacheHitCount
	return map[string]ResponseStats{"0": {
		ComputeInfer:  Duration{run, st.ComputeNs},
		ComputeOutput: Duration{run, st.ComputeOutputNs},
		Success:       Duration{st.SuccessCount, st.SuccessNs},
		Fail:          Duration{st.FailCount, st.FailNs},
	}}
}

// memoryUsage returns the memory of model version num of m: on the host,
// its weights (the engine's constants) and the activation arena of each of
// its instances; on each GPU its instances run on, the plan's weights and,
// per instance, its activation arena and library workspace (at the
// largest shapes, as the plan records them).
func (m *model) memoryUsage(num int64) []MemoryUsage {
	if m.repo == nil {
		return nil
	}
	var km *kiln.Model
	var placed []repository.Instance
	for _, v := range m.repo.Versions {
		if v.Number == num {
			km, placed = v.Model, v.Instances
		}
	}
	if gpu := gpuMemory(placed); len(gpu) > 0 {
		return gpu
	}
	if km == nil || km.Engine() == nil {
		return nil
	}
	e := km.Engine()
	var n uint64
	for _, v := range e.Graph().Initializers {
		if t := v.Const; t != nil {
			n += uint64(len(t.Data))
			for _, s := range t.Strings {
				n += uint64(len(s))
			}
		}
	}
	n += uint64(e.Memory().ArenaBytes) * uint64(m.repo.Config.Instances())
	return []MemoryUsage{{Type: "CPU", ID: 0, ByteSize: n}}
}

// gpuMemory is the GPU memory of the GPU instances of placed, one entry per
// GPU (nil when none runs on a GPU, or the plans do not record it).
func gpuMemory(placed []repository.Instance) []MemoryUsage {
	var out []MemoryUsage
	for _, dev := range repository.Devices(placed) {
		var n int64
		var in repository.Instance
		for _, p := range placed {
			if p.Device == dev {
				n, in = n+1, p
			}
		}
		if in.Kind != "KIND_GPU" || in.Model == nil || in.Model.Plan() == nil || in.Model.Plan().Stats.DeviceMemory == nil {
			continue
		}
		dm := in.Model.Plan().Stats.DeviceMemory
		out = append(out, MemoryUsage{Type: "GPU", ID: int64(in.GPU), ByteSize: uint64(dm.WeightBytes + n*(dm.ArenaBytes+dm.WorkspaceBytes))})
	}
	return out
}
