package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readmeSkips are the README commands this test does not run, each with
// the reason; a command matches an entry when its text contains the key.
// Every other "$ " command of README.md runs: a command the test does not
// know how to run fails it, so that no example goes untested.
var readmeSkips = []struct{ key, reason string }{
	{"./scripts/test.sh", "the whole test suite, which contains this test"},
	{"go install ./cmd/kiln", "installs the binary; this test runs the same command line (runCommand) in process"},
	{"--device cuda", "needs an NVIDIA GPU (bench/gpu-plans.sh runs the GPU builds)"},
	{"go run ./examples/detect", "examples/detect's own test (TestStreamYoloTiny) builds the repository and streams to it"},
	{"--model-repository /tmp/detect-repo", "serves the repository of go run ./examples/detect repo (examples/detect's TestStreamYoloTiny)"},
	{"docker build", "needs a container engine, which this machine lacks"},
	{"go run ./cmd/kiln gateway", "a long-running gateway over two servers: cmd/kiln's TestGatewayCommand runs it in process, gateway's TestCluster as processes"},
	{"--http-port 8100", "a backend of the gateway example (TestGatewayCommand, TestCluster)"},
	{"--http-port 8200", "a backend of the gateway example (TestGatewayCommand, TestCluster)"},
	{"localhost:900", "the gateway example's ports (TestGatewayCommand, TestCluster)"},
	{"CGO_ENABLED=0 go build", "a build of the binary; scripts/test.sh builds both (amd64 without cgo, arm64)"},
	{"qemu-aarch64", "scripts/test.sh runs the arm64 binary on the five shared models under qemu-user"},
	{"helm install", "needs a Kubernetes cluster; deploy's TestChartRenders renders the chart through Helm's SDK"},
	{"kubectl ", "needs a Kubernetes cluster"},
	{"go run ./examples/pipeline", "examples/pipeline's own test (TestImageClassifier) writes the repository, serves it and classifies PNG and JPEG images over HTTP and gRPC"},
	{"--model-repository /tmp/pipeline-repo", "serves the repository of go run ./examples/pipeline repo (examples/pipeline's TestImageClassifier)"},
	{"od -A d -t f4", "prints an output written into shared memory; serve/httpapi's TestSystemSharedMemory checks those bytes"},
	{"go run ./examples/rerank", "examples/rerank's own test (TestRetrieveThenRerank) writes the repository, serves it and searches over HTTP and gRPC"},
	{"--model-repository /tmp/rerank-repo", "serves the repository of go run ./examples/rerank repo (examples/rerank's TestRetrieveThenRerank)"},
	{"bash scripts/deps-kube.sh", "builds kube-apiserver from k8s.io/kubernetes (about 17 minutes on 2 cores); scripts/test.sh runs it before TestKubeDryRun"},
	{"go test ./deploy -run TestKubeDryRun", "a test of the suite, which scripts/test.sh runs (it skips without kube-apiserver)"},
	{"go test ./bench/elastic", "tests of the suite, which scripts/test.sh runs"},
	{"go test ./cmd/kiln -run TestServeMultiGPUFake", "a test of this package, which scripts/test.sh runs"},
	{"go build -o /tmp/kiln ./cmd/kiln", "builds the binary bench/reqpath measures; this test runs the command lines in process"},
	{"go test ./device/cuda/gpuexec -run TestLayoutBenchOnGPU", "a GPU benchmark (it skips without a GPU); bench/gpu.sh runs the GPU measurements"},
	{"go run ./bench/reqpath", "a benchmark of several seconds per target; bench/reqpath's TestReqpath runs it on short settings"},
	{"go test ./device/cuda/gpuexec -run '^TestNodeSuitePartitioned$'", "a test of the suite, which scripts/test.sh runs (the partitioned ONNX node suite on the fake CUDA libraries)"},
	{"go test ./serve/scheduler -run", "tests of the suite, which scripts/test.sh runs"},
	{"go test ./ops/nn -run '^$' -bench", "CPU benchmarks (the measurements of ops/nn/NOTES.md), not checks"},
	{"go test ./ops -run 'Attrs|Traits|TypedOps'", "tests of the suite, which scripts/test.sh runs"},
	{"go test ./device/cuda/gpuexec -run 'TestLayoutAgnosticKernels|TestTypedAttrsSupport'", "tests of the suite, which scripts/test.sh runs"},
	{"go test -c -o cuda.test ./device/cuda", "builds the GPU test binary the next command runs on a GPU machine"},
	{"KILN_INT8_BLOCK_BENCH=1 ./cuda.test", "a GPU measurement (it skips without a GPU); its results are in device/cuda/NOTES.md"},
	{"KILN_POOL_BENCH=1", "a CPU measurement of the pooling kernels (bench/results/cpu-pool.md), not a check"},
	{"go test ./device/cpu -run '^$' -bench", "CPU benchmarks (the measurements of ops/nn/NOTES.md), not checks"},
	{"go test ./device/cpu/kernels -run '^$' -bench", "CPU benchmarks of the registry's kernels (the measurements of ops/nn/NOTES.md), not checks"},
	{"go test -tags kilnpooltrace ./internal/parallel", "the pool trace, a measurement tool (skips without KILN_POOL_TRACE_PLANS)"},
	{"bash bench/elastic-loop.sh", "the 17-minute recorded elastic loop (needs root); TestElasticLoopShort runs it 20 times faster"},
}

// readmeCommand is one "$ " line of README.md's indented example blocks,
// continuation lines joined.
type readmeCommand struct {
	line int
	text string
}

// readmeCommands reads the example commands of README.md, and fails the
// test on a command line of an example block written without "$ " (which
// this test would not see).
func readmeCommands(t *testing.T, path string) []readmeCommand {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cmds, bad := parseReadme(string(b))
	for _, e := range bad {
		t.Errorf("README.md:%s", e)
	}
	return cmds
}

// parseReadme returns the "$ " lines of a README's indented example
// blocks, continuation lines joined, and the lines that look like commands
// but lack "$ ".
func parseReadme(text string) (cmds []readmeCommand, bad []string) {
	lines := strings.Split(text, "\n")
	fenced := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(l, "    ") {
			continue
		}
		s := strings.TrimSpace(l)
		if !strings.HasPrefix(s, "$ ") {
			for _, p := range []string{"go run ", "go install ", "kiln ", "curl ", "./scripts/"} {
				if strings.HasPrefix(s, p) {
					bad = append(bad, fmt.Sprintf("%d: a command without \"$ \": %q (TestReadme runs only \"$ \" lines)", i+1, s))
				}
			}
			continue
		}
		c := readmeCommand{line: i + 1, text: strings.TrimPrefix(s, "$ ")}
		for strings.HasSuffix(c.text, `\`) && i+1 < len(lines) {
			i++
			c.text = strings.TrimSuffix(c.text, `\`) + " " + strings.TrimSpace(lines[i])
		}
		cmds = append(cmds, c)
	}
	return cmds, bad
}

// shellWords splits a command line as a POSIX shell would for the simple
// commands of the README: blanks separate words, single quotes are literal,
// double quotes allow \" and \\, a word starting with # ends the line
// (returned as the comment).
func shellWords(s string) (words []string, comment string, err error) {
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, strings.TrimSpace(s[i+1:]), nil
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, "", fmt.Errorf("unclosed ' in %q", s)
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\' || s[i+1] == '$') {
					i++
				}
				w.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, "", fmt.Errorf("unclosed \" in %q", s)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, "", nil
}

// readmeValues expands the README's abbreviation "V, ...N values..." (a
// JSON array of N values, all V) into the values.
var readmeValues = regexp.MustCompile(`([-0-9.eE]+), \.\.\.(\d+) values\.\.\.`)

// readmeExit is how a README command's comment states an exit status
// other than 0.
var readmeExit = regexp.MustCompile(`exit status (\d)`)

// readmeStatus is how a curl command's comment states an HTTP status other
// than 200.
var readmeStatus = regexp.MustCompile(`answers (\d{3})`)

func expandValues(s string) string {
	return readmeValues.ReplaceAllStringFunc(s, func(m string) string {
		sub := readmeValues.FindStringSubmatch(m)
		n, _ := strconv.Atoi(sub[2])
		return strings.TrimSuffix(strings.Repeat(sub[1]+",", n), ",")
	})
}

// captureStdout runs f with os.Stdout going to a file and returns what f
// printed there (the commands print their results with fmt.Print).
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	tmp, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	old := os.Stdout
	os.Stdout = tmp
	defer func() { os.Stdout = old }()
	f()
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readmeServer is a kiln serve started by a README command, in process on
// loopback ports.
type readmeServer struct {
	addrs  [3]string // HTTP, metrics, gRPC
	cancel context.CancelFunc
	code   chan int
}

// startReadmeServe starts kiln serve with args (ports replaced by free
// loopback ports, plans cached under cache) and waits until it is ready.
func startReadmeServe(t *testing.T, args []string, cache string) *readmeServer {
	t.Helper()
	args = append(append([]string{}, args...), "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--plan-cache", cache)
	ctx, cancel := context.WithCancel(context.Background())
	s := &readmeServer{cancel: cancel, code: make(chan int, 1)}
	started := make(chan [3]string, 1)
	go func() { s.code <- runServe(ctx, args, started) }()
	select {
	case s.addrs = <-started:
	case c := <-s.code:
		cancel()
		t.Fatalf("kiln serve %q exited %d before listening", args, c)
	case <-time.After(2 * time.Minute):
		cancel()
		t.Fatalf("kiln serve %q did not listen", args)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; {
		resp, err := http.Get("http://" + s.addrs[0] + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			s.stop(t)
			t.Fatalf("kiln serve %q not ready: %v", args, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *readmeServer) stop(t *testing.T) {
	t.Helper()
	if s == nil {
		return
	}
	s.cancel()
	select {
	case c := <-s.code:
		if c != exitOK {
			t.Errorf("kiln serve exited %d after its context ended", c)
		}
	case <-time.After(time.Minute):
		t.Errorf("kiln serve did not stop")
	}
}

// readmeCurl runs a curl command line of the README against the server:
// the ports of the README's localhost URLs become the server's.
func readmeCurl(t *testing.T, srv *readmeServer, words []string) (int, string, error) {
	if srv == nil {
		return 0, "", fmt.Errorf("no kiln serve started before it")
	}
	method, url := "", ""
	var body io.Reader
	header := http.Header{}
	for i := 1; i < len(words); i++ {
		w := words[i]
		arg := func() (string, error) {
			if i+1 == len(words) {
				return "", fmt.Errorf("curl %s without its value", w)
			}
			i++
			return words[i], nil
		}
		switch w {
		case "-X", "--request":
			v, err := arg()
			if err != nil {
				return 0, "", err
			}
			method = v
		case "-d", "--data", "--data-binary":
			v, err := arg()
			if err != nil {
				return 0, "", err
			}
			if f, ok := strings.CutPrefix(v, "@"); ok {
				b, err := os.ReadFile(f)
				if err != nil {
					return 0, "", err
				}
				body = bytes.NewReader(b)
			} else {
				body = strings.NewReader(expandValues(v))
			}
			header.Set("Content-Type", "application/x-www-form-urlencoded") // as curl -d sends
			if method == "" {
				method = http.MethodPost
			}
		case "-H", "--header":
			v, err := arg()
			if err != nil {
				return 0, "", err
			}
			k, val, ok := strings.Cut(v, ":")
			if !ok {
				return 0, "", fmt.Errorf("curl -H %q: want Name: value", v)
			}
			header.Set(strings.TrimSpace(k), strings.TrimSpace(val))
		case "-s", "-S", "-f", "-i", "--fail", "--silent":
		default:
			if strings.HasPrefix(w, "-") {
				return 0, "", fmt.Errorf("curl option %s: unknown to this test", w)
			}
			url = w
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	rest, ok := strings.CutPrefix(strings.TrimPrefix(url, "http://"), "localhost:")
	if !ok {
		return 0, "", fmt.Errorf("curl URL %q: want localhost:PORT/...", url)
	}
	port, path, _ := strings.Cut(rest, "/")
	hosts := map[string]string{"8000": srv.addrs[0], "8002": srv.addrs[1]}
	host, ok := hosts[port]
	if !ok {
		return 0, "", fmt.Errorf("curl URL %q: port %s is neither HTTP (8000) nor metrics (8002)", url, port)
	}
	req, err := http.NewRequest(method, "http://"+host+"/"+path, body)
	if err != nil {
		return 0, "", err
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestReadme runs README.md's example commands as written, in order, in a
// temporary folder, with ../shared/models: kiln commands through the CLI's
// entry point (kiln serve in process on loopback ports, which the README's
// curl and kiln client commands then call), mkdir and cp as the shell
// would. The commands it cannot run here are listed in readmeSkips with the
// reason. A command that fails, or that this test does not know, fails it:
// the README cannot drift from the program.
func TestReadme(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(repo, "..", "shared")
	if _, err := os.Stat(filepath.Join(shared, "models")); err != nil {
		t.Skipf("the README's examples use ../shared/models, which is missing here: %v", err)
	}
	cmds := readmeCommands(t, filepath.Join(repo, "README.md"))
	if len(cmds) < 10 {
		t.Fatalf("only %d commands found in README.md", len(cmds))
	}
	work := t.TempDir()
	cache := t.TempDir()
	t.Chdir(work)
	// paths of the README are relative to the repository's root
	fix := func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			switch {
			case strings.HasPrefix(a, "../shared/"):
				out[i] = filepath.Join(shared, strings.TrimPrefix(a, "../shared/"))
			case strings.HasPrefix(a, "./") && !strings.HasPrefix(a, "./cmd/"):
				out[i] = filepath.Join(repo, a)
			default:
				out[i] = a
			}
		}
		return out
	}
	var srv *readmeServer
	defer func() { srv.stop(t) }()
	ran, skipped := 0, 0
	var restore []func()
	undoEnv := func() {
		for _, f := range restore {
			f()
		}
		restore = nil
	}
	defer undoEnv()
	for _, c := range cmds {
		name := fmt.Sprintf("README.md:%d", c.line)
		skip := ""
		for _, s := range readmeSkips {
			if strings.Contains(c.text, s.key) {
				skip = s.reason
			}
		}
		if skip != "" {
			t.Logf("%s: skipped %q: %s", name, c.text, skip)
			skipped++
			continue
		}
		for _, part := range strings.Split(c.text, " && ") {
			undoEnv()
			words, comment, err := shellWords(part)
			if err != nil || len(words) == 0 {
				t.Fatalf("%s: %q: %v", name, part, err)
			}
			// NAME=value before a command: in its environment only
			for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
				k, v, _ := strings.Cut(words[0], "=")
				old, had := os.LookupEnv(k)
				os.Setenv(k, v)
				restore = append(restore, func() {
					if had {
						os.Setenv(k, old)
					} else {
						os.Unsetenv(k)
					}
				})
				words = words[1:]
			}
			want, wantHTTP := exitOK, http.StatusOK
			if m := readmeExit.FindStringSubmatch(comment); m != nil {
				want, _ = strconv.Atoi(m[1])
			}
			if m := readmeStatus.FindStringSubmatch(comment); m != nil {
				wantHTTP, _ = strconv.Atoi(m[1])
			}
			var kiln []string
			switch {
			case len(words) >= 3 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/kiln":
				kiln = words[3:]
			case words[0] == "kiln":
				kiln = words[1:]
			case words[0] == "curl":
				code, body, err := readmeCurl(t, srv, words)
				if err != nil {
					t.Fatalf("%s: %s: %v", name, part, err)
				}
				if code != wantHTTP {
					t.Fatalf("%s: %s: HTTP %d, want %d: %s", name, part, code, wantHTTP, body)
				}
				t.Logf("%s: %s: HTTP %d, %d bytes", name, clip(part, 80), code, len(body))
				ran++
				continue
			case words[0] == "mkdir" && len(words) == 3 && words[1] == "-p":
				if err := os.MkdirAll(words[2], 0o755); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				continue
			case words[0] == "truncate" && len(words) == 4 && words[1] == "-s":
				// a shared memory object (/dev/shm) of the given size
				n, err := strconv.ParseInt(words[2], 10, 64)
				if err == nil {
					var f *os.File
					if f, err = os.OpenFile(words[3], os.O_RDWR|os.O_CREATE, 0o600); err == nil {
						err = errors.Join(f.Truncate(n), f.Close())
					}
				}
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				continue
			case words[0] == "cp" && len(words) == 3:
				src, dst := fix(words[1:2])[0], words[2]
				if strings.HasSuffix(dst, "/") {
					dst = filepath.Join(dst, filepath.Base(src))
				}
				b, err := os.ReadFile(src)
				if err == nil {
					err = os.WriteFile(dst, b, 0o644)
				}
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				continue
			default:
				t.Fatalf("%s: %q: this test does not know how to run it: teach it, or list it in readmeSkips with the reason", name, part)
			}
			if len(kiln) == 0 {
				t.Fatalf("%s: kiln without a command", name)
			}
			args := fix(kiln)
			switch args[0] {
			case "serve":
				srv.stop(t)
				srv = nil
				srv = startReadmeServe(t, args[1:], cache)
				t.Logf("%s: kiln %s: serving on %s", name, strings.Join(args, " "), srv.addrs[0])
			case "client":
				if srv == nil {
					t.Fatalf("%s: kiln client before any kiln serve", name)
				}
				args = append(args, "--url", srv.addrs[2])
				fallthrough
			default:
				if args[0] == "perf" {
					if srv == nil {
						t.Fatalf("%s: kiln perf before any kiln serve", name)
					}
					args = readmePerfArgs(args, srv)
				}
				if args[0] == "conformance" {
					missing := false
					for _, d := range args[1:] {
						if _, err := os.Stat(d); err != nil && !strings.HasPrefix(d, "-") {
							missing = true
						}
					}
					if missing {
						t.Logf("%s: skipped %q: the ONNX test data is not installed (apt-get install libonnx-testdata)", name, part)
						skipped++
						continue
					}
				}
				var code int
				start := time.Now()
				var stdout string
				out := captureErr(t, func() { stdout = captureStdout(t, func() { code = runCommand(args) }) })
				if code != want {
					t.Fatalf("%s: kiln %s exited %d, want %d:\n%s%s", name, strings.Join(kiln, " "), code, want, stdout, out)
				}
				t.Logf("%s: kiln %s: exit %d in %v", name, clip(strings.Join(kiln, " "), 80), code, time.Since(start).Round(time.Millisecond))
			}
			ran++
		}
	}
	t.Logf("%d commands run, %d skipped", ran, skipped)
}
