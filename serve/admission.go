package serve

import (
	"errors"
	"fmt"

	"github.com/kilnai/kiln/serve/scheduler"
)

// Admit tells, before a request for a model (and version: "" for the
// newest) is read or decoded, whether it would be refused now: the model or
// version is unknown (ErrNotFound), not ready or the server is shutting down
// (ErrNotReady), or the model's queue is full at every priority level
// (ErrQueueFull). The edges call it first, so that under overload a
// request is answered 429 without the cost of reading its body. A refusal
// for a full queue counts as a failed request (REJECTED), as when Infer
// refuses it; nil promises nothing, Infer decides.
func (s *Server) Admit(name, ver string) error {
	m, v, err := s.lookup(name, ver)
	if err != nil {
		return err
	}
	err = v.sched.Admit()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, scheduler.ErrClosed):
		return fmt.Errorf("%w: model %q: %w", ErrNotReady, name, err)
	}
	err = fmt.Errorf("model %q: %w", name, err)
	v.mu.Lock()
	v.stats.FailCount++
	v.mu.Unlock()
	if s.opts.Observer != nil {
		s.opts.Observer.RequestDone(m.name, v.stats.Version, 1, FailureReason(err), Times{})
	}
	return err
}
