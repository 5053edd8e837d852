package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the bare servers, which the
// benchmark starts by re-executing itself.
func TestMain(m *testing.M) {
	if isBare(os.Args) {
		main()
	}
	os.Exit(m.Run())
}

// TestReqpath runs the benchmark briefly on every target, kiln serve built
// from this repository, and checks the report: a row per target, the
// issue's four criteria, every round.
func TestReqpath(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to build kiln")
	}
	kiln := filepath.Join(t.TempDir(), "kiln")
	build := exec.Command("go", "build", "-o", kiln, "../../cmd/kiln")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kiln: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, log bytes.Buffer
	args := []string{"-kiln", kiln, "-rounds", "2", "-duration", "400ms", "-warmup", "100ms", "-clients", "3",
		"-targets", strings.Join(allTargets, ",")}
	if code := run(ctx, args, &out, &log); code != 0 {
		t.Fatalf("reqpath %v: exit status %d\n%s", args, code, log.String())
	}
	rep := out.String()
	for _, want := range []string{
		"the bundled tinycnn (built into a plan with a batch of 1..8; no config.pbtxt, completed as Triton completes an ONNX model's: max_batch_size 8, dynamic batching without delay, two CPU instances)", "the engine target runs tinycnn built by kiln's builder",
		"Requests a model run served at 3 clients (kiln serve's statistics", "The load driver's own CPU time per request at 3 clients",
		"Time in the model at one client (kiln serve's statistics", "kiln serve, gRPC ", " us of it the engine's run",
		"| engine alone (kiln Go API, one context) |", "| engine alone, each run after 100 us asleep (not counted) |", "| bare net/http + encoding/json |", "| kiln serve, HTTP JSON |",
		"| bare grpc-go |", "| kiln serve, gRPC |", "| bare grpc-go running the engine in its handler |",
		"| kiln gateway in front of kiln serve, HTTP JSON |", "| kiln gateway in front of kiln serve, gRPC |",
		"| HTTP JSON: gateway p50 - kiln serve p50, 1 client |", "| gRPC: gateway p50 - kiln serve p50, 1 client |",
		"| HTTP JSON: kiln p50 / (bare p50 + engine p50), 1 client |", "| HTTP JSON: kiln req/s / bare req/s, 3 clients |",
		"| gRPC: kiln p50 / (bare p50 + engine p50), 1 client |", "| gRPC: kiln req/s / bare req/s, 3 clients |",
		"| 1 |", "| 2 |",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("the report has no %q:\n%s", want, rep)
		}
	}

	// a repository's tinycnn, built, with dynamic batching, against the
	// built engine
	repo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, "tinycnn", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	model, err := os.ReadFile("../../examples/tinycnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "tinycnn", "1", "model.onnx"), model, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "tinycnn", "config.pbtxt"), []byte("max_batch_size: 8\ndynamic_batching { }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	args = []string{"-kiln", kiln, "-rounds", "1", "-duration", "400ms", "-warmup", "100ms", "-clients", "3",
		"-engine", "built", "-serve-args", "--model-repository " + repo, "-targets", "engine,bare-grpc,kiln-grpc,bare-grpc-engine"}
	if code := run(ctx, args, &out, &log); code != 0 {
		t.Fatalf("reqpath %v: exit status %d\n%s", args, code, log.String())
	}
	for _, want := range []string{"kiln serve serves tinycnn, started as `kiln serve --model-repository " + repo + "`", "tinycnn built by kiln's builder",
		"| gRPC: kiln p50 / (bare p50 + engine p50), 1 client |", "| bare grpc-go running the engine in its handler |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report has no %q:\n%s", want, out.String())
		}
	}
}

// TestReqpathOldAndRate: with -kiln-old, each kiln-* and gw-* target is
// measured with both binaries, the old one first; with -rate, the report
// has the fixed-rate columns, with the gateway's CPU time per request.
func TestReqpathOldAndRate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two kiln serve and two kiln gateway processes")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to build kiln")
	}
	kiln := filepath.Join(t.TempDir(), "kiln")
	if out, err := exec.Command("go", "build", "-o", kiln, "../../cmd/kiln").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kiln: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, log bytes.Buffer
	args := []string{"-kiln", kiln, "-kiln-old", kiln, "-rounds", "1", "-duration", "400ms", "-warmup", "100ms", "-clients", "2",
		"-rate", "50", "-targets", "gw-http,gw-grpc"}
	if code := run(ctx, args, &out, &log); code != 0 {
		t.Fatalf("reqpath %v: exit status %d\n%s", args, code, log.String())
	}
	rep := out.String()
	for _, want := range []string{
		"| p50 at 50/s | p99 at 50/s | CPU/req at 50/s |",
		"| kiln gateway in front of kiln serve, HTTP JSON (-kiln-old) |", "| kiln gateway in front of kiln serve, HTTP JSON |",
		"| kiln gateway in front of kiln serve, gRPC (-kiln-old) |", "| kiln gateway in front of kiln serve, gRPC |",
		"| round | old-gw-http | gw-http | old-gw-grpc | gw-grpc |",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("the report has no %q:\n%s", want, rep)
		}
	}
	// no kiln-* target measured: no gateway criterion either
	if strings.Contains(rep, "gateway p50 - kiln serve p50") {
		t.Errorf("a gateway criterion without the kiln serve targets:\n%s", rep)
	}
}

// TestReqpathUsage: bad flags are refused with exit status 2 and a message.
func TestReqpathUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-targets", "kiln-http"}, "need -kiln PATH"},
		{[]string{"-targets", "gw-grpc"}, "need -kiln PATH"},
		{[]string{"-rate", "-5", "-targets", "engine"}, "-rate not negative"},
		{[]string{"-targets", "nginx"}, `unknown target "nginx"`},
		{[]string{"-rounds", "0", "-targets", "engine"}, "-rounds and -clients must be at least 1"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-engine", "onnx", "-targets", "engine"}, `-engine "onnx": want graph or built`},
	} {
		var out, log bytes.Buffer
		if code := run(context.Background(), tt.args, &out, &log); code != 2 || !strings.Contains(log.String(), tt.want) {
			t.Errorf("reqpath %v: exit status %d, %q; want 2 and %q", tt.args, code, log.String(), tt.want)
		}
	}
}

// TestCriteria: the criteria are the medians of the per-round ratios,
// judged against the bounds.
func TestCriteria(t *testing.T) {
	us := time.Microsecond
	r := &report{cfg: config{clients: 16}, rows: map[string][]row{
		"engine":    {{one: result{p50: 100 * us}}, {one: result{p50: 100 * us}}, {one: result{p50: 100 * us}}},
		"bare-http": {{one: result{p50: 500 * us}, many: result{rps: 1000}}, {one: result{p50: 500 * us}, many: result{rps: 1000}}, {one: result{p50: 500 * us}, many: result{rps: 1000}}},
		"kiln-http": {{one: result{p50: 600 * us}, many: result{rps: 900}}, {one: result{p50: 900 * us}, many: result{rps: 500}}, {one: result{p50: 700 * us}, many: result{rps: 850}}},
	}}
	got := r.criteria()
	if len(got) != 2 {
		t.Fatalf("%d criteria, want 2 (HTTP only): %+v", len(got), got)
	}
	for i, want := range []struct {
		value float64
		ok    bool
	}{{700.0 / 600, true}, {0.85, true}} {
		if d := got[i].value - want.value; d > 1e-9 || d < -1e-9 || got[i].ok() != want.ok {
			t.Errorf("criterion %q: %v (met %v), want %v (met %v)", got[i].name, got[i].value, got[i].ok(), want.value, want.ok)
		}
	}
	r.rows["kiln-http"][1].one.p50 = 2000 * us
	r.rows["kiln-http"][2].one.p50 = 800 * us
	if c := r.criteria()[0]; c.ok() {
		t.Errorf("%q met at %v", c.name, c.value)
	}

	// the -kiln-old binary's, against the same bare server
	r.rows[oldPrefix+"kiln-http"] = []row{{one: result{p50: 600 * us}, many: result{rps: 700}}, {one: result{p50: 600 * us}, many: result{rps: 600}},
		{one: result{p50: 600 * us}, many: result{rps: 750}}}
	got = r.criteria()
	if len(got) != 4 || got[2].name != "HTTP JSON (-kiln-old): kiln p50 / (bare p50 + engine p50), 1 client" ||
		got[3].name != "HTTP JSON (-kiln-old): kiln req/s / bare req/s, 16 clients" || got[3].value != 0.7 || got[3].ok() {
		t.Errorf("with -kiln-old: %+v, want its two criteria after the new binary's, req/s 0.70, not met", got)
	}
	delete(r.rows, oldPrefix+"kiln-http")

	// -clients 0 measures no throughput: the p50 criterion alone
	r.cfg.clients = 0
	if got = r.criteria(); len(got) != 1 || got[0].name != "HTTP JSON: kiln p50 / (bare p50 + engine p50), 1 client" {
		t.Errorf("with -clients 0: %+v, want the p50 criterion alone", got)
	}
	r.cfg.clients = 16

	// the gateway's added p50: the median of gw - kiln per round
	r.rows["gw-http"] = []row{{one: result{p50: 650 * us}}, {one: result{p50: 2200 * us}}, {one: result{p50: 1000 * us}}}
	got = r.criteria()
	c := got[len(got)-1]
	if c.name != "HTTP JSON: gateway p50 - kiln serve p50, 1 client" || c.value != 200 || c.unit != "us" || c.ok() {
		t.Errorf("gateway criterion %+v (met %v), want 200 us, not met", c, c.ok())
	}
}

// TestTimeInModel: the report gives kiln serve's own view of a request's
// time in the model and of the engine's run at one client (medians over
// rounds of the per-window means), next to the engine alone; targets
// without statistics are left out, and without any the line is not
// written.
func TestTimeInModel(t *testing.T) {
	us := time.Microsecond
	cases := []struct {
		name    string
		rows    map[string][]row
		targets []string
		want    string // "" : no line
	}{
		{"kiln and engine", map[string][]row{
			"engine":      {{one: result{p50: 10 * us}}, {one: result{p50: 14 * us}}, {one: result{p50: 12 * us}}},
			"engine-idle": {{one: result{p50: 15 * us}}, {one: result{p50: 19 * us}}, {one: result{p50: 18 * us}}},
			"bare-grpc":   {{one: result{p50: 90 * us}}, {one: result{p50: 90 * us}}, {one: result{p50: 90 * us}}},
			"kiln-grpc": {{one: result{p50: 120 * us, inModel: 30 * us, compute: 20 * us}}, {one: result{p50: 120 * us, inModel: 34 * us, compute: 26 * us}},
				{one: result{p50: 120 * us, inModel: 31 * us, compute: 22 * us}}},
		}, []string{"engine", "engine-idle", "bare-grpc", "kiln-grpc"},
			"Time in the model at one client (kiln serve's statistics: success and compute_infer per request, means over the window; medians) (the engine alone: p50 12.0 us back to back, 18.0 us after 100 us asleep): kiln serve, gRPC 31.0 us in the model, 22.0 us of it the engine's run.\n"},
		{"without the engine", map[string][]row{
			"kiln-grpc": {{one: result{p50: 120 * us, inModel: 30 * us, compute: 20 * us}}},
		}, []string{"kiln-grpc"},
			"Time in the model at one client (kiln serve's statistics: success and compute_infer per request, means over the window; medians): kiln serve, gRPC 30.0 us in the model, 20.0 us of it the engine's run.\n"},
		{"no statistics", map[string][]row{
			"engine":    {{one: result{p50: 10 * us}}},
			"bare-grpc": {{one: result{p50: 90 * us}}},
		}, []string{"engine", "bare-grpc"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &report{cfg: config{clients: 16, rounds: len(c.rows[c.targets[0]]), targets: c.targets}, rows: c.rows}
			var b bytes.Buffer
			r.write(&b)
			got := b.String()
			if c.want == "" {
				if strings.Contains(got, "Time in the model") {
					t.Errorf("a time-in-model line without statistics:\n%s", got)
				}
				return
			}
			if !strings.Contains(got, c.want) {
				t.Errorf("the report has no %q:\n%s", c.want, got)
			}
		})
	}
}
