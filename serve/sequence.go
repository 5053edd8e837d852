package serve

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// Sequence is a request's place in a sequence of a stateful model (the
// request parameters sequence_id, sequence_start and sequence_end).
type Sequence struct {
	// ID is a numeric sequence_id, Name a string one (ID is then 0).
	ID   uint64
	Name string
	// Start marks the sequence's first request, End its last.
	Start, End bool
}

// Set reports whether the request names a sequence.
func (q Sequence) Set() bool { return q.ID != 0 || q.Name != "" }

func (q Sequence) key() string {
	if q.Name != "" {
		return "s" + q.Name
	}
	return "n" + strconv.FormatUint(q.ID, 10)
}

// String spells the sequence id as the client gave it.
func (q Sequence) String() string {
	if q.Name != "" {
		return strconv.Quote(q.Name)
	}
	return strconv.FormatUint(q.ID, 10)
}

const (
	// DefaultSequenceIdle is how long a sequence may go without a request
	// before its slot is freed (Triton's default max_sequence_idle_microseconds).
	DefaultSequenceIdle = time.Second
	// ParamSequenceQueue is the config parameter bounding the new sequences
	// that wait for a free slot (default DefaultSequenceQueue); one more is
	// refused with ErrQueueFull.
	ParamSequenceQueue = "max_sequence_queue"
	// DefaultSequenceQueue is ParamSequenceQueue's default.
	DefaultSequenceQueue = 64
	// maxExpired bounds the ids of timed-out sequences remembered to word
	// the error of their next request.
	maxExpired = 4096
)

// SequenceStats are the counters of a sequence batcher.
type SequenceStats struct {
	// Slots is the number of sequences that may be active at once, Active
	// those active now, Waiting the new sequences waiting for a slot.
	Slots, Active, Waiting int
	// Started, Ended and TimedOut count sequences begun, ended by
	// sequence_end and freed after max_sequence_idle_microseconds.
	Started, Ended, TimedOut uint64
}

// control is one control input the batcher fills.
type control struct {
	name  string
	kind  inference.ModelSequenceBatching_Control_Kind
	dtype tensor.DType
	// ft are the false and true values (START, END, READY), as float64.
	ft [2]float64
}

// seqState is one implicit state: output_name of a run is input_name of the
// sequence's next one.
type seqState struct {
	input, output string
	dtype         tensor.DType
	// initial is the state of a new sequence (with the batch dimension when
	// the model batches).
	initial *tensor.Tensor
}

// sequence is one active sequence.
type sequence struct {
	q Sequence
	// turn is held by the request of the sequence that runs now: requests
	// of one sequence run one at a time, in the order they take it.
	turn  chan struct{}
	state map[string]*tensor.Tensor
	timer *time.Timer
	// busy and done are guarded by seqBatcher.mu.
	busy, done bool
	last       time.Time
}

// seqBatcher is the sequence batcher of one model version.
type seqBatcher struct {
	model    string
	idle     time.Duration
	slots    int
	maxQueue int
	batched  bool
	controls []control
	states   []seqState

	mu      sync.Mutex
	seqs    map[string]*sequence
	waiting int
	// freed is closed (and replaced) when a slot is freed.
	freed   chan struct{}
	expired map[string]bool
	stats   SequenceStats
}

// sequenceInternal lists the inputs and outputs the batcher fills (control
// inputs, state inputs and outputs): clients neither send nor see them.
func sequenceInternal(sb *inference.ModelSequenceBatching) map[string]bool {
	m := map[string]bool{}
	for _, c := range sb.GetControlInput() {
		m[c.GetName()] = true
	}
	for _, s := range sb.GetState() {
		m[s.GetInputName()] = true
		m[s.GetOutputName()] = true
	}
	return m
}

// newSeqBatcher reads a config's sequence_batching; errors name the field.
func newSeqBatcher(rm *repository.Model) (*seqBatcher, scheduler.Options, error) {
	cfg := rm.Config
	sb := cfg.Raw.GetSequenceBatching()
	opts := schedulerOptions(cfg)
	fail := func(format string, a ...any) (*seqBatcher, scheduler.Options, error) {
		return nil, opts, fmt.Errorf("%w: model %s: sequence_batching.%s", repository.ErrConfig, rm.Name, fmt.Sprintf(format, a...))
	}
	b := &seqBatcher{model: rm.Name, idle: DefaultSequenceIdle, batched: cfg.MaxBatchSize > 0, maxQueue: DefaultSequenceQueue,
		seqs: map[string]*sequence{}, freed: make(chan struct{}), expired: map[string]bool{}}
	if us := sb.GetMaxSequenceIdleMicroseconds(); us > 0 {
		if us > uint64(math.MaxInt64/int64(time.Microsecond)) {
			return fail("max_sequence_idle_microseconds: %d is too large", us)
		}
		b.idle = time.Duration(us) * time.Microsecond
	}
	if s, ok := cfg.Parameters[ParamSequenceQueue]; ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, opts, fmt.Errorf("%w: model %s: parameters.%s: %q is not a count", repository.ErrConfig, rm.Name, ParamSequenceQueue, s)
		}
		b.maxQueue = n
	}
	inst := max(cfg.Instances(), 1)
	opts.Batching = cfg.MaxBatchSize > 0
	switch st := sb.GetStrategyChoice().(type) {
	case nil, *inference.ModelSequenceBatching_Direct:
		d := sb.GetDirect()
		if u := d.GetMinimumSlotUtilization(); u < 0 || u > 1 {
			return fail("direct.minimum_slot_utilization: %v is outside 0..1", u)
		}
		opts.MaxQueueDelay = time.Duration(d.GetMaxQueueDelayMicroseconds()) * time.Microsecond
		b.slots = inst * max(cfg.MaxBatchSize, 1)
		if u := d.GetMinimumSlotUtilization(); u > 0 && cfg.MaxBatchSize > 0 {
			// a batch goes once this share of an instance's slots have a
			// request (or max_queue_delay passed)
			for n := max(1, int(math.Ceil(float64(u)*float64(cfg.MaxBatchSize)))); n <= cfg.MaxBatchSize; n++ {
				opts.PreferredBatchSizes = append(opts.PreferredBatchSizes, n)
			}
		}
	case *inference.ModelSequenceBatching_Oldest:
		o := st.Oldest
		if o.GetMaxCandidateSequences() < 0 {
			return fail("oldest.max_candidate_sequences: %d is negative", o.GetMaxCandidateSequences())
		}
		b.slots = int(o.GetMaxCandidateSequences())
		if b.slots == 0 {
			b.slots = inst * max(cfg.MaxBatchSize, 1)
		}
		for _, p := range o.GetPreferredBatchSize() {
			if p < 1 || cfg.MaxBatchSize > 0 && int(p) > cfg.MaxBatchSize {
				return fail("oldest.preferred_batch_size: %d is outside 1..max_batch_size (%d)", p, cfg.MaxBatchSize)
			}
			opts.PreferredBatchSizes = append(opts.PreferredBatchSizes, int(p))
		}
		opts.MaxQueueDelay = time.Duration(o.GetMaxQueueDelayMicroseconds()) * time.Microsecond
	}
	b.stats.Slots = b.slots
	seen := map[string]bool{}
	for _, in := range cfg.Inputs {
		seen[in.Name] = true
	}
	for i, ci := range sb.GetControlInput() {
		if ci.GetName() == "" {
			return fail("control_input[%d].name is empty", i)
		}
		if seen[ci.GetName()] {
			return fail("control_input[%d]: %q is given twice (or is also an input)", i, ci.GetName())
		}
		seen[ci.GetName()] = true
		if len(ci.GetControl()) != 1 {
			return fail("control_input[%d] (%s): has %d controls, want one", i, ci.GetName(), len(ci.GetControl()))
		}
		c := ci.GetControl()[0]
		ctl := control{name: ci.GetName(), kind: c.GetKind()}
		switch c.GetKind() {
		case inference.ModelSequenceBatching_Control_CONTROL_SEQUENCE_START, inference.ModelSequenceBatching_Control_CONTROL_SEQUENCE_END,
			inference.ModelSequenceBatching_Control_CONTROL_SEQUENCE_READY:
			n := 0
			if v := c.GetInt32FalseTrue(); len(v) > 0 {
				n++
				ctl.dtype, ctl.ft = tensor.Int32, [2]float64{float64(v[0]), float64(v[len(v)-1])}
				if len(v) != 2 {
					return fail("control_input[%d] (%s): int32_false_true has %d values, want 2", i, ci.GetName(), len(v))
				}
			}
			if v := c.GetFp32FalseTrue(); len(v) > 0 {
				n++
				ctl.dtype, ctl.ft = tensor.Float32, [2]float64{float64(v[0]), float64(v[len(v)-1])}
				if len(v) != 2 {
					return fail("control_input[%d] (%s): fp32_false_true has %d values, want 2", i, ci.GetName(), len(v))
				}
			}
			if v := c.GetBoolFalseTrue(); len(v) > 0 {
				n++
				ctl.dtype, ctl.ft = tensor.Bool, [2]float64{b2f(v[0]), b2f(v[len(v)-1])}
				if len(v) != 2 {
					return fail("control_input[%d] (%s): bool_false_true has %d values, want 2", i, ci.GetName(), len(v))
				}
			}
			if n != 1 {
				return fail("control_input[%d] (%s): give one of int32_false_true, fp32_false_true, bool_false_true", i, ci.GetName())
			}
		case inference.ModelSequenceBatching_Control_CONTROL_SEQUENCE_CORRID:
			dt, err := api.ParseConfigDataType(c.GetDataType())
			if err != nil || !slices.Contains([]tensor.DType{tensor.Uint64, tensor.Int64, tensor.Uint32, tensor.Int32, tensor.String}, dt) {
				return fail("control_input[%d] (%s): CONTROL_SEQUENCE_CORRID data_type %v: want TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 or TYPE_STRING", i, ci.GetName(), c.GetDataType())
			}
			ctl.dtype = dt
		default:
			return fail("control_input[%d] (%s): kind %v is not supported", i, ci.GetName(), c.GetKind())
		}
		b.controls = append(b.controls, ctl)
	}
	for i, s := range sb.GetState() {
		st, err := newSeqState(rm, s, b.batched)
		if err != nil {
			return fail("state[%d] (%s): %v", i, s.GetInputName(), err)
		}
		if seen[st.input] {
			return fail("state[%d]: input_name %q is given twice (or is also an input)", i, st.input)
		}
		seen[st.input] = true
		b.states = append(b.states, st)
	}
	if sb.GetIterativeSequence() {
		return fail("iterative_sequence is not supported")
	}
	// the inputs and outputs the batcher fills are not the clients'
	internal := sequenceInternal(sb)
	cfg.Inputs = slices.DeleteFunc(cfg.Inputs, func(io repository.IO) bool { return internal[io.Name] })
	cfg.Outputs = slices.DeleteFunc(cfg.Outputs, func(io repository.IO) bool { return internal[io.Name] })
	return b, opts, nil
}

func b2f(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

func newSeqState(rm *repository.Model, s *inference.ModelSequenceBatching_State, batched bool) (seqState, error) {
	st := seqState{input: s.GetInputName(), output: s.GetOutputName()}
	if st.input == "" || st.output == "" {
		return st, fmt.Errorf("input_name and output_name are both needed")
	}
	dt, err := api.ParseConfigDataType(s.GetDataType())
	if err != nil || dt == tensor.String {
		return st, fmt.Errorf("data_type %v: want a numeric type", s.GetDataType())
	}
	st.dtype = dt
	if len(s.GetInitialState()) > 1 {
		return st, fmt.Errorf("initial_state: at most one")
	}
	dims := slices.Clone(s.GetDims())
	var data []byte
	if len(s.GetInitialState()) == 1 {
		is := s.GetInitialState()[0]
		if len(is.GetDims()) > 0 {
			dims = slices.Clone(is.GetDims())
		}
		if is.GetDataType() != inference.DataType_TYPE_INVALID && is.GetDataType() != s.GetDataType() {
			return st, fmt.Errorf("initial_state.data_type %v differs from data_type %v", is.GetDataType(), s.GetDataType())
		}
		if f := is.GetDataFile(); f != "" {
			if rm.Dir == "" || filepath.IsAbs(f) || !filepath.IsLocal(f) {
				return st, fmt.Errorf("initial_state.data_file %q: want a file name under the model's initial_state folder", f)
			}
			if data, err = os.ReadFile(filepath.Join(rm.Dir, "initial_state", f)); err != nil {
				return st, fmt.Errorf("initial_state.data_file: %w", err)
			}
		}
	}
	shape := make([]int, 0, len(dims)+1)
	if batched {
		shape = append(shape, 1)
	}
	for _, d := range dims {
		if d < 0 || d > 1<<24 {
			return st, fmt.Errorf("dims %v: a variable or too large dimension needs initial_state dims", dims)
		}
		shape = append(shape, int(d))
	}
	if err := tensor.CheckShape(shape); err != nil {
		return st, fmt.Errorf("dims %v: %w", dims, err)
	}
	if data != nil {
		if st.initial, err = tensor.FromBytes(dt, shape, data); err != nil {
			return st, fmt.Errorf("initial_state.data_file: %d bytes for dims %v of %v: %w", len(data), dims, dt, err)
		}
	} else {
		st.initial = tensor.New(dt, shape...)
	}
	return st, nil
}

// waitSlot takes a free slot for a new sequence, waiting for one while
// every slot is taken (ErrQueueFull when maxQueue sequences wait already).
// b.mu is held, and held again on return.
func (b *seqBatcher) waitSlot(ctx context.Context, q Sequence) error {
	for len(b.seqs) >= b.slots {
		if b.waiting >= b.maxQueue {
			return fmt.Errorf("%w: model %s: all %d sequence slots are taken and %d new sequences wait", ErrQueueFull, b.model, b.slots, b.waiting)
		}
		freed := b.freed
		b.waiting++
		b.stats.Waiting = b.waiting
		b.mu.Unlock()
		var err error
		select {
		case <-freed:
		case <-ctx.Done():
			err = fmt.Errorf("sequence %s waited for a free slot: %w", q, ctx.Err())
		}
		b.mu.Lock()
		b.waiting--
		b.stats.Waiting = b.waiting
		if err != nil {
			return err
		}
	}
	return nil
}

// begin finds (or starts) req's sequence and takes its turn.
func (b *seqBatcher) begin(ctx context.Context, q Sequence) (*sequence, error) {
	if !q.Set() {
		return nil, fmt.Errorf("%w: model %s is stateful: the request needs a sequence_id", ErrInvalid, b.model)
	}
	k := q.key()
	b.mu.Lock()
	seq := b.seqs[k]
	if seq == nil {
		if !q.Start {
			expired := b.expired[k]
			b.mu.Unlock()
			if expired {
				return nil, fmt.Errorf("%w: model %s: sequence %s was idle longer than max_sequence_idle_microseconds (%v) and was released; start it again with sequence_start", ErrInvalid, b.model, q, b.idle)
			}
			return nil, fmt.Errorf("%w: model %s: sequence %s has not started: its first request needs sequence_start", ErrInvalid, b.model, q)
		}
		if err := b.waitSlot(ctx, q); err != nil {
			b.mu.Unlock()
			return nil, err
		}
		if seq = b.seqs[k]; seq == nil { // another start may have made it meanwhile
			seq = &sequence{q: q, turn: make(chan struct{}, 1)}
			b.seqs[k] = seq
			b.stats.Started++
			b.stats.Active = len(b.seqs)
			delete(b.expired, k)
		}
	}
	b.mu.Unlock()
	select {
	case seq.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if seq.done {
		<-seq.turn
		// released (end or idle) while this request waited for its turn
		return b.begin2(ctx, q)
	}
	seq.busy = true
	if seq.timer != nil {
		seq.timer.Stop()
	}
	if q.Start {
		seq.state = nil // a start on an active sequence starts it over
	}
	return seq, nil
}

// begin2 retries begin once a released sequence gave back its turn.
func (b *seqBatcher) begin2(ctx context.Context, q Sequence) (*sequence, error) {
	b.mu.Unlock()
	defer b.mu.Lock()
	return b.begin(ctx, q)
}

// inputs adds the control and state inputs of seq's next run to the
// client's (a request of a sequence has batch size 1).
func (b *seqBatcher) inputs(seq *sequence, q Sequence, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	for k, v := range in {
		if b.batched && len(v.Shape) > 0 && v.Shape[0] != 1 {
			return nil, fmt.Errorf("%w: input %q shape %v: a request of a sequence has batch size 1", ErrInvalid, k, v.Shape)
		}
	}
	return b.fill(seq.state, q, in, 1)
}

// warmInputs adds to a warmup sample's inputs (batch size n) the control
// inputs of a sequence that starts and ends, and the initial states.
func (b *seqBatcher) warmInputs(in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	n := 1
	if b.batched {
		for _, v := range in {
			if len(v.Shape) > 0 {
				n = v.Shape[0]
			}
			break
		}
	}
	return b.fill(nil, Sequence{ID: 1, Start: true, End: true}, in, n)
}

// fill adds the control inputs of q and the states (state, or the initial
// ones) to in, each with n rows.
func (b *seqBatcher) fill(state map[string]*tensor.Tensor, q Sequence, in map[string]*tensor.Tensor, n int) (map[string]*tensor.Tensor, error) {
	out := make(map[string]*tensor.Tensor, len(in)+len(b.controls)+len(b.states))
	for k, v := range in {
		out[k] = v
	}
	shape := []int{n}
	if b.batched {
		shape = []int{n, 1}
	}
	for _, c := range b.controls {
		t := tensor.New(c.dtype, shape...)
		switch c.kind {
		case inference.ModelSequenceBatching_Control_CONTROL_SEQUENCE_CORRID:
			switch c.dtype {
			case tensor.String:
				id := q.Name
				if id == "" {
					id = strconv.FormatUint(q.ID, 10)
				}
				t.Strings = slices.Repeat([]string{id}, n)
			case tensor.Uint64, tensor.Int64:
				if q.Name != "" {
					return nil, fmt.Errorf("%w: model %s takes numeric sequence ids, not %s", ErrInvalid, b.model, q)
				}
				for i := range n {
					binary.LittleEndian.PutUint64(t.Data[8*i:], q.ID)
				}
			default:
				if q.Name != "" || q.ID > math.MaxUint32 {
					return nil, fmt.Errorf("%w: model %s takes 32-bit sequence ids, not %s", ErrInvalid, b.model, q)
				}
				for i := range n {
					binary.LittleEndian.PutUint32(t.Data[4*i:], uint32(q.ID))
				}
			}
		default:
			on := true // READY
			switch c.kind {
			case inference.ModelSequenceBatching_Control_CONTROL_SEQUENCE_START:
				on = q.Start
			case inference.ModelSequenceBatching_Control_CONTROL_SEQUENCE_END:
				on = q.End
			}
			v := c.ft[0]
			if on {
				v = c.ft[1]
			}
			for i := range n {
				t.SetFloat(i, v)
			}
		}
		out[c.name] = t
	}
	for _, st := range b.states {
		switch s := state[st.input]; {
		case s != nil:
			out[st.input] = s
		case n == 1 || !b.batched:
			out[st.input] = st.initial
		default:
			t := tensor.New(st.dtype, append([]int{n}, st.initial.Shape[1:]...)...)
			for i := range n {
				copy(t.Data[i*len(st.initial.Data):], st.initial.Data)
			}
			out[st.input] = t
		}
	}
	return out, nil
}

// finish keeps a successful run's states and gives back seq's turn; the
// sequence ends with sequence_end or a failed start (its slot freed), else
// waits for its next request at most b.idle.
func (b *seqBatcher) finish(seq *sequence, q Sequence, outputs map[string]*tensor.Tensor, runErr error) error {
	var err error
	if runErr == nil && len(b.states) > 0 {
		next := map[string]*tensor.Tensor{}
		for _, st := range b.states {
			t := outputs[st.output]
			if t == nil {
				err = fmt.Errorf("model %s: the run has no state output %q", b.model, st.output)
				break
			}
			if t.DType != st.dtype {
				err = fmt.Errorf("model %s: state output %q is %v, the state is %v", b.model, st.output, t.DType, st.dtype)
				break
			}
			next[st.input] = t.Clone()
		}
		if err == nil {
			seq.state = next
		}
	}
	b.mu.Lock()
	seq.busy = false
	seq.last = time.Now()
	switch {
	case q.End:
		b.release(seq, false)
	case q.Start && (runErr != nil || err != nil):
		b.release(seq, false) // a failed start: the client starts again
	default:
		if seq.timer == nil {
			seq.timer = time.AfterFunc(b.idle, func() { b.expire(seq) })
		} else {
			seq.timer.Reset(b.idle)
		}
	}
	b.mu.Unlock()
	<-seq.turn
	return err
}

// expire frees seq's slot if it is still idle.
func (b *seqBatcher) expire(seq *sequence) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if seq.done || seq.busy || time.Since(seq.last) < b.idle {
		return
	}
	b.release(seq, true)
}

// release frees seq's slot; b.mu is held.
func (b *seqBatcher) release(seq *sequence, idle bool) {
	if seq.done {
		return
	}
	seq.done = true
	seq.state = nil
	if seq.timer != nil {
		seq.timer.Stop()
	}
	k := seq.q.key()
	if b.seqs[k] == seq {
		delete(b.seqs, k)
	}
	if idle {
		b.stats.TimedOut++
		if len(b.expired) >= maxExpired {
			clear(b.expired)
		}
		b.expired[k] = true
	} else {
		b.stats.Ended++
	}
	b.stats.Active = len(b.seqs)
	close(b.freed)
	b.freed = make(chan struct{})
}

// close forgets every sequence (the model is unloaded): their states are
// dropped and their idle timers stopped.
func (b *seqBatcher) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, seq := range b.seqs {
		if seq.timer != nil {
			seq.timer.Stop()
		}
		seq.done, seq.state = true, nil
		delete(b.seqs, k)
	}
	b.stats.Active = 0
	close(b.freed)
	b.freed = make(chan struct{})
}

func (b *seqBatcher) snapshot() SequenceStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// inferSequence runs one request of a stateful model: its sequence's turn,
// its control and state inputs, then the model's scheduler.
func (s *Server) inferSequence(ctx context.Context, cfg *repository.Config, v *version, req *InferRequest) (*scheduler.Result, error) {
	if err := checkInputs(cfg, req); err != nil {
		return nil, err
	}
	b := v.seq
	seq, err := b.begin(ctx, req.Sequence)
	if err != nil {
		return nil, err
	}
	in, err := b.inputs(seq, req.Sequence, req.Inputs)
	var res *scheduler.Result
	if err == nil {
		res, err = s.run(ctx, v, req, in)
	}
	var outs map[string]*tensor.Tensor
	if res != nil {
		outs = res.Outputs
	}
	if ferr := b.finish(seq, req.Sequence, outs, err); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// SequenceStats returns the sequence batcher's counters of a model version
// (ok is false for a model without sequence_batching).
func (s *Server) SequenceStats(name, ver string) (st SequenceStats, ok bool, err error) {
	_, v, err := s.lookup(name, ver)
	if err != nil || v.seq == nil {
		return st, false, err
	}
	return v.seq.snapshot(), true, nil
}

// Sequences returns the sequence batchers' counters by (model, version),
// for every loaded model version with sequence_batching.
func (s *Server) Sequences() map[[2]string]SequenceStats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[[2]string]SequenceStats{}
	for name, m := range s.models {
		for _, v := range m.versions {
			if v.seq != nil {
				out[[2]string{name, strconv.FormatInt(v.num, 10)}] = v.seq.snapshot()
			}
		}
	}
	return out
}
