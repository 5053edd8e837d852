package serve

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/kilnai/kiln/serve/logging"
	"github.com/kilnai/kiln/serve/repository"
)

// Trace settings, as Triton's trace extension names them. They are kept
// and returned, global and per model (a model's setting, until cleared,
// overrides the global one); kiln writes no trace file.
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
	return t.effective(model), nil
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
		s.log.Info("log settings changed", "settings", fmt.Sprint(st.Map()))
	}
	return st, err
}
