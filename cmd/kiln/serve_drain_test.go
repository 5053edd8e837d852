package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestServeDrainKeepAlive (issue 9, item 10): SIGTERM under load from
// clients that keep their connections alive. Once the drain starts, each
// response says "Connection: close" and the server closes the connection
// after it, so the clients open new ones (answered 503 while draining,
// when they stop sending, as a load balancer does): no request fails with
// a reset or a connection closed under it, and serve exits 0.
func TestServeDrainKeepAlive(t *testing.T) {
	s := startServed(t, "--grpc-port", "-1", "--metrics-port", "-1", "--exit-timeout", "20s", "--shutdown-grace", "300ms")
	base := "http://" + s.http
	eventually(t, "ready", func() bool { c, _ := call(t, nil, "GET", base+"/v2/health/ready", "", nil); return c == 200 })
	body := tinyRequest(2)
	const workers = 8
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	type tally struct{ ok, closing, refused503, lost int }
	results := make(chan tally, workers)
	var answered atomic.Int64
	for range workers {
		go func() {
			var n tally
			defer func() { results <- n }()
			for {
				resp, err := client.Post(base+"/v2/models/tinycnn/infer", "application/json", bytes.NewReader(body))
				if errors.Is(err, syscall.ECONNREFUSED) || writeRefused(err) {
					return // the listener closed (or reset a connection it never accepted): a request never accepted
				}
				if err != nil {
					t.Errorf("request failed in flight: %v", err)
					n.lost++
					return
				}
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.Close {
					n.closing++
				}
				if resp.StatusCode == 503 && !resp.Close {
					t.Errorf("503 while draining without Connection: close: %v", resp.Header)
				}
				switch {
				case rerr != nil:
					t.Errorf("response cut: %v", rerr)
					n.lost++
					return
				case resp.StatusCode == 200 && strings.Contains(string(b), `"probabilities"`):
					n.ok++
					answered.Add(1)
				case resp.StatusCode == 503:
					n.refused503++
					return // not ready: a load balancer sends elsewhere now
				default:
					t.Errorf("request lost: %d %s", resp.StatusCode, b)
					n.lost++
					return
				}
			}
		}()
	}
	eventually(t, "requests answered under load", func() bool { return answered.Load() >= 64 })
	if c := s.stop(t); c != exitOK {
		t.Errorf("exit %d, want 0", c)
	}
	var sum tally
	for range workers {
		n := <-results
		sum.ok, sum.closing, sum.refused503, sum.lost = sum.ok+n.ok, sum.closing+n.closing, sum.refused503+n.refused503, sum.lost+n.lost
	}
	t.Logf("%d answered, %d with Connection: close, %d refused with 503 while draining, %d lost", sum.ok, sum.closing, sum.refused503, sum.lost)
	if sum.lost != 0 || sum.closing == 0 {
		t.Errorf("%d lost, %d responses with Connection: close", sum.lost, sum.closing)
	}
}
