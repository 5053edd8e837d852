package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
)

// ErrSetting is returned for an unknown setting or a bad value.
var ErrSetting = errors.New("logging: bad log setting")

// Settings are the log settings, by Triton's names.
type Settings struct {
	File                 string
	Info, Warning, Error bool
	VerboseLevel         uint32
	Format               string
}

// Map returns the settings by their names: bools, a uint32 and strings.
func (s Settings) Map() map[string]any {
	return map[string]any{"log_file": s.File, "log_info": s.Info, "log_warning": s.Warning, "log_error": s.Error,
		"log_verbose_level": s.VerboseLevel, "log_format": s.Format}
}

// Formats are the values log_format takes.
var Formats = []string{"default", "ISO8601", "json"}

// state is what a handler and the handlers derived from it (WithAttrs,
// WithGroup) share.
type state struct {
	w        io.Writer
	mu       sync.Mutex // serializes Update
	settings atomic.Pointer[Settings]
}

// Handler is a slog.Handler whose settings change at run time. Handlers
// derived from one (With, WithGroup) follow its settings.
type Handler struct {
	st *state
	// ops replays the WithAttrs and WithGroup calls on a new inner handler
	// when the format changes.
	ops   []func(slog.Handler) slog.Handler
	inner atomic.Pointer[innerHandler]
}

type innerHandler struct {
	format string
	h      slog.Handler
}

var _ slog.Handler = (*Handler)(nil)

// New returns a handler writing text lines to w, with info, warning and
// error messages on, as kiln serve starts.
func New(w io.Writer) *Handler {
	st := &state{w: w}
	st.settings.Store(&Settings{Info: true, Warning: true, Error: true, Format: "default"})
	return &Handler{st: st}
}

// Settings returns the current settings.
func (h *Handler) Settings() Settings { return *h.st.settings.Load() }

// Update changes the settings given (by name; the others keep their
// values) and returns the result. Values are bools, numbers (any Go
// integer or float64 type, as decoded JSON gives) and strings; a bad name
// or value changes nothing and is an error wrapping ErrSetting.
func (h *Handler) Update(values map[string]any) (Settings, error) {
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	s := *h.st.settings.Load()
	for k, v := range values {
		var err error
		switch k {
		case "log_info":
			s.Info, err = asBool(k, v)
		case "log_warning":
			s.Warning, err = asBool(k, v)
		case "log_error":
			s.Error, err = asBool(k, v)
		case "log_verbose_level":
			s.VerboseLevel, err = asUint32(k, v)
		case "log_format":
			s.Format, err = asString(k, v)
			if err == nil && !validFormat(s.Format) {
				err = fmt.Errorf("%w: log_format %q: want one of %q", ErrSetting, s.Format, Formats)
			}
		case "log_file":
			s.File, err = asString(k, v)
			if err == nil && s.File != "" {
				err = fmt.Errorf("%w: log_file %q: kiln logs to standard error only (log_file \"\")", ErrSetting, s.File)
			}
		default:
			err = fmt.Errorf("%w: unknown setting %q (want log_file, log_info, log_warning, log_error, log_verbose_level or log_format)", ErrSetting, k)
		}
		if err != nil {
			return *h.st.settings.Load(), err
		}
	}
	h.st.settings.Store(&s)
	return s, nil
}

func validFormat(f string) bool {
	for _, x := range Formats {
		if f == x {
			return true
		}
	}
	return false
}

func asBool(k string, v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%w: %s must be true or false", ErrSetting, k)
	}
	return b, nil
}

func asString(k string, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: %s must be a string", ErrSetting, k)
	}
	return s, nil
}

func asUint32(k string, v any) (uint32, error) {
	var f float64
	switch n := v.(type) {
	case uint32:
		return n, nil
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case uint64:
		f = float64(n)
	case float64:
		f = n
	default:
		return 0, fmt.Errorf("%w: %s must be a number", ErrSetting, k)
	}
	if f < 0 || f > math.MaxUint32 || f != math.Trunc(f) {
		return 0, fmt.Errorf("%w: %s must be an integer in 0..%d", ErrSetting, k, uint32(math.MaxUint32))
	}
	return uint32(f), nil
}

// Enabled reports whether messages of level are on.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	s := h.st.settings.Load()
	switch {
	case level >= slog.LevelError:
		return s.Error
	case level >= slog.LevelWarn:
		return s.Warning
	case level >= slog.LevelInfo:
		return s.Info
	}
	return s.VerboseLevel > 0
}

// Handle writes r in the current format.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	return h.current().Handle(ctx, r)
}

// current returns the inner handler of the current format, made anew
// when the format changed.
func (h *Handler) current() slog.Handler {
	format := h.st.settings.Load().Format
	if in := h.inner.Load(); in != nil && in.format == format {
		return in.h
	}
	// every level reaches the inner handler: Enabled decides
	opts := &slog.HandlerOptions{Level: slog.LevelDebug - 8}
	var inner slog.Handler
	if format == "json" {
		inner = slog.NewJSONHandler(h.st.w, opts)
	} else {
		inner = slog.NewTextHandler(h.st.w, opts)
	}
	for _, op := range h.ops {
		inner = op(inner)
	}
	h.inner.Store(&innerHandler{format, inner})
	return inner
}

func (h *Handler) derive(op func(slog.Handler) slog.Handler) *Handler {
	ops := append(append([]func(slog.Handler) slog.Handler{}, h.ops...), op)
	return &Handler{st: h.st, ops: ops}
}

// WithAttrs returns a handler that adds attrs to every message.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return h.derive(func(in slog.Handler) slog.Handler { return in.WithAttrs(attrs) })
}

// WithGroup returns a handler that puts the attributes in group name.
func (h *Handler) WithGroup(name string) slog.Handler {
	return h.derive(func(in slog.Handler) slog.Handler { return in.WithGroup(name) })
}
