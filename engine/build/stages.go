package build

import (
	"context"
	"fmt"

	"github.com/kilnai/kiln/engine"
)

// precision converts the optimized FP32 graph to the requested precision.
func (b *builder) precision(ctx context.Context) error {
	switch b.o.Precision {
	case FP32:
		return nil
	default:
		return fmt.Errorf("%w: %s builds are not available yet", ErrOptions, b.o.Precision)
	}
}

// tactics times each layer's implementations at every profile's opt shape.
func (b *builder) tactics(ctx context.Context) error { return nil }

// memory plans the activation arena at every profile's max shape, with an
// engine prepared as the runtime will prepare it, and records the largest.
func (b *builder) memory() error {
	h := &b.res.Header
	profiles := h.Profiles
	if len(profiles) == 0 {
		profiles = []engine.Profile{{}}
	}
	for i, p := range profiles {
		o := engine.Options{}
		if len(p.Inputs) > 0 {
			o.Profiles = []engine.Profile{p}
		}
		e, err := engine.NewWithOptions(b.g, o)
		if err != nil {
			return err
		}
		m := e.Memory()
		if int64(m.ArenaBytes) > h.Stats.ArenaBytes {
			h.Stats.ArenaBytes, h.Stats.IntermediateBytes = int64(m.ArenaBytes), int64(m.IntermediateBytes)
		}
		name := p.Name
		if name == "" {
			name = "static shapes"
		}
		if m.ArenaBytes > 0 {
			b.logf("memory (%s, profile %d): arena %d bytes for %d of %d intermediates totalling %d bytes", name, i, m.ArenaBytes, m.InArena, m.Values, m.IntermediateBytes)
		} else {
			b.logf("memory (%s): no arena (intermediate sizes unknown without a profile)", name)
		}
	}
	return nil
}
