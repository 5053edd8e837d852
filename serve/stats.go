package serve

import (
	"github.com/kilnai/kiln"
)

// MemoryUsage is memory a loaded model version holds, as Triton's
// statistics report it: a kind ("CPU"; "GPU" memory is not reported), a
// device id and a size.
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

// memoryUsage returns the host memory of model version num of m: its
// weights (the engine's constants) and the activation arena of each of
// its instances.
func (m *model) memoryUsage(num int64) []MemoryUsage {
	if m.repo == nil {
		return nil
	}
	var km *kiln.Model
	for _, v := range m.repo.Versions {
		if v.Number == num {
			km = v.Model
		}
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
