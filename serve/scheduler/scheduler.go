package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnai/kiln/tensor"
)

var (
	// ErrQueueFull is returned when the request's priority level already holds
	// max_queue_size requests.
	ErrQueueFull = errors.New("scheduler: queue full")
	// ErrTimeout is returned when a request's queue timeout expired before an
	// instance took it (REJECT policy).
	ErrTimeout = errors.New("scheduler: request timed out in the queue")
	// ErrClosed is returned for requests made after Shutdown began.
	ErrClosed = errors.New("scheduler: shutting down")
	// ErrInput is returned for a request that cannot be scheduled: no inputs,
	// inputs that disagree on the batch size, a batch above the maximum, a
	// bad priority or timeout.
	ErrInput = errors.New("scheduler: bad request")
	// ErrOutput is returned when a batched run's outputs cannot be split back
	// into the requests' results.
	ErrOutput = errors.New("scheduler: cannot split batched output")
)

// Runner runs a model; it must be safe for concurrent calls, unless it is
// an instance's runner made by an Instancer.
type Runner interface {
	Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error)
}

// Instancer is an optional capability of a Runner whose instances keep
// state of their own: NewInstance returns the runner of one instance (an
// execution context: its scratch memory, its stream), which the scheduler
// calls from one goroutine at a time. Without it every instance calls the
// Runner itself.
type Instancer interface {
	NewInstance() Runner
}

// IndexedInstancer is an optional capability of a Runner whose instances
// differ (execution contexts on different GPUs): NewInstanceAt returns the
// runner of instance i (0..Instances-1, the index Execution.Instance
// reports). The scheduler prefers it to Instancer.
type IndexedInstancer interface {
	NewInstanceAt(i int) Runner
}

// TimeoutAction is what happens to a request whose queue timeout expired.
type TimeoutAction int

const (
	// Reject fails the request with ErrTimeout.
	Reject TimeoutAction = iota
	// Delay keeps the request queued behind every request whose timeout has
	// not expired.
	Delay
)

// QueuePolicy is the queue policy of one priority level.
type QueuePolicy struct {
	Action TimeoutAction
	// DefaultTimeout is the queue timeout of a request that gives none; 0
	// means no timeout.
	DefaultTimeout time.Duration
	// AllowOverride lets Request.Timeout replace DefaultTimeout.
	AllowOverride bool
	// MaxQueueSize bounds the requests waiting at this level; 0 means no bound.
	MaxQueueSize int
}

// Options configures a Scheduler.
type Options struct {
	// Instances is the number of concurrent runs (at least 1).
	Instances int
	// MaxBatchSize > 0 means every input has a leading batch dimension.
	MaxBatchSize int
	// Batching turns on dynamic batching (needs MaxBatchSize > 0).
	Batching bool
	// PreferredBatchSizes are batch sizes sent at once when reached.
	PreferredBatchSizes []int
	// MaxQueueDelay is how long the batcher may hold a request to fill a batch.
	MaxQueueDelay time.Duration
	// PriorityLevels is the number of levels, 1 the highest (0 means 1).
	PriorityLevels int
	// DefaultPriority is the level of a request with Priority 0 (0 means the
	// lowest level).
	DefaultPriority int
	// DefaultPolicy applies to every level not in Policies.
	DefaultPolicy QueuePolicy
	// Policies overrides the policy of single levels.
	Policies map[int]QueuePolicy
	// SLO, when > 0 with Batching, is a latency objective for the P99 of
	// the requests' time in the scheduler (queue and run): the SLO batcher
	// (see SLOStats) then chooses each batch's size and how long to wait
	// from the measured cost of each batch size and the arrival rate,
	// instead of MaxQueueDelay and PreferredBatchSizes.
	SLO time.Duration
	// Now is the scheduler's clock (nil: time.Now), for arrival times,
	// measured costs and deadlines; tests replace it.
	Now func() time.Time
	// InFlight, when set, returns the requests the whole server is working
	// on, from reading them to answering them (kiln serve: device/cpu's
	// RequestsInFlight). Those beyond this scheduler's queued and running
	// ones are on their way through the request path: the SLO batcher
	// waits for them to fill a batch when the engine shares the CPU with
	// that path (see sloPolicy.fill).
	InFlight func() int
}

// Request is one inference request.
type Request struct {
	Inputs map[string]*tensor.Tensor
	// Priority is a level in 1..PriorityLevels; 0 means the default level.
	Priority int
	// Timeout overrides the level's queue timeout when the policy allows it;
	// 0 keeps the default.
	Timeout time.Duration
}

// Result is the outcome of a request.
type Result struct {
	Outputs map[string]*tensor.Tensor
	// Queue is the time from Infer to the start of the batch's execution.
	Queue time.Duration
	// Input is the time spent preparing the batch's inputs (concatenating
	// the requests), Compute the model run's, Output the time spent
	// splitting the outputs into the requests' results (Triton's
	// compute_input, compute_infer and compute_output).
	Input, Compute, Output time.Duration
	// BatchSize is the batch size of the run the request was part of.
	BatchSize int
	// SLOMet reports, with Options.SLO, whether the request finished within
	// the objective.
	SLOMet bool
}

// Execution describes one run of the model on a batch of requests.
type Execution struct {
	// Requests is the number of requests in the batch, BatchSize the sum of
	// their batch sizes.
	Requests, BatchSize int
	// Compute is the model run's time (inputs prepared, outputs not yet split).
	Compute time.Duration
	// Input is the time spent preparing the batch's inputs, Output the time
	// spent splitting its outputs into the requests' results.
	Input, Output time.Duration
	// Instance is the index (0..Instances-1) of the instance, the execution
	// context, that ran the batch.
	Instance int
	// Switched reports an execution-context switch: the scheduler's
	// previous batch ran on another instance.
	Switched bool
}

// Observer is told about each run; it must be safe for concurrent calls.
type Observer interface {
	// Executed reports one run of the model on a batch of requests.
	Executed(Execution)
}

// Sample is a warmup request: Inputs run Count times (at least once).
type Sample struct {
	Name   string
	Inputs map[string]*tensor.Tensor
	Count  int
}

type item struct {
	// ctx is the caller's context, used to run a batch of this one request
	// alone, so that a client going away frees the instance.
	ctx      context.Context
	req      Request
	level    int
	key      string
	size     int
	enqueued time.Time
	delayed  bool
	taken    bool
	// done receives the outcome of a request that waits for an instance
	// goroutine; a request run in its caller's goroutine (runHere, here
	// set) has none: its outcome is set in out.
	done chan outcome
	here bool
	out  outcome
	// res is the request's result (the outcome points to it: one
	// allocation per request, not two)
	res Result
	// one backs a batch of this request alone (pick)
	one [1]*item
}

// finish hands it its outcome.
func (it *item) finish(o outcome) {
	if it.here {
		it.out = o
		return
	}
	it.done <- o
}

type outcome struct {
	res *Result
	err error
}

// Scheduler queues requests for one model and runs them on its instances.
type Scheduler struct {
	run  []Runner // per instance
	opts Options
	obs  Observer
	// slo is the SLO batcher's state (nil without Options.SLO), guarded by
	// mu.
	slo *sloPolicy

	mu       sync.Mutex
	queues   [][]*item // per level, FIFO
	queued   int
	inflight int
	// running counts the requests of the batches running
	running  int
	closed   bool
	last     int    // the instance that ran the latest batch, -1 before the first
	switches uint64 // execution-context switches so far
	// held marks the instances whose runner is in use: running a batch
	// (on its own goroutine or, see Infer, on a caller's) or a warmup job
	held []bool
	// orderBuf is order's buffer, reused by each pick
	orderBuf []*item
	// keyCache is the latest batch key made (batchKey)
	keyCache atomic.Pointer[lastKey]
	// jobsWaiting counts warmup jobs waiting for their instance to be
	// released by a caller
	jobsWaiting int
	ctl         []chan func(instance int)
	wake        chan struct{} // closed and replaced on every change a waiter needs to see
	stop        chan struct{}
	stopOnce    sync.Once
	wg          sync.WaitGroup
	stopped     chan struct{} // closed once every instance goroutine has returned
}

// New starts a scheduler with opts.Instances instance goroutines, each with
// its own runner when r is an Instancer. obs may be nil.
func New(r Runner, opts Options, obs Observer) *Scheduler {
	opts.Instances = max(opts.Instances, 1)
	opts.PriorityLevels = max(opts.PriorityLevels, 1)
	if opts.DefaultPriority <= 0 || opts.DefaultPriority > opts.PriorityLevels {
		opts.DefaultPriority = opts.PriorityLevels
	}
	if opts.MaxBatchSize <= 0 {
		opts.Batching = false
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	runners := make([]Runner, opts.Instances)
	for i := range runners {
		runners[i] = r
		if in, ok := r.(IndexedInstancer); ok {
			runners[i] = in.NewInstanceAt(i)
		} else if in, ok := r.(Instancer); ok {
			runners[i] = in.NewInstance()
		}
	}
	s := &Scheduler{run: runners, opts: opts, obs: obs, queues: make([][]*item, opts.PriorityLevels),
		held: make([]bool, opts.Instances),
		wake: make(chan struct{}), stop: make(chan struct{}), stopped: make(chan struct{}), last: -1}
	if opts.SLO > 0 {
		s.slo = newSLOPolicy(opts.SLO, opts.MaxBatchSize, opts.Instances)
	}
	s.ctl = make([]chan func(int), opts.Instances)
	for i := range s.ctl {
		s.ctl[i] = make(chan func(int))
	}
	for i := range opts.Instances {
		s.wg.Add(1)
		go s.instance(i)
	}
	go func() {
		s.wg.Wait()
		close(s.stopped)
	}()
	return s
}

// Stopped returns a channel closed once Shutdown has begun and every
// instance has finished its last run (or warmup job) and stopped: from then
// on the scheduler never calls its runners again, so what they use (a
// model's weights) may be released.
func (s *Scheduler) Stopped() <-chan struct{} { return s.stopped }

// Pending returns the number of requests waiting in the queue.
func (s *Scheduler) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queued
}

func (s *Scheduler) policy(level int) QueuePolicy {
	if p, ok := s.opts.Policies[level]; ok {
		return p
	}
	return s.opts.DefaultPolicy
}

// broadcast wakes every waiting instance; s.mu must be held.
func (s *Scheduler) broadcast() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// lastKey is the latest batch key made (batchKey) and, when it was made for
// one input, that input's name, type and shape past the batch dimension.
type lastKey struct {
	key   string
	one   bool
	name  string
	dtype tensor.DType
	dims  []int
}

// batchKey describes what must match for requests to be batched together:
// every input's name, type and shape past the batch dimension. last, when
// not nil, holds the latest key made: a request whose key is the same
// shares its string (requests of one model nearly always have one key; a
// request of one input is matched without making its key), and a new key
// replaces it.
func batchKey(inputs map[string]*tensor.Tensor, batched bool, last *atomic.Pointer[lastKey]) (key string, size int, err error) {
	var prev *lastKey
	if last != nil {
		prev = last.Load()
	}
	if prev != nil && prev.one && len(inputs) == 1 {
		for n, t := range inputs {
			if t == nil || n != prev.name || t.DType != prev.dtype {
				break
			}
			shape, size := t.Shape, 1
			if batched {
				if len(shape) == 0 {
					break
				}
				size, shape = shape[0], shape[1:]
			}
			if slices.Equal(shape, prev.dims) {
				return prev.key, max(size, 1), nil
			}
		}
	}
	var nameBuf [4]string
	names := nameBuf[:0]
	for n := range inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	var keyBuf [128]byte
	b := keyBuf[:0]
	size = -1
	for _, n := range names {
		t := inputs[n]
		if t == nil {
			return "", 0, fmt.Errorf("%w: input %q is nil", ErrInput, n)
		}
		shape := t.Shape
		if batched {
			if len(shape) == 0 {
				return "", 0, fmt.Errorf("%w: input %q has no batch dimension", ErrInput, n)
			}
			if size >= 0 && shape[0] != size {
				return "", 0, fmt.Errorf("%w: input %q has batch size %d, others %d", ErrInput, n, shape[0], size)
			}
			size = shape[0]
			shape = shape[1:]
		}
		// as fmt's "%q:%d:%v;" writes it, without its boxing
		b = strconv.AppendQuote(b, n)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(t.DType), 10)
		b = appendDims(append(b, ':'), shape)
		b = append(b, ';')
	}
	if last == nil {
		return string(b), max(size, 1), nil
	}
	if prev != nil && prev.key == string(b) && (prev.one || len(names) != 1) {
		return prev.key, max(size, 1), nil
	}
	e := &lastKey{key: string(b)}
	if len(names) == 1 {
		t := inputs[names[0]]
		dims := t.Shape
		if batched {
			dims = dims[1:]
		}
		e.one, e.name, e.dtype, e.dims = true, names[0], t.DType, slices.Clone(dims)
	}
	last.Store(e)
	return e.key, max(size, 1), nil
}

// appendDims appends shape as fmt's %v writes it: [1 3 32 32].
func appendDims(b []byte, shape []int) []byte {
	b = append(b, '[')
	for i, d := range shape {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendInt(b, int64(d), 10)
	}
	return append(b, ']')
}

// Infer queues req and waits for its result, for ctx to end, or for its
// queue timeout.
func (s *Scheduler) Infer(ctx context.Context, req *Request) (*Result, error) {
	if req == nil || len(req.Inputs) == 0 {
		return nil, fmt.Errorf("%w: no inputs", ErrInput)
	}
	level := req.Priority
	if level == 0 {
		level = s.opts.DefaultPriority
	}
	if level < 0 || level > s.opts.PriorityLevels {
		return nil, fmt.Errorf("%w: priority %d outside 1..%d", ErrInput, req.Priority, s.opts.PriorityLevels)
	}
	if req.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative timeout", ErrInput)
	}
	key, size, err := batchKey(req.Inputs, s.opts.MaxBatchSize > 0, &s.keyCache)
	if err != nil {
		return nil, err
	}
	if s.opts.MaxBatchSize > 0 && size > s.opts.MaxBatchSize {
		return nil, fmt.Errorf("%w: batch size %d above the model's max_batch_size %d", ErrInput, size, s.opts.MaxBatchSize)
	}
	pol := s.policy(level)
	timeout := pol.DefaultTimeout
	if pol.AllowOverride && req.Timeout > 0 {
		timeout = req.Timeout
	}
	it := &item{ctx: ctx, req: *req, level: level, key: key, size: size, enqueued: s.opts.Now()}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if pol.MaxQueueSize > 0 && len(s.queues[level-1]) >= pol.MaxQueueSize {
		s.mu.Unlock()
		if s.slo != nil {
			s.slo.miss.Add(1)
		}
		return nil, fmt.Errorf("%w: %d requests waiting at priority %d", ErrQueueFull, len(s.queues[level-1]), level)
	}
	if s.slo != nil {
		s.slo.arrived(it.enqueued, size)
	}
	s.queues[level-1] = append(s.queues[level-1], it)
	s.queued++
	if i := s.idle(); i >= 0 {
		if batch, _ := s.pick(it.enqueued); slices.Contains(batch, it) {
			return s.runHere(batch, it, i)
		}
	}
	// (under s.mu: no instance goroutine can have taken it yet)
	it.done = make(chan outcome, 1)
	s.broadcast()
	s.mu.Unlock()

	var expire <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expire = t.C
	}
	for {
		select {
		case o := <-it.done:
			return o.res, o.err
		case <-ctx.Done():
			s.remove(it)
			return nil, ctx.Err()
		case <-expire:
			expire = nil
			if pol.Action == Delay {
				s.mu.Lock()
				if !it.taken {
					it.delayed = true
					s.broadcast()
				}
				s.mu.Unlock()
				continue
			}
			if s.remove(it) {
				if s.slo != nil {
					s.slo.miss.Add(1)
				}
				return nil, fmt.Errorf("%w after %v", ErrTimeout, timeout)
			}
			// an instance took it just now: wait for the result
		}
	}
}

// idle returns an instance whose runner is free, the one that ran the
// latest batch first (its caches are warm, and no context switch), or -1;
// s.mu must be held.
func (s *Scheduler) idle() int {
	if s.last >= 0 && !s.held[s.last] {
		return s.last
	}
	for i, h := range s.held {
		if !h {
			return i
		}
	}
	return -1
}

// runHere runs batch, which holds it, on instance i in the caller's
// goroutine and returns its result: a request that finds an instance idle
// and is sent at once (as the instance's goroutine would have sent it)
// runs without being handed to that goroutine and back, two goroutine
// wake-ups fewer. With the SLO batcher this is the low-load path (a
// request that finds an instance idle is sent at once unless the batcher
// judges the next request worth waiting for), and the arrival that
// completes a batch the batcher waited for runs that batch here too; a
// batch sent when a run ends or a wait times out runs on the instance's
// goroutine. The instance's goroutine leaves i alone meanwhile
// (held). The caller returns when the run does: a lone request's run ends
// with its context, as on the instance's goroutine; a batch with other
// requests runs to its end. s.mu must be held; runHere unlocks it.
func (s *Scheduler) runHere(batch []*item, it *item, i int) (*Result, error) {
	switched := s.takeQuiet(batch, i)
	it.here = true // its outcome is set by execute, in this goroutine
	// counted as an instance's run is, so that Stopped waits for it (the
	// instance goroutines are all running: s.closed is false)
	s.wg.Add(1)
	defer s.wg.Done()
	s.mu.Unlock()
	size, took, ok := s.execute(batch, i, switched)
	s.mu.Lock()
	if s.slo != nil && ok {
		s.slo.observe(s.opts.Now(), size, took)
	}
	s.inflight--
	s.running -= len(batch)
	s.held[i] = false
	// the instance goroutines have nothing to do unless requests queued
	// meanwhile, a warmup job waits for i, or Shutdown waits for the end
	if s.queued > 0 || s.jobsWaiting > 0 || s.closed {
		s.broadcast()
	}
	s.mu.Unlock()
	return it.out.res, it.out.err
}

// remove takes it out of the queue; it reports whether it was still queued.
func (s *Scheduler) remove(it *item) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it.taken {
		return false
	}
	q := s.queues[it.level-1]
	if i := slices.Index(q, it); i >= 0 {
		s.queues[it.level-1] = slices.Delete(q, i, i+1)
		s.queued--
		it.taken = true
		s.broadcast()
		return true
	}
	return false
}

// order returns the queued items in the order they are served: by level,
// requests whose timeout expired under DELAY after all others.
func (s *Scheduler) order() []*item {
	out := s.orderBuf[:0]
	for _, q := range s.queues {
		for _, it := range q {
			if !it.delayed {
				out = append(out, it)
			}
		}
	}
	for _, q := range s.queues {
		for _, it := range q {
			if it.delayed {
				out = append(out, it)
			}
		}
	}
	return out
}

// pick chooses the next batch; s.mu must be held. It returns nil and the time
// to wait (0: until woken) when a batch should not be sent yet.
func (s *Scheduler) pick(now time.Time) ([]*item, time.Duration) {
	order := s.order()
	defer func() {
		// the buffer is reused: it must not keep requests alive
		clear(order)
		s.orderBuf = order[:0]
	}()
	if s.slo != nil {
		s.slo.picked = ""
	}
	if len(order) == 0 {
		return nil, 0
	}
	head := order[0]
	head.one[0] = head
	batch := head.one[:]
	if !s.opts.Batching {
		return batch, 0
	}
	total := head.size
	for _, it := range order[1:] {
		if it.key == head.key && total+it.size <= s.opts.MaxBatchSize {
			batch = append(batch, it)
			total += it.size
		}
	}
	if s.slo != nil {
		arrival := func(k int) time.Time {
			for _, it := range batch {
				if k < it.size {
					return it.enqueued
				}
				k -= it.size
			}
			return batch[len(batch)-1].enqueued
		}
		idle := 0
		for _, h := range s.held {
			if !h {
				idle++
			}
		}
		s.slo.arriving = 0
		if s.opts.InFlight != nil {
			s.slo.arriving = max(s.opts.InFlight()-s.queued-s.running, 0)
		}
		send, take, wait, reason := s.slo.decide(now, arrival, total, s.opts.MaxBatchSize, idle)
		if !send {
			return nil, wait
		}
		// the first take items of the batch (FIFO: the oldest first)
		n, items := 0, 0
		for _, it := range batch {
			if items > 0 && n+it.size > take {
				break
			}
			n += it.size
			items++
		}
		batch = batch[:items]
		s.slo.picked = reason
		return batch, 0
	}
	if total >= s.opts.MaxBatchSize || slices.Contains(s.opts.PreferredBatchSizes, total) {
		return batch, 0
	}
	waited := now.Sub(head.enqueued)
	if waited >= s.opts.MaxQueueDelay {
		// send the largest preferred size reachable, or everything
		return batch, 0
	}
	return nil, s.opts.MaxQueueDelay - waited
}

// Switches returns the number of execution-context switches so far: batches
// that ran on another instance than the batch before them.
func (s *Scheduler) Switches() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.switches
}

// Warmup runs every sample Count times on each instance, all instances at
// once, each instance running its samples in order; it returns the errors
// of the instances that failed. Warmup runs are not requests: observers do
// not see them and they do not count as context switches. Call Warmup before
// the scheduler is given requests (a request queued meanwhile waits for its
// instance to finish warming up).
func (s *Scheduler) Warmup(ctx context.Context, samples []Sample) error {
	if len(samples) == 0 {
		return nil
	}
	errs := make([]error, len(s.ctl))
	var wg sync.WaitGroup
	for i, ctl := range s.ctl {
		wg.Add(1)
		job := func(i int) {
			defer wg.Done()
			errs[i] = s.warm(ctx, i, samples)
		}
		select {
		case ctl <- job:
		case <-s.stop:
			wg.Done()
			errs[i] = ErrClosed
		case <-ctx.Done():
			wg.Done()
			errs[i] = ctx.Err()
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Scheduler) warm(ctx context.Context, instance int, samples []Sample) error {
	for _, smp := range samples {
		for range max(smp.Count, 1) {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("instance %d: warmup sample %q: %w", instance, smp.Name, err)
			}
			if _, err := s.run[instance].Run(ctx, smp.Inputs); err != nil {
				return fmt.Errorf("instance %d: warmup sample %q: %w", instance, smp.Name, err)
			}
		}
	}
	return nil
}

// take removes batch from the queue for instance i and wakes the waiting
// instances; s.mu must be held. It reports whether running it there is a
// context switch.
func (s *Scheduler) take(batch []*item, i int) bool {
	switched := s.takeQuiet(batch, i)
	s.broadcast()
	return switched
}

// takeQuiet is take without waking anyone.
func (s *Scheduler) takeQuiet(batch []*item, i int) bool {
	for _, it := range batch {
		it.taken = true
		q := s.queues[it.level-1]
		if i := slices.Index(q, it); i >= 0 {
			s.queues[it.level-1] = slices.Delete(q, i, i+1)
		}
	}
	s.queued -= len(batch)
	if s.slo != nil && s.slo.picked != "" {
		// the reason of the pick that chose this batch, counted once it is
		// taken (a caller's pick may choose a batch it leaves to an
		// instance goroutine, which picks again)
		s.slo.decisions[s.slo.picked]++
		s.slo.picked = ""
	}
	s.inflight++
	s.running += len(batch)
	s.held[i] = true
	switched := s.last >= 0 && s.last != i
	if switched {
		s.switches++
	}
	s.last = i
	return switched
}

// instance is the loop of instance i: it runs batches and warmup jobs.
func (s *Scheduler) instance(i int) {
	defer s.wg.Done()
	var timer *time.Timer
	for {
		s.mu.Lock()
		var batch []*item
		var wait time.Duration
		if !s.held[i] { // else a caller runs a batch on it (runHere)
			batch, wait = s.pick(s.opts.Now())
		}
		if batch != nil {
			switched := s.take(batch, i)
			s.mu.Unlock()
			size, took, ok := s.execute(batch, i, switched)
			s.mu.Lock()
			if s.slo != nil && ok {
				s.slo.observe(s.opts.Now(), size, took)
			}
			s.inflight--
			s.running -= len(batch)
			s.held[i] = false
			s.broadcast()
			s.mu.Unlock()
			continue
		}
		wake := s.wake
		s.mu.Unlock()
		var tc <-chan time.Time
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			tc = timer.C
		}
		select {
		case <-wake:
		case <-tc:
		case job := <-s.ctl[i]:
			s.hold(i)
			job(i)
			s.mu.Lock()
			s.held[i] = false
			s.broadcast()
			s.mu.Unlock()
		case <-s.stop:
			return
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// hold waits until no caller runs a batch on instance i and marks it
// held, for a warmup job.
func (s *Scheduler) hold(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.held[i] {
		s.jobsWaiting++
		wake := s.wake
		s.mu.Unlock()
		<-wake
		s.mu.Lock()
		s.jobsWaiting--
	}
	s.held[i] = true
}

// execute runs a batch and delivers each request's result. When a batch of
// several requests fails, each request is run again alone, so that one
// request's bad input fails only that request, and no request ever sees an
// error that comes from (and may quote) another request's data. It returns
// the batch size, the time it took (until its results were ready) and
// whether the batch ran as one (not retried alone).
func (s *Scheduler) execute(batch []*item, instance int, switched bool) (size int, took time.Duration, ok bool) {
	now := s.opts.Now
	start := now()
	total := 0
	for _, it := range batch {
		total += it.size
	}
	if len(batch) == 1 {
		return total, s.runAlone(batch[0], instance, switched, start), true
	}
	inputs, err := concat(batch)
	if err != nil {
		s.retryAlone(batch, instance)
		return total, 0, false
	}
	// A batch of several requests is not tied to one request's context: the
	// others still want the result; a request whose context ends stops
	// waiting for it.
	ran := now()
	out, err := s.run[instance].Run(context.Background(), inputs)
	done := now()
	input, compute := ran.Sub(start), done.Sub(ran)
	var parts []map[string]*tensor.Tensor
	if err == nil {
		parts, err = split(out, batch, total)
	}
	output := now().Sub(done)
	if s.obs != nil {
		s.obs.Executed(Execution{Requests: len(batch), BatchSize: total, Compute: compute, Input: input, Output: output, Instance: instance, Switched: switched})
	}
	if err != nil {
		s.retryAlone(batch, instance)
		return total, 0, false
	}
	took = now().Sub(start)
	for i, it := range batch {
		s.deliver(it, Result{Outputs: parts[i], Queue: start.Sub(it.enqueued), Input: input, Compute: compute, Output: output, BatchSize: total})
	}
	return total, took, true
}

// deliver hands a request its result, judged against the SLO when there is
// one.
func (s *Scheduler) deliver(it *item, res Result) {
	if s.slo != nil {
		res.SLOMet = s.opts.Now().Sub(it.enqueued) <= s.slo.target
		if res.SLOMet {
			s.slo.met.Add(1)
		} else {
			s.slo.miss.Add(1)
		}
	}
	it.res = res
	it.finish(outcome{res: &it.res})
}

// retryAlone runs each request of a failed batch alone on instance.
func (s *Scheduler) retryAlone(batch []*item, instance int) {
	for _, it := range batch {
		if err := it.ctx.Err(); err != nil {
			it.finish(outcome{err: err}) // its caller is gone
			continue
		}
		s.runAlone(it, instance, false, s.opts.Now())
	}
}

// runAlone runs one request on instance, its run ending with its context.
// It returns the time from start until the result was ready.
func (s *Scheduler) runAlone(it *item, instance int, switched bool, start time.Time) time.Duration {
	ran := s.opts.Now()
	out, err := s.run[instance].Run(it.ctx, it.req.Inputs)
	done := s.opts.Now()
	compute := done.Sub(ran)
	if s.obs != nil {
		s.obs.Executed(Execution{Requests: 1, BatchSize: it.size, Compute: compute, Input: ran.Sub(start), Instance: instance, Switched: switched})
	}
	// (until the result was ready: the observer's bookkeeping is not the run's)
	took := done.Sub(start)
	if err != nil {
		it.finish(outcome{err: err})
		return took
	}
	s.deliver(it, Result{Outputs: out, Queue: start.Sub(it.enqueued), Input: ran.Sub(start), Compute: compute, BatchSize: it.size})
	return took
}

// concat joins the batch's inputs along dimension 0.
func concat(batch []*item) (map[string]*tensor.Tensor, error) {
	out := map[string]*tensor.Tensor{}
	for name, first := range batch[0].req.Inputs {
		shape := append([]int{}, first.Shape...)
		shape[0] = 0
		for _, it := range batch {
			shape[0] += it.req.Inputs[name].Shape[0]
		}
		t, err := tensor.Make(first.DType, shape)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInput, err)
		}
		off := 0
		for _, it := range batch {
			in := it.req.Inputs[name]
			if first.DType == tensor.String {
				off += copy(t.Strings[off:], in.Strings)
			} else {
				off += copy(t.Data[off:], in.Data)
			}
		}
		out[name] = t
	}
	return out, nil
}

// split cuts every output along dimension 0 into the requests' parts.
func split(out map[string]*tensor.Tensor, batch []*item, total int) ([]map[string]*tensor.Tensor, error) {
	parts := make([]map[string]*tensor.Tensor, len(batch))
	for i := range parts {
		parts[i] = map[string]*tensor.Tensor{}
	}
	for name, t := range out {
		if len(t.Shape) == 0 || t.Shape[0] != total {
			return nil, fmt.Errorf("%w: output %q has shape %v, batch size %d", ErrOutput, name, t.Shape, total)
		}
		row := tensor.NumElements(t.Shape[1:])
		off := 0
		for i, it := range batch {
			shape := append([]int{it.size}, t.Shape[1:]...)
			n := it.size * row
			p := &tensor.Tensor{DType: t.DType, Shape: shape}
			if t.DType == tensor.String {
				p.Strings = t.Strings[off : off+n : off+n]
			} else {
				sz := t.DType.Size()
				var err error
				if p, err = tensor.FromBytes(t.DType, shape, t.Data[off*sz:(off+n)*sz:(off+n)*sz]); err != nil {
					return nil, fmt.Errorf("%w: %w", ErrOutput, err)
				}
			}
			parts[i][name] = p
			off += n
		}
	}
	return parts, nil
}

// Shutdown may be called more than once. It refuses new requests, lets queued and running ones finish, and
// stops the instances. If ctx ends first, the requests still queued fail with
// ErrClosed, running ones finish in the background, and Shutdown returns
// ctx's error.
func (s *Scheduler) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	var err error
	for {
		s.mu.Lock()
		idle := s.queued == 0 && s.inflight == 0
		wake := s.wake
		s.mu.Unlock()
		if idle {
			break
		}
		select {
		case <-wake:
			continue
		case <-ctx.Done():
			err = ctx.Err()
		}
		s.mu.Lock()
		for _, q := range s.queues {
			for _, it := range q {
				it.taken = true
				it.finish(outcome{err: ErrClosed})
			}
		}
		for i := range s.queues {
			s.queues[i] = nil
		}
		s.queued = 0
		s.mu.Unlock()
		break
	}
	s.stopOnce.Do(func() { close(s.stop) })
	if err == nil {
		s.wg.Wait()
	}
	return err
}
