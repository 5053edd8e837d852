package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/logging"
	"github.com/kilnai/kiln/serve/repository"
)

// lockedBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	l.b.Reset()
	return s
}

func TestTraceAndLogSettings(t *testing.T) {
	var logs lockedBuffer
	s := serve.New(serve.Options{Logger: slog.New(logging.New(&logs))})
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(s, Options{}))
	t.Cleanup(func() { ts.Close(); s.Shutdown(context.Background()) })

	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		resp, b := do(t, method, ts.URL+path, nil, []byte(body))
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return resp.StatusCode, out
	}
	str := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	steps := []struct {
		name, method, path, body string
		code                     int
		want                     map[string]string // setting -> its JSON
	}{
		{"global defaults", "GET", "/v2/trace/setting", "", 200,
			map[string]string{"trace_level": `["OFF"]`, "trace_rate": `"1000"`, "trace_count": `"-1"`, "log_frequency": `"0"`, "trace_file": `""`, "trace_mode": `"triton"`}},
		{"global update", "POST", "/v2/trace/setting", `{"trace_level":["TIMESTAMPS"],"trace_rate":"10","log_frequency":50}`, 200,
			map[string]string{"trace_level": `["TIMESTAMPS"]`, "trace_rate": `"10"`, "log_frequency": `"50"`, "trace_count": `"-1"`}},
		{"a model follows the global ones", "GET", "/v2/models/tinycnn/trace/setting", "", 200,
			map[string]string{"trace_level": `["TIMESTAMPS"]`, "trace_rate": `"10"`}},
		{"a model's own", "POST", "/v2/models/tinycnn/trace/setting", `{"trace_rate":"2","trace_count":"100","trace_level":["TIMESTAMPS","TENSORS"]}`, 200,
			map[string]string{"trace_rate": `"2"`, "trace_count": `"100"`, "trace_level": `["TIMESTAMPS","TENSORS"]`}},
		{"global unchanged by the model's", "GET", "/v2/trace/setting", "", 200,
			map[string]string{"trace_rate": `"10"`, "trace_count": `"-1"`}},
		{"a model's setting cleared follows the global one", "POST", "/v2/models/tinycnn/trace/setting", `{"trace_rate":null}`, 200,
			map[string]string{"trace_rate": `"10"`, "trace_count": `"100"`}},
		{"a global setting cleared is its default", "POST", "/v2/trace/setting", `{"trace_rate":null}`, 200,
			map[string]string{"trace_rate": `"1000"`}},
		{"unknown model", "GET", "/v2/models/nope/trace/setting", "", 404, nil},
		{"unknown setting", "POST", "/v2/trace/setting", `{"trace_speed":"1"}`, 400, nil},
		{"bad level", "POST", "/v2/trace/setting", `{"trace_level":["LOUD"]}`, 400, nil},
		{"OFF with another level", "POST", "/v2/trace/setting", `{"trace_level":["OFF","TIMESTAMPS"]}`, 400, nil},
		{"rate zero", "POST", "/v2/trace/setting", `{"trace_rate":"0"}`, 400, nil},
		{"count below -1", "POST", "/v2/trace/setting", `{"trace_count":"-2"}`, 400, nil},
		{"two files", "POST", "/v2/trace/setting", `{"trace_file":["a","b"]}`, 400, nil},
		{"a bool", "POST", "/v2/trace/setting", `{"trace_rate":true}`, 400, nil},
		{"a trace file without a trace folder", "POST", "/v2/trace/setting", `{"trace_file":"t.json"}`, 400, nil},
		{"other mode", "POST", "/v2/trace/setting", `{"trace_mode":"opentelemetry"}`, 400, nil},
		{"nothing changed by the bad requests", "GET", "/v2/trace/setting", "", 200,
			map[string]string{"trace_level": `["TIMESTAMPS"]`, "trace_rate": `"1000"`, "trace_count": `"-1"`, "log_frequency": `"50"`}},

		{"log defaults", "GET", "/v2/logging", "", 200,
			map[string]string{"log_info": "true", "log_warning": "true", "log_error": "true", "log_verbose_level": "0", "log_format": `"default"`, "log_file": `""`}},
		{"info off", "POST", "/v2/logging", `{"log_info":false}`, 200, map[string]string{"log_info": "false", "log_warning": "true"}},
		{"bad format", "POST", "/v2/logging", `{"log_format":"xml"}`, 400, nil},
		{"a log file", "POST", "/v2/logging", `{"log_file":"/tmp/kiln.log"}`, 400, nil},
		{"a string level", "POST", "/v2/logging", `{"log_verbose_level":"1"}`, 400, nil},
		{"a negative level", "POST", "/v2/logging", `{"log_verbose_level":-1}`, 400, nil},
		{"unknown log setting", "POST", "/v2/logging", `{"log_colour":true}`, 400, nil},
		{"info back on, as JSON, verbose", "POST", "/v2/logging", `{"log_info":true,"log_format":"json","log_verbose_level":1}`, 200,
			map[string]string{"log_info": "true", "log_format": `"json"`, "log_verbose_level": "1"}},
	}
	for _, st := range steps {
		code, got := call(st.method, st.path, st.body)
		if code != st.code {
			t.Fatalf("%s: %d %v, want %d", st.name, code, got, st.code)
		}
		for k, want := range st.want {
			if str(got[k]) != want {
				t.Fatalf("%s: %s = %s, want %s (all: %v)", st.name, k, str(got[k]), want, got)
			}
		}
		// the logger follows the settings: with info off, the server's
		// "log settings changed" message is not written
		if st.name == "info off" {
			if l := logs.take(); strings.Contains(l, "log settings changed") {
				t.Fatalf("info message written with log_info false: %s", l)
			}
		}
	}
	l := logs.take()
	if !strings.Contains(l, `{"time":`) || !strings.Contains(l, `"msg":"log settings changed"`) {
		t.Fatalf("no JSON info line after log_info true and log_format json: %q", l)
	}
	if _, md := call("GET", "/v2", ""); !strings.Contains(str(md["extensions"]), `"trace","logging"`) {
		t.Fatalf("server metadata: %v", md)
	}
}

// TestTraceFile: with a trace folder, trace_file, trace_rate and
// trace_count are honoured: the file is a JSON array of Triton's traces.
func TestTraceFile(t *testing.T) {
	s := serve.New(serve.Options{})
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s.SetTraceDir(dir)
	ts := httptest.NewServer(New(s, Options{}))
	t.Cleanup(func() { ts.Close(); s.Shutdown(context.Background()) })
	for _, c := range []struct {
		body string
		code int
	}{
		{`{"trace_file":"../t.json"}`, 400},
		{`{"trace_file":"/tmp/t.json"}`, 400},
		{`{"trace_file":"t.json","trace_level":["TIMESTAMPS"],"trace_rate":"2","trace_count":"2"}`, 200},
	} {
		if resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/trace/setting", nil, []byte(c.body)); resp.StatusCode != c.code {
			t.Fatalf("%s: %d %s", c.body, resp.StatusCode, b)
		}
	}
	body := jsonRequest(examples.TinyCNNInput(1), false)
	for range 7 {
		if resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", nil, body); resp.StatusCode != 200 {
			t.Fatalf("infer: %d %s", resp.StatusCode, b)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "t.json"))
	if err != nil {
		t.Fatal(err)
	}
	var traces []struct {
		ID         uint64 `json:"id"`
		Model      string `json:"model_name"`
		Version    int64  `json:"model_version"`
		Timestamps []struct {
			Name string `json:"name"`
			Ns   int64  `json:"ns"`
		} `json:"timestamps"`
	}
	if err := json.Unmarshal(b, &traces); err != nil || len(traces) != 2 {
		t.Fatalf("trace file (1 of 2 requests, 2 at most): %v %s", err, b)
	}
	for i, tr := range traces {
		var names []string
		for j, st := range tr.Timestamps {
			names = append(names, st.Name)
			if j > 0 && st.Ns < tr.Timestamps[j-1].Ns {
				t.Fatalf("trace %d: timestamps out of order: %s", i, b)
			}
		}
		if tr.Model != "tinycnn" || tr.Version != 1 || uint64(i+1) != tr.ID ||
			strings.Join(names, " ") != "REQUEST_START QUEUE_START COMPUTE_START COMPUTE_INPUT_END COMPUTE_OUTPUT_START COMPUTE_END REQUEST_END" {
			t.Fatalf("trace %d: %+v", i, tr)
		}
	}
	// the global settings trace nothing
	if _, b := do(t, "GET", ts.URL+"/v2/trace/setting", nil, nil); !strings.Contains(string(b), `"trace_file":""`) {
		t.Fatalf("global settings: %s", b)
	}
}

// TestSettingsNeedAdminToken: the trace and log settings are an
// administrator's (AdminToken); shared memory goes with inference.
func TestSettingsNeedAdminToken(t *testing.T) {
	s := serve.New(serve.Options{})
	ts := httptest.NewServer(New(s, Options{InferToken: "i", AdminToken: "a"}))
	t.Cleanup(func() { ts.Close(); s.Shutdown(context.Background()) })
	for _, c := range []struct {
		method, path, token string
		code                int
	}{
		{"GET", "/v2/logging", "", 401},
		{"GET", "/v2/logging", "i", 401},
		{"GET", "/v2/logging", "a", 200},
		{"POST", "/v2/trace/setting", "i", 401},
		{"POST", "/v2/trace/setting", "a", 200},
		{"GET", "/v2/models/m/trace/setting", "i", 401},
		{"GET", "/v2/models/m/trace/setting", "a", 404},
		{"GET", "/v2/systemsharedmemory/status", "", 401},
		{"GET", "/v2/systemsharedmemory/status", "i", 200},
	} {
		hdr := map[string]string{}
		if c.token != "" {
			hdr["Authorization"] = "Bearer " + c.token
		}
		if resp, b := do(t, c.method, ts.URL+c.path, hdr, nil); resp.StatusCode != c.code {
			t.Errorf("%s %s with token %q: %d %s, want %d", c.method, c.path, c.token, resp.StatusCode, b, c.code)
		}
	}
}

// FuzzSettingsBodies: any body of a settings or shared memory request is
// answered 200, 400 or 404, never 500 or a panic.
func FuzzSettingsBodies(f *testing.F) {
	for _, seed := range []string{`{"trace_rate":"5"}`, `{"trace_level":["TIMESTAMPS","TENSORS"]}`, `{"trace_file":null}`,
		`{"log_info":false}`, `{"log_verbose_level":3.0}`, `{"key":"/x","offset":0,"byte_size":4}`, `{"key":"/x","byte_size":-1}`, `[1]`, ``} {
		f.Add(seed)
	}
	s := serve.New(serve.Options{})
	h := New(s, Options{})
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/v2/trace/setting", "/v2/logging", "/v2/systemsharedmemory/region/fz/register", "/v2/models/none/trace/setting"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("POST", path, strings.NewReader(body)))
			if c := rec.Code; c != 200 && c != 400 && c != 404 {
				t.Fatalf("POST %s %q: %d %s", path, body, c, rec.Body)
			}
		}
		s.UnregisterSystemShm("")
	})
}
