// Package record keeps a bounded, sampled set of a model's real requests in
// a folder, in the layout of the ONNX test data sets (test_data_set_N, each
// with input_K.pb TensorProto files named for the model's inputs), which
// kiln build --int8 --calib-data reads: INT8 calibration on the traffic the
// model actually serves rather than on made-up data.
//
// The request path pays for the sampling decision and, for a sampled
// request, one copy of its inputs; writing happens on a goroutine of its
// own, and a request arriving while the writer is behind is not recorded.
// The folder keeps a uniform sample of all the requests offered so far
// (reservoir sampling), at most MaxSets of them and MaxBytes in all.
package record

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// ErrOptions is returned for options that cannot work.
var ErrOptions = errors.New("record: bad options")

// Defaults of Options.
const (
	DefaultMaxSets  = 100
	DefaultMaxBytes = 64 << 20
	// queueLen is how many sampled requests may wait for the writer.
	queueLen = 16
)

// Options configures a Recorder.
type Options struct {
	// Dir is the folder of the test_data_set_N folders; created if missing.
	Dir string
	// Inputs are the model's inputs in order: input_K.pb is Inputs[K]. A
	// request without one of them (an optional input left out) is not
	// recorded.
	Inputs []string
	// Fraction of the requests to record, in (0, 1].
	Fraction float64
	// MaxSets bounds the sets kept (0: DefaultMaxSets), MaxBytes the
	// size of their files in all (0: DefaultMaxBytes): a request that would take the
	// folder past it is left out.
	MaxSets  int
	MaxBytes int64
	// Seed makes the reservoir's choices reproducible (0: random).
	Seed uint64
	// Logger receives write errors (nil: none).
	Logger *slog.Logger
}

// Stats are a Recorder's counts.
type Stats struct {
	// Offered requests, Sampled of them, Dropped of those because the
	// writer was behind, Written sets (replacements included), Sets in the
	// folder now, and their Bytes.
	Offered, Sampled, Dropped, Written uint64
	Sets                               int
	Bytes                              int64
}

// Recorder records a model's requests; Offer is safe for concurrent use.
type Recorder struct {
	opts    Options
	queue   chan map[string]*tensor.Tensor
	done    chan struct{}
	closeMu sync.Mutex
	closed  bool

	offered, sampled, dropped, written atomic.Uint64
	// processed counts the requests the writer is done with.
	processed atomic.Uint64

	mu   sync.Mutex // guards the sampler and the reservoir
	rng  *rand.Rand
	seen uint64  // sampled requests that reached the writer
	size []int64 // bytes of each set kept, by N
}

var setDir = regexp.MustCompile(`^test_data_set_(\d+)$`)

// New starts a recorder over opts.Dir. Sets already in the folder (from an
// earlier run) count as kept: new requests replace them at random, as they
// would replace sets of this run.
func New(opts Options) (*Recorder, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: no folder", ErrOptions)
	}
	if len(opts.Inputs) == 0 {
		return nil, fmt.Errorf("%w: the model has no inputs", ErrOptions)
	}
	if !(opts.Fraction > 0 && opts.Fraction <= 1) {
		return nil, fmt.Errorf("%w: fraction %v: want a number in (0, 1]", ErrOptions, opts.Fraction)
	}
	if opts.MaxSets < 0 || opts.MaxBytes < 0 {
		return nil, fmt.Errorf("%w: negative bound", ErrOptions)
	}
	if opts.MaxSets == 0 {
		opts.MaxSets = DefaultMaxSets
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r := &Recorder{opts: opts, queue: make(chan map[string]*tensor.Tensor, queueLen), done: make(chan struct{}),
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	if err := r.scan(); err != nil {
		return nil, err
	}
	r.seen = uint64(len(r.size))
	go r.write()
	return r, nil
}

// scan finds the sets already in the folder (test_data_set_0 .. N-1 in a
// row; a later one beyond a gap is left alone) and removes leftovers of an
// interrupted write.
func (r *Recorder) scan() error {
	ents, err := os.ReadDir(r.opts.Dir)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	have := map[int]bool{}
	for _, e := range ents {
		if m := setDir.FindStringSubmatch(e.Name()); m != nil && e.IsDir() {
			if n, err := strconv.Atoi(m[1]); err == nil {
				have[n] = true
			}
		}
		if len(e.Name()) > 5 && e.Name()[:5] == ".tmp-" {
			os.RemoveAll(filepath.Join(r.opts.Dir, e.Name()))
		}
	}
	for n := 0; have[n] && n < r.opts.MaxSets; n++ {
		r.size = append(r.size, dirBytes(filepath.Join(r.opts.Dir, setName(n))))
	}
	return nil
}

func setName(n int) string { return "test_data_set_" + strconv.Itoa(n) }

func dirBytes(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if info, err := e.Info(); err == nil {
			n += info.Size()
		}
	}
	return n
}

// Offer records inputs with the configured probability. It copies what it
// keeps (the caller may reuse its buffers at once) and never blocks.
func (r *Recorder) Offer(inputs map[string]*tensor.Tensor) {
	r.offered.Add(1)
	if r.opts.Fraction < 1 && rand.Float64() >= r.opts.Fraction {
		return
	}
	cp := make(map[string]*tensor.Tensor, len(r.opts.Inputs))
	for _, name := range r.opts.Inputs {
		t := inputs[name]
		if t == nil {
			return // an optional input left out: the set would be incomplete
		}
		c := &tensor.Tensor{DType: t.DType, Shape: append([]int(nil), t.Shape...)}
		if t.DType == tensor.String {
			c.Strings = append([]string(nil), t.Strings...)
		} else {
			c.Data = append([]byte(nil), t.Data...)
		}
		cp[name] = c
	}
	r.sampled.Add(1)
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	if r.closed {
		return
	}
	select {
	case r.queue <- cp:
	default:
		r.dropped.Add(1)
	}
}

// write is the writer goroutine: it places each sampled request in the
// reservoir.
func (r *Recorder) write() {
	defer close(r.done)
	for in := range r.queue {
		r.place(in)
		r.processed.Add(1)
	}
}

// place puts one sampled request in the reservoir (or leaves it out).
func (r *Recorder) place(in map[string]*tensor.Tensor) {
	r.mu.Lock()
	r.seen++
	slot := len(r.size)
	if slot >= r.opts.MaxSets {
		// reservoir: the k-th request replaces a kept one with
		// probability MaxSets/k
		slot = int(r.rng.Uint64N(r.seen))
	}
	var total int64
	for _, b := range r.size {
		total += b
	}
	if slot < len(r.size) {
		total -= r.size[slot]
	}
	r.mu.Unlock()
	if slot >= r.opts.MaxSets {
		return
	}
	tmp, n, err := r.prepare(in)
	if err == nil && total+n <= r.opts.MaxBytes {
		err = r.commit(tmp, slot)
	}
	os.RemoveAll(tmp)
	if err != nil {
		r.opts.Logger.Warn("recording a request", "dir", r.opts.Dir, "err", err)
		return
	}
	if total+n > r.opts.MaxBytes {
		return // the folder would grow past its bound
	}
	r.written.Add(1)
	r.mu.Lock()
	if slot == len(r.size) {
		r.size = append(r.size, n)
	} else {
		r.size[slot] = n
	}
	r.mu.Unlock()
}

// prepare writes in into a new temporary folder and returns it with the
// size of its files.
func (r *Recorder) prepare(in map[string]*tensor.Tensor) (string, int64, error) {
	tmp, err := os.MkdirTemp(r.opts.Dir, ".tmp-")
	if err != nil {
		return "", 0, err
	}
	for k, name := range r.opts.Inputs {
		if err := onnx.SaveTensor(filepath.Join(tmp, "input_"+strconv.Itoa(k)+".pb"), name, in[name]); err != nil {
			return tmp, 0, fmt.Errorf("input %q: %w", name, err)
		}
	}
	return tmp, dirBytes(tmp), nil
}

// commit renames the prepared folder tmp over set slot, so that a reader
// never sees half a set.
func (r *Recorder) commit(tmp string, slot int) error {
	dst := filepath.Join(r.opts.Dir, setName(slot))
	old := tmp + ".old"
	if err := os.Rename(dst, old); err != nil && !os.IsNotExist(err) {
		return err
	}
	defer os.RemoveAll(old)
	return os.Rename(tmp, dst)
}

// Stats returns the recorder's counts.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	sets := len(r.size)
	var b int64
	for _, n := range r.size {
		b += n
	}
	r.mu.Unlock()
	return Stats{Offered: r.offered.Load(), Sampled: r.sampled.Load(), Dropped: r.dropped.Load(),
		Written: r.written.Load(), Sets: sets, Bytes: b}
}

// Close stops recording and waits for the requests already sampled to be
// written. It may be called more than once.
func (r *Recorder) Close() error {
	r.closeMu.Lock()
	if !r.closed {
		r.closed = true
		close(r.queue)
	}
	r.closeMu.Unlock()
	<-r.done
	return nil
}
