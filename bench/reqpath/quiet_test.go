package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// quietScript is bench/quiet-cpu.sh, from this package's folder.
const quietScript = "../quiet-cpu.sh"

// runQuiet runs bench/quiet-cpu.sh with args and env (added to a PATH of
// path) and returns its exit status and output.
func runQuiet(t *testing.T, path string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{quietScript}, args...)...)
	cmd.Env = append([]string{"PATH=" + path, "HOME=" + os.Getenv("HOME")}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if x, ok := err.(*exec.ExitError); ok {
			return x.ExitCode(), string(out)
		}
		t.Fatalf("bash %s: %v", quietScript, err)
	}
	return 0, string(out)
}

// fakeBins writes a folder of stand-in binaries (kiln answers "version").
func fakeBins(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"kiln", "reqpath", "gateway.test"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("#!/bin/sh\necho fake\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestQuietCPUArgs: bench/quiet-cpu.sh refuses what it cannot run, with a
// message that says why, before it measures anything.
func TestQuietCPUArgs(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("needs taskset (util-linux)")
	}
	bins := fakeBins(t)
	packed := t.TempDir()
	os.WriteFile(filepath.Join(packed, "kiln.xz"), []byte("not xz"), 0o644)
	path := os.Getenv("PATH")
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no folder", nil, []string{filepath.Join(bins, "missing")}, "is not a folder"},
		{"no binaries", []string{"ONLY=reqpath"}, nil, "reqpath needs KILN=path"},
		{"unknown benchmark", []string{"ONLY=reqpath,speed"}, []string{bins}, "ONLY: unknown benchmark speed"},
		{"too many cores", []string{"CORES=100000", "ONLY=slo"}, []string{bins}, "CORES=100000: this machine has"},
		{"not executable", []string{"ONLY=slo", "KILN=" + filepath.Join(bins, "nothing")}, nil, "is not an executable file"},
		{"bad pack", []string{"PACK=zip"}, []string{"build", t.TempDir()}, "PACK=zip: want xz, gzip or none"},
		{"build without a folder", nil, []string{"build"}, "usage: bench/quiet-cpu.sh build DIR"},
	}
	if _, err := exec.LookPath("xz"); err == nil {
		cases = append(cases, struct {
			name string
			env  []string
			args []string
			want string
		}{"broken pack", []string{"ONLY=slo"}, []string{packed}, "cannot unpack"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := runQuiet(t, path, append(c.env, "OUT="+t.TempDir()), c.args...)
			if code != 2 || !strings.Contains(out, c.want) {
				t.Errorf("exit status %d, output:\n%s\nwant status 2 and %q", code, out, c.want)
			}
		})
	}
}

// TestQuietCPU builds the binaries as the quiet machine gets them
// (bench/quiet-cpu.sh build DIR, packed with gzip) and runs every
// benchmark briefly from them, on one core, with a PATH that has neither
// Go nor curl; each result file is there with its heading. It takes
// minutes (three builds), so it runs only when asked.
func TestQuietCPU(t *testing.T) {
	if os.Getenv("KILN_QUIET_E2E") == "" {
		t.Skip("set KILN_QUIET_E2E=1 to build kiln, reqpath and the gateway tests and run bench/quiet-cpu.sh end to end (minutes)")
	}
	for _, tool := range []string{"go", "taskset", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	dir := filepath.Join(t.TempDir(), "bin")
	if code, out := runQuiet(t, os.Getenv("PATH"), append(os.Environ(), "PACK=gzip"), "build", dir); code != 0 {
		t.Fatalf("build: exit status %d\n%s", code, out)
	}
	// a PATH of the system's tools without go and curl
	tools := t.TempDir()
	for _, d := range []string{"/usr/bin", "/bin"} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.Name() == "go" || e.Name() == "curl" {
				continue
			}
			os.Symlink(filepath.Join(d, e.Name()), filepath.Join(tools, e.Name()))
		}
	}
	out := t.TempDir()
	env := []string{"OUT=" + out, "CORES=1", "ROUNDS=1", "WINDOW=200ms", "RATE=100", "RATES=100:100:100", "INTERVAL=500ms",
		"ITER=20", "COUNT=1", "PORT=" + strconv.Itoa(19200+os.Getpid()%500)}
	if code, log := runQuiet(t, tools, env, dir); code != 0 {
		t.Fatalf("run: exit status %d\n%s", code, log)
	}
	want := map[string]string{
		"machine.txt":               "cores: 1 (taskset -c 0)",
		"request-path.md":           "| kiln serve, gRPC |",
		"slo-batching.md":           "| rate req/s | fixed infer/s |",
		"slo-batching.fixed.csv":    "",
		"gateway-overhead.txt":      "BenchmarkGatewayOverhead/grpc",
		"quiet-cpu.log":             "quiet-cpu: done",
		"request-path-old-new.md":   "", // absent: no kiln-old
		"slo-batching.slo.csv":      "",
		"request-path.md (command)": "bench/quiet-cpu.sh DIR",
	}
	for f, s := range want {
		name, _, _ := strings.Cut(f, " ")
		b, err := os.ReadFile(filepath.Join(out, name))
		if name == "request-path-old-new.md" {
			if err == nil {
				t.Errorf("%s written without a kiln-old", name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !strings.Contains(string(b), s) {
			t.Errorf("%s has no %q:\n%s", name, s, b)
		}
	}
}
