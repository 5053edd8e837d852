package ops

import (
	"errors"
	"fmt"
)

// ErrIndex is returned, together with ErrBadInput, when an index-taking op
// (Gather, GatherElements, GatherND, ScatterElements, ScatterND, the
// targets of NegativeLogLikelihoodLoss, RoiAlign's batch_indices,
// MaxUnpool's indices) is given an index outside the dimension it indexes. The data is at fault, not the model: a server
// answers it as a client error (an out-of-vocabulary token id).
var ErrIndex = errors.New("index out of range")

// IndexError returns an error wrapping ErrBadInput and ErrIndex with a
// formatted message.
func IndexError(format string, args ...any) error {
	return indexError(fmt.Sprintf(format, args...))
}

type indexError string

func (e indexError) Error() string { return ErrBadInput.Error() + ": " + string(e) }

// Is makes errors.Is match both ErrIndex and ErrBadInput.
func (e indexError) Is(target error) bool { return target == ErrIndex || target == ErrBadInput }
