package serve

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/kilnai/kiln/serve/repository"
)

// ParamSLO is the config.pbtxt parameter that gives a model a latency
// objective in milliseconds, the P99 of its requests' time in the server's
// queue and run (kiln's extension; Triton ignores unknown parameters):
//
//	parameters { key: "slo_p99_ms" value: { string_value: "20" } }
//
// With max_batch_size > 0 it turns on dynamic batching with the SLO batcher
// (see package scheduler): batch sizes and waits chosen from the measured
// cost of each batch size and the arrival rate, instead of
// max_queue_delay_microseconds and preferred_batch_size. Either way the
// requests that met the objective and those that missed it are counted
// (Stats.SLOMet, Stats.SLOMissed, and the SLOObserver's metrics).
const ParamSLO = "slo_p99_ms"

// SLOObserver is an optional capability of an Observer: it is told, for a
// model with a latency objective, whether each request met it (a request
// refused for a full queue or a queue timeout missed it).
type SLOObserver interface {
	SLORequest(model, version string, met bool)
}

// sloTarget returns the objective of cfg's parameter slo_p99_ms (0 for none).
func sloTarget(cfg *repository.Config) (time.Duration, error) {
	s, ok := cfg.Parameters[ParamSLO]
	if !ok {
		return 0, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || v <= 0 || v > 3.6e6 {
		return 0, fmt.Errorf("%w: parameter %s: %q (want milliseconds, a number above 0 and at most an hour)", repository.ErrConfig, ParamSLO, s)
	}
	return time.Duration(v * float64(time.Millisecond)), nil
}

// observeSLO tells the observer whether a request of a model with an
// objective met it.
func (s *Server) observeSLO(model, ver string, v *version, met bool, err error) {
	so, ok := s.opts.Observer.(SLOObserver)
	if !ok || v.sched.SLOStats().Target <= 0 {
		return
	}
	switch {
	case err == nil:
		so.SLORequest(model, ver, met)
	case errors.Is(err, ErrQueueFull), errors.Is(err, ErrTimeout):
		so.SLORequest(model, ver, false)
	}
}
