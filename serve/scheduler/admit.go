package scheduler

import "fmt"

// Admit reports, without queueing anything, whether the scheduler would
// refuse any request now, whatever its priority: ErrClosed once Shutdown
// has begun, ErrQueueFull when every priority level has a max_queue_size
// and holds that many requests. A nil error promises nothing (the queue may
// fill before the request comes); its use is to refuse a request under
// overload before reading and decoding it. It changes no state.
func (s *Scheduler) Admit() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for level := 1; level <= s.opts.PriorityLevels; level++ {
		if limit := s.policy(level).MaxQueueSize; limit <= 0 || len(s.queues[level-1]) < limit {
			return nil
		}
	}
	return fmt.Errorf("%w: the queue of every priority level is full (%d requests waiting)", ErrQueueFull, s.queued)
}
