package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRuntimeMetrics: the registry holds the Go runtime's and the
// process's metrics beside the server's.
func TestRuntimeMetrics(t *testing.T) {
	out := scrape(t, New(nil).Handler())
	for _, want := range []string{"go_goroutines ", "go_memstats_heap_alloc_bytes ", "go_gc_duration_seconds", "go_info{",
		"process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_open_fds "} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the metrics", want)
		}
	}
}

// TestPortHandler serves the metrics port on loopback and asks each path
// with no, a wrong and the right token, with pprof on and off.
func TestPortHandler(t *testing.T) {
	m := New(nil)
	for _, tt := range []struct {
		name   string
		opts   PortOptions
		path   string
		header string
		code   int
		body   string // a part of the body when 200
	}{
		{"open metrics", PortOptions{}, "/metrics", "", 200, "go_goroutines"},
		{"pprof off", PortOptions{}, "/debug/pprof/", "", 404, ""},
		{"pprof off, cmdline", PortOptions{}, "/debug/pprof/cmdline", "", 404, ""},
		{"pprof on", PortOptions{Pprof: true}, "/debug/pprof/", "", 200, "goroutine"},
		{"pprof heap", PortOptions{Pprof: true}, "/debug/pprof/heap?debug=1", "", 200, "heap profile"},
		{"pprof cmdline", PortOptions{Pprof: true}, "/debug/pprof/cmdline", "", 200, ""},
		{"token, none", PortOptions{Token: "s"}, "/metrics", "", 401, ""},
		{"token, wrong", PortOptions{Token: "s"}, "/metrics", "Bearer x", 401, ""},
		{"token, other scheme", PortOptions{Token: "s"}, "/metrics", "Basic s", 401, ""},
		{"token, right", PortOptions{Token: "s"}, "/metrics", "Bearer s", 200, "process_cpu_seconds_total"},
		{"token, lowercase scheme", PortOptions{Token: "s"}, "/metrics", "bearer s", 200, "go_goroutines"},
		{"pprof token, none", PortOptions{Token: "s", Pprof: true}, "/debug/pprof/", "", 401, ""},
		{"pprof token, right", PortOptions{Token: "s", Pprof: true}, "/debug/pprof/", "Bearer s", 200, "goroutine"},
		{"unknown path", PortOptions{}, "/nope", "", 404, ""},
		{"unknown path, no token", PortOptions{Token: "s"}, "/nope", "", 401, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(m.PortHandler(tt.opts))
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code || (tt.code == 200 && !strings.Contains(string(b), tt.body)) {
				t.Errorf("GET %s: %d, want %d with %q\n%.300s", tt.path, resp.StatusCode, tt.code, tt.body, b)
			}
			if tt.code == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}
