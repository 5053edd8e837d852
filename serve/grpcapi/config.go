package grpcapi

import (
	"context"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/serve/repository"
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

// ConfigProto converts a model configuration to its protobuf message
// (c.ModelConfig: the config.pbtxt as written, completed with the server's
// view).
func ConfigProto(c *repository.Config) *inference.ModelConfig { return c.ModelConfig() }
