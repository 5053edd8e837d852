package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/api/inference"
)

// closedByServer reads c until the server closes it, and fails the test if
// it stays open for 15 s. It returns what was read.
func closedByServer(t *testing.T, c net.Conn, what string) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("%s: the server kept the connection open", what)
	}
	return string(b)
}

// TestServeHTTPTimeouts (issue 9, item 10): a client that sends its body
// slowly, or keeps an idle connection, is cut off after the read or idle
// timeout; a request that waits in the queue longer than the read and
// write timeouts is still answered; a WebSocket stream stays open past
// them.
func TestServeHTTPTimeouts(t *testing.T) {
	repo := writeRepo(t, map[string]string{
		"tinycnn": "max_batch_size: 4\n",
		// a lone request waits 1.5 s for a batch of 4
		"waits": "max_batch_size: 4\ndynamic_batching { preferred_batch_size: [4] max_queue_delay_microseconds: 1500000 }\n",
	})
	s := startServed(t, "--model-repository", repo, "--no-build", "--grpc-port", "-1", "--metrics-port", "-1",
		"--http-read-timeout", "300ms", "--http-write-timeout", "300ms", "--http-idle-timeout", "300ms")
	base := "http://" + s.http
	eventually(t, "ready", func() bool { c, _ := call(t, nil, "GET", base+"/v2/health/ready", "", nil); return c == 200 })

	t.Run("slow body", func(t *testing.T) {
		c, err := net.Dial("tcp", s.http)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /v2/models/tinycnn/infer HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"inputs\": [")
		out := closedByServer(t, c, "a body that never comes")
		if strings.HasPrefix(out, "HTTP/1.1 200") {
			t.Errorf("answered 200 to a partial body: %q", out)
		}
	})
	t.Run("slow headers", func(t *testing.T) {
		c, err := net.Dial("tcp", s.http)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /v2/health/live HTTP/1.1\r\nHost: kiln\r\n")
		closedByServer(t, c, "headers that never end")
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c, err := net.Dial("tcp", s.http)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /v2/health/live HTTP/1.1\r\nHost: kiln\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 || resp.Close {
			t.Fatalf("live: %v %v", resp, err)
		}
		resp.Body.Close()
		closedByServer(t, c, "an idle keep-alive connection")
	})
	t.Run("queued longer than the timeouts", func(t *testing.T) {
		start := time.Now()
		c, b := call(t, nil, "POST", base+"/v2/models/waits/infer", "", tinyRequest(1))
		if c != 200 || !strings.Contains(b, `"probabilities"`) {
			t.Errorf("a request that waited %v in the queue: %d %s", time.Since(start), c, b)
		}
		t.Logf("answered after %v with 300ms read and write timeouts", time.Since(start))
	})
	t.Run("websocket stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, "ws://"+s.http+"/v2/models/tinycnn/stream", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		for i := range 3 {
			time.Sleep(400 * time.Millisecond) // longer than every timeout, between messages
			if err := ws.Write(ctx, websocket.MessageText, tinyRequest(1)); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			_, msg, err := ws.Read(ctx)
			if err != nil || !strings.Contains(string(msg), `"probabilities"`) {
				t.Fatalf("reply %d: %v %.200s", i, err, msg)
			}
		}
		ws.Close(websocket.StatusNormalClosure, "")
	})
}

// TestServeAuthAndTLSPorts (issue 9, items 1 and 10): with tokens set, the
// gRPC port guards inference and metadata with the inference token and the
// repository with the admin token, health open, as HTTP does; the metrics
// port wants its token (the inference token unless --metrics-token) and,
// with --tls-cert, serves HTTPS; --pprof adds /debug/pprof/ behind it.
func TestServeAuthAndTLSPorts(t *testing.T) {
	certFile, keyFile, pool := writeCert(t, t.TempDir())
	for _, tt := range []struct {
		name         string
		tls          bool
		extra        []string
		metricsToken string
		pprof        bool
	}{
		{"plaintext", false, nil, "infer", false},
		{"TLS", true, nil, "infer", false},
		{"TLS, metrics token, pprof", true, []string{"--metrics-token", "scrape", "--pprof"}, "scrape", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--infer-token", "infer", "--admin-token", "admin", "--model-control-mode", "explicit"}, tt.extra...)
			scheme := "http"
			dial := grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, ""))
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			if tt.tls {
				args = append(args, "--tls-cert", certFile, "--tls-key", keyFile)
				scheme = "https"
			}
			s := startServed(t, args...)
			var cc *grpc.ClientConn
			if tt.tls {
				var err error
				if cc, err = grpc.NewClient(s.grpc, dial); err != nil {
					t.Fatal(err)
				}
				defer cc.Close()
			} else {
				cc = s.grpcConn(t)
			}
			g, h := inference.NewGRPCInferenceServiceClient(cc), healthpb.NewHealthClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			with := func(tok string) context.Context {
				if tok == "" {
					return ctx
				}
				return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
			}
			for _, tok := range []string{"", "wrong", "infer", "admin"} {
				_, err := g.ModelMetadata(with(tok), &inference.ModelMetadataRequest{Name: "tinycnn"})
				if want := tok == "infer"; (err == nil) != want || (err != nil && status.Code(err) != codes.Unauthenticated) {
					t.Errorf("gRPC ModelMetadata with token %q: %v", tok, err)
				}
				_, err = g.RepositoryIndex(with(tok), &inference.RepositoryIndexRequest{})
				if want := tok == "admin"; (err == nil) != want || (err != nil && status.Code(err) != codes.Unauthenticated) {
					t.Errorf("gRPC RepositoryIndex with token %q: %v", tok, err)
				}
				_, err = g.RepositoryModelUnload(with(tok), &inference.RepositoryModelUnloadRequest{ModelName: "nope"})
				wantCode := codes.Unauthenticated
				if tok == "admin" {
					wantCode = codes.NotFound
				}
				if status.Code(err) != wantCode {
					t.Errorf("gRPC RepositoryModelUnload with token %q: %v", tok, err)
				}
				if r, err := h.Check(with(tok), &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					t.Errorf("gRPC health with token %q: %v %v", tok, r, err)
				}
				if r, err := g.ServerReady(with(tok), &inference.ServerReadyRequest{}); err != nil || !r.GetReady() {
					t.Errorf("gRPC ServerReady with token %q: %v %v", tok, r, err)
				}
			}
			mbase := scheme + "://" + s.metrics
			for _, tok := range []string{"", "wrong", "admin", "infer", "scrape"} {
				want := 401
				if tok == tt.metricsToken {
					want = 200
				}
				c, b := call(t, client, "GET", mbase+"/metrics", tok, nil)
				if c != want || (c == 200 && !strings.Contains(b, "go_goroutines")) {
					t.Errorf("metrics with token %q: %d, want %d", tok, c, want)
				}
			}
			want := 404
			if tt.pprof {
				want = 200
			}
			if c, _ := call(t, client, "GET", mbase+"/debug/pprof/", tt.metricsToken, nil); c != want {
				t.Errorf("pprof: %d, want %d", c, want)
			}
			if c, _ := call(t, client, "GET", mbase+"/debug/pprof/", "", nil); c != 401 {
				t.Errorf("pprof without a token: %d, want 401", c)
			}
			if tt.tls {
				// HTTP/2 through the timeouts' response wrapper
				h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
				req, _ := http.NewRequest("POST", "https://"+s.http+"/v2/models/tinycnn/infer", bytes.NewReader(tinyRequest(1)))
				req.Header.Set("Authorization", "Bearer infer")
				resp, err := h2.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.Contains(string(b), `"probabilities"`) {
					t.Errorf("inference over HTTP/2: %s %d %.200s", resp.Proto, resp.StatusCode, b)
				}
				// plain HTTP to the TLS metrics port is refused
				if c, _ := call(t, nil, "GET", "http://"+s.metrics+"/metrics", tt.metricsToken, nil); c != 400 {
					t.Errorf("plain HTTP to the HTTPS metrics port: %d, want 400", c)
				}
			}
			if c := s.stop(t); c != exitOK {
				t.Errorf("exit %d", c)
			}
		})
	}
}
