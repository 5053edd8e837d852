package serve

import (
	"errors"
	"fmt"

	"github.com/kilnai/kiln/engine"
)

// wrapRunError marks errors the engine blames on the input as ErrInvalid.
func wrapRunError(err error) error {
	if errors.Is(err, engine.ErrInput) {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}
