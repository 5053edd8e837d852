package main

import (
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// TestServeIntraOpThreads checks kiln serve's --intra-op-threads: a count
// fixes how many threads each CPU layer is split into (at most GOMAXPROCS)
// and the server answers as before; 0, the default, is automatic; a
// negative or non-integer count is refused with a line naming the flag,
// before any port listens.
func TestServeIntraOpThreads(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	t.Cleanup(func() { _ = cpu.SetThreads(0) })
	for _, tt := range []struct {
		name    string
		args    []string
		threads int
	}{
		{"default", nil, 2},
		{"one", []string{"--intra-op-threads", "1"}, 1},
		{"above GOMAXPROCS", []string{"--intra-op-threads=8"}, 2},
		{"automatic", []string{"--intra-op-threads", "0"}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startServed(t, tt.args...)
			if got := cpu.Threads(); got != tt.threads {
				t.Errorf("cpu.Threads() = %d, want %d", got, tt.threads)
			}
			if c, body := call(t, nil, "POST", "http://"+s.http+"/v2/models/tinycnn/infer", "", tinyRequest(1)); c != 200 || !strings.Contains(body, `"probabilities"`) {
				t.Errorf("infer: %d %s", c, body)
			}
			if c := s.stop(t); c != 0 {
				t.Errorf("exit %d", c)
			}
			_ = cpu.SetThreads(0)
		})
	}
	for _, tt := range []struct {
		name string
		args []string
		msg  string
	}{
		{"negative", []string{"--intra-op-threads", "-2"}, "--intra-op-threads -2: want 0 (automatic) or a positive count"},
		{"not a number", []string{"--intra-op-threads", "two"}, "intra-op-threads"},
		{"too many", []string{"--intra-op-threads", "100000"}, "--intra-op-threads 100000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			out := captureErr(t, func() {
				code = runServe(context.Background(), append([]string{"--http-port", "0", "--grpc-port", "-1", "--metrics-port", "-1"}, tt.args...), nil)
			})
			if code != exitError || !strings.Contains(out, tt.msg) {
				t.Errorf("exit %d, output %q; want %d and %q", code, out, exitError, tt.msg)
			}
			if strings.Count(strings.TrimSpace(out), "\n") != 0 {
				t.Errorf("want one line, got %q", out)
			}
			if got := cpu.Threads(); got != 2 {
				t.Errorf("after a refused flag cpu.Threads() = %d, want 2", got)
			}
		})
	}
}

// TestRunIntraOpThreads: kiln run takes --intra-op-threads as kiln serve
// does (fixing the count for benchmarks against another runtime's fixed
// threads); a bad count is refused naming the flag.
func TestRunIntraOpThreads(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	t.Cleanup(func() { _ = cpu.SetThreads(0) })
	for _, tt := range []struct {
		args    []string
		code    int
		threads int
		has     string
	}{
		{[]string{"example", "--intra-op-threads", "1", "--iterations", "3"}, exitOK, 1, "p50"},
		{[]string{"example", "--intra-op-threads", "2"}, exitOK, 2, ""},
		{[]string{"example"}, exitOK, 2, ""},
		{[]string{"example", "--intra-op-threads", "-1"}, exitError, 2, "--intra-op-threads -1"},
	} {
		var code int
		out, errOut := runOutput(t, func() { code = runCmd(tt.args) })
		if code != tt.code || !strings.Contains(out+errOut, tt.has) {
			t.Errorf("%q: exit %d, output %q %q; want %d with %q", tt.args, code, out, errOut, tt.code, tt.has)
		}
		if got := cpu.Threads(); got != tt.threads {
			t.Errorf("%q: cpu.Threads() = %d after, want %d", tt.args, got, tt.threads)
		}
		_ = cpu.SetThreads(0)
	}
}
