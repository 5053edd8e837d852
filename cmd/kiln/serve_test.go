package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
)

func TestServeExampleAndDrain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan [3]string, 1)
	code := make(chan int, 1)
	go func() {
		code <- runServe(ctx, []string{"--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--exit-timeout", "10s"}, started)
	}()
	var addrs [3]string
	select {
	case addrs = <-started:
	case c := <-code:
		t.Fatalf("serve exited with %d", c)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	base := "http://" + addrs[0]
	in := examples.TinyCNNInput(1)
	body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}}})
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, _ := get(base + "/v2/health/ready"); c != 200 {
		t.Fatalf("ready: %d", c)
	}
	resp, err := http.Post(base+"/v2/models/tinycnn/infer", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"probabilities"`) {
		t.Fatalf("infer: %d %s", resp.StatusCode, b)
	}
	if c, m := get("http://" + addrs[1] + "/metrics"); c != 200 || !strings.Contains(m, `nv_inference_request_success{model="tinycnn",version="1"} 1`) {
		t.Fatalf("metrics: %d\n%s", c, m)
	}
	cc, err := grpc.NewClient(addrs[2], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health: %v %v", hr, err)
	}
	if r, err := inference.NewGRPCInferenceServiceClient(cc).ModelReady(ctx, &inference.ModelReadyRequest{Name: "tinycnn"}); err != nil || !r.GetReady() {
		t.Fatalf("gRPC ModelReady: %v %v", r, err)
	}
	cancel() // as SIGTERM
	select {
	case c := <-code:
		if c != exitOK {
			t.Errorf("exit %d, want 0", c)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestServeTLSAndToken(t *testing.T) {
	certFile, keyFile, pool := writeCert(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan [3]string, 1)
	code := make(chan int, 1)
	go func() {
		code <- runServe(ctx, []string{"--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "-1", "--metrics-port", "-1",
			"--tls-cert", certFile, "--tls-key", keyFile, "--infer-token", "secret"}, started)
	}()
	var addrs [3]string
	select {
	case addrs = <-started:
	case c := <-code:
		t.Fatalf("serve exited with %d", c)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, tt := range []struct {
		token string
		code  int
	}{{"", 401}, {"wrong", 401}, {"secret", 200}} {
		req, _ := http.NewRequest("GET", "https://"+addrs[0]+"/v2/models/tinycnn", nil)
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("token %q: %d, want %d", tt.token, resp.StatusCode, tt.code)
		}
	}
	cancel()
	if c := <-code; c != exitOK {
		t.Errorf("exit %d", c)
	}
}

func TestServeBadFlags(t *testing.T) {
	if c := runServe(context.Background(), []string{"--tls-cert", "x"}, nil); c != exitError {
		t.Errorf("cert without key: exit %d, want %d", c, exitError)
	}
	if c := runServe(context.Background(), []string{"--http-port", "x"}, nil); c != exitError {
		t.Errorf("exit %d, want %d", c, exitError)
	}
	if c := runServe(context.Background(), []string{"--model-control-mode", "sometimes"}, nil); c != exitError {
		t.Errorf("exit %d, want %d", c, exitError)
	}
	if c := runServe(context.Background(), []string{"--model-control-mode", "poll"}, nil); c != exitError {
		t.Errorf("poll without a repository: exit %d, want %d", c, exitError)
	}
	if c := runServe(context.Background(), []string{"extra"}, nil); c != exitError {
		t.Errorf("exit %d, want %d", c, exitError)
	}
}

// TestServeSIGTERMUnderLoad sends SIGTERM to a serving process under
// concurrent load: every request the server accepted is answered (200, or
// 503 once it turned not ready, when the client, as a load balancer would,
// stops sending), none fails mid-way, and serve exits 0.
func TestServeSIGTERMUnderLoad(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	code := make(chan int, 1)
	go func() {
		code <- serveCmd([]string{"--host", "127.0.0.1", "--http-port", port, "--grpc-port", "-1", "--metrics-port", "-1",
			"--exit-timeout", "20s", "--shutdown-grace", "300ms"})
	}()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} // a refused connection is a request never accepted
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case c := <-code:
			t.Fatalf("serve exited with %d", c)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not become ready")
		}
		time.Sleep(10 * time.Millisecond)
	}

	in := examples.TinyCNNInput(2)
	body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}}})
	type tally struct{ ok, refused503, lost int }
	results := make(chan tally, 8)
	var answered atomic.Int64
	for range 8 {
		go func() {
			var n tally
			defer func() { results <- n }()
			for {
				resp, err := client.Post("http://"+addr+"/v2/models/tinycnn/infer", "application/json", bytes.NewReader(body))
				if errors.Is(err, syscall.ECONNREFUSED) {
					return // the listener closed: the server has stopped accepting
				}
				if writeRefused(err) {
					// the connection was still in the kernel's backlog when
					// the listener closed (the server never accepted it), and
					// the kernel reset it while the request was being written
					// (EPIPE or ECONNRESET, by when the reset arrives): a
					// request never accepted, like a refused connection
					return
				}
				if err != nil {
					t.Errorf("request failed in flight: %v", err)
					n.lost++
					return
				}
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case rerr != nil:
					t.Errorf("response cut: %v", rerr)
					n.lost++
				case resp.StatusCode == 200 && strings.Contains(string(b), `"probabilities"`):
					n.ok++
					answered.Add(1)
				case resp.StatusCode == 503:
					n.refused503++
					return // not ready: a load balancer sends elsewhere now
				default:
					t.Errorf("request lost: %d %s", resp.StatusCode, b)
					n.lost++
				}
			}
		}()
	}
	for answered.Load() < 16 && time.Now().Before(deadline.Add(20*time.Second)) {
		time.Sleep(5 * time.Millisecond) // under load, with requests in flight
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != exitOK {
			t.Errorf("exit %d, want 0", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
	var sum tally
	for range 8 {
		n := <-results
		sum.ok, sum.refused503, sum.lost = sum.ok+n.ok, sum.refused503+n.refused503, sum.lost+n.lost
	}
	t.Logf("%d answered, %d refused with 503 while draining, %d lost", sum.ok, sum.refused503, sum.lost)
	if sum.ok == 0 || sum.lost != 0 {
		t.Errorf("%d answered, %d lost", sum.ok, sum.lost)
	}
}

// writeRefused reports whether err is a reset met while the request was
// being written, before any of the response was read.
func writeRefused(err error) bool {
	if errors.Is(err, syscall.EPIPE) {
		return true
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		return false
	}
	// the chain holds "readfrom" (the body copy) around "write": any
	// write-side operation counts, a "read" (the response) does not
	for e := err; e != nil; e = errors.Unwrap(e) {
		if op, ok := e.(*net.OpError); ok && (op.Op == "write" || op.Op == "readfrom") {
			return true
		}
	}
	return false
}

// TestServeBrokenModel: a repository with a broken model serves the others;
// the broken one is in the index with its error, and the server (HTTP
// readiness and gRPC health) is not ready.
func TestServeBrokenModel(t *testing.T) {
	repo := t.TempDir()
	for name, cfg := range map[string]string{"good": "max_batch_size: 4\n", "bad": "max_batch_size: {\n"} {
		os.MkdirAll(filepath.Join(repo, name, "1"), 0o755)
		os.WriteFile(filepath.Join(repo, name, "1", "model.onnx"), examples.TinyCNNModel, 0o644)
		os.WriteFile(filepath.Join(repo, name, "config.pbtxt"), []byte(cfg), 0o644)
	}
	plans := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan [3]string, 1)
	code := make(chan int, 1)
	go func() {
		code <- runServe(ctx, []string{"--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "-1",
			"--model-repository", repo, "--plan-cache", plans}, started)
	}()
	var addrs [3]string
	select {
	case addrs = <-started:
	case c := <-code:
		t.Fatalf("serve exited with %d", c)
	}
	base := "http://" + addrs[0]
	waitLoaded(t, base) // the ports listen before the models load
	status := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, _ := status("GET", "/v2/health/ready"); c != 503 {
		t.Errorf("ready with a broken model: %d", c)
	}
	if c, _ := status("GET", "/v2/models/good/ready"); c != 200 {
		t.Errorf("the good model: %d", c)
	}
	if c, b := status("POST", "/v2/repository/index"); c != 200 || !strings.Contains(b, `"name":"bad"`) || !strings.Contains(b, "UNAVAILABLE") || !strings.Contains(b, "bad protobuf text") {
		t.Errorf("index: %d %s", c, b)
	}
	cc, err := grpc.NewClient(addrs[2], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for _, svc := range []string{"", "inference.GRPCInferenceService"} {
		if hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: svc}); err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("gRPC health of %q with a broken model: %v %v", svc, hr, err)
		}
	}
	cancel()
	if c := <-code; c != exitOK {
		t.Errorf("exit %d", c)
	}
	// The good model's engine was built and its plan cached.
	if built, _ := filepath.Glob(filepath.Join(plans, "good-*.plan")); len(built) != 1 {
		t.Errorf("plan cache holds %v, want one plan of the good model", built)
	}
}
