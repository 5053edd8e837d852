package httpapi

import "github.com/kilnai/kiln/serve"

// memoryJSON is a version's memory_usage, as Triton's statistics write it.
func memoryJSON(st serve.Stats) []map[string]any {
	out := []map[string]any{}
	for _, m := range st.Memory {
		out = append(out, map[string]any{"type": m.Type, "id": m.ID, "byte_size": m.ByteSize})
	}
	return out
}

// responseJSON is a version's response_stats, by response index.
func responseJSON(st serve.Stats) map[string]any {
	out := map[string]any{}
	d := func(x serve.Duration) map[string]uint64 { return map[string]uint64{"count": x.Count, "ns": x.Ns} }
	for k, r := range st.Responses() {
		out[k] = map[string]any{"compute_infer": d(r.ComputeInfer), "compute_output": d(r.ComputeOutput),
			"success": d(r.Success), "fail": d(r.Fail), "empty_response": d(r.EmptyResponse), "cancel": d(r.Cancel)}
	}
	return out
}

// instancesJSON is a version's instances: where each runs and its model
// runs (kiln's extension of Triton's statistics).
func instancesJSON(st serve.Stats) []map[string]any {
	out := []map[string]any{}
	for _, in := range st.Instances {
		m := map[string]any{"name": in.Name, "kind": in.Kind, "device": in.Device, "execution_count": in.ExecutionCount}
		if in.Kind == "KIND_GPU" {
			m["gpu"] = in.GPU
			if in.UUID != "" {
				m["gpu_uuid"] = in.UUID
			}
		}
		out = append(out, m)
	}
	return out
}
