package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/kilnai/kiln/serve"
)

// settingRoutes adds the trace and log setting routes to mux.
func (h *handler) settingRoutes(mux *http.ServeMux) {
	for _, p := range []string{"/v2/trace/setting", "/v2/models/{model}/trace/setting"} {
		mux.HandleFunc("GET "+p, h.traceSetting)
		mux.HandleFunc("POST "+p, h.traceSetting)
	}
	mux.HandleFunc("GET /v2/logging", h.logging)
	mux.HandleFunc("POST /v2/logging", h.logging)
}

// isSettingPath reports whether path is a trace or log settings path
// (an administrator's: it changes what the server logs and writes).
func isSettingPath(path string) bool {
	return path == "/v2/logging" || path == "/v2/trace/setting" ||
		strings.HasPrefix(path, "/v2/models/") && strings.HasSuffix(path, "/trace/setting")
}

// traceJSON writes trace settings as Triton does: trace_level as a list,
// the others as strings.
func traceJSON(st map[string][]string) map[string]any {
	out := map[string]any{}
	for k, v := range st {
		if k == "trace_level" || len(v) != 1 {
			out[k] = v
		} else {
			out[k] = v[0]
		}
	}
	return out
}

func (h *handler) traceSetting(w http.ResponseWriter, r *http.Request) {
	var upd map[string][]string
	if r.Method == http.MethodPost {
		var body map[string]json.RawMessage
		if err := decodeControl(w, r, &body); err != nil {
			h.fail(w, err)
			return
		}
		upd = map[string][]string{}
		for k, raw := range body {
			vals, err := traceValues(raw)
			if err != nil {
				h.fail(w, fmt.Errorf("%w: trace setting %s: %w", serve.ErrInvalid, k, err))
				return
			}
			upd[k] = vals
		}
	}
	st, err := h.s.UpdateTraceSettings(r.PathValue("model"), upd)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, traceJSON(st))
}

// traceValues reads a trace setting's value: a string, a number, a list
// of strings, or null (clear: no values).
func traceValues(raw json.RawMessage) ([]string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{x}, nil
	case float64:
		return []string{string(raw)}, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("a list of strings, not %s", raw)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a string, a list of strings or null, not %s", raw)
}

func (h *handler) logging(w http.ResponseWriter, r *http.Request) {
	var upd map[string]any
	if r.Method == http.MethodPost {
		if err := decodeControl(w, r, &upd); err != nil {
			h.fail(w, err)
			return
		}
	}
	st, err := h.s.UpdateLogSettings(upd)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st.Map())
}
