package grpcapi

import (
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/serve"
)

// statsExtras returns a version's memory_usage and response_stats.
func statsExtras(st serve.Stats) ([]*inference.MemoryUsage, map[string]*inference.InferResponseStatistics) {
	var mem []*inference.MemoryUsage
	for _, m := range st.Memory {
		mem = append(mem, &inference.MemoryUsage{Type: m.Type, Id: m.ID, ByteSize: m.ByteSize})
	}
	var resp map[string]*inference.InferResponseStatistics
	d := func(x serve.Duration) *inference.StatisticDuration {
		return &inference.StatisticDuration{Count: x.Count, Ns: x.Ns}
	}
	for k, r := range st.Responses() {
		if resp == nil {
			resp = map[string]*inference.InferResponseStatistics{}
		}
		resp[k] = &inference.InferResponseStatistics{ComputeInfer: d(r.ComputeInfer), ComputeOutput: d(r.ComputeOutput),
			Success: d(r.Success), Fail: d(r.Fail), EmptyResponse: d(r.EmptyResponse), Cancel: d(r.Cancel)}
	}
	return mem, resp
}
