package build

import (
	"context"
	"fmt"
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

// memory plans the activation arena at every profile's max shape.
func (b *builder) memory() error { return nil }
