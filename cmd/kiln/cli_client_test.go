package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/onnx"
)

// TestClient runs kiln client against kiln serve on loopback: readiness,
// metadata, inferences on random inputs and on files, the errors of bad
// arguments, and the bearer token of a server that requires one.
func TestClient(t *testing.T) {
	cache := t.TempDir()
	data := filepath.Join(t.TempDir(), "set")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	in, _, err := examples.TinyCNNTestData()
	if err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(filepath.Join(data, "input_0.pb"), "image", in); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()

	type call struct {
		name     string
		args     []string
		want     int
		contains string // in the standard output, or in the error output when want is exitError
	}
	run := func(t *testing.T, url string, calls []call) {
		for _, c := range calls {
			t.Run(c.name, func(t *testing.T) {
				var out bytes.Buffer
				old := stdOut
				stdOut = &out
				defer func() { stdOut = old }()
				var code int
				args := append([]string{"client", "--url", url, "--timeout", "20s"}, c.args...)
				errs := captureErr(t, func() { code = runCommand(args) })
				if code != c.want {
					t.Fatalf("kiln %q exited %d, want %d\nstdout: %s\nstderr: %s", args, code, c.want, out.String(), errs)
				}
				got := out.String()
				if c.want == exitError {
					got = errs
				}
				if !strings.Contains(got, c.contains) {
					t.Errorf("kiln %q: output lacks %q:\n%s", args, c.contains, got)
				}
			})
		}
	}

	srv := startReadmeServe(t, nil, cache)
	run(t, srv.addrs[2], []call{
		{"live", []string{"live"}, exitOK, "server live: true"},
		{"ready", []string{"ready"}, exitOK, "server ready: true"},
		{"model ready", []string{"ready", "tinycnn"}, exitOK, "model tinycnn ready: true"},
		{"unknown model ready", []string{"ready", "nope"}, exitMismatch, "model nope ready: false"}, // ModelReady answers false, as Triton does
		{"server metadata", []string{"metadata"}, exitOK, `"name"`},
		{"model metadata", []string{"metadata", "tinycnn"}, exitOK, `"image"`},
		{"random inputs", []string{"infer", "tinycnn"}, exitOK, "output probabilities: FP32 1x10"},
		{"random inputs of a shape", []string{"infer", "tinycnn", "--shape", "image:2x3x32x32"}, exitOK, "output probabilities: FP32 2x10"},
		{"inputs from files", []string{"infer", "--data", data, "tinycnn"}, exitOK, fmt.Sprintf("output probabilities: FP32 %dx10", in.Shape[0])},
		{"folder without inputs", []string{"infer", "--data", empty, "tinycnn"}, exitError, "no input_N.pb files"},
		{"shape and data", []string{"infer", "--data", data, "--shape", "image:1x3x32x32", "tinycnn"}, exitError, "cannot be combined"},
		{"shape of an unknown input", []string{"infer", "tinycnn", "--shape", "pixels:1x3x32x32"}, exitError, `no input "pixels"`},
		{"shape the model refuses", []string{"infer", "tinycnn", "--shape", "image:1x3x16x16"}, exitError, "kiln: client:"},
		{"unknown model", []string{"infer", "nope"}, exitError, "nope"},
		{"infer without a model", []string{"infer"}, exitError, "wrong number of arguments"},
		{"unknown action", []string{"status"}, exitError, `unknown action "status"`},
		{"no action", nil, exitError, "want live, ready, metadata or infer"},
		{"bad CA file", []string{"--tls-ca", filepath.Join(data, "input_0.pb"), "live"}, exitError, "no PEM certificate"},
	})
	srv.stop(t)
	// nothing listens there any more
	run(t, srv.addrs[2], []call{{"server gone", []string{"live"}, exitError, "unavailable"}})

	// a server that wants a token, over gRPC as over HTTP
	srv = startReadmeServe(t, []string{"--infer-token", "s3cret"}, cache)
	defer srv.stop(t)
	run(t, srv.addrs[2], []call{
		{"no token", []string{"infer", "tinycnn"}, exitError, "Unauthenticated"},
		{"wrong token", []string{"--token", "guess", "ready", "tinycnn"}, exitError, "Unauthenticated"},
		{"token", []string{"--token", "s3cret", "infer", "tinycnn"}, exitOK, "output probabilities"},
	})
	t.Setenv("KILN_INFER_TOKEN", "s3cret")
	run(t, srv.addrs[2], []call{{"token from the environment", []string{"ready", "tinycnn"}, exitOK, "ready: true"}})
}
