package main

import (
	"bytes"
	"strings"
	"testing"
)

// captureErr runs f with errOut going to a buffer and returns what it
// printed there.
func captureErr(t *testing.T, f func()) string {
	t.Helper()
	var b bytes.Buffer
	old := errOut
	errOut = &b
	defer func() { errOut = old }()
	f()
	return b.String()
}

// TestCLIHelpAndErrors checks kiln's command line contract: -h, --help and
// "help COMMAND" print the command's help in one format and exit 0; a bad
// flag or command prints one line that names it and points to -h, exit 2;
// --version and version print the version.
func TestCLIHelpAndErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		want     int
		contains []string
		oneLine  bool // the output is a single line
	}{
		{"no command", nil, exitError, []string{"commands:"}, false},
		{"-h", []string{"-h"}, exitOK, []string{"commands:", "kiln help <command>"}, false},
		{"--help", []string{"--help"}, exitOK, []string{"commands:"}, false},
		{"help", []string{"help"}, exitOK, []string{"commands:"}, false},
		{"help build", []string{"help", "build"}, exitOK, []string{"usage: kiln build [flags] MODEL.onnx", "--opt-level int", "\nflags:\n"}, false},
		{"help serve", []string{"help", "serve"}, exitOK, []string{"usage: kiln serve [flags]", "--model-repository string", "\nflags:\n"}, false},
		{"help unknown", []string{"help", "bake"}, exitError, []string{`unknown command "bake"`, "see kiln -h"}, true},
		{"help two", []string{"help", "build", "run"}, exitError, []string{"see kiln -h"}, true},
		{"unknown command", []string{"bake"}, exitError, []string{`unknown command "bake"`, "see kiln -h"}, true},
		{"unknown top-level flag", []string{"--verbose"}, exitError, []string{"--verbose", "see kiln -h"}, true},
		{"--version", []string{"--version"}, exitOK, nil, false},
		{"-version", []string{"-version"}, exitOK, nil, false},
		{"version", []string{"version"}, exitOK, nil, false},
		{"version with arguments", []string{"version", "now"}, exitError, []string{"unexpected arguments", "see kiln version -h"}, true},
		{"build mistyped flag", []string{"build", "model.onnx", "--fp61"}, exitError, []string{"-fp61", "see kiln build -h"}, true},
		{"run mistyped flag", []string{"run", "--iteration", "3", "model.onnx"}, exitError, []string{"-iteration", "see kiln run -h"}, true},
		{"serve mistyped flag", []string{"serve", "--http-prot", "0"}, exitError, []string{"-http-prot", "see kiln serve -h"}, true},
		{"inspect mistyped flag", []string{"inspect", "--jsn", "x.plan"}, exitError, []string{"-jsn", "see kiln inspect -h"}, true},
		{"conformance mistyped flag", []string{"conformance", "--verbose", "dir"}, exitError, []string{"-verbose", "see kiln conformance -h"}, true},
		{"bad flag value", []string{"run", "--iterations", "many", "example"}, exitError, []string{"many", "-iterations", "see kiln run -h"}, true},
		{"build without a model", []string{"build"}, exitError, []string{"want one MODEL.onnx", "see kiln build -h"}, true},
		{"inspect two plans", []string{"inspect", "a.plan", "b.plan"}, exitError, []string{"want one MODEL.plan", "see kiln inspect -h"}, true},
		{"conformance without folders", []string{"conformance"}, exitError, []string{"want at least one test folder"}, true},
	}
	for _, c := range commands {
		for _, h := range []string{"-h", "--help", "-help"} {
			tests = append(tests, struct {
				name     string
				args     []string
				want     int
				contains []string
				oneLine  bool
			}{c.name + " " + h, []string{c.name, h}, exitOK, []string{"usage: kiln " + c.name}, false})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			out := captureErr(t, func() { code = runCommand(tt.args) })
			if code != tt.want {
				t.Errorf("kiln %q exited %d, want %d; output:\n%s", tt.args, code, tt.want, out)
			}
			for _, s := range tt.contains {
				if !strings.Contains(out, s) {
					t.Errorf("kiln %q: output lacks %q:\n%s", tt.args, s, out)
				}
			}
			if n := strings.Count(strings.TrimSuffix(out, "\n"), "\n"); tt.oneLine && n != 0 {
				t.Errorf("kiln %q: want one line, got %d:\n%s", tt.args, n+1, out)
			}
			if strings.Contains(out, "Usage of") {
				t.Errorf("kiln %q: the flag package's own usage format:\n%s", tt.args, out)
			}
		})
	}
}

// TestCLIHelpFormat checks that every command's help has the same layout:
// usage line, description, "flags:", then each flag as "  --name TYPE" with
// its text on the next line, and a flag's default shown once.
func TestCLIHelpFormat(t *testing.T) {
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			out := captureErr(t, func() { runCommand([]string{c.name, "-h"}) })
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if !strings.HasPrefix(lines[0], "usage: kiln "+c.name) {
				t.Fatalf("first line %q", lines[0])
			}
			_, flags, ok := strings.Cut(out, "\nflags:\n")
			if !ok {
				if c.name == "version" {
					return
				}
				t.Fatalf("no flags section:\n%s", out)
			}
			fl := strings.Split(strings.TrimSuffix(flags, "\n"), "\n")
			for i := 0; i < len(fl); i++ {
				l := fl[i]
				switch {
				case strings.HasPrefix(l, "  -") && !strings.HasPrefix(l, "   "):
					if len(l) > 3 && l[3] != '-' && len(strings.Fields(l)[0]) > 2 {
						t.Errorf("long flag shown with one dash: %q", l)
					}
					if i+1 == len(fl) || !strings.HasPrefix(fl[i+1], "        ") {
						t.Errorf("flag %q has no text on the next line", l)
					}
				case strings.HasPrefix(l, "        "):
					if strings.Count(l, "(default") > 1 {
						t.Errorf("two defaults: %q", l)
					}
				default:
					t.Errorf("unexpected line in the flags section: %q", l)
				}
			}
		})
	}
	out := captureErr(t, func() { runCommand([]string{"run", "-h"}) })
	_, atol, _ := strings.Cut(out, "  --atol float\n")
	atol, _, _ = strings.Cut(atol, "\n")
	if strings.Count(atol, "default") != 1 {
		t.Errorf("run -h: --atol should state its default once: %q", atol)
	}
	out = captureErr(t, func() { runCommand([]string{"build", "-h"}) })
	if !strings.Contains(out, "3 to 5: on the CPU the same as 2; with --device cuda, tactic timing also tries cuDNN's graph-API engines") {
		t.Errorf("build -h does not say what --opt-level 3..5 do:\n%s", out)
	}
}
