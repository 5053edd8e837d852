package serve

import (
	"fmt"
	"strings"

	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/serve/scheduler"
)

// InstanceStats are one instance (execution context) of a model version:
// where it runs and how many model runs (batches) it made. kiln's
// extension of Triton's statistics ("instances" in the HTTP statistics).
type InstanceStats struct {
	// Name is the instance's name (GROUP_N), Kind KIND_CPU or KIND_GPU.
	Name, Kind string
	// GPU is the CUDA ordinal of a KIND_GPU instance (-1 for the CPU),
	// UUID the GPU's UUID (the gpu_uuid of the nv_gpu_* metrics; empty
	// when unknown) and Device the engine's device ("cpu", "cuda:N").
	GPU          int
	UUID, Device string
	// ExecutionCount counts the instance's model runs.
	ExecutionCount uint64
}

// placedRunner runs a model version whose instance groups place its
// instances on devices: instance i is an execution context of
// instances[i]'s model (one model per device, built or loaded for it).
// Run, outside the instances, runs the first instance's model.
type placedRunner struct {
	modelRunner
	instances []repository.Instance
}

var _ scheduler.IndexedInstancer = placedRunner{}

// NewInstanceAt returns an execution context of instance i's model.
func (p placedRunner) NewInstanceAt(i int) scheduler.Runner {
	return p.instances[i%len(p.instances)].Model.NewContext()
}

// NewInstance returns a context of the first instance's model (the
// scheduler calls NewInstanceAt).
func (p placedRunner) NewInstance() scheduler.Runner { return p.NewInstanceAt(0) }

// instanceStats returns the instances of v as placed (without placement:
// the config's instances on v's one model), with no runs yet.
func instanceStats(rm *repository.Model, v repository.Version) []InstanceStats {
	placed := v.Instances
	if placed == nil {
		var err error
		if placed, err = repository.Placement(rm.Name, rm.Config, nil); err != nil {
			return nil
		}
	}
	out := make([]InstanceStats, len(placed))
	for i, in := range placed {
		out[i] = InstanceStats{Name: in.Name, Kind: in.Kind, GPU: in.GPU, UUID: in.UUID, Device: in.Device}
	}
	return out
}

// placementSummary says where instances run, device by device: "2 on
// cuda:0 (GPU-...), 2 on cuda:1 (GPU-...)".
func placementSummary(instances []repository.Instance) string {
	var parts []string
	for _, dev := range repository.Devices(instances) {
		n, uuid := 0, ""
		for _, in := range instances {
			if in.Device == dev {
				n++
				uuid = in.UUID
			}
		}
		p := fmt.Sprintf("%d on %s", n, dev)
		if uuid != "" {
			p += " (" + uuid + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}
