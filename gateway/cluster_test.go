package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
)

var (
	kilnOnce sync.Once
	kilnBin  string
	kilnErr  error
	binDir   string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// kiln builds the kiln command once per test binary and returns its path.
func kiln(t testing.TB) string {
	t.Helper()
	kilnOnce.Do(func() {
		binDir, kilnErr = os.MkdirTemp("", "kiln-gateway-test")
		if kilnErr != nil {
			return
		}
		if kilnBin = os.Getenv("KILN_BIN"); kilnBin != "" {
			return // a kiln built beforehand (a machine without Go)
		}
		kilnBin = filepath.Join(binDir, "kiln")
		out, err := exec.Command("go", "build", "-o", kilnBin, "../cmd/kiln").CombinedOutput()
		if err != nil {
			kilnErr = fmt.Errorf("go build ../cmd/kiln: %v\n%s", err, out)
		}
	})
	if kilnErr != nil {
		t.Fatal(kilnErr)
	}
	return kilnBin
}

// proc is a kiln process started by a test.
type proc struct {
	name                string
	args                []string
	cmd                 *exec.Cmd
	http, grpc, metrics string
	mu                  sync.Mutex
	log                 bytes.Buffer
	exited              chan struct{}
	exitErr             error
}

var listening = regexp.MustCompile(`msg=listening http=(\S+) grpc=(\S*) metrics=(\S*)`)

// start runs kiln with args and waits until it listens.
func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	return startBin(t, kiln(t), name, args...)
}

// startBin runs the kiln binary bin with args and waits until it listens.
func startBin(t testing.TB, bin, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, args: args, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			if m := listening.FindStringSubmatch(line); m != nil {
				addrs <- m[1:]
			}
		}
	}()
	go func() { p.exitErr = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("%s log (last 3000 bytes):\n%s", p.name, p.tail(3000))
		}
	})
	select {
	case a := <-addrs:
		p.http, p.grpc, p.metrics = a[0], a[1], a[2]
	case <-p.exited:
		t.Fatalf("%s exited: %v\n%s", name, p.exitErr, p.tail(3000))
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not start:\n%s", name, p.tail(3000))
	}
	return p
}

func (p *proc) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.log.Bytes()
	return string(b[max(0, len(b)-n):])
}

// stop sends SIGTERM and waits for the exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.exitErr != nil {
			t.Errorf("%s exited after SIGTERM: %v", p.name, p.exitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop", p.name)
	}
}

// serve starts kiln serve on repo; with ports (http, grpc, metrics) from
// an earlier run it listens on them again.
func serve(t testing.TB, name, repo, plans string, ports ...string) *proc {
	t.Helper()
	hp, gp, mp := "0", "0", "0"
	if len(ports) == 3 {
		hp, gp, mp = port(ports[0]), port(ports[1]), port(ports[2])
	}
	return start(t, name, "serve", "--host", "127.0.0.1", "--http-port", hp, "--grpc-port", gp, "--metrics-port", mp,
		"--allow-gpu-metrics=false", "--plan-cache", plans, "--model-repository", repo,
		"--shutdown-grace", "200ms", "--exit-timeout", "20s")
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// repo writes a model repository of tinycnn copies named models.
func repo(t testing.TB, models ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, m := range models {
		if err := os.MkdirAll(filepath.Join(dir, m, "1"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, m, "1", "model.onnx"), examples.TinyCNNModel, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func tinyRequest() []byte {
	in := examples.TinyCNNInput(1)
	b, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}}})
	return b
}

func tinyGRPCRequest(model string) *inference.ModelInferRequest {
	in := examples.TinyCNNInput(1)
	return &inference.ModelInferRequest{ModelName: model, Inputs: []*inference.ModelInferRequest_InferInputTensor{{
		Name: "image", Datatype: "FP32", Shape: []int64{1, 3, 32, 32},
		Contents: &inference.InferTensorContents{Fp32Contents: in.Float32s()}}}}
}

// tally counts a load's outcomes.
type tally struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
}

func (c *tally) fail(msg string) {
	c.failed.Add(1)
	c.mu.Lock()
	if len(c.errs) < 20 {
		c.errs = append(c.errs, time.Now().Format("15:04:05.000")+" "+msg)
	}
	c.mu.Unlock()
}

// load sends requests through the gateway until ctx ends: HTTP workers on
// model "tinycnn", one on "pair" (the model only two servers have), and
// gRPC workers on "tinycnn".
func load(ctx context.Context, t *testing.T, gw *proc, httpWorkers, grpcWorkers int, c *tally) *sync.WaitGroup {
	var wg sync.WaitGroup
	body := tinyRequest()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	worker := func(model string) {
		defer wg.Done()
		for ctx.Err() == nil {
			resp, err := client.Post("http://"+gw.http+"/v2/models/"+model+"/infer", "application/json", bytes.NewReader(body))
			if err != nil {
				if ctx.Err() == nil {
					c.fail(model + ": " + err.Error())
				}
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"probabilities"`)) {
				c.fail(fmt.Sprintf("%s: %d %s", model, resp.StatusCode, b))
				continue
			}
			c.ok.Add(1)
		}
	}
	for range httpWorkers {
		wg.Add(1)
		go worker("tinycnn")
	}
	wg.Add(1)
	go worker("pair")
	if grpcWorkers > 0 {
		cc, err := grpc.NewClient(gw.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		req := tinyGRPCRequest("tinycnn")
		for range grpcWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				gc := inference.NewGRPCInferenceServiceClient(cc)
				for ctx.Err() == nil {
					resp, err := gc.ModelInfer(ctx, req)
					if err != nil {
						if ctx.Err() == nil {
							c.fail("grpc: " + err.Error())
						}
						continue
					}
					if len(resp.RawOutputContents) == 0 && len(resp.Outputs) == 0 {
						c.fail("grpc: no outputs")
						continue
					}
					c.ok.Add(1)
				}
			}()
		}
		go func() { wg.Wait(); cc.Close() }()
	}
	return &wg
}

// metricsOf scrapes a Prometheus text page: "name{labels}" -> value.
func metricsOf(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sent is how many requests of model the gateway answered through backend
// over HTTP (code 200).
func sent(m map[string]float64, backend, model string) float64 {
	return m[fmt.Sprintf(`kiln_gateway_requests_total{backend=%q,code="200",model=%q}`, backend, model)]
}

// attempts counts every attempt on backend: answered (any code) and failed.
func attempts(m map[string]float64, backend string) float64 {
	n := 0.0
	for k, v := range m {
		if (strings.HasPrefix(k, "kiln_gateway_requests_total{") || strings.HasPrefix(k, "kiln_gateway_retries_total{")) &&
			strings.Contains(k, fmt.Sprintf("backend=%q", backend)) {
			n += v
		}
	}
	return n
}

func backendReady(m map[string]float64, backend string) bool {
	return m[fmt.Sprintf(`kiln_gateway_backend_ready{backend=%q}`, backend)] == 1
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// delayProxy is the test's slow server: an HTTP proxy to a kiln serve that
// waits delay before forwarding each request (0: none). When its server is
// down it drops the connection, as a closed port would.
type delayProxy struct {
	delay atomic.Int64 // nanoseconds
	addr  string
}

func newDelayProxy(t *testing.T, target string) *delayProxy {
	t.Helper()
	d := &delayProxy{}
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { panic(http.ErrAbortHandler) }
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := time.Duration(d.delay.Load()); d > 0 && strings.HasSuffix(r.URL.Path, "/infer") {
			time.Sleep(d)
		}
		rp.ServeHTTP(w, r)
	}), ErrorLog: nil}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	d.addr = l.Addr().String()
	return d
}

func backendLine(httpAddr string, p *proc) string {
	return fmt.Sprintf("http=%s,grpc=%s,metrics=%s\n", httpAddr, p.grpc, p.metrics)
}

// TestCluster (issue 12): kiln gateway in front of three kiln serve
// processes on loopback, under load over HTTP and gRPC from goroutines. A
// model that only two servers have is never sent to the third; a slow
// server gets proportionally less traffic; kill -9 of a server fails no
// request and the gateway stops sending to it; a fourth server added to the
// backends file takes traffic; a rolling restart (SIGTERM, drain, start) of
// the three fails no request.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes")
	}
	plans := t.TempDir()
	both, one := repo(t, "tinycnn", "pair"), repo(t, "tinycnn")
	a := serve(t, "serve-a", both, plans)
	b := serve(t, "serve-b", both, plans)
	c := serve(t, "serve-c", one, plans)
	slow := newDelayProxy(t, c.http)
	file := filepath.Join(t.TempDir(), "backends")
	lines := backendLine(a.http, a) + backendLine(b.http, b) + backendLine(slow.addr, c)
	if err := os.WriteFile(file, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := start(t, "gateway", "gateway", "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
		"--backends-file", file, "--poll-interval", "100ms", "--slow-start", "1s", "--eject-time", "1s")
	waitFor(t, "three backends ready", 60*time.Second, func() bool {
		m := metricsOf(t, gw.metrics)
		return backendReady(m, a.http) && backendReady(m, b.http) && backendReady(m, slow.addr)
	})

	ctx, cancel := context.WithCancel(context.Background())
	var c1 tally
	wg := load(ctx, t, gw, 6, 2, &c1)
	defer func() { cancel(); wg.Wait() }()
	total := func() int64 { return c1.ok.Load() + c1.failed.Load() }
	more := func(n int64) { // waits until n more requests are answered
		goal := total() + n
		waitFor(t, fmt.Sprintf("%d more requests", n), 60*time.Second, func() bool { return total() >= goal })
	}
	checkFailures := func(phase string) {
		t.Helper()
		if n := c1.failed.Load(); n != 0 {
			c1.mu.Lock()
			t.Fatalf("%s: %d failed requests (of %d): %q", phase, n, total(), c1.errs)
		}
	}

	t.Log("phase 1: balance over three; the pair model only on two")
	more(300)
	m := metricsOf(t, gw.metrics)
	for _, s := range []string{a.http, b.http, slow.addr} {
		if sent(m, s, "tinycnn") == 0 {
			t.Errorf("backend %s got no tinycnn request", s)
		}
	}
	checkFailures("phase 1")

	// 150 ms: well above what CPU contention adds to a and b when the test
	// shares two cores with other packages' tests (at 50 ms, c's share rose
	// from about 0.27 to 0.55 of the others' under CI's parallel packages)
	t.Log("phase 2: server c slow (150 ms more per inference)")
	slow.delay.Store(int64(150 * time.Millisecond))
	m0 := metricsOf(t, gw.metrics)
	more(600)
	m1 := metricsOf(t, gw.metrics)
	slow.delay.Store(0)
	da, db, dc := sent(m1, a.http, "tinycnn")-sent(m0, a.http, "tinycnn"), sent(m1, b.http, "tinycnn")-sent(m0, b.http, "tinycnn"),
		sent(m1, slow.addr, "tinycnn")-sent(m0, slow.addr, "tinycnn")
	t.Logf("while c was slow: a %v, b %v, c %v HTTP requests", da, db, dc)
	if dc*2 > min(da, db) {
		t.Errorf("the slow server got %v requests, the others %v and %v: want under half of the least", dc, da, db)
	}
	checkFailures("phase 2")

	t.Log("phase 3: kill -9 of server a")
	more(100)
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	ejected := waitFor(t, "a ejected", 20*time.Second, func() bool { return !backendReady(metricsOf(t, gw.metrics), a.http) })
	time.Sleep(time.Second - time.Since(killed)) // the requirement: no more traffic to a one second after the kill
	after1s := attempts(metricsOf(t, gw.metrics), a.http)
	more(300)
	m = metricsOf(t, gw.metrics)
	t.Logf("a ejected %v after the kill; attempts on a after the first second: %v", ejected.Round(time.Millisecond), attempts(m, a.http)-after1s)
	if n := attempts(m, a.http) - after1s; n != 0 {
		t.Errorf("%v attempts on the killed server after the first second", n)
	}
	checkFailures("phase 3 (kill -9)")

	t.Log("phase 4: a fourth server added")
	d := serve(t, "serve-d", both, plans)
	waitFor(t, "d ready", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + d.http + "/v2/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	lines = backendLine(b.http, b) + backendLine(slow.addr, c) + backendLine(d.http, d)
	if err := os.WriteFile(file, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, "d takes traffic", 20*time.Second, func() bool { return sent(metricsOf(t, gw.metrics), d.http, "tinycnn") > 0 })
	t.Logf("the fourth server took traffic %v after the backends file listed it", took.Round(time.Millisecond))
	more(200)
	checkFailures("phase 4")

	t.Log("phase 5: a back, then a rolling restart of a, b and c")
	a = serve(t, "serve-a2", both, plans, a.http, a.grpc, a.metrics)
	lines = backendLine(a.http, a) + lines
	if err := os.WriteFile(file, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a back", 30*time.Second, func() bool { return backendReady(metricsOf(t, gw.metrics), a.http) })
	more(100)
	for i, p := range []*proc{a, b, c} {
		name := []string{"a", "b", "c"}[i]
		gwName := p.http
		if p == c {
			gwName = slow.addr
		}
		p.stop(t)
		waitFor(t, name+" seen down", 10*time.Second, func() bool { return !backendReady(metricsOf(t, gw.metrics), gwName) })
		np := serve(t, "serve-"+name+"3", map[bool]string{true: one, false: both}[p == c], plans, p.http, p.grpc, p.metrics)
		waitFor(t, name+" back after its restart", 30*time.Second, func() bool { return backendReady(metricsOf(t, gw.metrics), gwName) })
		more(100)
		if p == c {
			c = np
		}
		checkFailures("phase 5 (rolling restart of " + name + ")")
	}
	cancel()
	wg.Wait()
	checkFailures("the end")

	m = metricsOf(t, gw.metrics)
	for k, v := range m {
		if strings.Contains(k, `model="pair"`) && strings.Contains(k, fmt.Sprintf("backend=%q", slow.addr)) && v > 0 {
			t.Errorf("the pair model went to the server without it: %s %v", k, v)
		}
	}
	for k, v := range metricsOf(t, c.metrics) {
		if strings.Contains(k, `model="pair"`) && v > 0 {
			t.Errorf("server c counted the pair model: %s %v", k, v)
		}
	}
	t.Logf("%d requests answered, %d failed", c1.ok.Load(), c1.failed.Load())
}
