package serve

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// wrapRunError marks errors of a model run that the request's inputs
// caused as ErrInvalid: inputs that do not fit the model (engine.ErrInput),
// indices outside the dimension they index (ops.ErrIndex: an
// out-of-vocabulary token id), and a kernel refusing the shapes its inputs
// took (ops.ErrBadInput at run time: the model loaded, and its shapes were
// inferred, so the request's shapes are the cause, such as an image too
// small or not a multiple of the network's stride). Other run errors stay
// internal. A run refused by the engine's memory limit is ErrInvalid too
// (the request's shapes need it); a run of a model closed meanwhile is
// ErrNotReady. Runs of a request are alone when they fail (the scheduler
// retries a failed batch request by request), so the error quotes only
// this request's data.
func wrapRunError(err error, inputs map[string]*tensor.Tensor) error {
	switch {
	case errors.Is(err, engine.ErrInput), errors.Is(err, ops.ErrIndex):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	case errors.Is(err, engine.ErrMemory):
		// the request's shapes need more memory than the model may take
		return fmt.Errorf("%w: inputs of shapes %s: %w", ErrInvalid, shapes(inputs), err)
	case errors.Is(err, kiln.ErrClosed):
		// the model was unloaded while the request waited
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	case errors.Is(err, ops.ErrBadInput):
		return fmt.Errorf("%w: the model cannot run inputs of shapes %s: %w", ErrInvalid, shapes(inputs), err)
	}
	return err
}

// shapes spells the inputs' shapes, sorted by name: "a [1 3 33 33], b [1]".
func shapes(inputs map[string]*tensor.Tensor) string {
	var parts []string
	for name, t := range inputs {
		if t != nil {
			parts = append(parts, fmt.Sprintf("%s %v", name, t.Shape))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
