package grpcapi

import (
	"context"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// ModelConfig returns a ready model's configuration, as the server uses it
// (inputs and outputs completed from the model).
func (v *Service) ModelConfig(_ context.Context, r *inference.ModelConfigRequest) (*inference.ModelConfigResponse, error) {
	cfg, _, err := v.s.ModelConfig(r.GetName(), r.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	return &inference.ModelConfigResponse{Config: ConfigProto(cfg)}, nil
}

// ConfigProto converts a model configuration to its protobuf message.
func ConfigProto(c *repository.Config) *inference.ModelConfig {
	dt := func(d tensor.DType) inference.DataType {
		t, _ := api.ConfigDataType(d) // TYPE_INVALID for a type configs cannot name
		return t
	}
	out := &inference.ModelConfig{Name: c.Name, Platform: c.Platform, Backend: c.Backend,
		MaxBatchSize: int32(c.MaxBatchSize), DefaultModelFilename: c.DefaultModelFilename}
	vp := &inference.ModelVersionPolicy{}
	switch c.VersionPolicy.Kind {
	case "all":
		vp.PolicyChoice = &inference.ModelVersionPolicy_All_{All: &inference.ModelVersionPolicy_All{}}
	case "specific":
		vp.PolicyChoice = &inference.ModelVersionPolicy_Specific_{Specific: &inference.ModelVersionPolicy_Specific{Versions: c.VersionPolicy.Versions}}
	default:
		vp.PolicyChoice = &inference.ModelVersionPolicy_Latest_{Latest: &inference.ModelVersionPolicy_Latest{NumVersions: uint32(max(c.VersionPolicy.NumVersions, 1))}}
	}
	out.VersionPolicy = vp
	for _, in := range c.Inputs {
		out.Input = append(out.Input, &inference.ModelInput{Name: in.Name, DataType: dt(in.DataType), Dims: in.Dims, Optional: in.Optional})
	}
	for _, o := range c.Outputs {
		out.Output = append(out.Output, &inference.ModelOutput{Name: o.Name, DataType: dt(o.DataType), Dims: o.Dims})
	}
	for _, g := range c.InstanceGroups {
		ig := &inference.ModelInstanceGroup{Name: g.Name, Count: int32(g.Count), Kind: inference.ModelInstanceGroup_Kind(inference.ModelInstanceGroup_Kind_value[g.Kind])}
		for _, gpu := range g.GPUs {
			ig.Gpus = append(ig.Gpus, int32(gpu))
		}
		out.InstanceGroup = append(out.InstanceGroup, ig)
	}
	if db := c.DynamicBatching; db != nil {
		pol := func(p repository.QueuePolicy) *inference.ModelQueuePolicy {
			return &inference.ModelQueuePolicy{TimeoutAction: inference.ModelQueuePolicy_TimeoutAction(p.TimeoutAction),
				DefaultTimeoutMicroseconds: p.DefaultTimeoutMicroseconds, AllowTimeoutOverride: p.AllowTimeoutOverride, MaxQueueSize: p.MaxQueueSize}
		}
		d := &inference.ModelDynamicBatching{MaxQueueDelayMicroseconds: db.MaxQueueDelayMicroseconds, PreserveOrdering: db.PreserveOrdering,
			PriorityLevels: uint32(db.PriorityLevels), DefaultPriorityLevel: uint32(db.DefaultPriorityLevel), DefaultQueuePolicy: pol(db.DefaultQueuePolicy)}
		for _, p := range db.PreferredBatchSize {
			d.PreferredBatchSize = append(d.PreferredBatchSize, int32(p))
		}
		if len(db.PriorityQueuePolicy) > 0 {
			d.PriorityQueuePolicy = map[uint32]*inference.ModelQueuePolicy{}
			for k, p := range db.PriorityQueuePolicy {
				d.PriorityQueuePolicy[uint32(k)] = pol(p)
			}
		}
		out.SchedulingChoice = &inference.ModelConfig_DynamicBatching{DynamicBatching: d}
	}
	if len(c.Parameters) > 0 {
		out.Parameters = map[string]*inference.ModelParameter{}
		for k, v := range c.Parameters {
			out.Parameters[k] = &inference.ModelParameter{StringValue: v}
		}
	}
	for _, w := range c.Warmup {
		mw := &inference.ModelWarmup{Name: w.Name, BatchSize: uint32(w.BatchSize), Count: uint32(w.Count), Inputs: map[string]*inference.ModelWarmup_Input{}}
		for k, in := range w.Inputs {
			wi := &inference.ModelWarmup_Input{DataType: dt(in.DataType), Dims: in.Dims}
			switch in.Source {
			case repository.RandomData:
				wi.InputDataType = &inference.ModelWarmup_Input_RandomData{RandomData: true}
			case repository.FileData:
				wi.InputDataType = &inference.ModelWarmup_Input_InputDataFile{InputDataFile: in.File}
			default:
				wi.InputDataType = &inference.ModelWarmup_Input_ZeroData{ZeroData: true}
			}
			mw.Inputs[k] = wi
		}
		out.ModelWarmup = append(out.ModelWarmup, mw)
	}
	return out
}
