package metrics

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/http/pprof"
	"strings"
)

// PortOptions configures the handler of the metrics port.
type PortOptions struct {
	// Token, when set, is the bearer token every request to the port must
	// carry ("Authorization: Bearer <token>", the scheme in any case).
	Token string
	// Pprof serves the net/http/pprof profiles under /debug/pprof/.
	Pprof bool
}

// PortHandler returns the handler of the metrics port: GET /metrics, with
// o.Pprof the profiles under /debug/pprof/ (registered on its own mux,
// never on http.DefaultServeMux), and with o.Token every path behind that
// bearer token (401 without it).
func (m *Metrics) PortHandler(o PortOptions) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index) // and the named profiles: heap, goroutine, allocs, block, mutex, threadcreate
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if o.Token == "" {
		return mux
	}
	want := sha256.Sum256([]byte(o.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, _ := strings.Cut(strings.TrimLeft(r.Header.Get("Authorization"), " "), " ")
		got := sha256.Sum256([]byte(strings.Trim(tok, " ")))
		if !strings.EqualFold(scheme, "bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="kiln metrics"`)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}
