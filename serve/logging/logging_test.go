package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	h := New(&buf)
	log := slog.New(h).With("model", "tiny")
	steps := []struct {
		update map[string]any
		err    bool
		// which of debug, info, warn, error are written
		written [4]bool
		json    bool
	}{
		{nil, false, [4]bool{false, true, true, true}, false},
		{map[string]any{"log_info": false}, false, [4]bool{false, false, true, true}, false},
		{map[string]any{"log_verbose_level": float64(1), "log_warning": false}, false, [4]bool{true, false, false, true}, false},
		{map[string]any{"log_format": "json", "log_info": true}, false, [4]bool{true, true, false, true}, true},
		{map[string]any{"log_error": false, "log_verbose_level": uint32(0), "log_format": "ISO8601"}, false, [4]bool{false, true, false, false}, false},
		{map[string]any{"log_format": "yaml"}, true, [4]bool{false, true, false, false}, false},
		{map[string]any{"log_info": "no"}, true, [4]bool{false, true, false, false}, false},
		{map[string]any{"log_verbose_level": 1.5}, true, [4]bool{false, true, false, false}, false},
		{map[string]any{"log_file": "x.log"}, true, [4]bool{false, true, false, false}, false},
		{map[string]any{"log_file": "", "log_warning": true, "log_error": true}, false, [4]bool{false, true, true, true}, false},
		{map[string]any{"log_level": 1}, true, [4]bool{false, true, true, true}, false},
	}
	for i, s := range steps {
		before := h.Settings()
		_, err := h.Update(s.update)
		if (err != nil) != s.err || err != nil && !errors.Is(err, ErrSetting) {
			t.Fatalf("step %d: Update(%v) = %v", i, s.update, err)
		}
		if err != nil && h.Settings() != before {
			t.Fatalf("step %d: a bad update changed the settings", i)
		}
		buf.Reset()
		log.Debug("d")
		log.Info("i")
		log.Warn("w")
		log.Error("e")
		out := buf.String()
		for j, msg := range []string{"d", "i", "w", "e"} {
			var mark string
			if s.json {
				mark = `"msg":"` + msg + `"`
			} else {
				mark = "msg=" + msg
			}
			if strings.Contains(out, mark) != s.written[j] {
				t.Fatalf("step %d: message %s written=%v, want %v:\n%s", i, msg, !s.written[j], s.written[j], out)
			}
		}
		// attributes given before a format change are kept
		if out != "" && !strings.Contains(out, "tiny") {
			t.Fatalf("step %d: the logger's attributes are lost:\n%s", i, out)
		}
	}
	if m := h.Settings().Map(); m["log_format"] != "ISO8601" || m["log_verbose_level"] != uint32(0) {
		t.Fatalf("settings map %v", m)
	}
}
