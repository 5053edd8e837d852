package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnai/kiln/serve/logging"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/serve/scheduler"
)

// Trace settings, as Triton's trace extension names them, global and per
// model (a model's setting, until cleared, overrides the global one).
// With trace_level TIMESTAMPS (or TENSORS) and a trace_file, one request
// of every trace_rate is traced, trace_count traces at most (-1: no
// bound): its timestamps (REQUEST_START, QUEUE_START, COMPUTE_START,
// COMPUTE_INPUT_END, COMPUTE_OUTPUT_START, COMPUTE_END, REQUEST_END, in
// nanoseconds since the epoch) are added to the trace file, a JSON array
// as Triton's. Trace files are written only inside the folder the server
// was given for them (SetTraceDir; kiln serve --trace-dir); trace_file
// names a file in it. log_frequency is kept and returned: every trace is
// written when taken.
var traceDefaults = map[string][]string{
	"trace_file":    {""},
	"trace_level":   {"OFF"},
	"trace_rate":    {"1000"},
	"trace_count":   {"-1"},
	"log_frequency": {"0"},
	"trace_mode":    {"triton"},
}

// traceSettings are a server's trace settings.
type traceSettings struct {
	mu     sync.Mutex
	global map[string][]string            // changed from traceDefaults
	models map[string]map[string][]string // per model, overriding global
	// on is set while some settings trace (the request path reads it
	// alone when none does).
	on atomic.Bool
	// dir is the folder of trace files ("": none may be written).
	dir string
	// seen and taken count each model's requests and traces since its
	// settings last changed; fresh are the trace files not yet written
	// since they were named.
	seen, taken map[string]uint64
	fresh       map[string]bool
	ids         uint64
}

// checkTrace checks one trace setting's values.
func checkTrace(name string, vals []string) error {
	if _, ok := traceDefaults[name]; !ok {
		return fmt.Errorf("%w: unknown trace setting %q (want one of %q)", ErrInvalid, name, slices.Sorted(maps.Keys(traceDefaults)))
	}
	if name != "trace_level" && len(vals) != 1 {
		return fmt.Errorf("%w: trace setting %s takes one value, not %d", ErrInvalid, name, len(vals))
	}
	intAtLeast := func(lo int64) error {
		n, err := strconv.ParseInt(vals[0], 10, 64)
		if err != nil || n < lo {
			return fmt.Errorf("%w: trace setting %s %q: want an integer, at least %d", ErrInvalid, name, vals[0], lo)
		}
		return nil
	}
	switch name {
	case "trace_level":
		if len(vals) == 0 {
			return fmt.Errorf("%w: trace_level needs a value (OFF, TIMESTAMPS, TENSORS)", ErrInvalid)
		}
		for _, v := range vals {
			if v != "OFF" && v != "TIMESTAMPS" && v != "TENSORS" {
				return fmt.Errorf("%w: trace_level %q: want OFF, TIMESTAMPS or TENSORS", ErrInvalid, v)
			}
		}
		if len(vals) > 1 && slices.Contains(vals, "OFF") {
			return fmt.Errorf("%w: trace_level OFF goes alone", ErrInvalid)
		}
	case "trace_rate":
		return intAtLeast(1)
	case "trace_count":
		return intAtLeast(-1)
	case "log_frequency":
		return intAtLeast(0)
	case "trace_file":
		if vals[0] != "" && (!filepath.IsLocal(vals[0]) || strings.ContainsRune(vals[0], 0)) {
			return fmt.Errorf("%w: trace_file %q: want a file name inside the server's trace folder (kiln serve --trace-dir)", ErrInvalid, vals[0])
		}
	case "trace_mode":
		if vals[0] != "triton" {
			return fmt.Errorf("%w: trace_mode %q: kiln keeps Triton's trace mode (\"triton\") only", ErrInvalid, vals[0])
		}
	}
	return nil
}

// effective returns the settings of model ("": the global ones).
func (t *traceSettings) effective(model string) map[string][]string {
	out := maps.Clone(traceDefaults)
	maps.Copy(out, t.global)
	if model != "" {
		maps.Copy(out, t.models[model])
	}
	for k, v := range out {
		out[k] = slices.Clone(v)
	}
	return out
}

// knownModel reports whether name is served or in the repository.
func (s *Server) knownModel(name string) bool {
	s.mu.RLock()
	_, ok := s.models[name]
	s.mu.RUnlock()
	if ok || s.opts.Repository == "" {
		return ok
	}
	names, _ := repository.Names(s.opts.Repository)
	return slices.Contains(names, name)
}

// TraceSettings returns the trace settings of model, or the global ones
// when model is empty.
func (s *Server) TraceSettings(model string) (map[string][]string, error) {
	return s.UpdateTraceSettings(model, nil)
}

// UpdateTraceSettings changes the trace settings of model (the global
// ones when model is empty) and returns the result. A setting with no
// values is cleared: a model's then follows the global one, a global one
// its default. Nothing changes when a setting is bad.
func (s *Server) UpdateTraceSettings(model string, upd map[string][]string) (map[string][]string, error) {
	if model != "" && !s.knownModel(model) {
		return nil, fmt.Errorf("%w: model %q", ErrNotFound, model)
	}
	for k, v := range upd {
		if len(v) == 0 {
			if _, ok := traceDefaults[k]; !ok {
				return nil, checkTrace(k, v)
			}
			continue
		}
		if err := checkTrace(k, v); err != nil {
			return nil, err
		}
	}
	t := &s.trace
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := upd["trace_file"]; len(f) == 1 && f[0] != "" && t.dir == "" {
		return nil, fmt.Errorf("%w: trace_file %q: this server writes no trace files (kiln serve --trace-dir names their folder)", ErrInvalid, f[0])
	}
	set := t.global
	if model != "" {
		set = t.models[model]
	}
	for k, v := range upd {
		if len(v) == 0 {
			delete(set, k)
			continue
		}
		if set == nil {
			set = map[string][]string{}
		}
		set[k] = slices.Clone(v)
	}
	switch {
	case model == "":
		t.global = set
	case len(set) == 0:
		delete(t.models, model)
	default:
		if t.models == nil {
			t.models = map[string]map[string][]string{}
		}
		t.models[model] = set
	}
	if len(upd) > 0 {
		t.changed(upd)
	}
	return t.effective(model), nil
}

// changed restarts the counts after a settings change and tells whether
// any settings trace now.
func (t *traceSettings) changed(upd map[string][]string) {
	t.seen, t.taken = nil, nil
	if f := upd["trace_file"]; len(f) == 1 && f[0] != "" {
		if t.fresh == nil {
			t.fresh = map[string]bool{}
		}
		t.fresh[f[0]] = true
	}
	on := t.tracing(t.effective(""))
	for m := range t.models {
		on = on || t.tracing(t.effective(m))
	}
	t.on.Store(on)
}

// tracing reports whether settings st take traces.
func (t *traceSettings) tracing(st map[string][]string) bool {
	return t.dir != "" && st["trace_file"][0] != "" && !slices.Contains(st["trace_level"], "OFF")
}

// SetTraceDir sets the folder that trace files (the trace_file setting)
// are written in; without it, trace files are refused.
func (s *Server) SetTraceDir(dir string) {
	s.trace.mu.Lock()
	defer s.trace.mu.Unlock()
	s.trace.dir = dir
	s.trace.changed(nil)
}

// traceRequest takes a trace of a finished request of model when its
// settings say so: start is when it arrived, total how long it took, res
// its phases (unless it failed: err).
func (s *Server) traceRequest(model, version string, start time.Time, total time.Duration, res *scheduler.Result, err error) {
	if err != nil {
		res = nil
	}
	t := &s.trace
	t.mu.Lock()
	st := t.effective(model)
	if !t.tracing(st) {
		t.mu.Unlock()
		return
	}
	rate, _ := strconv.ParseUint(st["trace_rate"][0], 10, 64)
	count, _ := strconv.ParseInt(st["trace_count"][0], 10, 64)
	if t.seen == nil {
		t.seen, t.taken = map[string]uint64{}, map[string]uint64{}
	}
	t.seen[model]++
	if t.seen[model]%max(rate, 1) != 0 || count >= 0 && t.taken[model] >= uint64(count) {
		t.mu.Unlock()
		return
	}
	t.taken[model]++
	t.ids++
	file := st["trace_file"][0]
	fresh := t.fresh[file]
	delete(t.fresh, file)
	path := filepath.Join(t.dir, file)
	id := t.ids
	t.mu.Unlock()

	ver, _ := strconv.ParseInt(version, 10, 64)
	ns := func(d time.Duration) int64 { return start.Add(d).UnixNano() }
	stamps := []traceStamp{{"REQUEST_START", ns(0)}, {"QUEUE_START", ns(0)}}
	if res != nil {
		computeStart := res.Queue
		stamps = append(stamps, traceStamp{"COMPUTE_START", ns(computeStart)},
			traceStamp{"COMPUTE_INPUT_END", ns(computeStart + res.Input)},
			traceStamp{"COMPUTE_OUTPUT_START", ns(computeStart + res.Input + res.Compute)},
			traceStamp{"COMPUTE_END", ns(computeStart + res.Input + res.Compute + res.Output)})
	}
	stamps = append(stamps, traceStamp{"REQUEST_END", ns(total)})
	b, _ := json.Marshal(traceRecord{ID: id, Model: model, Version: ver, Timestamps: stamps})
	if err := appendTrace(path, b, fresh); err != nil {
		s.log.Warn("cannot write the trace file", "file", path, "err", err)
	}
}

type traceStamp struct {
	Name string `json:"name"`
	Ns   int64  `json:"ns"`
}

type traceRecord struct {
	ID         uint64       `json:"id"`
	Model      string       `json:"model_name"`
	Version    int64        `json:"model_version"`
	Timestamps []traceStamp `json:"timestamps"`
}

// traceFiles serializes the writes of trace files.
var traceFiles sync.Mutex

// appendTrace adds record to the JSON array of file path, which it
// starts anew when fresh (or when it is not an array yet).
func appendTrace(path string, record []byte, fresh bool) error {
	traceFiles.Lock()
	defer traceFiles.Unlock()
	flags := os.O_RDWR | os.O_CREATE
	if fresh {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return err
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		last := make([]byte, 1)
		if end > 0 {
			_, err = f.ReadAt(last, end-1)
		}
		switch {
		case err != nil:
		case end > 1 && last[0] == ']':
			_, err = f.WriteAt(append(append([]byte(",\n"), record...), ']'), end-1)
		default:
			if err = f.Truncate(0); err == nil {
				_, err = f.WriteAt(append(append([]byte("["), record...), ']'), 0)
			}
		}
	}
	return errors.Join(err, f.Close())
}

// LogSettings returns the log settings.
func (s *Server) LogSettings() logging.Settings { return s.logs.Settings() }

// UpdateLogSettings changes the log settings given by name (log_info,
// log_warning, log_error, log_verbose_level, log_format, log_file) and
// returns the result. When the server's logger is a *logging.Handler's
// (kiln serve's), its levels and format change at once.
func (s *Server) UpdateLogSettings(values map[string]any) (logging.Settings, error) {
	st, err := s.logs.Update(values)
	if errors.Is(err, logging.ErrSetting) {
		err = fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err == nil && len(values) > 0 {
		s.log.Info("log settings changed", "settings", st.Map())
	}
	return st, err
}
